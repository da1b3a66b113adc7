/*
 * egress_policy.c - a sandbox's egress policy: parsing its text and answering "may this name
 * be resolved" and "may this address be reached" (egress_policy.h).
 *
 * The text comes from kilnd's API on behalf of an agent, so it is checked like any request:
 * names must be DNS names of the characters a query may carry (dns_msg.c), a wildcard only as
 * a whole first label, CIDRs exact.  Matching is by whole labels: "*.example.com" is compared
 * against the name's tail including the dot, so "badexample.com" never matches it.
 */
#include "egress_policy.h"
#include "text_file.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define POLICY_FILE_MAX	(4 << 20)

/* A DNS name as the resolver will see it: lower case, labels of [a-z0-9_-], no empty label. */
static bool valid_name(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0;
}

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s += 'a' - 'A';
}

int egress_parse_pattern(char *arg, struct egress_pattern *pat)
{
	size_t n;

	lower(arg);
	n = strlen(arg);
	if (n && arg[n - 1] == '.')
		arg[--n] = 0;		/* "example.com." is example.com */
	pat->subdomains = !strncmp(arg, "*.", 2);
	if (pat->subdomains)
		arg += 2;
	if (!valid_name(arg))
		return -1;
	snprintf(pat->name, sizeof(pat->name), "%s", arg);
	return 0;
}

int egress_parse_cidr(const char *s, struct egress_cidr *c)
{
	char buf[64], *slash, *end;
	unsigned max;
	long len;

	if (strlen(s) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", s);
	slash = strchr(buf, '/');
	if (slash)
		*slash = 0;
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, buf, c->addr) == 1)
		c->family = AF_INET;
	else if (inet_pton(AF_INET6, buf, c->addr) == 1)
		c->family = AF_INET6;
	else
		return -1;
	max = c->family == AF_INET ? 32 : 128;
	len = max;
	if (slash) {
		errno = 0;
		len = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || len < 0 || len > (long)max)
			return -1;
	}
	c->len = len;
	for (unsigned bit = c->len; bit < max; bit++)
		c->addr[bit / 8] &= ~(0x80 >> (bit % 8));
	return 0;
}

static int parse_address(const char *s, struct dns_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, s, a->bytes) == 1)
		a->family = AF_INET;
	else if (inet_pton(AF_INET6, s, a->bytes) == 1)
		a->family = AF_INET6;
	else
		return -1;
	return 0;
}

/* One directive; NULL, or why it is wrong. */
static const char *parse_line(struct egress_policy *p, char *verb, char *arg, char *arg2)
{
	if (!arg)
		return "missing argument";
	if (!strcmp(verb, "allow") || !strcmp(verb, "deny")) {
		bool allow = verb[0] == 'a';
		unsigned *n = allow ? &p->nallow : &p->ndeny;

		if (arg2)
			return "one name per line";
		if (*n == EGRESS_MAX_RULES)
			return "too many names";
		if (egress_parse_pattern(arg, allow ? &p->allow[*n] : &p->deny[*n]))
			return "not a domain name or *.domain";
		(*n)++;
		return NULL;
	}
	if (!strcmp(verb, "allow-cidr") || !strcmp(verb, "deny-cidr")) {
		bool allow = verb[0] == 'a';
		unsigned *n = allow ? &p->nallow_cidr : &p->ndeny_cidr;

		if (arg2)
			return "one CIDR per line";
		if (*n == EGRESS_MAX_RULES)
			return "too many CIDRs";
		if (egress_parse_cidr(arg, allow ? &p->allow_cidr[*n] : &p->deny_cidr[*n]))
			return "not an address or CIDR";
		(*n)++;
		return NULL;
	}
	if (!strcmp(verb, "rewrite")) {
		struct egress_rewrite *rw = &p->rewrite[p->nrewrite];
		struct egress_pattern pat;

		if (!arg2)
			return "rewrite needs a name and an address";
		if (p->nrewrite == EGRESS_MAX_RULES)
			return "too many rewrites";
		if (egress_parse_pattern(arg, &pat) || pat.subdomains)
			return "not a domain name";
		if (parse_address(arg2, &rw->addr))
			return "not an IPv4 or IPv6 address";
		snprintf(rw->name, sizeof(rw->name), "%s", pat.name);
		p->nrewrite++;
		return NULL;
	}
	return "unknown directive (allow, deny, allow-cidr, deny-cidr, rewrite)";
}

/* One line: "verb arg [arg2]", a '#' starting a comment anywhere. */
static const char *policy_line(char *line, void *ctx)
{
	char *hash = strchr(line, '#'), *save = NULL, *verb, *arg, *arg2;

	if (hash)
		*hash = 0;
	verb = strtok_r(line, " \t\r", &save);
	if (!verb)
		return NULL;
	arg = strtok_r(NULL, " \t\r", &save);
	arg2 = strtok_r(NULL, " \t\r", &save);
	if (strtok_r(NULL, " \t\r", &save))
		return "too many words";
	return parse_line(ctx, verb, arg, arg2);
}

