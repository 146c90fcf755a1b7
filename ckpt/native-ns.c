/* SPDX-License-Identifier: Apache-2.0 */
/* Looking into a container from outside: a thread that enters its
 * namespaces, its mount table, and the interfaces of a network namespace
 * (rtnetlink: sysfs shows the namespace that mounted it, not ours). */
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "fs-util.h"

#define MOUNTINFO_MAX (8 << 20)
#define NL_BUF 32768

/* ---- a thread in the container's namespaces ------------------------------ */

typedef struct ns_job {
        int fds[3];
        int types[3];
        int (*fn)(void *arg);
        void *arg;
        int rc;
} ns_job;

static void *ns_thread(void *p) {
        ns_job *j = p;
        for (int i = 0; i < 3; i++) {
                if (j->fds[i] < 0)
                        continue;
                /* A mount namespace can only be entered by a thread whose
                 * root and cwd are its own. */
                if (j->types[i] == CLONE_NEWNS && unshare(CLONE_FS) < 0) {
                        j->rc = negative_errno();
                        return NULL;
                }
                if (setns(j->fds[i], j->types[i]) < 0) {
                        j->rc = negative_errno();
                        return NULL;
                }
        }
        j->rc = j->fn(j->arg);
        return NULL;
}

int ckpt__in_ns(pid_t pid, int nstypes, int (*fn)(void *arg), void *arg) {
        static const struct {
                int type;
                const char *name;
        } order[] = {{CLONE_NEWCGROUP, "cgroup"}, {CLONE_NEWNET, "net"}, {CLONE_NEWNS, "mnt"}};
        ns_job j = {.fds = {-1, -1, -1}, .fn = fn, .arg = arg};
        pthread_t t;
        int r = 0;

        for (size_t i = 0; i < ARRAY_SIZE(order) && r == 0; i++) {
                char path[64];
                if (!(nstypes & order[i].type))
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, order[i].name);
                j.fds[i] = open(path, O_RDONLY | O_CLOEXEC);
                j.types[i] = order[i].type;
                if (j.fds[i] < 0)
                        r = negative_errno();
        }
        if (r == 0) {
                r = -pthread_create(&t, NULL, ns_thread, &j);
                if (r == 0) {
                        pthread_join(t, NULL);
                        r = j.rc;
                }
        }
        for (size_t i = 0; i < ARRAY_SIZE(j.fds); i++)
                if (j.fds[i] >= 0)
                        close(j.fds[i]);
        return r;
}

bool ckpt__same_ns(pid_t pid, const char *kind) {
        char path[64], self[64];
        struct stat a, b;
        snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, kind);
        snprintf(self, sizeof(self), "/proc/self/ns/%s", kind);
        if (stat(path, &a) < 0 || stat(self, &b) < 0)
                return true; /* no such namespace kind: shared, as far as anyone can tell */
        return a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

/* ---- mountinfo ------------------------------------------------------------- */

/* Undoes the kernel's octal escapes (\040 for a space, ...). */
static char *unescape(const char *s, size_t n) {
        char *out = malloc(n + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\\' && i + 3 < n + 1 && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
                    s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
                        *o++ = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
                        i += 3;
                } else
                        *o++ = s[i];
        }
        *o = '\0';
        return out;
}

void ckpt__mountinfo_free(ckpt__mnt *m, size_t n) {
        for (size_t i = 0; m && i < n; i++) {
                free(m[i].root);
                free(m[i].target);
                free(m[i].opts);
                free(m[i].fstype);
                free(m[i].source);
                free(m[i].super_opts);
        }
        free(m);
}

/* A decimal number ending at `stop` (or the string's end). */
static int parse_num(const char *s, char stop, int *ret) {
        char *end;
        long v;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end != stop || v < 0 || v > INT32_MAX)
                return -EBADMSG;
        *ret = (int)v;
        return 0;
}

