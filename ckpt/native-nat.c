/* SPDX-License-Identifier: Apache-2.0 */
/* The nat-table rules nucleus's supervisor keeps for a bridged container
 * on its node (DESIGN.md "Native containers"): one MASQUERADE rule per
 * container (`POSTROUTING -s SUBNET [! -o BRIDGE] -j MASQUERADE`, appended
 * at start, one deleted at exit) and, per published port, a DNAT rule in PREROUTING and
 * one in OUTPUT (`-m addrtype --dst-type LOCAL`). nucleus records published
 * ports nowhere but in these rules, so they are read back from the table.
 * Everything here runs iptables: blocking, for the thread pool. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt-internal.h"
#include "ckpt.h"
#include "macro.h"

#define IPTABLES "/usr/sbin/iptables"
#define IPTABLES_TIMEOUT_MS 30000
#define RULES_MAX (1u << 20)

static const char *const protos[_CKPT_PROTO_MAX] = {
        [CKPT_PROTO_TCP] = "tcp",
        [CKPT_PROTO_UDP] = "udp",
};

const char *ckpt_proto_to_string(ckpt_proto p) {
        return p >= 0 && p < _CKPT_PROTO_MAX ? protos[p] : NULL;
}

ckpt_proto ckpt_proto_from_string(const char *s) {
        for (int i = 0; s && i < _CKPT_PROTO_MAX; i++)
                if (strcmp(s, protos[i]) == 0)
                        return (ckpt_proto)i;
        return _CKPT_PROTO_INVALID;
}

static int parse_port(const char *s, uint16_t *ret) {
        char *end;
        unsigned long v;

        if (!s || !*s || *s == '-' || *s == '+')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || v == 0 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t)v;
        return 0;
}

/* "-d 192.0.2.1/32" or "192.0.2.1": a single address, without its /32. */
static int parse_host_ip(const char *s, char *buf, size_t size) {
        struct in_addr a;
        size_t len = strcspn(s, "/");
        char ip[INET_ADDRSTRLEN];

        if (len >= sizeof(ip) || (s[len] && strcmp(s + len, "/32") != 0))
                return -EINVAL;
        memcpy(ip, s, len);
        ip[len] = '\0';
        if (inet_pton(AF_INET, ip, &a) != 1)
                return -EINVAL;
        snprintf(buf, size, "%s", ip);
        return 0;
}

/* What one line says, option by option. */
typedef struct dnat_line {
        ckpt_native_port p;
        size_t to; /* offset of --to-destination's value; 0: none */
        bool prerouting, dnat;
} dnat_line;

/* One option and its value; false when the line cannot be nucleus's. */
static bool dnat_option(dnat_line *d, const char *w, const char *v, size_t v_off) {
        if (strcmp(w, "-A") == 0)
                d->prerouting = strcmp(v, "PREROUTING") == 0;
        else if (strcmp(w, "-p") == 0)
                d->p.proto = ckpt_proto_from_string(v);
        else if (strcmp(w, "-d") == 0)
                return parse_host_ip(v, d->p.host_ip, sizeof(d->p.host_ip)) >= 0;
        else if (strcmp(w, "--dport") == 0)
                return parse_port(v, &d->p.host_port) >= 0;
        else if (strcmp(w, "-j") == 0)
                d->dnat = strcmp(v, "DNAT") == 0;
        else if (strcmp(w, "--to-destination") == 0)
                d->to = v_off;
        else if (strcmp(w, "-s") == 0 || strcmp(w, "-i") == 0)
                return false; /* narrower than a published port */
        return true;
}

static bool takes_value(const char *w) {
        static const char *const opts[] = {"-A", "-p", "-d", "--dport", "-j", "--to-destination",
                                           "-m", "-s", "-i"};
        for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
                if (strcmp(w, opts[i]) == 0)
                        return true;
        return false;
}

