/*
 * netns.c - the host end of a sandbox's network (docs/network.md): one network namespace per
 * sandbox, holding the tap kiln-vmm's virtio-net attaches to and an nftables ruleset that
 * decides what the guest may reach.
 *
 *   guest eth0 10.0.2.2/30 --virtio-net-- tap0 10.0.2.1/30 [netns kiln-N] eth-up 10.200.x.2/30
 *       --veth-- kv-N 10.200.x.1/30 [host] -- routing --> allowed upstreams
 *
 * Every sandbox has the same guest address, gateway and MAC (a snapshot restores into any
 * namespace); the namespace masquerades the guest to its own transit address, unique per slot
 * N, so the host routes replies back to the right sandbox.
 *
 * Policy (nftables inside the namespace, default drop, IPv4 only): packets from the guest's
 * own address (no spoofing) of TCP connections to an allowed CIDR, never to the host's own addresses, the transit range (other
 * sandboxes), loopback, link-local (169.254.169.254, the cloud metadata address, included),
 * multicast or reserved ranges; private ranges (RFC 1918, CGNAT, benchmarking) only where an
 * allowed CIDR lies inside one, so "0.0.0.0/0" means the public internet.  UDP (DNS, QUIC), ICMP,
 * IPv6 and everything addressed to the namespace itself are dropped; nothing may connect in.
 * Every packet from the guest is checked, not only a connection's first, so replacing the
 * policy (netns_set_policy) cuts connections it no longer allows; refused TCP gets a reset.
 * On the host, a table drops whatever arrives from a kv-* link for the host itself, should a
 * host address be added after the sandbox's ruleset was made.
 *
 * Setup goes through iproute2 (`ip`) and `nft -f -` with a generated ruleset, run by root; the
 * namespace's own sysctls are written by a child that joined it.  Slots are claimed with
 * O_EXCL files under /run/kiln/net, so concurrent `kiln` processes never share one.
 */
#include "netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOT_DIR	"/run/kiln/net"
#define NETNS_DIR	"/run/netns"
#define NR_SLOTS	16384			/* /30s in 10.200.0.0/16 */
#define TRANSIT_BASE	0x0ac80000u		/* 10.200.0.0 */
#define RULES_MAX	(64 * 1024)

struct cidr {
	uint32_t addr;		/* host order, host bits cleared */
	unsigned len;
};

/* Always dropped, whatever is allowed. */
static const char *const never_ranges[] = {
	"0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3", "10.200.0.0/16",
	"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
};

/* Dropped unless an allowed CIDR lies inside one of them. */
static const char *const private_ranges[] = {
	"10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "192.0.0.0/24",
	"198.18.0.0/15",
};

static uint32_t mask_of(unsigned len)
{
	return len ? ~0u << (32 - len) : 0;
}

int netns_parse_cidr(const char *s, uint32_t *addr, unsigned *len)
{
	char buf[32], *slash, *end;
	struct in_addr a;
	unsigned long l = 32;

	if (strlen(s) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	if (slash) {
		*slash = '\0';
		errno = 0;
		l = strtoul(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || l > 32)
			return -1;
	}
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	*len = l;
	*addr = ntohl(a.s_addr) & mask_of(l);
	return 0;
}

static struct cidr cidr_of(const char *s)
{
	struct cidr c = { 0, 0 };

	netns_parse_cidr(s, &c.addr, &c.len);	/* our own tables: always valid */
	return c;
}

static bool inside(struct cidr inner, struct cidr outer)
{
	return inner.len >= outer.len && (inner.addr & mask_of(outer.len)) == outer.addr;
}

static bool in_private(struct cidr c)
{
	for (size_t i = 0; i < sizeof(private_ranges) / sizeof(*private_ranges); i++)
		if (inside(c, cidr_of(private_ranges[i])))
			return true;
	return false;
}

/* Appends to a bounded buffer; b->failed once it overflows. */
struct rbuf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void __attribute__((format(printf, 2, 3))) put(struct rbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->cap - b->len) {
		b->failed = true;
		return;
	}
	b->len += n;
}

static void put_addr(struct rbuf *b, bool *first, uint32_t addr, unsigned len)
{
	struct in_addr a = { htonl(addr) };
	char s[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a, s, sizeof(s));
	put(b, "%s%s/%u", *first ? "" : ", ", s, len);
	*first = false;
}

static void put_set(struct rbuf *b, const char *name, const struct cidr *c, unsigned n)
{
	bool first = true;

	put(b, "\tset %s {\n\t\ttype ipv4_addr; flags interval; auto-merge;\n", name);
	if (n) {
		put(b, "\t\telements = { ");
		for (unsigned i = 0; i < n; i++)
			put_addr(b, &first, c[i].addr, c[i].len);
		put(b, " }\n");
	}
	put(b, "\t}\n");
}

