/*
 * test_kilnd_multipart.c - kilnd's multipart/form-data parser (container file uploads), fed
 * what a client such as OpenAI's SDK sends and what a hostile one could: the Content-Type's
 * boundary parameter (quoted, missing, too long, bad characters), a body with preamble and
 * several parts, binary data with NULs and near-delimiters, and bodies that are truncated,
 * boundary-less, headerless, or whose headers never end; and file names made safe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/kilnd/multipart.h"

#define B "----formdata-undici-0123456789"

static int find(const char *body, size_t len, const char *field, struct multipart_part *p,
		char *err)
{
	return multipart_find((const uint8_t *)body, len, B, field, p, err, 256);
}

static void test_boundary(void **state)
{
	char b[80], err[256];

	(void)state;
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=" B, b, sizeof(b), err,
					    sizeof(err)), 0);
	assert_string_equal(b, B);
	assert_int_equal(multipart_boundary("Multipart/Form-Data;charset=x; BOUNDARY=\"a b\"", b,
					    sizeof(b), err, sizeof(err)), -1);	/* space */
	assert_int_equal(multipart_boundary("multipart/form-data; x=\"q;boundary=no\"; "
					    "boundary=\"yes\"", b, sizeof(b), err, sizeof(err)), 0);
	assert_string_equal(b, "yes");
	assert_int_equal(multipart_boundary(NULL, b, sizeof(b), err, sizeof(err)), -1);
	assert_int_equal(multipart_boundary("application/json", b, sizeof(b), err, sizeof(err)),
			 -1);
	assert_int_equal(multipart_boundary("multipart/form-datax; boundary=a", b, sizeof(b), err,
					    sizeof(err)), -1);
	assert_int_equal(multipart_boundary("multipart/form-data", b, sizeof(b), err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "boundary"));
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=", b, sizeof(b), err,
					    sizeof(err)), -1);
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=\"unterminated", b,
					    sizeof(b), err, sizeof(err)), -1);
	/* 71 characters: one over RFC 2046's limit; also one that does not fit the buffer. */
	char ct[200] = "multipart/form-data; boundary=";

	memset(ct + strlen(ct), 'a', 71);
	assert_int_equal(multipart_boundary(ct, b, sizeof(b), err, sizeof(err)), -1);
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=a<b", b, sizeof(b), err,
					    sizeof(err)), -1);
}

static void test_parts(void **state)
{
	static const char body[] =
		"preamble to ignore\r\n"
		"--" B "\r\n"
		"Content-Disposition: form-data; name=\"purpose\"\r\n\r\n"
		"assistants\r\n"
		"--" B "  \r\n"
		"content-disposition: form-data; name=\"file\"; filename=\"sales;1.csv\"\r\n"
		"Content-Type: text/csv\r\n\r\n"
		"a,b\r\n--not-the-boundary\r\n\0\x01\r\n"
		"\r\n--" B "--\r\n";
	struct multipart_part p;
	char err[256];

	(void)state;
	assert_int_equal(find(body, sizeof(body) - 1, "file", &p, err), 0);
	assert_string_equal(p.name, "file");
	assert_string_equal(p.filename, "sales;1.csv");
	assert_int_equal(p.len, strlen("a,b\r\n--not-the-boundary\r\n") + 4);
	assert_memory_equal(p.data, "a,b\r\n--not-the-boundary\r\n\0\x01\r\n", p.len);
	assert_int_equal(find(body, sizeof(body) - 1, "purpose", &p, err), 0);
	assert_int_equal(p.len, 10);
	assert_string_equal(p.filename, "");
	assert_int_equal(find(body, sizeof(body) - 1, "nothing", &p, err), -1);
	assert_non_null(strstr(err, "no form field"));
}

static void test_empty_file_at_start(void **state)
{
	static const char body[] = "--" B "\r\nContent-Disposition: form-data; name=file; "
				   "filename=e\r\n\r\n\r\n--" B "--";
	struct multipart_part p;
	char err[256];

	(void)state;
	assert_int_equal(find(body, sizeof(body) - 1, "file", &p, err), 0);
	assert_int_equal(p.len, 0);
	assert_string_equal(p.filename, "e");
}

