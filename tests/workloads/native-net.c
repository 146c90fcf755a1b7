/* SPDX-License-Identifier: Apache-2.0 */
/* P0's side of a native container: its cgroup, and its bridge network
 * (veth pair named after C2's host pid, an address reserved in
 * <state dir>/ip-alloc/<id>.ip, default route, one MASQUERADE rule, the
 * published ports' DNAT rules, ip_forward), or
 * a tap device held outside the tree (slirp4netns's way). Runs in the
 * node's network namespace, with the `ip` and `iptables` tools, as nucleus
 * runs them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"
#include "native.h"

#define SUBNET "10.0.42.0/24"
#define GATEWAY "10.0.42.1"

/* ---- cgroup ------------------------------------------------------------- */

/* Writes a limit where the controller offers the file; a hybrid host's
 * unified hierarchy has none, and nucleus then runs without them. */
static void write_limit(const char *dir, const char *file, const char *value) {
        char path[4096 + 64];
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        if (access(path, F_OK) < 0)
                return;
        if (native_write_str(path, value) < 0)
                native_log("cannot write %s = %s: %m", path, value);
}

int native_cgroup_create(const native_cfg *cfg, native_node_state *st) {
        char v[64];

        if (!cfg->cgroup_root)
                return 0;
        snprintf(st->cgroup_path, sizeof(st->cgroup_path), "%s/nucleus-%s", cfg->cgroup_root, cfg->id);
        if (mkdir(st->cgroup_path, 0755) < 0) {
                int e = errno;
                /* nucleus's agent mode runs without a cgroup when it cannot
                 * make one: cgroup_path is then null. */
                native_log("cannot create cgroup %s: %s; running without one", st->cgroup_path, strerror(e));
                st->cgroup_path[0] = '\0';
                return 0;
        }
        if (cfg->memory_max) {
                snprintf(v, sizeof(v), "%llu", (unsigned long long)cfg->memory_max);
                write_limit(st->cgroup_path, "memory.max", v);
                uint64_t high = cfg->memory_max / 10 * 9;
                snprintf(v, sizeof(v), "%llu", (unsigned long long)high);
                write_limit(st->cgroup_path, "memory.high", v);
                write_limit(st->cgroup_path, "memory.swap.max", "0");
                write_limit(st->cgroup_path, "memory.oom.group", "1");
        }
        if (cfg->cpu_quota_us) {
                snprintf(v, sizeof(v), "%llu 100000", (unsigned long long)cfg->cpu_quota_us);
                write_limit(st->cgroup_path, "cpu.max", v);
                write_limit(st->cgroup_path, "cpu.weight", "100");
        }
        snprintf(v, sizeof(v), "%llu", (unsigned long long)cfg->pids_max);
        write_limit(st->cgroup_path, "pids.max", v);
        /* What the unified hierarchy offers without controllers. */
        write_limit(st->cgroup_path, "cgroup.max.descendants", "16");
        return 0;
}

int native_cgroup_enter(const char *cgroup_dir, pid_t pid) {
        char path[4096 + 32], v[32];
        snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup_dir);
        snprintf(v, sizeof(v), "%d", (int)pid);
        return native_write_str(path, v);
}

/* ---- address reservation ------------------------------------------------ */

static int ip_alloc_dir(const native_cfg *cfg, char *buf, size_t size) {
        int fd;
        snprintf(buf, size, "%s/ip-alloc", cfg->state_dir);
        fd = mkdir_p_secure(buf, 0700);
        if (fd < 0)
                return fd;
        close(fd);
        return 0;
}

/* True when another reservation file in dir holds address. */
static bool address_taken(const char *dir, const char *address) {
        _cleanup_close_ int dfd = open_dir_nofollow(dir);
        struct dirent *de;
        bool taken = false;
        DIR *d;

        if (dfd < 0)
                return false;
        d = fdopendir(TAKE_FD(dfd));
        if (!d)
                return false;
        while (!taken && (de = readdir(d))) {
                _cleanup_free_ char *text = NULL;
                size_t n = strlen(de->d_name);
                if (n < 4 || strcmp(de->d_name + n - 3, ".ip") != 0)
                        continue;
                if (read_file_at(dirfd(d), de->d_name, 256, &text, NULL) < 0)
                        continue;
                text[strcspn(text, " \n")] = '\0';
                taken = strcmp(text, address) == 0;
        }
        closedir(d);
        return taken;
}

