/*
 * test_egress_policy.c - a sandbox's egress policy (src/net/egress_policy.c): its text parsed
 * with errors naming the line, "*.domain" matching at label boundaries only, deny over
 * rewrite over allow, CIDRs with their host bits cleared, and which answer addresses a guest
 * may get (no rebinding onto private, loopback, link-local or metadata addresses, no IPv6
 * unless allowed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "../../src/net/egress_policy.h"

static struct egress_policy *policy(const char *text)
{
	struct egress_policy *p = calloc(1, sizeof(*p));
	char err[128];

	assert_non_null(p);
	assert_int_equal(egress_policy_parse(p, text, err, sizeof(err)), 0);
	return p;
}

static void parse_fails(const char *text, const char *why)
{
	struct egress_policy *p = calloc(1, sizeof(*p));
	char err[128];

	assert_int_equal(egress_policy_parse(p, text, err, sizeof(err)), -1);
	assert_non_null(strstr(err, why));
	free(p);
}

static enum egress_verdict verdict(const struct egress_policy *p, const char *name)
{
	const struct egress_rewrite *rw;

	return egress_name_verdict(p, name, &rw);
}

static struct dns_addr addr(const char *text)
{
	struct dns_addr a = { 0 };

	a.family = strchr(text, ':') ? AF_INET6 : AF_INET;
	assert_int_equal(inet_pton(a.family, text, a.bytes), 1);
	return a;
}

static void wildcards_match_at_label_boundaries_only(void **state)
{
	struct egress_policy *p = policy("allow *.example.com\nallow api.github.com\n");

	(void)state;
	assert_int_equal(verdict(p, "a.example.com"), EGRESS_ALLOW);
	assert_int_equal(verdict(p, "b.a.example.com"), EGRESS_ALLOW);
	assert_int_equal(verdict(p, "example.com"), EGRESS_DENY);
	assert_int_equal(verdict(p, "badexample.com"), EGRESS_DENY);
	assert_int_equal(verdict(p, "a.example.com.evil.net"), EGRESS_DENY);
	assert_int_equal(verdict(p, "api.github.com"), EGRESS_ALLOW);
	assert_int_equal(verdict(p, "x.api.github.com"), EGRESS_DENY);
	assert_int_equal(verdict(p, "github.com"), EGRESS_DENY);
	free(p);
}

static void deny_wins_then_rewrite_then_allow(void **state)
{
	struct egress_policy *p = policy("# comments and blank lines\n\n"
					 "allow *.corp.test\ndeny secret.corp.test\n"
					 "rewrite db.corp.test 10.1.2.3   # a private address\n"
					 "rewrite Other.Test. 2001:db8::1\n");
	const struct egress_rewrite *rw;
	struct dns_addr want = addr("10.1.2.3");

	(void)state;
	assert_int_equal(verdict(p, "www.corp.test"), EGRESS_ALLOW);
	assert_int_equal(verdict(p, "secret.corp.test"), EGRESS_DENY);
	assert_int_equal(egress_name_verdict(p, "db.corp.test", &rw), EGRESS_REWRITE);
	assert_memory_equal(&rw->addr, &want, sizeof(want));
	assert_int_equal(egress_name_verdict(p, "other.test", &rw), EGRESS_REWRITE);
	assert_int_equal(rw->addr.family, AF_INET6);
	assert_int_equal(verdict(p, "nothing.listed"), EGRESS_DENY);
	free(p);
}

static void bad_text_names_the_line(void **state)
{
	(void)state;
	parse_fails("allow ok.com\n\nallow bad..com\n", "line 3");
	parse_fails("allow ex ample.com\n", "one name");
	parse_fails("allow *\n", "not a domain");
	parse_fails("allow a.*.com\n", "not a domain");
	parse_fails("allow exa$mple.com\n", "not a domain");
	parse_fails("allow-cidr 10.0.0.0/33\n", "CIDR");
	parse_fails("allow-cidr 10.0.0/8\n", "CIDR");
	parse_fails("deny-cidr ::1/129\n", "CIDR");
	parse_fails("rewrite a.com\n", "name and an address");
	parse_fails("rewrite *.a.com 1.2.3.4\n", "not a domain");
	parse_fails("rewrite a.com 1.2.3.256\n", "address");
	parse_fails("permit a.com\n", "unknown directive");
	parse_fails("allow\n", "missing");
	parse_fails("allow a.com b.com c.com\n", "too many words");
}

static void cidrs_clear_host_bits(void **state)
{
	struct egress_cidr c;

	(void)state;
	assert_int_equal(egress_parse_cidr("10.1.2.3/8", &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.len, 8);
	assert_int_equal(c.addr[0], 10);
	assert_int_equal(c.addr[1] | c.addr[2] | c.addr[3], 0);
	assert_int_equal(egress_parse_cidr("192.168.1.200/25", &c), 0);
	assert_int_equal(c.addr[3], 128);
	assert_int_equal(egress_parse_cidr("2001:db8::ff/120", &c), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.addr[15], 0);
	assert_int_equal(egress_parse_cidr("1.2.3.4", &c), 0);
	assert_int_equal(c.len, 32);
	assert_int_equal(egress_parse_cidr("1.2.3.4/", &c), -1);
	assert_int_equal(egress_parse_cidr("1.2.3.4/-1", &c), -1);
	assert_int_equal(egress_parse_cidr("example.com/8", &c), -1);
}

static void answers_never_rebind_onto_the_hosts_side(void **state)
{
	struct egress_policy *p = policy("allow *.example.com\n");
	const char *refused[] = { "127.0.0.1", "10.0.2.1", "169.254.169.254", "192.168.1.1",
				  "172.16.5.5", "100.64.0.1", "0.0.0.0", "224.0.0.1",
				  "255.255.255.255", "2606:4700::1111", "::1", "fe80::1" };
	struct dns_addr a;

	(void)state;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		a = addr(refused[i]);
		assert_false(egress_addr_allowed(p, &a));
	}
	a = addr("93.184.216.34");
	assert_true(egress_addr_allowed(p, &a));
	free(p);
}

static void cidr_lists_override_the_defaults(void **state)
{
	struct egress_policy *p = policy("allow-cidr 10.9.0.0/16\nallow-cidr 2001:db8::/32\n"
					 "deny-cidr 93.184.216.0/24\ndeny-cidr 10.9.9.9\n");
	struct dns_addr a;

	(void)state;
	a = addr("10.9.1.1");
	assert_true(egress_addr_allowed(p, &a));
	a = addr("10.9.9.9");
	assert_false(egress_addr_allowed(p, &a));	/* deny-cidr wins */
	a = addr("10.8.1.1");
	assert_false(egress_addr_allowed(p, &a));
	a = addr("2001:db8::5");
	assert_true(egress_addr_allowed(p, &a));
	a = addr("93.184.216.34");
	assert_false(egress_addr_allowed(p, &a));
	free(p);
}

