/*
 * test_egress_dns.c - the DNS wire format of the policy resolver (src/net/dns_msg.c): a
 * guest's queries are hostile, so the parser meets truncation at every byte, compression
 * pointers, over-long labels and names, labels that would print as other names, wrong counts
 * and responses; answers carry the question back, only records of the asked type, and never
 * more than 512 bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "../../src/net/dns_msg.h"

/* A standard query for name (dotted) of type qtype; its length. */
static size_t query(uint8_t *buf, uint16_t id, const char *name, uint16_t qtype)
{
	uint8_t *p = buf;
	const char *s = name;

	memset(buf, 0, 12);
	buf[0] = id >> 8;
	buf[1] = id & 0xff;
	buf[2] = 0x01;			/* RD */
	buf[5] = 1;			/* QDCOUNT */
	p += 12;
	while (*s) {
		const char *dot = strchr(s, '.');
		size_t n = dot ? (size_t)(dot - s) : strlen(s);

		*p++ = n;
		memcpy(p, s, n);
		p += n;
		s += n + (dot ? 1 : 0);
	}
	*p++ = 0;
	*p++ = qtype >> 8;
	*p++ = qtype & 0xff;
	*p++ = 0;
	*p++ = 1;
	return p - buf;
}

static void parses_a_plain_query_and_folds_case(void **state)
{
	uint8_t buf[512];
	struct dns_question q;
	int rcode;
	size_t len = query(buf, 0x1234, "WWW.Example.COM", DNS_AAAA);

	(void)state;
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), 0);
	assert_int_equal(q.id, 0x1234);
	assert_string_equal(q.name, "www.example.com");
	assert_int_equal(q.qtype, DNS_AAAA);
	assert_int_equal(q.qclass, DNS_IN);
	assert_int_equal(q.qlen, len - 12);
}

static void every_truncation_is_refused(void **state)
{
	uint8_t buf[512];
	struct dns_question q;
	int rcode;
	size_t len = query(buf, 7, "a.example.com", DNS_A);

	(void)state;
	for (size_t n = 0; n < len; n++) {
		assert_int_equal(dns_parse_query(buf, n, &q, &rcode), -1);
		/* Before the header is complete there is no id to answer to. */
		assert_int_equal(rcode, n < 12 ? -1 : DNS_FORMERR);
	}
}

static void labels_that_could_fool_a_name_match_are_refused(void **state)
{
	uint8_t buf[512];
	struct dns_question q;
	int rcode;
	size_t len = query(buf, 1, "xexample.com", DNS_A);

	(void)state;
	buf[13] = '.';			/* one label "x.xample"... would print as two */
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), -1);
	assert_int_equal(rcode, DNS_FORMERR);
	len = query(buf, 1, "a*b.com", DNS_A);
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), -1);
	len = query(buf, 1, "ab.com", DNS_A);
	buf[13] = 0;			/* a NUL inside a label */
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), -1);
	len = query(buf, 1, "under_score-ok.com", DNS_A);
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), 0);
}

static void compression_and_long_names_are_refused(void **state)
{
	uint8_t buf[1024];
	char name[400];
	struct dns_question q;
	int rcode;
	size_t len = query(buf, 1, "example.com", DNS_A);

	(void)state;
	buf[12] = 0xc0;			/* a pointer where a label belongs */
	buf[13] = 12;
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), -1);
	buf[12] = 64;			/* a label of 64 */
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), -1);
	/* 4 labels of 63: 255 characters with dots, over the 253 a name may have. */
	memset(name, 'a', sizeof(name));
	for (int i = 63; i < 255; i += 64)
		name[i] = '.';
	name[255] = 0;
	len = query(buf, 1, name, DNS_A);
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), -1);
	name[253] = 0;			/* exactly 253: fine */
	len = query(buf, 1, name, DNS_A);
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), 0);
	assert_int_equal(strlen(q.name), 253);
}

