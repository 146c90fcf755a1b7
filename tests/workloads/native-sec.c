/* SPDX-License-Identifier: Apache-2.0 */
/* The last steps of C2 before exec, in nucleus's order: rlimits
 * (NPROC = pids max, NOFILE 1024, MEMLOCK 64 KiB), no_new_privs, optional
 * Landlock (file system rules), every capability dropped (bounding,
 * ambient, effective, permitted, inheritable), and a classic-BPF seccomp
 * filter whose default action is KILL_PROCESS (no TSYNC, no user
 * notification). The allow list is what nm-native-work, nm-native-init and
 * the dynamic loader need; ptrace, among others, is not on it. */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"
#include "native.h"

static const int allowed[] = {
        SYS_read,
        SYS_write,
        SYS_readv,
        SYS_writev,
        SYS_pread64,
        SYS_pwrite64,
        SYS_open,
        SYS_openat,
        SYS_close,
        SYS_fstat,
        SYS_newfstatat,
        SYS_statx,
        SYS_lseek,
        SYS_access,
        SYS_faccessat,
        SYS_faccessat2,
        SYS_mmap,
        SYS_mprotect,
        SYS_munmap,
        SYS_mremap,
        SYS_madvise,
        SYS_brk,
        SYS_rt_sigaction,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_rt_sigsuspend,
        SYS_rt_sigtimedwait,
        SYS_sigaltstack,
        SYS_pause,
        SYS_nanosleep,
        SYS_clock_nanosleep,
        SYS_clock_gettime,
        SYS_gettimeofday,
        SYS_restart_syscall,
        SYS_getpid,
        SYS_getppid,
        SYS_gettid,
        SYS_getuid,
        SYS_geteuid,
        SYS_getgid,
        SYS_getegid,
        SYS_getgroups,
        SYS_getpgid,
        SYS_getsid,
        SYS_setpgid,
        SYS_uname,
        SYS_sysinfo,
        SYS_getrandom,
        SYS_futex,
        SYS_set_tid_address,
        SYS_set_robust_list,
        SYS_rseq,
        SYS_arch_prctl,
        SYS_prctl,
        SYS_prlimit64,
        SYS_getrlimit,
        SYS_sched_yield,
        SYS_sched_getaffinity,
        SYS_clone,
        SYS_clone3,
        SYS_fork,
        SYS_vfork,
        SYS_execve,
        SYS_execveat,
        SYS_exit,
        SYS_exit_group,
        SYS_wait4,
        SYS_waitid,
        SYS_kill,
        SYS_tkill,
        SYS_tgkill,
        SYS_pipe,
        SYS_pipe2,
        SYS_dup,
        SYS_dup2,
        SYS_dup3,
        SYS_fcntl,
        SYS_flock,
        SYS_fsync,
        SYS_fdatasync,
        SYS_ftruncate,
        SYS_getdents64,
        SYS_getcwd,
        SYS_chdir,
        SYS_fchdir,
        SYS_rename,
        SYS_renameat,
        SYS_renameat2,
        SYS_mkdir,
        SYS_mkdirat,
        SYS_rmdir,
        SYS_unlink,
        SYS_unlinkat,
        SYS_readlink,
        SYS_readlinkat,
        SYS_umask,
        SYS_ioctl,
        SYS_poll,
        SYS_ppoll,
        SYS_select,
        SYS_pselect6,
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_epoll_wait,
        SYS_epoll_pwait,
        SYS_socket,
        SYS_connect,
        SYS_accept,
        SYS_accept4,
        SYS_bind,
        SYS_listen,
        SYS_sendto,
        SYS_recvfrom,
        SYS_sendmsg,
        SYS_recvmsg,
        SYS_shutdown,
        SYS_getsockname,
        SYS_getpeername,
        SYS_setsockopt,
        SYS_getsockopt,
        SYS_statfs,
        SYS_fstatfs,
};

static int fail(char *err, size_t errsz, const char *fmt, ...) {
        int e = errno;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err, errsz, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < errsz)
                snprintf(err + n, errsz - (size_t)n, ": %s", strerror(e));
        return -1;
}

static int rlimits(const native_cfg *cfg) {
        const struct rlimit nproc = {cfg->pids_max, cfg->pids_max}, nofile = {1024, 1024},
                            memlock = {64 * 1024, 64 * 1024};
        if (setrlimit(RLIMIT_NPROC, &nproc) < 0 || setrlimit(RLIMIT_NOFILE, &nofile) < 0 ||
            setrlimit(RLIMIT_MEMLOCK, &memlock) < 0)
                return -1;
        return 0;
}

#define LL_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_EXECUTE)
#define LL_ALL                                                                                         \
        (LL_READ | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |                     \
         LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | \
         LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |   \
         LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM)

static int landlock_allow(int ruleset, const char *path, __u64 access) {
        struct landlock_path_beneath_attr pb = {.allowed_access = access};
        int r;
        pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
        if (pb.parent_fd < 0)
                return errno == ENOENT ? 0 : -1;
        r = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
        close(pb.parent_fd);
        return r;
}

/* Read and execute everywhere; writes only where the workload keeps state. */
static int landlock(const native_cfg *cfg) {
        const struct landlock_ruleset_attr attr = {.handled_access_fs = LL_ALL};
        _cleanup_close_ int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
        static const char *const writable[] = {"/tmp", "/dev/shm", "/run"};

        if (rs < 0 || landlock_allow(rs, "/", LL_READ) < 0 ||
            landlock_allow(rs, "/dev", LL_READ | LANDLOCK_ACCESS_FS_WRITE_FILE) < 0)
                return -1;
        for (size_t i = 0; i < ARRAY_SIZE(writable); i++)
                if (landlock_allow(rs, writable[i], LL_ALL) < 0)
                        return -1;
        for (unsigned i = 0; i < cfg->n_volumes; i++)
                if (!cfg->volumes[i].ro && landlock_allow(rs, cfg->volumes[i].ctr, LL_ALL) < 0)
                        return -1;
        return (int)syscall(SYS_landlock_restrict_self, rs, 0);
}

static int drop_capabilities(void) {
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
        struct __user_cap_data_struct d[2] = {};

        for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                        return -1;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
                return -1;
        return (int)syscall(SYS_capset, &h, d);
}

static int seccomp_filter(void) {
        enum { N = ARRAY_SIZE(allowed) };
        struct sock_filter f[4 + 2 * N + 1];
        size_t i = 0;

        f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
        f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
        f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
        f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
        for (size_t k = 0; k < N; k++) {
                f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)allowed[k], 0, 1);
                f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        }
        f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
        struct sock_fprog prog = {.len = (unsigned short)i, .filter = f};
        return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

int native_security_apply(const native_cfg *cfg, char *err, size_t errsz) {
        if (rlimits(cfg) < 0)
                return fail(err, errsz, "rlimits");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return fail(err, errsz, "no_new_privs");
        if (cfg->landlock && landlock(cfg) < 0)
                return fail(err, errsz, "landlock");
        if (drop_capabilities() < 0)
                return fail(err, errsz, "dropping capabilities");
        if (seccomp_filter() < 0)
                return fail(err, errsz, "seccomp filter");
        return 0;
}
