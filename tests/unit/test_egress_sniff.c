/*
 * test_egress_sniff.c - what the egress proxy reads of a guest's connection (src/net/sniff.c):
 * the SNI of ClientHellos built here field by field (with ECH, without SNI, with two names,
 * truncated at every byte, with lengths that lie), the Host of HTTP requests (two Hosts,
 * folded lines, an absolute target naming another host, CONNECT), and IP literals in the
 * forms the C library accepts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "../../src/net/sniff.h"

struct buf {
	uint8_t b[4096];
	size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void put8(struct buf *b, unsigned v)
{
	b->b[b->n++] = v;
}

static void put16(struct buf *b, unsigned v)
{
	put8(b, v >> 8);
	put8(b, v & 0xff);
}

/* A ClientHello record with the given extensions block (already encoded). */
static size_t client_hello(uint8_t *out, const struct buf *ext)
{
	struct buf body = { .n = 0 }, rec = { .n = 0 };
	uint8_t random[32] = { 1, 2, 3 };

	put16(&body, 0x0303);
	put(&body, random, 32);
	put8(&body, 0);			/* session id */
	put16(&body, 2);
	put16(&body, 0x1301);		/* one cipher suite */
	put8(&body, 1);
	put8(&body, 0);			/* null compression */
	if (ext) {
		put16(&body, ext->n);
		put(&body, ext->b, ext->n);
	}
	put8(&rec, 0x16);
	put16(&rec, 0x0301);
	put16(&rec, body.n + 4);
	put8(&rec, 1);			/* ClientHello */
	put8(&rec, 0);
	put16(&rec, body.n);
	put(&rec, body.b, body.n);
	memcpy(out, rec.b, rec.n);
	return rec.n;
}

static void sni_ext(struct buf *ext, const char *name)
{
	put16(ext, 0);			/* server_name */
	put16(ext, strlen(name) + 5);
	put16(ext, strlen(name) + 3);
	put8(ext, 0);			/* host_name */
	put16(ext, strlen(name));
	put(ext, name, strlen(name));
}

static void other_ext(struct buf *ext, unsigned type)
{
	put16(ext, type);
	put16(ext, 2);
	put16(ext, 0x1234);
}

static void reads_sni_and_notices_ech(void **state)
{
	struct buf ext = { .n = 0 };
	uint8_t msg[4096];
	struct sniffed s;
	size_t n;

	(void)state;
	other_ext(&ext, 10);
	sni_ext(&ext, "API.GitHub.com.");
	n = client_hello(msg, &ext);
	assert_true(sniff_is_tls(msg, n));
	assert_int_equal(sniff_tls(msg, n, &s), SNIFF_OK);
	assert_string_equal(s.name, "api.github.com");
	assert_false(s.ech);
	other_ext(&ext, 0xfe0d);
	n = client_hello(msg, &ext);
	assert_int_equal(sniff_tls(msg, n, &s), SNIFF_OK);
	assert_true(s.ech);
}

static void no_extensions_or_no_sni_gives_no_name(void **state)
{
	struct buf ext = { .n = 0 };
	uint8_t msg[4096];
	struct sniffed s;
	size_t n = client_hello(msg, NULL);

	(void)state;
	assert_int_equal(sniff_tls(msg, n, &s), SNIFF_OK);
	assert_string_equal(s.name, "");
	other_ext(&ext, 43);
	n = client_hello(msg, &ext);
	assert_int_equal(sniff_tls(msg, n, &s), SNIFF_OK);
	assert_string_equal(s.name, "");
}

static void every_truncation_waits_for_more(void **state)
{
	struct buf ext = { .n = 0 };
	uint8_t msg[4096];
	struct sniffed s;
	size_t n;

	(void)state;
	sni_ext(&ext, "example.com");
	n = client_hello(msg, &ext);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(sniff_tls(msg, i, &s), SNIFF_NEED_MORE);
	assert_int_equal(sniff_tls(msg, n, &s), SNIFF_OK);
}

static void ambiguous_or_lying_hellos_are_refused(void **state)
{
	struct buf ext = { .n = 0 };
	uint8_t msg[4096];
	struct sniffed s;
	size_t n;

	(void)state;
	sni_ext(&ext, "good.example");
	sni_ext(&ext, "evil.example");
	n = client_hello(msg, &ext);
	assert_int_equal(sniff_tls(msg, n, &s), SNIFF_BAD);
	assert_non_null(strstr(s.why, "two"));

	ext.n = 0;			/* one extension holding two host names */
	put16(&ext, 0);
	put16(&ext, 2 + 2 * (3 + 4));
	put16(&ext, 2 * (3 + 4));
	put8(&ext, 0);
	put16(&ext, 4);
	put(&ext, "a.io", 4);
	put8(&ext, 0);
	put16(&ext, 4);
	put(&ext, "b.io", 4);
	n = client_hello(msg, &ext);
	assert_int_equal(sniff_tls(msg, n, &s), SNIFF_BAD);

	ext.n = 0;
	sni_ext(&ext, "bad name.example");
	n = client_hello(msg, &ext);
	assert_int_equal(sniff_tls(msg, n, &s), SNIFF_BAD);

	ext.n = 0;
	sni_ext(&ext, "example.com");
	n = client_hello(msg, &ext);
	msg[n - 20 - 2] ^= 0x40;	/* the extensions' length (before the 20-byte SNI) lies */
	assert_int_equal(sniff_tls(msg, n, &s), SNIFF_BAD);

	n = client_hello(msg, &ext);
	msg[7] = 0x7f;			/* handshake longer than its record */
	assert_int_equal(sniff_tls(msg, n, &s), SNIFF_BAD);
	msg[0] = 0x17;			/* application data, not a handshake */
	assert_int_equal(sniff_tls(msg, n, &s), SNIFF_BAD);
}