static void test_hostile_bodies(void **state)
{
	static const char *const bad[] = {
		"",
		"no delimiter at all",
		"--" B,						/* ends after a delimiter */
		"--" B "\r\n",					/* no headers */
		"--" B "\r\nContent-Disposition: form-data; name=\"file\"",	/* headers cut */
		"--" B "\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\ndata",
		"--" B "\r\nContent-Type: text/plain\r\n\r\nx\r\n--" B "--",	/* no disposition */
		"--" B "\r\nContent-Disposition: attachment; name=file\r\n\r\nx\r\n--" B "--",
		"--" B "\r\nContent-Disposition: form-data\r\n\r\nx\r\n--" B "--",	/* no name */
		"--" B "\r\nContent-Disposition: form-data; name=\"fi\r\n\r\nx\r\n--" B "--",
		"--" B "junk\r\nContent-Disposition: form-data; name=file\r\n\r\nx\r\n--" B "--",
		"--" B "--",					/* closed, no parts */
	};
	struct multipart_part p;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		if (find(bad[i], strlen(bad[i]), "file", &p, err) != -1)
			fail_msg("accepted bad body %zu", i);
		assert_true(err[0] != 0);
	}
	/* Every truncation of a good body fails cleanly, never reading past its end; once the
	 * delimiter after the part has arrived, the part is whole. */
	static const char good[] = "--" B "\r\nContent-Disposition: form-data; name=\"file\"; "
				   "filename=\"x\"\r\n\r\nhello\r\n--" B "--\r\n";
	size_t closing = strlen(good) - strlen("--\r\n");

	for (size_t n = 0; n < closing; n++) {
		char *copy = malloc(n ? n : 1);

		memcpy(copy, good, n);
		assert_int_equal(find(copy, n, "file", &p, err), -1);
		free(copy);
	}
	assert_int_equal(find(good, closing, "file", &p, err), 0);
	assert_int_equal(p.len, 5);
}

static void test_oversized_headers(void **state)
{
	size_t hl = MULTIPART_HEADERS_MAX + 100, n = 0;
	char *body = malloc(hl + 200);
	struct multipart_part p;
	char err[256];

	(void)state;
	n += sprintf(body, "--" B "\r\nX-Pad: ");
	memset(body + n, 'a', hl);
	n += hl;
	n += sprintf(body + n, "\r\nContent-Disposition: form-data; name=file\r\n\r\nx\r\n--" B "--");
	assert_int_equal(find(body, n, "file", &p, err), -1);
	assert_non_null(strstr(err, "over"));
	free(body);
	/* A too-long file name or field name is refused, not cut. */
	char big[600];

	n = sprintf(big, "--" B "\r\nContent-Disposition: form-data; name=\"");
	memset(big + n, 'n', 300);
	n += 300;
	n += sprintf(big + n, "\"\r\n\r\nx\r\n--" B "--");
	assert_int_equal(find(big, n, "file", &p, err), -1);
}

static void test_safe_filename(void **state)
{
	char out[256];

	(void)state;
	assert_int_equal(multipart_safe_filename("data.csv", out, sizeof(out)), 0);
	assert_string_equal(out, "data.csv");
	assert_int_equal(multipart_safe_filename("../../etc/passwd", out, sizeof(out)), 0);
	assert_string_equal(out, "passwd");
	assert_int_equal(multipart_safe_filename("C:\\Users\\me\\a b.txt", out, sizeof(out)), 0);
	assert_string_equal(out, "a b.txt");
	assert_int_equal(multipart_safe_filename("x\n\ty", out, sizeof(out)), 0);
	assert_string_equal(out, "xy");
	assert_int_equal(multipart_safe_filename("", out, sizeof(out)), -1);
	assert_int_equal(multipart_safe_filename("dir/", out, sizeof(out)), -1);
	assert_int_equal(multipart_safe_filename("..", out, sizeof(out)), -1);
	assert_int_equal(multipart_safe_filename("a/.", out, sizeof(out)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_boundary),
		cmocka_unit_test(test_parts),
		cmocka_unit_test(test_empty_file_at_start),
		cmocka_unit_test(test_hostile_bodies),
		cmocka_unit_test(test_oversized_headers),
		cmocka_unit_test(test_safe_filename),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
