/*
 * test_netns.c - the pure half of src/host/netns.c: CIDR parsing of the user's allow list and
 * the nftables ruleset generated from it.  The ruleset's behaviour is tested for real in
 * tests/integration/test_net.py; here, that each allowed CIDR lands in the right set, that the
 * host's addresses and the never-ranges are always dropped first, and that bad input is refused
 * before anything is set up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/host/netns.h"
#include "../../src/host/netns_pool.h"

static char rules[64 * 1024];

static void test_parse_cidr(void **state)
{
	uint32_t a;
	unsigned l;

	(void)state;
	assert_int_equal(netns_parse_cidr("10.99.0.5/24", &a, &l), 0);
	assert_int_equal(a, 0x0a630000);		/* host bits cleared */
	assert_int_equal(l, 24);
	assert_int_equal(netns_parse_cidr("8.8.8.8", &a, &l), 0);
	assert_int_equal(l, 32);
	assert_int_equal(netns_parse_cidr("0.0.0.0/0", &a, &l), 0);
	assert_int_equal(a, 0);
	assert_int_equal(l, 0);
	static const char *const bad[] = {
		"", "/", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8x", "10.0.0/8",
		"256.0.0.0/8", "::1/128", "10.0.0.0/8/8", "example.com", " 10.0.0.0/8",
		"10.0.0.0/99999999999999999999", "10.0.0.0/8 ",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		if (netns_parse_cidr(bad[i], &a, &l) == 0)
			fail_msg("'%s' parsed", bad[i]);
}

/* The elements line of set name in the ruleset. */
static const char *set_elements(const char *name, char *buf, size_t len)
{
	char head[64];
	const char *p, *e, *end;

	snprintf(head, sizeof(head), "set %s {", name);
	p = strstr(rules, head);
	assert_non_null(p);
	end = strstr(p, "\t}\n");
	e = strstr(p, "elements = { ");
	if (!e || e > end)
		return "";
	e += strlen("elements = { ");
	snprintf(buf, len, "%.*s", (int)(strchr(e, '}') - e), e);
	return buf;
}

static void test_allow_sets(void **state)
{
	uint32_t host[] = { 0xc0a80105, 0x0a630001 };	/* 192.168.1.5, 10.99.0.1 */
	char err[256], b[1024];

	(void)state;
	assert_int_equal(netns_ruleset("10.99.0.0/24,0.0.0.0/0,203.0.113.7,172.20.1.0/24,"
				       "169.254.169.254/32,100.64.0.0/10", false, host, 2, rules,
				       sizeof(rules), err, sizeof(err)), 0);
	/* Inside a private range: only allow_private lets it through the private drop. */
	assert_string_equal(set_elements("allow_private", b, sizeof(b)),
			    "10.99.0.0/24, 172.20.1.0/24, 100.64.0.0/10 ");
	/* Public (or spanning): 0.0.0.0/0 does not open the private ranges. */
	assert_string_equal(set_elements("allow", b, sizeof(b)),
			    "0.0.0.0/0, 203.0.113.7/32, 169.254.169.254/32 ");
	set_elements("never", b, sizeof(b));
	assert_non_null(strstr(b, "169.254.0.0/16"));
	assert_non_null(strstr(b, "10.200.0.0/16"));
	assert_non_null(strstr(b, "127.0.0.0/8"));
	assert_non_null(strstr(b, "192.168.1.5/32"));
	assert_non_null(strstr(b, "10.99.0.1/32"));
	/* The guest's own source address only, checked first. */
	assert_non_null(strstr(rules, "chain egress {\n\t\tip saddr != 10.0.2.2 counter drop\n"));
	/* never before the TCP check before allow_private before private before allow. */
	const char *never = strstr(rules, "ip daddr @never counter goto refuse");
	const char *tcp = strstr(rules, "meta l4proto != tcp counter drop");
	const char *ap = strstr(rules, "ip daddr @allow_private counter accept");
	const char *priv = strstr(rules, "ip daddr @private counter goto refuse");
	const char *al = strstr(rules, "ip daddr @allow counter accept");

	assert_true(never && tcp && ap && priv && al);
	assert_true(never < tcp && tcp < ap && ap < priv && priv < al);
	/* Every guest packet is checked, not only new connections; refused TCP is reset. */
	assert_non_null(strstr(rules, "iifname \"tap0\" oifname \"eth-up\" meta nfproto ipv4 "
				      "jump egress"));
	assert_non_null(strstr(rules, "meta l4proto tcp reject with tcp reset"));
	/* Every base chain drops by default. */
	assert_non_null(strstr(rules, "hook input priority filter; policy drop;"));
	assert_non_null(strstr(rules, "hook output priority filter; policy drop;"));
	assert_non_null(strstr(rules, "hook forward priority filter; policy drop;"));
}