static enum sniff_result http(const char *req, struct sniffed *s)
{
	return sniff_http((const uint8_t *)req, strlen(req), s);
}

static void reads_the_host_of_http_requests(void **state)
{
	struct sniffed s;

	(void)state;
	assert_int_equal(http("GET / HTTP/1.1\r\nUser-Agent: x\r\nhOsT:  Example.COM:8080 \r\n"
			      "\r\n", &s), SNIFF_OK);
	assert_string_equal(s.name, "example.com");
	assert_int_equal(http("GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
			      &s), SNIFF_OK);
	assert_int_equal(http("GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", &s), SNIFF_OK);
	assert_string_equal(s.name, "2001:db8::1");
	assert_int_equal(http("GET / HTTP/1.1\r\nHost: example.com\r\n", &s), SNIFF_NEED_MORE);
}

static void ambiguous_requests_are_refused(void **state)
{
	struct sniffed s;
	char big[SNIFF_MAX + 100];

	(void)state;
	assert_int_equal(http("GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n", &s),
			 SNIFF_BAD);
	assert_int_equal(http("GET http://evil.com/ HTTP/1.1\r\nHost: good.com\r\n\r\n", &s),
			 SNIFF_BAD);
	assert_int_equal(http("GET http://u@good.com/ HTTP/1.1\r\nHost: good.com\r\n\r\n", &s),
			 SNIFF_BAD);
	assert_int_equal(http("GET / HTTP/1.1\r\nX: y\r\n Host: a.com\r\n\r\n", &s), SNIFF_BAD);
	assert_int_equal(http("GET / HTTP/1.1\r\nHost: a.com:80x\r\n\r\n", &s), SNIFF_BAD);
	assert_int_equal(http("GET / HTTP/1.1\r\nHost: a b.com\r\n\r\n", &s), SNIFF_BAD);
	assert_int_equal(http("CONNECT a.com:443 HTTP/1.1\r\nHost: a.com\r\n\r\n", &s), SNIFF_BAD);
	assert_int_equal(http("GET / HTTP/1.0\r\n\r\n", &s), SNIFF_BAD);
	assert_int_equal(http("\x16\x03\x01 junk\r\n\r\n", &s), SNIFF_BAD);
	/* Line ends other than CRLF would let an upstream see other headers than we checked. */
	assert_int_equal(http("GET / HTTP/1.1\r\nHost: a.com\r\nX: 1\n\nbody\r\n\r\n", &s),
			 SNIFF_BAD);
	assert_int_equal(http("GET / HTTP/1.1\r\nHost: a.com\rX: 1\r\n\r\n", &s), SNIFF_BAD);
	assert_int_equal(http("GET / HTTP/1.1\r\nHost: a.com\r\nX: \x01\r\n\r\n", &s), SNIFF_BAD);
	assert_int_equal(http("GET / HTTP/1.1\r\nHost : a.com\r\n\r\n", &s), SNIFF_BAD);
	/* Targets: a path, *, or http(s) naming Host's host; nothing else. */
	assert_int_equal(http("GET https://evil.com/ HTTP/1.1\r\nHost: good.com\r\n\r\n", &s),
			 SNIFF_BAD);
	assert_int_equal(http("GET ftp://good.com/ HTTP/1.1\r\nHost: good.com\r\n\r\n", &s),
			 SNIFF_BAD);
	assert_int_equal(http("GET good.com/x HTTP/1.1\r\nHost: good.com\r\n\r\n", &s), SNIFF_BAD);
	assert_int_equal(http("OPTIONS * HTTP/1.1\r\nHost: good.com\r\n\r\n", &s), SNIFF_OK);
	assert_int_equal(http("GET https://good.com/x HTTP/1.1\r\nHost: good.com\r\n\r\n", &s),
			 SNIFF_OK);
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	assert_int_equal(sniff_http((uint8_t *)big, sizeof(big), &s), SNIFF_BAD);
}

static void ip_literals_in_every_form(void **state)
{
	struct dns_addr a;

	(void)state;
	assert_true(sniff_ip_literal("127.0.0.1", &a));
	assert_int_equal(a.family, AF_INET);
	assert_true(sniff_ip_literal("127.1", &a));
	assert_int_equal(a.bytes[0], 127);
	assert_int_equal(a.bytes[3], 1);
	assert_true(sniff_ip_literal("0x7f000001", &a));
	assert_int_equal(a.bytes[0], 127);
	assert_true(sniff_ip_literal("2130706433", &a));
	assert_true(sniff_ip_literal("::1", &a));
	assert_int_equal(a.family, AF_INET6);
	assert_false(sniff_ip_literal("example.com", &a));
	assert_false(sniff_ip_literal("1.2.3.4.example", &a));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reads_sni_and_notices_ech),
		cmocka_unit_test(no_extensions_or_no_sni_gives_no_name),
		cmocka_unit_test(every_truncation_waits_for_more),
		cmocka_unit_test(ambiguous_or_lying_hellos_are_refused),
		cmocka_unit_test(reads_the_host_of_http_requests),
		cmocka_unit_test(ambiguous_requests_are_refused),
		cmocka_unit_test(ip_literals_in_every_form),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