int ckpt_native_parse_dnat(const char *line, ckpt_native_port *ret, char *to_addr, size_t to_size) {
        _cleanup_free_ char *copy = strdup(line);
        dnat_line d = {.p.proto = _CKPT_PROTO_INVALID};
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
                if (strcmp(w, "!") == 0)
                        return 0; /* a negation: not a rule nucleus writes */
                if (!takes_value(w))
                        continue;
                char *v = strtok_r(NULL, " \t\n", &save);
                if (!v || !dnat_option(&d, w, v, (size_t)(v - copy)))
                        return 0;
        }
        ckpt_native_port p = d.p;
        const char *to = d.to ? line + d.to : NULL;
        bool prerouting = d.prerouting, dnat = d.dnat;
        if (!prerouting || !dnat || !to || p.proto < 0 || !p.host_port)
                return 0;
        /* ADDR:PORT, nothing else (no range, no second port). */
        size_t alen = strcspn(to, ":");
        const char *port = to + alen;
        char portbuf[8];
        size_t plen = port[0] == ':' ? strcspn(port + 1, " \t\n") : 0;
        if (!plen || plen >= sizeof(portbuf) || alen >= to_size)
                return 0;
        memcpy(portbuf, port + 1, plen);
        portbuf[plen] = '\0';
        if (parse_port(portbuf, &p.ctr_port) < 0)
                return 0;
        memcpy(to_addr, to, alen);
        to_addr[alen] = '\0';
        *ret = p;
        return 1;
}

/* `iptables -w -t nat -S PREROUTING` into a buffer of its own. */
static int list_prerouting(char **ret) {
        char *const argv[] = {(char *)"iptables", (char *)"-w",         (char *)"-t", (char *)"nat",
                              (char *)"-S",       (char *)"PREROUTING", NULL};
        _cleanup_free_ char *out = malloc(RULES_MAX);
        int status = 0, r;

        if (!out)
                return -ENOMEM;
        r = ckpt__run_capture(IPTABLES, argv, IPTABLES_TIMEOUT_MS, out, RULES_MAX, &status);
        if (r < 0)
                return r;
        if (status != 0)
                return -EIO;
        *ret = TAKE_PTR(out);
        return 0;
}

