/*
 * test_egress_http.c - request framing on plain-HTTP connections (src/net/http_framing.c):
 * which bodies kiln-proxy accepts and where it says a request ends, whole and split at every
 * byte, so the next request's header block is always the one inspected.  Ambiguous framing
 * (the request smuggling forms) must be refused, never guessed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/net/http_framing.h"

#define NEXT "GET /next HTTP/1.1\r\nHost: b.test\r\n\r\n"

static int framing(const char *head, struct http_body *b, const char **why)
{
	*why = NULL;
	return http_request_framing(head, strlen(head), b, why);
}

static void test_framing_decisions(void **state)
{
	struct http_body b;
	const char *why;

	(void)state;
	assert_int_equal(framing("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &b, &why), 0);
	assert_true(b.done);
	assert_int_equal(framing("POST / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH:  12 \r\n\r\n", &b,
				 &why), 0);
	assert_int_equal(b.kind, HTTP_BODY_LENGTH);
	assert_int_equal(b.left, 12);
	assert_false(b.done);
	assert_int_equal(framing("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &b,
				 &why), 0);
	assert_true(b.done);
	assert_int_equal(framing("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nHost: a\r\n\r\n",
				 &b, &why), 0);
	assert_int_equal(b.kind, HTTP_BODY_CHUNKED);
	assert_int_equal(framing("POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\n", &b,
				 &why), 0);

	static const struct {
		const char *head, *why;
	} bad[] = {
		{ "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		  "both Content-Length and Transfer-Encoding" },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
		  "both Content-Length and Transfer-Encoding" },
		{ "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
		  "two Content-Length headers" },
		{ "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n", "not a number" },
		{ "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", "not a number" },
		{ "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "not a number" },
		{ "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", "not a number" },
		{ "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", "not a number" },
		{ "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", "not a number" },
		{ "POST / HTTP/1.1\r\nContent-Length: 1000000000000000000\r\n\r\n",
		  "not a number" },
		{ "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		  "not a number" },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "other than chunked" },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
		  "other than chunked" },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", "other than chunked" },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", "other than chunked" },
		{ "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		  "two Transfer-Encoding headers" },
		{ "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0" },
		{ "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "upgrade" },
		{ "GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", "upgrade" },
		{ "GET / HTTP/1.1\r\nHost: a\r\n", "incomplete" },
		{ "GET / HTTP/1.1\r\nHost a\r\n\r\n", "without a colon" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if (framing(bad[i].head, &b, &why) != -1 || !why || !strstr(why, bad[i].why))
			fail_msg("accepted or wrong reason (%s) for: %s", why ? why : "none",
				 bad[i].head);
	}
}

/* Feed body in two pieces split at `cut`, then whatever the parser leaves; the bytes it took
 * and whether it says the request ended.  -1 on an error. */
static long feed_split(const char *head, const char *body, size_t len, size_t cut, bool *done,
		       const char **why)
{
	struct http_body b;
	long a, c;

	assert_int_equal(framing(head, &b, why), 0);
	a = http_body_feed(&b, (const uint8_t *)body, cut, why);
	if (a < 0)
		return -1;
	if ((size_t)a < cut) {		/* it ended before the cut: it must not take more */
		*done = b.done;
		return a;
	}
	c = http_body_feed(&b, (const uint8_t *)body + cut, len - cut, why);
	if (c < 0)
		return -1;
	*done = b.done;
	return a + c;
}

static const char chunked_head[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

/* A valid body, split at every byte, then followed by the next request: the parser takes
 * exactly the body and says it ended; every proper prefix leaves it waiting. */
static void check_body(const char *head, const char *body)
{
	char buf[4096];
	size_t blen = strlen(body);
	const char *why;
	bool done;

	snprintf(buf, sizeof(buf), "%s%s", body, NEXT);
	for (size_t cut = 0; cut <= strlen(buf); cut++) {
		long n = feed_split(head, buf, strlen(buf), cut, &done, &why);

		if (n != (long)blen || !done)
			fail_msg("cut at %zu: took %ld of %zu (done %d, %s)", cut, n, blen, done,
				 n < 0 ? why : "");
	}
	for (size_t k = 0; k < blen; k++) {
		struct http_body b;

		assert_int_equal(framing(head, &b, &why), 0);
		assert_int_equal(http_body_feed(&b, (const uint8_t *)body, k, &why), (long)k);
		if (b.done)
			fail_msg("a body truncated to %zu of %zu bytes counted as ended", k, blen);
	}
}

static void test_bodies_end_where_they_say(void **state)
{
	(void)state;
	check_body("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", "hello");
	check_body(chunked_head, "5\r\nhello\r\n0\r\n\r\n");
	check_body(chunked_head, "0\r\n\r\n");
	/* Extensions, hex of both cases, leading zeros, a chunk holding CRLF-like data. */
	check_body(chunked_head, "5;name=\"v; x\"\r\nhello\r\nA;x\r\n0123456789\r\n"
				 "000a\r\n\r\n0\r\n\r\nxyz\r\n0;last\r\n\r\n");
	/* What would look like a request inside a body is body. */
	char head[128];

	snprintf(head, sizeof(head), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n",
		 strlen(NEXT));
	check_body(head, NEXT);
}

static void test_bad_chunks_are_refused(void **state)
{
	static const char *const bad[] = {
		"x\r\n",				/* not hex */
		"\r\n",					/* no size */
		";ext\r\n",				/* no size */
		"5 \r\nhello\r\n0\r\n\r\n",		/* whitespace before CRLF */
		"5 ;x\r\nhello\r\n0\r\n\r\n",		/* whitespace before an extension */
		"-5\r\n",
		"+5\r\n",
		"0x5\r\n",
		"5\nhello\r\n0\r\n\r\n",		/* bare LF */
		"5\rhello\r\n0\r\n\r\n",		/* bare CR */
		"5;a\nb\r\nhello\r\n0\r\n\r\n",		/* LF inside an extension */
		"5;a\x01\r\nhello\r\n0\r\n\r\n",	/* control byte in an extension */
		"5\r\nhelloX\r\n0\r\n\r\n",		/* data longer than its size */
		"5\r\nhello\rX0\r\n\r\n",
		"5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",	/* trailers */
		"0\r\nHost: other\r\n\r\n",
		"0\r\n\rX",
		"1000000000000000\r\n",			/* 16 hex digits */
		"ffffffffffffffffff\r\n",
	};
	const char *why;
	bool done;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		size_t len = strlen(bad[i]);

		/* Whole, and split at every byte: refused, never taken as a complete body. */
		for (size_t cut = 0; cut <= len; cut++) {
			long n = feed_split(chunked_head, bad[i], len, cut, &done, &why);

			if (n >= 0)
				fail_msg("'%s' cut at %zu accepted (took %ld, done %d)", bad[i], cut,
					 n, done);
		}
	}
	/* A size line may not go on for ever. */
	char longline[HTTP_CHUNK_LINE_MAX + 16];

	memset(longline, 'a', sizeof(longline));
	longline[0] = '1';
	longline[1] = ';';
	assert_int_equal(feed_split(chunked_head, longline, sizeof(longline), 0, &done, &why), -1);
	assert_non_null(strstr(why, "too long"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_framing_decisions),
		cmocka_unit_test(test_bodies_end_where_they_say),
		cmocka_unit_test(test_bad_chunks_are_refused),
	};

	return cmocka_run_group_tests_name("plain HTTP request framing", tests, NULL, NULL);
}