static int split_allow(const char *allow, struct cidr *pub, unsigned *npub,
			    struct cidr *priv, unsigned *npriv, char *err, size_t errlen)
{
	char buf[NETNS_ALLOW_MAX], *tok, *save;

	*npub = *npriv = 0;
	if (!allow || !*allow)
		return 0;
	if (strlen(allow) >= sizeof(buf)) {
		snprintf(err, errlen, "allow list too long");
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", allow);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		struct cidr c;

		if (netns_parse_cidr(tok, &c.addr, &c.len)) {
			snprintf(err, errlen, "'%s' is not an IPv4 CIDR (a.b.c.d/n)", tok);
			return -1;
		}
		if (*npub + *npriv >= NETNS_MAX_CIDRS) {
			snprintf(err, errlen, "more than %d allowed CIDRs", NETNS_MAX_CIDRS);
			return -1;
		}
		if (in_private(c))
			priv[(*npriv)++] = c;
		else
			pub[(*npub)++] = c;
	}
	return 0;
}

static void put_never(struct rbuf *b, const uint32_t *host, unsigned nhost)
{
	bool first = true;

	put(b, "\tset never {\n\t\ttype ipv4_addr; flags interval; auto-merge;\n"
	    "\t\telements = { ");
	for (size_t i = 0; i < sizeof(never_ranges) / sizeof(*never_ranges); i++) {
		struct cidr c = cidr_of(never_ranges[i]);

		put_addr(b, &first, c.addr, c.len);
	}
	for (unsigned i = 0; i < nhost; i++)
		put_addr(b, &first, host[i], 32);
	put(b, " }\n\t}\n");
}

/* The guest's DNS and web traffic to kiln-dns and kiln-proxy in the namespace. */
static void put_services(struct rbuf *b)
{
	put(b,
	    "\tchain services_in {\n"
	    /* Only the guest's own address: a spoofed source would have the services' replies
	     * leave the namespace as forged packets. */
	    "\t\tiifname \"" NETNS_TAP "\" ip saddr != " NETNS_GUEST " drop\n"
	    "\t\tiifname \"" NETNS_TAP "\" ip daddr " NETNS_GATEWAY " udp dport %d accept\n"
	    "\t\tiifname \"" NETNS_TAP "\" ip daddr " NETNS_GATEWAY " tcp dport { %d, %d, %d } "
	    "accept\n"
	    "\t}\n", NETNS_DNS_PORT, NETNS_DNS_PORT, NETNS_HTTP_PORT, NETNS_TLS_PORT);
}

static void put_redirects(struct rbuf *b)
{
	put(b,
	    "\tchain pre {\n"
	    "\t\ttype nat hook prerouting priority dstnat;\n"
	    "\t\tiifname \"" NETNS_TAP "\" ip saddr " NETNS_GUEST " udp dport 53 redirect to :%d\n"
	    "\t\tiifname \"" NETNS_TAP "\" ip saddr " NETNS_GUEST " tcp dport 53 redirect to :%d\n"
	    "\t\tiifname \"" NETNS_TAP "\" ip saddr " NETNS_GUEST " tcp dport 80 redirect to :%d\n"
	    "\t\tiifname \"" NETNS_TAP "\" ip saddr " NETNS_GUEST " tcp dport 443 redirect to :%d\n"
	    "\t}\n", NETNS_DNS_PORT, NETNS_DNS_PORT, NETNS_HTTP_PORT, NETNS_TLS_PORT);
}