/* Calls fn for each DNAT rule of PREROUTING that publishes a port. */
static int each_dnat(int (*fn)(const ckpt_native_port *p, const char *to, void *ud), void *ud,
                     nm_error *err) {
        _cleanup_free_ char *rules = NULL;
        char *save = NULL;
        int r = list_prerouting(&rules);

        if (r == -ENOENT)
                return 0; /* no iptables here: nothing can be published */
        if (r < 0)
                return nm_error_errno(err, r, "cannot list this node's nat PREROUTING rules (iptables)");
        for (char *line = strtok_r(rules, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                ckpt_native_port p;
                char to[INET_ADDRSTRLEN];
                r = ckpt_native_parse_dnat(line, &p, to, sizeof(to));
                if (r < 0)
                        return nm_error_errno(err, r, "out of memory");
                if (r > 0 && (r = fn(&p, to, ud)) < 0)
                        return r;
        }
        return 0;
}

typedef struct find_ctx {
        ckpt_native *n;
} find_ctx;

static int add_port(const ckpt_native_port *p, const char *to, void *ud) {
        ckpt_native *n = ((find_ctx *)ud)->n;
        ckpt_native_port *a;

        if (strcmp(to, n->address) != 0)
                return 0;
        a = reallocarray(n->ports, n->n_ports + 1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        n->ports = a;
        n->ports[n->n_ports++] = *p;
        return 0;
}

int ckpt__native_describe_ports(ckpt_native *n, nm_error *err) {
        find_ctx c = {.n = n};
        int r;

        if (n->net != CKPT_NET_BRIDGE || !n->address)
                return 0;
        r = each_dnat(add_port, &c, err);
        if (r == -ENOMEM)
                return nm_error_set(err, r, "out of memory");
        return r;
}

typedef struct clash_ctx {
        const ckpt_native *n;
        nm_error *err;
} clash_ctx;

static bool same_host_ip(const char *a, const char *b) {
        return !a[0] || !b[0] || strcmp(a, b) == 0;
}

static int find_clash(const ckpt_native_port *p, const char *to, void *ud) {
        clash_ctx *c = ud;
        for (size_t i = 0; i < c->n->n_ports; i++) {
                const ckpt_native_port *q = &c->n->ports[i];
                if (q->proto == p->proto && q->host_port == p->host_port &&
                    same_host_ip(q->host_ip, p->host_ip))
                        return nm_error_set(c->err, -EADDRINUSE,
                                            "published port %s/%u is taken on this node (it goes to %s:%u)",
                                            protos[q->proto], q->host_port, to, p->ctr_port);
        }
        return 0;
}

int ckpt_native_check_ports(const ckpt_native *n, nm_error *err) {
        clash_ctx c = {.n = n, .err = err};
        if (n->net != CKPT_NET_BRIDGE || n->n_ports == 0)
                return 0;
        return each_dnat(find_clash, &c, err);
}

/* ---- installing and removing ---- */

int ckpt_native_subnet(const char *bridge_net, char *buf, size_t size) {
        char ip[INET_ADDRSTRLEN];
        const char *slash = bridge_net ? strchr(bridge_net, '/') : NULL;
        struct in_addr a;
        uint16_t prefix = 0;
        char *end;

        if (!slash || (size_t)(slash - bridge_net) >= sizeof(ip))
                return -EINVAL;
        memcpy(ip, bridge_net, (size_t)(slash - bridge_net));
        ip[slash - bridge_net] = '\0';
        errno = 0;
        unsigned long v = strtoul(slash + 1, &end, 10);
        if (errno || *end || slash[1] == '\0' || v > 32 || inet_pton(AF_INET, ip, &a) != 1)
                return -EINVAL;
        prefix = (uint16_t)v;
        uint32_t mask = prefix ? htonl(~0u << (32 - prefix)) : 0;
        a.s_addr &= mask;
        if (!inet_ntop(AF_INET, &a, ip, sizeof(ip)))
                return -EINVAL;
        if ((size_t)snprintf(buf, size, "%s/%u", ip, prefix) >= size)
                return -ENAMETOOLONG;
        return 0;
}

static int iptables(char *const argv[]) {
        char out[1024];
        int status = 0;
        int r = ckpt__run_capture(IPTABLES, argv, IPTABLES_TIMEOUT_MS, out, sizeof(out), &status);
        return r < 0 ? r : status != 0 ? -EIO : 0;
}

typedef enum rule_op {
        RULE_ADD,
        RULE_DELETE,
        RULE_CHECK, /* 0 when the rule is there */
} rule_op;

static char *op_flag(rule_op op) {
        return (char *)(op == RULE_ADD ? "-A" : op == RULE_DELETE ? "-D" : "-C");
}

static int masquerade(const ckpt_native_nat *nat, rule_op op) {
        char *argv[16] = {(char *)"iptables",
                          (char *)"-w",
                          (char *)"-t",
                          (char *)"nat",
                          op_flag(op),
                          (char *)"POSTROUTING",
                          (char *)"-s",
                          (char *)nat->subnet};
        size_t n = 8;
        if (nat->bridge) {
                argv[n++] = (char *)"!";
                argv[n++] = (char *)"-o";
                argv[n++] = (char *)nat->bridge;
        }
        argv[n++] = (char *)"-j";
        argv[n++] = (char *)"MASQUERADE";
        argv[n] = NULL;
        return iptables(argv);
}

/* The port's rule in chain (PREROUTING or OUTPUT), as nucleus writes it. */
static int port_rule(const ckpt_native_port *p, const char *address, const char *chain, rule_op op) {
        char dport[8], to[INET_ADDRSTRLEN + 8];
        char *argv[24] = {(char *)"iptables",
                          (char *)"-w",
                          (char *)"-t",
                          (char *)"nat",
                          op_flag(op),
                          (char *)chain,
                          (char *)"-p",
                          (char *)protos[p->proto]};
        size_t n = 8;

        snprintf(dport, sizeof(dport), "%u", p->host_port);
        snprintf(to, sizeof(to), "%s:%u", address, p->ctr_port);
        if (strcmp(chain, "OUTPUT") == 0) {
                argv[n++] = (char *)"-m";
                argv[n++] = (char *)"addrtype";
                argv[n++] = (char *)"--dst-type";
                argv[n++] = (char *)"LOCAL";
        }
        if (p->host_ip[0]) {
                argv[n++] = (char *)"-d";
                argv[n++] = (char *)p->host_ip;
        }
        argv[n++] = (char *)"--dport";
        argv[n++] = dport;
        argv[n++] = (char *)"-j";
        argv[n++] = (char *)"DNAT";
        argv[n++] = (char *)"--to-destination";
        argv[n++] = to;
        argv[n] = NULL;
        return iptables(argv);
}

static int port_rules(const ckpt_native_port *p, const char *address, rule_op op) {
        /* Added PREROUTING first, removed OUTPUT first, as nucleus does. */
        const char *first = op == RULE_ADD ? "PREROUTING" : "OUTPUT";
        const char *second = op == RULE_ADD ? "OUTPUT" : "PREROUTING";
        int r = port_rule(p, address, first, op);
        int k = port_rule(p, address, second, op);
        return r < 0 ? r : k;
}

int ckpt_native_nat_remove(const ckpt_native_nat *nat, nm_error *err) {
        int r = 0, k;

        for (size_t i = 0; i < nat->n_ports; i++)
                if ((k = port_rules(&nat->ports[i], nat->address, RULE_DELETE)) < 0 && r >= 0)
                        r = nm_error_errno(err, k, "cannot remove the DNAT rules of port %s/%u",
                                           protos[nat->ports[i].proto], nat->ports[i].host_port);
        if (nat->subnet && (k = masquerade(nat, RULE_DELETE)) < 0 && r >= 0)
                r = nm_error_errno(err, k, "cannot remove a MASQUERADE rule for %s", nat->subnet);
        return r;
}

int ckpt_native_nat_install(const ckpt_native_nat *nat, nm_error *err) {
        int r = 0;
        size_t i;

        if (nat->subnet && (r = masquerade(nat, RULE_ADD)) < 0)
                return nm_error_errno(err, r, "cannot add a MASQUERADE rule for %s", nat->subnet);
        for (i = 0; i < nat->n_ports; i++) {
                r = port_rules(&nat->ports[i], nat->address, RULE_ADD);
                if (r < 0)
                        break;
        }
        if (r >= 0)
                return 0;
        nm_error_errno(err, r, "cannot publish port %s/%u", protos[nat->ports[i].proto],
                       nat->ports[i].host_port);
        /* What was added goes again: half a container's rules help nobody. */
        ckpt_native_nat undo = *nat;
        undo.n_ports = i + 1;
        (void)ckpt_native_nat_remove(&undo, NULL);
        return r;
}

/* The rules that are missing, added (each looked for with -C first): for a
 * container kept across an agent restart, whose rules a crash may have cut
 * short, or someone removed. Never a second copy of a rule. */
int ckpt_native_nat_ensure(const ckpt_native_nat *nat, nm_error *err) {
        static const char *const chains[] = {"PREROUTING", "OUTPUT"};

        if (nat->subnet && masquerade(nat, RULE_CHECK) < 0 && masquerade(nat, RULE_ADD) < 0)
                return nm_error_set(err, -EIO, "cannot add a MASQUERADE rule for %s", nat->subnet);
        for (size_t i = 0; i < nat->n_ports; i++)
                for (size_t c = 0; c < ARRAY_SIZE(chains); c++)
                        if (port_rule(&nat->ports[i], nat->address, chains[c], RULE_CHECK) < 0 &&
                            port_rule(&nat->ports[i], nat->address, chains[c], RULE_ADD) < 0)
                                return nm_error_set(err, -EIO, "cannot publish port %s/%u (%s)",
                                                    protos[nat->ports[i].proto], nat->ports[i].host_port,
                                                    chains[c]);
        return 0;
}