int egress_policy_parse(struct egress_policy *p, const char *text, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	return parse_lines(text, policy_line, p, err, errlen);
}

int egress_policy_load(struct egress_policy *p, const char *path, char *err, size_t errlen)
{
	char *text = read_text_file(path, POLICY_FILE_MAX, err, errlen);
	int r;

	if (!text)
		return -1;
	r = egress_policy_parse(p, text, err, errlen);
	free(text);
	return r;
}

bool egress_pattern_matches(const struct egress_pattern *pat, const char *name)
{
	size_t n = strlen(name), k = strlen(pat->name);

	if (!pat->subdomains)
		return !strcmp(name, pat->name);
	/* "*.example.com": name must end in ".example.com" with at least one label before. */
	return n > k + 1 && name[n - k - 1] == '.' && !strcmp(name + n - k, pat->name);
}

static bool any_pattern(const struct egress_pattern *pats, unsigned n, const char *name)
{
	for (unsigned i = 0; i < n; i++)
		if (egress_pattern_matches(&pats[i], name))
			return true;
	return false;
}

enum egress_verdict egress_name_verdict(const struct egress_policy *p, const char *name,
					const struct egress_rewrite **rw)
{
	*rw = NULL;
	if (any_pattern(p->deny, p->ndeny, name))
		return EGRESS_DENY;
	for (unsigned i = 0; i < p->nrewrite; i++) {
		if (!strcmp(p->rewrite[i].name, name)) {
			*rw = &p->rewrite[i];
			return EGRESS_REWRITE;
		}
	}
	return any_pattern(p->allow, p->nallow, name) ? EGRESS_ALLOW : EGRESS_DENY;
}

static bool in_cidr(const struct egress_cidr *c, const struct dns_addr *a)
{
	unsigned full = c->len / 8, rest = c->len % 8;

	if (c->family != a->family)
		return false;
	if (memcmp(c->addr, a->bytes, full))
		return false;
	return rest == 0 || ((c->addr[full] ^ a->bytes[full]) & (0xff00 >> rest) & 0xff) == 0;
}

static bool any_cidr(const struct egress_cidr *cs, unsigned n, const struct dns_addr *a)
{
	for (unsigned i = 0; i < n; i++)
		if (in_cidr(&cs[i], a))
			return true;
	return false;
}

/* Addresses that are not the public internet: the host's side, other sandboxes, metadata. */
static const char *const special_ranges[] = {
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
	"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
	"::/128", "::1/128", "fe80::/10", "fc00::/7", "ff00::/8",
};

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is its IPv4 address: rules for the one must
 * hold for the other. */
static struct dns_addr canonical(const struct dns_addr *a)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct dns_addr c = *a;

	if (a->family == AF_INET6 && !memcmp(a->bytes, mapped, 12)) {
		memset(&c, 0, sizeof(c));
		c.family = AF_INET;
		memcpy(c.bytes, a->bytes + 12, 4);
	}
	return c;
}

/* The special range a lies in, or NULL. */
static bool special_range(const struct dns_addr *a, struct egress_cidr *range)
{
	for (size_t i = 0; i < sizeof(special_ranges) / sizeof(special_ranges[0]); i++)
		if (!egress_parse_cidr(special_ranges[i], range) && in_cidr(range, a))
			return true;
	return false;
}

/*
 * Whether an allow-cidr lets a through.  For a special address the allow-cidr must lie inside
 * its special range: "allow-cidr 0.0.0.0/0" or "::/0" means the internet, never the host's
 * loopback or the metadata address, while "allow-cidr 10.1.0.0/16" does open that network.
 */
static bool allowed_by_cidr(const struct egress_policy *p, const struct dns_addr *a)
{
	struct egress_cidr range;
	bool is_special = special_range(a, &range);

	for (unsigned i = 0; i < p->nallow_cidr; i++) {
		const struct egress_cidr *c = &p->allow_cidr[i];
		struct dns_addr net = { .family = c->family };

		if (!in_cidr(c, a))
			continue;
		memcpy(net.bytes, c->addr, sizeof(net.bytes));
		if (!is_special || (c->len >= range.len && in_cidr(&range, &net)))
			return true;
	}
	return false;
}

bool egress_addr_allowed(const struct egress_policy *p, const struct dns_addr *addr)
{
	struct dns_addr a = canonical(addr);
	struct egress_cidr range;

	if (any_cidr(p->deny_cidr, p->ndeny_cidr, &a))
		return false;
	if (allowed_by_cidr(p, &a))
		return true;
	/* No IPv6 route unless an allow-cidr says so. */
	return a.family == AF_INET && !special_range(&a, &range);
}

bool egress_addr_listed(const struct egress_policy *p, const struct dns_addr *addr)
{
	struct dns_addr a = canonical(addr);

	return !any_cidr(p->deny_cidr, p->ndeny_cidr, &a) && allowed_by_cidr(p, &a);
}