/* "major:minor". */
static int parse_dev(const char *s, unsigned *ret_major, unsigned *ret_minor) {
        const char *colon = strchr(s, ':');
        int a, b;
        if (!colon || parse_num(s, ':', &a) < 0 || parse_num(colon + 1, '\0', &b) < 0)
                return -EBADMSG;
        *ret_major = (unsigned)a;
        *ret_minor = (unsigned)b;
        return 0;
}

/* "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue" */
static int parse_line(char *line, ckpt__mnt *m) {
        char *f[16];
        size_t n = 0, dash = 0;
        char *save = NULL;

        for (char *t = strtok_r(line, " ", &save); t && n < ARRAY_SIZE(f); t = strtok_r(NULL, " ", &save)) {
                if (strcmp(t, "-") == 0 && dash == 0 && n >= 6)
                        dash = n;
                f[n++] = t;
        }
        if (dash == 0 || n < dash + 4)
                return -EBADMSG;
        if (parse_num(f[0], '\0', &m->id) < 0 || parse_num(f[1], '\0', &m->parent) < 0 ||
            parse_dev(f[2], &m->major, &m->minor) < 0)
                return -EBADMSG;
        m->root = unescape(f[3], strlen(f[3]));
        m->target = unescape(f[4], strlen(f[4]));
        m->opts = strdup(f[5]);
        m->fstype = strdup(f[dash + 1]);
        m->source = unescape(f[dash + 2], strlen(f[dash + 2]));
        m->super_opts = strdup(f[dash + 3]);
        if (!m->root || !m->target || !m->opts || !m->fstype || !m->source || !m->super_opts)
                return -ENOMEM;
        return 0;
}

int ckpt__mountinfo_parse(const char *text, ckpt__mnt **ret, size_t *ret_n) {
        _cleanup_free_ char *copy = strdup(text);
        ckpt__mnt *m = NULL;
        size_t n = 0;
        char *save = NULL;
        int r = 0;

        if (!copy)
                return -ENOMEM;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                ckpt__mnt *nm = realloc(m, (n + 1) * sizeof(*m));
                if (!nm) {
                        r = -ENOMEM;
                        break;
                }
                m = nm;
                m[n] = (ckpt__mnt){};
                r = parse_line(line, &m[n++]);
                if (r < 0)
                        break;
        }
        if (r < 0) {
                ckpt__mountinfo_free(m, n);
                return r;
        }
        *ret = m;
        *ret_n = n;
        return 0;
}

int ckpt__mountinfo_read(pid_t pid, ckpt__mnt **ret, size_t *ret_n) {
        _cleanup_free_ char *text = NULL;
        char path[64];
        int r;

        if (pid > 0)
                snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
        else
                snprintf(path, sizeof(path), "/proc/self/mountinfo");
        r = read_file_at(AT_FDCWD, path, MOUNTINFO_MAX, &text, NULL);
        if (r < 0)
                return r;
        return ckpt__mountinfo_parse(text, ret, ret_n);
}

static bool has_opt(const char *opts, const char *name) {
        size_t n = strlen(name);
        for (const char *p = opts; p && *p;) {
                const char *c = strchr(p, ',');
                size_t len = c ? (size_t)(c - p) : strlen(p);
                if (len == n && strncmp(p, name, n) == 0)
                        return true;
                p = c ? c + 1 : NULL;
        }
        return false;
}

unsigned ckpt__mnt_flags(const char *opts) {
        return (has_opt(opts, "ro") ? CKPT_MNT_RDONLY : 0) |
               (has_opt(opts, "nosuid") ? CKPT_MNT_NOSUID : 0) |
               (has_opt(opts, "nodev") ? CKPT_MNT_NODEV : 0) |
               (has_opt(opts, "noexec") ? CKPT_MNT_NOEXEC : 0);
}

/* ---- interfaces (rtnetlink) ---------------------------------------------- */

static int nl_dump(int fd, int type, int family, unsigned seq) {
        struct {
                struct nlmsghdr h;
                struct rtgenmsg g;
        } req = {
                .h = {.nlmsg_len = sizeof(req),
                      .nlmsg_type = (unsigned short)type,
                      .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
                      .nlmsg_seq = seq},
                .g = {.rtgen_family = (unsigned char)family},
        };
        return send(fd, &req, sizeof(req), 0) < 0 ? negative_errno() : 0;
}