/* Claims an address: a reservation file nobody else holds for it. */
static int reserve_address(const native_cfg *cfg, native_node_state *st) {
        char dir[4096], path[4096 + 64];
        int r;

        r = ip_alloc_dir(cfg, dir, sizeof(dir));
        if (r < 0)
                return r;
        for (int attempt = 0; attempt < 1024; attempt++) {
                unsigned char b;
                if (cfg->address)
                        snprintf(st->address, sizeof(st->address), "%s", cfg->address);
                else {
                        if (getrandom(&b, 1, 0) != 1 || b < 2 || b > 254)
                                continue;
                        snprintf(st->address, sizeof(st->address), "10.0.42.%u", b);
                }
                if (address_taken(dir, st->address)) {
                        if (cfg->address)
                                return -EADDRINUSE;
                        continue;
                }
                snprintf(path, sizeof(path), "%s/%s.ip", dir, cfg->id);
                int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                if (fd < 0)
                        return -errno;
                r = loop_write(fd, st->address, strlen(st->address));
                close(fd);
                if (r < 0)
                        return r;
                snprintf(st->ip_alloc, sizeof(st->ip_alloc), "%s", path);
                return 0;
        }
        return -EADDRNOTAVAIL;
}

/* ---- bridge and veth ----------------------------------------------------- */

/* In this (the node's) network namespace; 0 when there is no such link. */
static int ifindex_of(const char *name) {
        return (int)if_nametoindex(name);
}

/* Created if missing, never deleted (as nucleus does). */
static int ensure_bridge(const char *br) {
        if (ifindex_of(br) > 0)
                return 0;
        char *add[] = {"ip", "link", "add", (char *)br, "type", "bridge", NULL};
        char gw[] = GATEWAY "/24";
        char *addr[] = {"ip", "addr", "add", gw, "dev", (char *)br, NULL};
        char *up[] = {"ip", "link", "set", (char *)br, "up", NULL};
        if (native_run(add) < 0 || native_run(addr) < 0 || native_run(up) < 0)
                return -EIO;
        return 0;
}

static int in_container(pid_t c2, char **ip_args) {
        char ns[64];
        char *argv[16] = {"nsenter", ns, "--", "ip"};
        size_t n = 4;
        snprintf(ns, sizeof(ns), "--net=/proc/%d/ns/net", (int)c2);
        for (; *ip_args && n < ARRAY_SIZE(argv) - 1; ip_args++)
                argv[n++] = *ip_args;
        argv[n] = NULL;
        return native_run(argv);
}

/* A published port as nucleus installs it: DNAT in the nat table's
 * PREROUTING (from outside) and OUTPUT (from this node, to one of its own
 * addresses); removed OUTPUT first. op is "-A" or "-D". */
static int port_rules(const native_port *p, const char *address, const char *op) {
        static const char *const chains[2][2] = {{"PREROUTING", "OUTPUT"}, {"OUTPUT", "PREROUTING"}};
        bool del = strcmp(op, "-D") == 0;
        char to[64];
        int r = 0;

        snprintf(to, sizeof(to), "%s:%s", address, p->ctr_port);
        for (int i = 0; i < 2; i++) {
                const char *chain = chains[del][i];
                char *argv[24] = {"iptables", "-w",          "-t", "nat",
                                  (char *)op, (char *)chain, "-p", (char *)p->proto};
                size_t n = 8;
                if (strcmp(chain, "OUTPUT") == 0) {
                        argv[n++] = "-m";
                        argv[n++] = "addrtype";
                        argv[n++] = "--dst-type";
                        argv[n++] = "LOCAL";
                }
                if (p->host_ip) {
                        argv[n++] = "-d";
                        argv[n++] = (char *)p->host_ip;
                }
                argv[n++] = "--dport";
                argv[n++] = (char *)p->host_port;
                argv[n++] = "-j";
                argv[n++] = "DNAT";
                argv[n++] = "--to-destination";
                argv[n++] = to;
                argv[n] = NULL;
                if (native_run(argv) < 0)
                        r = -EIO;
        }
        return r;
}

static int bridge_setup(const native_cfg *cfg, pid_t c2, native_node_state *st) {
        char pidarg[16], cidr[48];
        int r;

        r = ensure_bridge(cfg->bridge);
        if (r < 0)
                return r;
        r = reserve_address(cfg, st);
        if (r < 0)
                return r;
        snprintf(st->veth, sizeof(st->veth), "veth-%x", (unsigned)c2);
        snprintf(st->vethc, sizeof(st->vethc), "vethc-%x", (unsigned)c2);
        snprintf(pidarg, sizeof(pidarg), "%d", (int)c2);
        snprintf(cidr, sizeof(cidr), "%s/24", st->address);
        char *pair[] = {"ip",   "link", "add",     st->veth, "type", "veth",
                        "peer", "name", st->vethc, "netns",  pidarg, NULL};
        char *master[] = {"ip", "link", "set", st->veth, "master", (char *)cfg->bridge, "up", NULL};
        char *lo[] = {"link", "set", "lo", "up", NULL};
        char *addr[] = {"addr", "add", cidr, "dev", st->vethc, NULL};
        char *up[] = {"link", "set", st->vethc, "up", NULL};
        char *route[] = {"route", "add", "default", "via", GATEWAY, NULL};
        /* One rule per container, appended as nucleus does (its supervisor
         * deletes one when the container exits); `! -o BRIDGE` unlike
         * nucleus: see DESIGN.md "The nat table". */
        char *masq[] = {"iptables",          "-w", "-t",         "nat", "-A",
                        "POSTROUTING",       "-s", SUBNET,       "!",   "-o",
                        (char *)cfg->bridge, "-j", "MASQUERADE", NULL};
        if (native_run(pair) < 0)
                return -EIO;
        st->veth_ifindex = ifindex_of(st->veth);
        if (native_run(master) < 0 || in_container(c2, lo) < 0 || in_container(c2, addr) < 0 ||
            in_container(c2, up) < 0 || in_container(c2, route) < 0)
                return -EIO;
        if (native_write_str("/proc/sys/net/ipv4/ip_forward", "1") < 0)
                return -errno;
        if (native_run(masq) < 0)
                return -EIO;
        st->masquerade = true;
        for (unsigned i = 0; i < cfg->n_ports; i++) {
                r = port_rules(&cfg->ports[i], st->address, "-A");
                if (r < 0)
                        return r;
                st->n_published = i + 1;
        }
        return 0;
}