int netns_ruleset(const char *allow, bool services, const uint32_t *host_addrs, unsigned nhost,
		  char *out, size_t outlen, char *err, size_t errlen)
{
	struct cidr pub[NETNS_MAX_CIDRS], priv[NETNS_MAX_CIDRS], privr[8];
	unsigned npub, npriv, nprivr = 0;
	struct rbuf b = { out, 0, outlen, false };

	if (split_allow(allow, pub, &npub, priv, &npriv, err, errlen))
		return -1;
	for (size_t i = 0; i < sizeof(private_ranges) / sizeof(*private_ranges); i++)
		privr[nprivr++] = cidr_of(private_ranges[i]);
	put(&b, "table inet kiln\ndelete table inet kiln\ntable inet kiln {\n");
	put_never(&b, host_addrs, nhost);
	put_set(&b, "private", privr, nprivr);
	put_set(&b, "allow", pub, npub);
	put_set(&b, "allow_private", priv, npriv);
	put(&b,
	    "\tchain input {\n"
	    "\t\ttype filter hook input priority filter; policy drop;\n"
	    "\t\tiif \"lo\" accept\n"
	    /* Ingress (kiln-ingress, the only program making sockets in here): the guest's
	     * answers on connections made to it from the namespace. */
	    "\t\tiifname \"" NETNS_TAP "\" ip saddr " NETNS_GUEST " ip daddr " NETNS_GATEWAY
	    " meta l4proto tcp ct state established accept\n");
	if (services)
		put(&b, "\t\tjump services_in\n");
	put(&b,
	    "\t}\n"
	    "\tchain output {\n"
	    "\t\ttype filter hook output priority filter; policy drop;\n"
	    "\t\toif \"lo\" accept\n"
	    "\t\tct state established,related accept\n"
	    "\t\toifname \"" NETNS_TAP "\" ip daddr " NETNS_GUEST " meta l4proto tcp ct state new "
	    "accept\n"
	    "\t}\n"
	    "\tchain forward {\n"
	    "\t\ttype filter hook forward priority filter; policy drop;\n"
	    "\t\tiifname \"" NETNS_UPLINK "\" oifname \"" NETNS_TAP "\" "
	    "ct state established,related accept\n"
	    "\t\tiifname \"" NETNS_TAP "\" oifname \"" NETNS_UPLINK "\" "
	    "meta nfproto ipv4 jump egress\n"
	    "\t\tcounter\n"
	    "\t}\n"
	    /* Every guest packet, not only a connection's first: a replaced policy cuts what it
	     * no longer allows at once.  Refused TCP gets a reset, so the guest fails fast. */
	    "\tchain egress {\n"
	    "\t\tip saddr != " NETNS_GUEST " counter drop\n"
	    "\t\tip daddr @never counter goto refuse\n"
	    "\t\tmeta l4proto != tcp counter drop\n"
	    "\t\tip daddr @allow_private counter accept\n"
	    "\t\tip daddr @private counter goto refuse\n"
	    "\t\tip daddr @allow counter accept\n"
	    "\t\tcounter goto refuse\n"
	    "\t}\n"
	    "\tchain refuse {\n"
	    "\t\tmeta l4proto tcp reject with tcp reset\n"
	    "\t\tdrop\n"
	    "\t}\n");
	if (services)
		put_services(&b);	/* in this table: input jumps to it */
	put(&b,
	    "}\n"
	    "table ip kiln_nat\ndelete table ip kiln_nat\ntable ip kiln_nat {\n");
	if (services)
		put_redirects(&b);
	put(&b,
	    "\tchain post {\n"
	    "\t\ttype nat hook postrouting priority srcnat;\n"
	    "\t\toifname \"" NETNS_UPLINK "\" masquerade\n"
	    "\t}\n"
	    "}\n");
	if (b.failed) {
		snprintf(err, errlen, "ruleset too long");
		return -1;
	}
	return 0;
}

/* ---- running things ---- */

int netns_enter(const char *name);

