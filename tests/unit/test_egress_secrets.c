/*
 * test_egress_secrets.c - the credentials kiln-proxy injects (src/net/secrets.c): the file's
 * checks (no line breaks in values, placeholders long and distinct, errors that never echo
 * a line), and the header rewrite: the placeholder replaced in its own header for its own
 * hosts only, an alert for it anywhere else, and no overflow of the output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/net/secrets.h"

#define PH	"KILN_PH_0123456789abcdef"
#define PH2	"KILN_PH_fedcba9876543210"

static struct secrets *load(const char *text)
{
	struct secrets *s = calloc(1, sizeof(*s));
	char err[128];

	assert_non_null(s);
	assert_int_equal(secrets_parse(s, text, err, sizeof(err)), 0);
	return s;
}

static void parse_fails(const char *text, const char *why)
{
	struct secrets *s = calloc(1, sizeof(*s));
	char err[128];

	assert_int_equal(secrets_parse(s, text, err, sizeof(err)), -1);
	assert_non_null(strstr(err, why));
	assert_null(strstr(err, "hunter2"));		/* a secret never shows in an error */
	free(s);
}

static const char *SECRETS =
	"# name placeholder header hosts value\n"
	"secret gh " PH " Authorization api.github.com,*.githubusercontent.com Bearer ghp_real\n"
	"secret aws " PH2 " X-Api-Key aws.test hunter2\n";

static void file_is_checked(void **state)
{
	struct secrets *s = load(SECRETS);

	(void)state;
	assert_int_equal(s->n, 2);
	assert_string_equal(s->s[0].value, "Bearer ghp_real");
	assert_int_equal(s->s[0].nhosts, 2);
	assert_true(secrets_for_host(s, "api.github.com"));
	assert_true(secrets_for_host(s, "raw.githubusercontent.com"));
	assert_false(secrets_for_host(s, "github.com"));
	free(s);
	parse_fails("secret x KILN_PH_short Authorization a.test hunter2\n", "placeholder");
	parse_fails("secret x " PH " Authorization a.test\n", "no value");
	parse_fails("secret x " PH "\n", "expected");
	parse_fails("secret x " PH " Auth:orization a.test hunter2\n", "header");
	parse_fails("secret x " PH " Authorization bad..host hunter2\n", "host");
	parse_fails("secret x " PH " Authorization a.test hunter2\rX-Injected: 1\n", "line break");
	parse_fails("secret a " PH " A a.test hunter2\nsecret b " PH "0 B b.test hunter2\n",
		    "overlaps");
	parse_fails("token x " PH " A a.test hunter2\n", "unknown directive");
}

static long rewrite(const struct secrets *s, const char *host, const char *in, char *out,
		    size_t cap, const struct secret **alert)
{
	return secrets_rewrite(s, host, in, strlen(in), out, cap, alert);
}

static void replaces_in_its_own_header_for_its_own_hosts(void **state)
{
	struct secrets *s = load(SECRETS);
	const struct secret *alert;
	char out[1024];
	const char *in = "GET /user HTTP/1.1\r\nHost: api.github.com\r\n"
			 "authorization: token " PH " and " PH "\r\nAccept: */*\r\n\r\n";
	long n = rewrite(s, "api.github.com", in, out, sizeof(out), &alert);

	(void)state;
	assert_true(n > 0);
	out[n] = 0;
	assert_string_equal(out, "GET /user HTTP/1.1\r\nHost: api.github.com\r\n"
			    "authorization: token Bearer ghp_real and Bearer ghp_real\r\n"
			    "Accept: */*\r\n\r\n");
	/* No placeholder at all: unchanged. */
	in = "GET / HTTP/1.1\r\nHost: api.github.com\r\n\r\n";
	n = rewrite(s, "api.github.com", in, out, sizeof(out), &alert);
	assert_int_equal(n, strlen(in));
	assert_memory_equal(out, in, n);
	free(s);
}

static void anywhere_else_is_an_alert(void **state)
{
	struct secrets *s = load(SECRETS);
	const struct secret *alert;
	char out[1024];
	const char *bad[] = {
		"GET /?t=" PH " HTTP/1.1\r\nHost: api.github.com\r\n\r\n",	/* request line */
		"GET / HTTP/1.1\r\nX-Echo: " PH "\r\n\r\n",			/* other header */
		"GET / HTTP/1.1\r\n" PH ": x\r\n\r\n",				/* header name */
		"GET / HTTP/1.1\r\nAuthorization " PH "\r\n\r\n",		/* no colon */
		"GET / HTTP/1.1\r\nX-Api-Key: " PH2 "\r\n\r\n",		/* another host's */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		alert = NULL;
		assert_int_equal(rewrite(s, "api.github.com", bad[i], out, sizeof(out), &alert),
				 -1);
		assert_non_null(alert);
	}
	/* The right header, but a host the secret is not for. */
	assert_int_equal(rewrite(s, "evil.test", "GET / HTTP/1.1\r\nAuthorization: " PH
				 "\r\n\r\n", out, sizeof(out), &alert), -1);
	assert_string_equal(alert->name, "gh");
	free(s);
}

static void output_never_overflows(void **state)
{
	struct secrets *s = load(SECRETS);
	const struct secret *alert = (void *)1;
	char out[64];
	const char *in = "GET / HTTP/1.1\r\nAuthorization: " PH "\r\n\r\n";

	(void)state;
	for (size_t cap = 0; cap < 60; cap++) {
		long n = rewrite(s, "api.github.com", in, out, cap, &alert);

		assert_true(n == -1 || (size_t)n <= cap);
		if (n == -1)
			assert_null(alert);	/* too small, not an alert */
	}
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(file_is_checked),
		cmocka_unit_test(replaces_in_its_own_header_for_its_own_hosts),
		cmocka_unit_test(anywhere_else_is_an_alert),
		cmocka_unit_test(output_never_overflows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