typedef struct link_list {
        ckpt__link *l;
        size_t n;
} link_list;

static void parse_link(link_list *ll, struct nlmsghdr *h) {
        struct ifinfomsg *ifi = NLMSG_DATA(h);
        int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifi));
        ckpt__link k = {.index = ifi->ifi_index};

        for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
                if (a->rta_type == IFLA_IFNAME)
                        snprintf(k.name, sizeof(k.name), "%s", (char *)RTA_DATA(a));
                else if (a->rta_type == IFLA_MASTER)
                        k.master = *(int *)RTA_DATA(a);
                else if (a->rta_type == IFLA_LINKINFO) {
                        int l2 = (int)RTA_PAYLOAD(a);
                        for (struct rtattr *b = RTA_DATA(a); RTA_OK(b, l2); b = RTA_NEXT(b, l2))
                                if (b->rta_type == IFLA_INFO_KIND)
                                        snprintf(k.kind, sizeof(k.kind), "%s", (char *)RTA_DATA(b));
                }
        }
        ckpt__link *nl = realloc(ll->l, (ll->n + 1) * sizeof(*nl));
        if (!nl)
                return;
        ll->l = nl;
        ll->l[ll->n++] = k;
}

static void parse_addr(link_list *ll, struct nlmsghdr *h) {
        struct ifaddrmsg *ifa = NLMSG_DATA(h);
        int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifa));
        ckpt__link *k = NULL;

        for (size_t i = 0; i < ll->n; i++)
                if (ll->l[i].index == (int)ifa->ifa_index)
                        k = &ll->l[i];
        if (!k || k->addr[0] || ifa->ifa_family != AF_INET)
                return;
        for (struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len))
                if (a->rta_type == IFA_LOCAL || (a->rta_type == IFA_ADDRESS && !k->addr[0])) {
                        inet_ntop(AF_INET, RTA_DATA(a), k->addr, sizeof(k->addr));
                        k->prefix = ifa->ifa_prefixlen;
                }
}

/* Reads the answers to one dump request until NLMSG_DONE. */
static int nl_read(int fd, link_list *ll, void (*parse)(link_list *, struct nlmsghdr *)) {
        _cleanup_free_ char *buf = malloc(NL_BUF);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = recv(fd, buf, NL_BUF, 0);
                if (n < 0)
                        return negative_errno();
                int len = (int)n;
                for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned)len);
                     h = NLMSG_NEXT(h, len)) {
                        if (h->nlmsg_type == NLMSG_DONE)
                                return 0;
                        if (h->nlmsg_type == NLMSG_ERROR)
                                return -EIO;
                        parse(ll, h);
                }
        }
}

int ckpt__links(ckpt__link **ret, size_t *ret_n) {
        _cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        link_list ll = {};
        int r;

        if (fd < 0)
                return negative_errno();
        r = nl_dump(fd, RTM_GETLINK, AF_UNSPEC, 1);
        if (r >= 0)
                r = nl_read(fd, &ll, parse_link);
        if (r >= 0)
                r = nl_dump(fd, RTM_GETADDR, AF_INET, 2);
        if (r >= 0)
                r = nl_read(fd, &ll, parse_addr);
        if (r < 0) {
                free(ll.l);
                return r;
        }
        *ret = ll.l;
        *ret_n = ll.n;
        return 0;
}

const ckpt__link *ckpt__link_by_name(const ckpt__link *l, size_t n, const char *name) {
        for (size_t i = 0; name && i < n; i++)
                if (strcmp(l[i].name, name) == 0)
                        return &l[i];
        return NULL;
}

const ckpt__link *ckpt__link_by_index(const ckpt__link *l, size_t n, int index) {
        for (size_t i = 0; i < n; i++)
                if (l[i].index == index)
                        return &l[i];
        return NULL;
}