static void broad_cidrs_never_open_loopback_or_metadata(void **state)
{
	struct egress_policy *p = policy("allow-cidr 0.0.0.0/0\nallow-cidr ::/0\n"
					 "deny-cidr 198.51.100.0/24\n");
	const char *closed[] = { "127.0.0.1", "169.254.169.254", "10.1.2.3", "::1",
				 "::ffff:127.0.0.1", "::ffff:169.254.169.254", "fe80::1",
				 "::ffff:198.51.100.7" };
	struct dns_addr a;

	(void)state;
	for (size_t i = 0; i < sizeof(closed) / sizeof(closed[0]); i++) {
		a = addr(closed[i]);
		assert_false(egress_addr_allowed(p, &a));
		assert_false(egress_addr_listed(p, &a));
	}
	a = addr("93.184.216.34");
	assert_true(egress_addr_listed(p, &a));
	a = addr("2606:4700::1111");
	assert_true(egress_addr_allowed(p, &a));
	free(p);
	/* Named specifically, the range opens, in both spellings. */
	p = policy("allow-cidr 127.0.0.0/8\n");
	a = addr("::ffff:127.0.0.1");
	assert_true(egress_addr_listed(p, &a));
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(wildcards_match_at_label_boundaries_only),
		cmocka_unit_test(deny_wins_then_rewrite_then_allow),
		cmocka_unit_test(bad_text_names_the_line),
		cmocka_unit_test(cidrs_clear_host_bits),
		cmocka_unit_test(answers_never_rebind_onto_the_hosts_side),
		cmocka_unit_test(cidr_lists_override_the_defaults),
		cmocka_unit_test(broad_cidrs_never_open_loopback_or_metadata),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