static void test_empty_and_bad_allow_lists(void **state)
{
	char err[256], b[1024], big[NETNS_ALLOW_MAX + 16];

	(void)state;
	assert_int_equal(netns_ruleset(NULL, false, NULL, 0, rules, sizeof(rules), err,
				       sizeof(err)), 0);
	assert_string_equal(set_elements("allow", b, sizeof(b)), "");
	assert_string_equal(set_elements("allow_private", b, sizeof(b)), "");
	assert_int_equal(netns_ruleset("10.0.0.0/8,bogus", false, NULL, 0, rules, sizeof(rules), err,
				       sizeof(err)), -1);
	assert_non_null(strstr(err, "bogus"));
	/* An nft injection attempt is just not a CIDR. */
	assert_int_equal(netns_ruleset("1.2.3.4/32 } ; flush ruleset ;", false, NULL, 0, rules,
				       sizeof(rules), err, sizeof(err)), -1);
	/* Too many CIDRs, and a list longer than the limit. */
	big[0] = '\0';
	for (int i = 0; i < NETNS_MAX_CIDRS + 1; i++)
		snprintf(big + strlen(big), sizeof(big) - strlen(big), "%s1.%d.%d.0/24",
			 i ? "," : "", i / 256, i % 256);
	assert_int_equal(netns_ruleset(big, false, NULL, 0, rules, sizeof(rules), err,
				       sizeof(err)), -1);
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(netns_ruleset(big, false, NULL, 0, rules, sizeof(rules), err,
				       sizeof(err)), -1);
	/* An output buffer too small is an error, never a truncated ruleset. */
	assert_int_equal(netns_ruleset("10.0.0.0/8", false, NULL, 0, rules, 200, err, sizeof(err)), -1);
}

/* With the egress services, DNS and web traffic from the tap go to kiln-dns and kiln-proxy in
 * the namespace, which its input chain then accepts; without, neither rule exists. */
static void test_services_redirects(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(netns_ruleset("10.99.0.0/24", true, NULL, 0, rules, sizeof(rules), err,
				       sizeof(err)), 0);
	assert_non_null(strstr(rules, "udp dport 53 redirect to :53"));
	assert_non_null(strstr(rules, "tcp dport 80 redirect to :8080"));
	assert_non_null(strstr(rules, "tcp dport 443 redirect to :8443"));
	assert_non_null(strstr(rules, "jump services_in"));
	assert_non_null(strstr(rules, "tcp dport { 53, 8080, 8443 } accept"));
	assert_int_equal(netns_ruleset("10.99.0.0/24", false, NULL, 0, rules, sizeof(rules), err,
				       sizeof(err)), 0);
	assert_null(strstr(rules, "redirect"));
	assert_null(strstr(rules, "services_in"));
}

/* Namespace names are read back from files and directories anyone with root can write:
 * exactly one spelling per slot, nothing else. */
static void test_slot_names(void **state)
{
	static const char *const bad[] = {
		"", "kiln-", "kiln", "kiln-01", "kiln--1", "kiln-+1", "kiln- 1", "kiln-1 ",
		"kiln-1x", "kiln-16384", "kiln-99999999999999999999", "kv-1", "KILN-1", "xkiln-1",
		"kiln-1/../2", "kiln-0x1",
	};
	unsigned slot;

	(void)state;
	assert_int_equal(netns_slot("kiln-0", &slot), 0);
	assert_int_equal(slot, 0);
	assert_int_equal(netns_slot("kiln-16383", &slot), 0);
	assert_int_equal(slot, 16383);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		if (netns_slot(bad[i], &slot) == 0)
			fail_msg("'%s' taken as a namespace name", bad[i]);
}

/* The pool's state is its directory's file names (netns_pool.c). */
static void test_pool_entries(void **state)
{
	static const char *const other[] = {
		"", ".", "..", "01", "1x", "-1", "16384", "1.buildin", ".building", "01.building",
		"1.building.x", "x.building", "1 .building", "99999999999999999999999999999999999",
		"tmp-1", "1.tmp",
	};
	unsigned slot = 77;

	(void)state;
	assert_int_equal(netns_pool_classify("0", &slot), POOL_READY);
	assert_int_equal(slot, 0);
	assert_int_equal(netns_pool_classify("42", &slot), POOL_READY);
	assert_int_equal(slot, 42);
	assert_int_equal(netns_pool_classify("16383.building", &slot), POOL_BUILDING);
	assert_int_equal(slot, 16383);
	assert_int_equal(netns_pool_classify(".tmp-123-4", &slot), POOL_TMP);
	for (size_t i = 0; i < sizeof(other) / sizeof(*other); i++)
		if (netns_pool_classify(other[i], &slot) != POOL_OTHER)
			fail_msg("'%s' taken as a pool entry", other[i]);
}

/* A bad policy fails the take before anything is claimed: with no pool and no host access,
 * the only way to get -1 back with the reason is the check. */
static void test_pool_take_checks_policy(void **state)
{
	char name[NETNS_NAME_MAX], err[256];

	(void)state;
	assert_int_equal(netns_pool_take(NULL, "10.0.0.0/8,nonsense", false, name, sizeof(name),
					 err, sizeof(err)), -1);
	assert_non_null(strstr(err, "nonsense"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_services_redirects),
		cmocka_unit_test(test_parse_cidr),
		cmocka_unit_test(test_allow_sets),
		cmocka_unit_test(test_empty_and_bad_allow_lists),
		cmocka_unit_test(test_slot_names),
		cmocka_unit_test(test_pool_entries),
		cmocka_unit_test(test_pool_take_checks_policy),
	};

	return cmocka_run_group_tests_name("netns policy", tests, NULL, NULL);
}