static void counts_responses_and_opcodes(void **state)
{
	uint8_t buf[512];
	struct dns_question q;
	int rcode;
	size_t len = query(buf, 1, "example.com", DNS_A);

	(void)state;
	buf[5] = 2;			/* two questions */
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), -1);
	assert_int_equal(rcode, DNS_FORMERR);
	buf[5] = 1;
	buf[7] = 1;			/* an answer in a query */
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), -1);
	buf[7] = 0;
	buf[2] |= 0x80;			/* QR: a response; never answered */
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), -1);
	assert_int_equal(rcode, -1);
	buf[2] = 0x01 | (2 << 3);	/* opcode STATUS */
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), -1);
	assert_int_equal(rcode, DNS_NOTIMP);
	buf[2] = 0x01;
	buf[11] = 1;			/* an EDNS OPT record: ignored, the query stands */
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), 0);
}

static void answers_carry_the_question_and_only_the_asked_type(void **state)
{
	uint8_t buf[512], out[DNS_UDP_MAX];
	struct dns_question q;
	struct dns_addr addrs[2] = { { AF_INET, { 203, 0, 113, 9 } }, { AF_INET6, { 0x20, 0x01 } } };
	int rcode;
	size_t len = query(buf, 0xbeef, "Example.com", DNS_A), n;

	(void)state;
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), 0);
	n = dns_build_answer(&q, DNS_NOERROR, addrs, 2, 60, out);
	assert_int_equal(n, len + 16);	/* one A record: 12 + 4 */
	assert_int_equal(out[0] << 8 | out[1], 0xbeef);
	assert_true(out[2] & 0x80);	/* QR */
	assert_true(out[2] & 0x01);	/* RD echoed */
	assert_int_equal(out[3] & 0xf, DNS_NOERROR);
	assert_int_equal(out[7], 1);	/* ANCOUNT */
	assert_memory_equal(out + 12, buf + 12, len - 12);	/* the question, its case kept */
	assert_memory_equal(out + n - 4, addrs[0].bytes, 4);
	n = dns_build_answer(&q, DNS_NXDOMAIN, addrs, 2, 60, out);
	assert_int_equal(n, len);
	assert_int_equal(out[3] & 0xf, DNS_NXDOMAIN);
	assert_int_equal(out[7], 0);
}

static void answers_never_exceed_512_bytes(void **state)
{
	uint8_t buf[1024], out[DNS_UDP_MAX];
	char name[254];
	struct dns_question q;
	struct dns_addr addrs[DNS_MAX_ADDRS];
	int rcode;
	size_t len, n;

	(void)state;
	memset(name, 'a', 253);
	for (int i = 63; i < 253; i += 64)
		name[i] = '.';
	name[253] = 0;
	len = query(buf, 1, name, DNS_AAAA);
	assert_int_equal(dns_parse_query(buf, len, &q, &rcode), 0);
	for (int i = 0; i < DNS_MAX_ADDRS; i++)
		addrs[i] = (struct dns_addr){ AF_INET6, { 0x20, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
							   0, 0, 0, (uint8_t)i } };
	n = dns_build_answer(&q, DNS_NOERROR, addrs, DNS_MAX_ADDRS, 60, out);
	assert_true(n <= DNS_UDP_MAX);
	assert_true(out[7] > 0 && out[7] < DNS_MAX_ADDRS);
	assert_int_equal(n, len + out[7] * 28u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parses_a_plain_query_and_folds_case),
		cmocka_unit_test(every_truncation_is_refused),
		cmocka_unit_test(labels_that_could_fool_a_name_match_are_refused),
		cmocka_unit_test(compression_and_long_names_are_refused),
		cmocka_unit_test(counts_responses_and_opcodes),
		cmocka_unit_test(answers_carry_the_question_and_only_the_asked_type),
		cmocka_unit_test(answers_never_exceed_512_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
