/* SPDX-License-Identifier: Apache-2.0 */
/* A production-mode init, as nucleus's mini-init: PID 1 of the container,
 * executed from a host path the container does not see, running the
 * command as its child, reaping orphans, passing SIGTERM/SIGINT on.
 *
 *   nm-native-init -- CMD [ARG...] */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t child;

static void forward(int sig) {
        if (child > 0)
                kill(child, sig);
}

int main(int argc, char **argv) {
        int status, i = 1;
        pid_t pid;

        if (i < argc && strcmp(argv[i], "--") == 0)
                i++;
        if (i >= argc) {
                fprintf(stderr, "usage: nm-native-init -- CMD [ARG...]\n");
                return 2;
        }
        signal(SIGTERM, forward);
        signal(SIGINT, forward);
        pid = fork();
        if (pid < 0)
                return 1;
        if (pid == 0) {
                execvp(argv[i], argv + i);
                fprintf(stderr, "nm-native-init: exec %s: %s\n", argv[i], strerror(errno));
                _exit(127);
        }
        child = pid;
        for (;;) {
                pid_t w = wait(&status);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 || w == pid)
                        break;
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
