/*
 * egress_policy.h - what a sandbox may reach, by name and by address (egress_policy.c).
 *
 * One policy per sandbox, read from text (docs/network.md):
 *
 *	allow example.com		the name itself
 *	allow *.example.com		any name below it, at a label boundary (not example.com
 *					itself, never badexample.com)
 *	deny api.example.com		wins over allow and rewrite
 *	allow-cidr 203.0.113.0/24	addresses that may be reached (and may appear in answers
 *					even when private, loopback or link-local)
 *	deny-cidr 198.51.100.7/32	addresses that never may
 *	rewrite db.internal 10.1.2.3	answer this name with this address
 *
 * The DNS policy resolver asks egress_name_verdict() for each query and egress_addr_allowed()
 * for each address it would answer with: a public address of an allowed name passes, but an
 * allowed name resolving to a private, loopback or link-local address (DNS rebinding onto the
 * host's side) does not, unless an allow-cidr lying inside that range names it (0.0.0.0/0 is
 * the internet, never 127.0.0.1).  IPv6 addresses pass only by allow-cidr: sandboxes have no
 * IPv6 route by default.  An IPv4-mapped IPv6 address is judged as its IPv4 address.
 */
#ifndef KILN_EGRESS_POLICY_H
#define KILN_EGRESS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns_msg.h"

#define EGRESS_MAX_RULES	1024

struct egress_pattern {
	char name[DNS_NAME_MAX + 1];
	bool subdomains;		/* "*.name" */
};

struct egress_cidr {
	int family;
	uint8_t addr[16];
	unsigned len;			/* prefix length */
};

struct egress_rewrite {
	char name[DNS_NAME_MAX + 1];
	struct dns_addr addr;
};

struct egress_policy {
	struct egress_pattern allow[EGRESS_MAX_RULES], deny[EGRESS_MAX_RULES];
	struct egress_cidr allow_cidr[EGRESS_MAX_RULES], deny_cidr[EGRESS_MAX_RULES];
	struct egress_rewrite rewrite[EGRESS_MAX_RULES];
	unsigned nallow, ndeny, nallow_cidr, ndeny_cidr, nrewrite;
};

enum egress_verdict { EGRESS_DENY, EGRESS_ALLOW, EGRESS_REWRITE };

/* Parse policy text (NUL-terminated).  0, or -1 with "line N: why" in err. */
int egress_policy_parse(struct egress_policy *p, const char *text, char *err, size_t errlen);

/* Read and parse a policy file.  0, or -1 with the reason in err. */
int egress_policy_load(struct egress_policy *p, const char *path, char *err, size_t errlen);

/* What to do with a query for name (lower case, no trailing dot); *rw set for REWRITE. */
enum egress_verdict egress_name_verdict(const struct egress_policy *p, const char *name,
					const struct egress_rewrite **rw);

/* Whether a may be reached / appear in an answer. */
bool egress_addr_allowed(const struct egress_policy *p, const struct dns_addr *a);

/* Whether an allow-cidr names a (and no deny-cidr): what an IP literal the guest asks for by
 * address, rather than by name, needs. */
bool egress_addr_listed(const struct egress_policy *p, const struct dns_addr *a);

/* Parse "name" or "*.name" (lower-cased in place, a trailing dot dropped).  0 or -1. */
int egress_parse_pattern(char *arg, struct egress_pattern *pat);

/* Whether name matches pat ("*.name" at a label boundary, never name itself). */
bool egress_pattern_matches(const struct egress_pattern *pat, const char *name);

/* Parse "a.b.c.d[/n]" or "v6[/n]" into c (host bits cleared).  0 or -1. */
int egress_parse_cidr(const char *s, struct egress_cidr *c);

#endif