/* argv, inside network namespace ns (NULL: the caller's), with input on its stdin. */
static int run_argv_in(const char *ns, char *const argv[], const char *input, bool quiet,
		       char *err, size_t errlen)
{
	int in[2] = { -1, -1 }, status = -1;	/* a failed waitpid is a failure */
	pid_t pid;

	if (input && pipe2(in, O_CLOEXEC))
		goto fail;
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(input ? in[0] : null, 0);
		dup2(null, 1);
		if (quiet)
			dup2(null, 2);
		/* setns rather than `ip netns exec`, which also makes a mount namespace and
		 * remounts /sys: nft needs neither, and that was most of a policy load's time. */
		if (ns && netns_enter(ns))
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (input) {
		size_t len = strlen(input), off = 0;

		close(in[0]);
		while (off < len) {
			ssize_t n = write(in[1], input + off, len - off);

			if (n <= 0)
				break;
			off += n;
		}
		close(in[1]);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	snprintf(err, errlen, "%s %s%s failed (status %d)", argv[0], argv[1] ? argv[1] : "",
		 argv[1] && argv[2] ? " ..." : "", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return -1;
fail:
	snprintf(err, errlen, "cannot run %s: %s", argv[0], strerror(errno));
	if (in[0] >= 0)
		close(in[0]), close(in[1]);
	return -1;
}

static int run_argv(char *const argv[], const char *input, bool quiet, char *err, size_t errlen)
{
	return run_argv_in(NULL, argv, input, quiet, err, errlen);
}

/* `ip ARGS...` with printf-formatted words separated by spaces; err NULL: quietly. */
static int ip(char *err, size_t errlen, const char *fmt, ...)
{
	char dummy[8];
	char line[512], *argv[32], *save;
	unsigned n = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	argv[n++] = "ip";
	for (char *w = strtok_r(line, " ", &save); w && n < 31; w = strtok_r(NULL, " ", &save))
		argv[n++] = w;
	argv[n] = NULL;
	if (!err)
		return run_argv(argv, NULL, true, dummy, sizeof(dummy));
	return run_argv(argv, NULL, false, err, errlen);
}

int netns_enter(const char *name)
{
	char path[PATH_MAX];
	int fd, r;

	snprintf(path, sizeof(path), NETNS_DIR "/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = setns(fd, CLONE_NEWNET);
	close(fd);
	return r;
}

static int write_proc(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), ok;

	if (fd < 0)
		return -1;
	ok = write(fd, value, strlen(value)) == (ssize_t)strlen(value);
	close(fd);
	return ok ? 0 : -1;
}

/* The namespace's own sysctls: /proc/sys/net belongs to the netns of whoever opens it. */
static int ns_sysctls(const char *name, char *err, size_t errlen)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		if (netns_enter(name) ||
		    write_proc("/proc/sys/net/ipv4/ip_forward", "1"))
			_exit(1);
		/* No IPv6 at all inside: the guest gets no router advertisements, nothing leaks. */
		write_proc("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
		write_proc("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		snprintf(err, errlen, "cannot set sysctls in network namespace %s", name);
		return -1;
	}
	return 0;
}

/* The host's IPv4 addresses (in the host namespace), for the ruleset's never set. */
static unsigned host_addrs(uint32_t *out, unsigned max)
{
	struct ifaddrs *ifa, *i;
	unsigned n = 0;

	if (getifaddrs(&ifa))
		return 0;
	for (i = ifa; i && n < max; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
			out[n++] = ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
	freeifaddrs(ifa);
	return n;
}

static int nft(const char *ns, const char *rules, char *err, size_t errlen)
{
	char *argv[] = { "nft", "-f", "-", NULL };

	return run_argv_in(ns, argv, rules, false, err, errlen);
}

/* Host-wide, idempotent: forwarding on, kv-* links may not talk to the host itself, and
 * sandbox traffic leaving through another link is masqueraded to the host's address. */
static int host_setup(char *err, size_t errlen)
{
	static const char rules[] =
		"table inet kiln_host\ndelete table inet kiln_host\n"
		"table inet kiln_host {\n"
		"\tchain input {\n"
		"\t\ttype filter hook input priority filter - 10; policy accept;\n"
		"\t\tiifname \"" NETNS_HOST_PREFIX "*\" counter drop\n"
		"\t}\n"
		"\tchain forward {\n"
		"\t\ttype filter hook forward priority filter - 10; policy accept;\n"
		"\t\tiifname \"" NETNS_HOST_PREFIX "*\" oifname \"" NETNS_HOST_PREFIX "*\" "
		"counter drop\n"
		"\t}\n"
		"\tchain post {\n"
		"\t\ttype nat hook postrouting priority srcnat;\n"
		"\t\tip saddr 10.200.0.0/16 oifname != \"" NETNS_HOST_PREFIX "*\" masquerade\n"
		"\t}\n"
		"}\n";

	if (write_proc("/proc/sys/net/ipv4/ip_forward", "1")) {
		snprintf(err, errlen, "cannot enable IPv4 forwarding: %s", strerror(errno));
		return -1;
	}
	return nft(NULL, rules, err, errlen);
}

static int claim_slot(unsigned *slot, char *err, size_t errlen)
{
	char path[PATH_MAX];

	mkdir("/run/kiln", 0755);
	mkdir(SLOT_DIR, 0700);
	for (unsigned s = 0; s < NR_SLOTS; s++) {
		int fd;

		snprintf(path, sizeof(path), SLOT_DIR "/%u", s);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0) {
			close(fd);
			*slot = s;
			return 0;
		}
		if (errno != EEXIST)
			break;
	}
	snprintf(err, errlen, "no free network slot in " SLOT_DIR ": %s", strerror(errno));
	return -1;
}

static void transit(unsigned slot, unsigned host_end, char *buf, size_t len)
{
	uint32_t a = TRANSIT_BASE + slot * 4 + host_end;

	snprintf(buf, len, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

static int build(const char *ns, unsigned slot, const char *allow, bool services, char *err,
		 size_t errlen)
{
	char hostip[16], nsip[16], hostif[16];

	transit(slot, 1, hostip, sizeof(hostip));
	transit(slot, 2, nsip, sizeof(nsip));
	snprintf(hostif, sizeof(hostif), NETNS_HOST_PREFIX "%u", slot);
	if (ip(err, errlen, "netns add %s", ns) ||
	    ns_sysctls(ns, err, errlen) ||
	    ip(err, errlen, "-n %s link set lo up", ns) ||
	    ip(err, errlen, "-n %s tuntap add dev " NETNS_TAP " mode tap", ns) ||
	    ip(err, errlen, "-n %s link set " NETNS_TAP " address " NETNS_GATEWAY_MAC, ns) ||
	    ip(err, errlen, "-n %s addr add " NETNS_GATEWAY "/30 dev " NETNS_TAP, ns) ||
	    ip(err, errlen, "-n %s link set " NETNS_TAP " up", ns) ||
	    ip(err, errlen, "link add %s type veth peer name " NETNS_UPLINK " netns %s", hostif,
	       ns) ||
	    ip(err, errlen, "addr add %s/30 dev %s", hostip, hostif) ||
	    ip(err, errlen, "link set %s up", hostif) ||
	    ip(err, errlen, "-n %s addr add %s/30 dev " NETNS_UPLINK, ns, nsip) ||
	    ip(err, errlen, "-n %s link set " NETNS_UPLINK " up", ns) ||
	    ip(err, errlen, "-n %s route add default via %s", ns, hostip))
		return -1;
	return netns_set_policy(ns, allow, services, err, errlen);
}

int netns_set_policy(const char *name, const char *allow, bool services, char *err,
		     size_t errlen)
{
	uint32_t addrs[256];
	char *rules = malloc(RULES_MAX);
	int r;

	if (!rules) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* One nft transaction: the old table goes and the new one comes at once. */
	r = netns_ruleset(allow, services, addrs, host_addrs(addrs, 256), rules, RULES_MAX, err,
			  errlen);
	if (!r)
		r = nft(name, rules, err, errlen);
	free(rules);
	return r;
}

int netns_check_policy(const char *allow, bool services, char *err, size_t errlen)
{
	char *tmp;
	int r;

	if (!allow)
		return 0;
	tmp = malloc(RULES_MAX);
	if (!tmp) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r = netns_ruleset(allow, services, NULL, 0, tmp, RULES_MAX, err, errlen);
	free(tmp);
	return r;
}

int netns_claim(char *name, size_t namelen, char *err, size_t errlen)
{
	unsigned slot;

	if (host_setup(err, errlen) || claim_slot(&slot, err, errlen))
		return -1;
	snprintf(name, namelen, NETNS_PREFIX "%u", slot);
	/* A namespace left by a crash in this slot goes first. */
	ip(NULL, 0, "netns del %s", name);
	ip(NULL, 0, "link del " NETNS_HOST_PREFIX "%u", slot);
	return 0;
}

int netns_build(const char *name, const char *allow, bool services, char *err, size_t errlen)
{
	unsigned slot;

	if (netns_slot(name, &slot)) {
		snprintf(err, errlen, "'%s' is not a sandbox network namespace name", name);
		return -1;
	}
	if (build(name, slot, allow, services, err, errlen)) {
		netns_destroy(name);
		return -1;
	}
	return 0;
}

int netns_create(const char *allow, bool services, char *name, size_t namelen, char *err,
		 size_t errlen)
{
	if (netns_check_policy(allow, services, err, errlen) ||
	    netns_claim(name, namelen, err, errlen))
		return -1;
	return netns_build(name, allow, services, err, errlen);
}

int netns_slot(const char *name, unsigned *slot)
{
	const char *p = name;
	unsigned long v = 0;

	if (strncmp(p, NETNS_PREFIX, strlen(NETNS_PREFIX)))
		return -1;
	p += strlen(NETNS_PREFIX);
	/* Digits only, no sign, no leading zero: one name per slot, as netns_claim writes it. */
	if (*p < '0' || *p > '9' || (p[0] == '0' && p[1]))
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned long)(*p - '0');
		if (v >= NR_SLOTS)
			return -1;
	}
	if (*p)
		return -1;
	*slot = v;
	return 0;
}

void netns_destroy(const char *name)
{
	char path[PATH_MAX];
	unsigned slot;

	if (netns_slot(name, &slot))
		return;
	/* Deleting the namespace takes the tap and both veth ends with it. */
	ip(NULL, 0, "netns del %s", name);
	snprintf(path, sizeof(path), SLOT_DIR "/%u", slot);
	unlink(path);
}