/* A tap device in the container's network namespace whose only fd P0
 * holds: what slirp4netns does for rootless nucleus. */
static int tap_setup(pid_t c2, native_node_state *st) {
        char path[64];
        struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI};
        _cleanup_close_ int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int ns = -EBADF;
        int r = 0;

        snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)c2);
        ns = open(path, O_RDONLY | O_CLOEXEC);
        if (self < 0 || ns < 0 || setns(ns, CLONE_NEWNET) < 0)
                return -errno;
        st->tap_fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "tap0");
        if (st->tap_fd < 0 || ioctl(st->tap_fd, TUNSETIFF, &ifr) < 0)
                r = -errno;
        if (setns(self, CLONE_NEWNET) < 0)
                abort(); /* P0 must not stay in the container's namespace */
        if (r < 0)
                return r;
        char *lo[] = {"link", "set", "lo", "up", NULL};
        char *addr[] = {"addr", "add", "10.0.2.100/24", "dev", "tap0", NULL};
        char *up[] = {"link", "set", "tap0", "up", NULL};
        if (in_container(c2, lo) < 0 || in_container(c2, addr) < 0 || in_container(c2, up) < 0)
                return -EIO;
        return 0;
}

int native_net_setup(const native_cfg *cfg, pid_t c2, native_node_state *st) {
        switch (cfg->net) {
        case NATIVE_NET_NONE: {
                char *lo[] = {"link", "set", "lo", "up", NULL};
                return in_container(c2, lo);
        }
        case NATIVE_NET_BRIDGE: return bridge_setup(cfg, c2, st);
        case NATIVE_NET_TAP: return tap_setup(c2, st);
        }
        return -EINVAL;
}

/* ---- cleanup (when the container exited, or its start failed) ---------- */

static void cleanup_veth(native_node_state *st) {
        /* Gone with the container's network namespace, normally; a veth of
         * the same name made since (a copy restored on this node) is not
         * ours. */
        if (!st->veth[0] || st->veth_ifindex <= 0 || ifindex_of(st->veth) != st->veth_ifindex)
                return;
        char *del[] = {"ip", "link", "del", st->veth, NULL};
        (void)native_run(del);
}

static void cleanup_address(native_node_state *st) {
        _cleanup_free_ char *text = NULL;
        if (!st->ip_alloc[0] || read_file_at(AT_FDCWD, st->ip_alloc, 256, &text, NULL) < 0)
                return;
        if (strcmp(text, st->address) == 0 && unlink(st->ip_alloc) == 0)
                native_log("released %s", st->address);
}

static void cleanup_cgroup(native_node_state *st) {
        if (!st->cgroup_path[0])
                return;
        /* The tasks may take a moment to leave it after the last exit. */
        for (int i = 0; i < 50; i++) {
                if (rmdir(st->cgroup_path) == 0 || errno == ENOENT)
                        return;
                if (errno != EBUSY)
                        break;
                usleep(100 * 1000);
        }
        native_log("cannot remove cgroup %s: %m", st->cgroup_path);
}

void native_node_cleanup(const native_cfg *cfg, native_node_state *st) {
        cleanup_veth(st);
        for (unsigned i = 0; i < st->n_published; i++)
                (void)port_rules(&cfg->ports[i], st->address, "-D");
        st->n_published = 0;
        if (st->masquerade) {
                char *masq[] = {"iptables",          "-w", "-t",         "nat", "-D",
                                "POSTROUTING",       "-s", SUBNET,       "!",   "-o",
                                (char *)cfg->bridge, "-j", "MASQUERADE", NULL};
                (void)native_run(masq);
                st->masquerade = false;
        }
        cleanup_address(st);
        cleanup_cgroup(st);
        if (st->tap_fd >= 0)
                close(st->tap_fd);
        st->tap_fd = -1;
}
