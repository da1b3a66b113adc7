/*
 * test_kilnd_parse.c - validation of kilnd's process, signal, file and metadata requests
 * (api_parse.c): defaults, the background/stream/stdin combinations, every bad type named in
 * the error, signal names and numbers, absolute paths, query flags, and metadata bounds.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/kilnd/api_parse.h"

static json_t *parse(const char *text)
{
	struct api_error e;
	json_t *v = body_object(text, strlen(text), &e);

	assert_non_null(v);
	return v;
}

static void process_fails(const char *text, const char *field)
{
	struct process_req r;
	struct api_error e = { 0 };
	json_t *v = parse(text);

	assert_int_equal(parse_process(v, &r, &e), -1);
	assert_int_equal(e.status, 400);
	assert_string_equal(e.code, "invalid_argument");
	assert_string_equal(e.field, field);
	process_req_free(&r);
	json_decref(v);
}

static void test_process_defaults(void **state)
{
	struct process_req r;
	struct api_error e;
	json_t *v = parse("{\"cmd\": [\"echo\", \"hi\"]}");

	(void)state;
	assert_int_equal(parse_process(v, &r, &e), 0);
	assert_false(r.background);
	assert_false(r.stream);
	assert_false(r.pty);
	assert_false(r.stdin_open);
	assert_null(r.stdin_data);
	assert_int_equal(r.x.timeout_s, 600);
	assert_string_equal(r.x.argv[0], "echo");
	assert_string_equal(r.x.argv[1], "hi");
	assert_null(r.x.argv[2]);
	process_req_free(&r);
	json_decref(v);

	/* background: no timeout unless asked; stdin kept open */
	v = parse("{\"shell\": \"cat\", \"background\": true, \"stdin\": true, \"pty\": true, "
		  "\"rows\": 50, \"cols\": 132, \"env\": {\"A\": \"b\"}, \"cwd\": \"/tmp\"}");
	assert_int_equal(parse_process(v, &r, &e), 0);
	assert_true(r.background);
	assert_true(r.stdin_open);
	assert_true(r.pty);
	assert_int_equal(r.rows, 50);
	assert_int_equal(r.cols, 132);
	assert_int_equal(r.x.timeout_s, 0);
	assert_string_equal(r.x.shell, "cat");
	assert_string_equal(r.x.env[0], "A=b");
	assert_string_equal(r.x.cwd, "/tmp");
	process_req_free(&r);
	json_decref(v);

	v = parse("{\"cmd\": [\"cat\"], \"background\": true, \"timeout_s\": 5}");
	assert_int_equal(parse_process(v, &r, &e), 0);
	assert_int_equal(r.x.timeout_s, 5);
	process_req_free(&r);
	json_decref(v);

	/* NULs in stdin are data (a JSON parser allowing them could hand them over) */
	v = json_pack("{s:[s], s:b, s:s%}", "cmd", "cat", "stream", 1, "stdin", "a\0b",
		      (size_t)3);
	assert_int_equal(parse_process(v, &r, &e), 0);
	assert_true(r.stream);
	assert_int_equal(r.stdin_len, 3);
	assert_memory_equal(r.stdin_data, "a\0b", 3);
	process_req_free(&r);
	json_decref(v);
}

static void test_process_rejects(void **state)
{
	(void)state;
	process_fails("{\"cmd\": [\"x\"], \"background\": 1}", "background");
	process_fails("{\"cmd\": [\"x\"], \"stream\": \"yes\"}", "stream");
	process_fails("{\"cmd\": [\"x\"], \"pty\": []}", "pty");
	process_fails("{\"cmd\": [\"x\"], \"rows\": 0}", "rows");
	process_fails("{\"cmd\": [\"x\"], \"cols\": 1001}", "cols");
	process_fails("{\"cmd\": [\"x\"], \"stdin\": true}", "stdin");
	process_fails("{\"cmd\": [\"x\"], \"stdin\": 3}", "stdin");
	process_fails("{\"cmd\": [\"x\"], \"background\": true, \"stream\": true}", "stream");
	process_fails("{\"cmd\": [\"x\"], \"timeout_s\": 0}", "timeout_s");
	process_fails("{\"cmd\": [\"x\"], \"cwd\": \"tmp\"}", "cwd");
	process_fails("{\"cmd\": [\"x\"], \"what\": 1}", "what");
	process_fails("{\"cmd\": \"x\"}", "cmd");
	process_fails("{}", "cmd");
	process_fails("{\"cmd\": [\"x\"], \"shell\": \"x\"}", "cmd");
}

static void test_signals(void **state)
{
	static const struct { const char *body; int sig; } ok[] = {
		{ "{}", SIGTERM }, { "{\"signal\": null}", SIGTERM },
		{ "{\"signal\": \"KILL\"}", SIGKILL }, { "{\"signal\": \"SIGINT\"}", SIGINT },
		{ "{\"signal\": \"usr1\"}", SIGUSR1 }, { "{\"signal\": 64}", 64 },
		{ "{\"signal\": 1}", 1 },
	};
	static const char *const bad[] = {
		"{\"signal\": 0}", "{\"signal\": 65}", "{\"signal\": -9}", "{\"signal\": 9.5}",
		"{\"signal\": \"9\"}", "{\"signal\": \"NOPE\"}", "{\"signal\": \"\"}",
		"{\"signal\": true}", "{\"signal\": \"SIGKILLKILLKILLKILL\"}",
	};
	struct api_error e = { 0 };
	int sig;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		json_t *v = parse(ok[i].body);

		assert_int_equal(parse_signal(v, &sig, &e), 0);
		assert_int_equal(sig, ok[i].sig);
		json_decref(v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *v = parse(bad[i]);

		assert_int_equal(parse_signal(v, &sig, &e), -1);
		assert_string_equal(e.field, "signal");
		json_decref(v);
	}
	json_t *v = parse("{\"signal\": 9, \"pid\": 3}");

	assert_int_equal(parse_signal(v, &sig, &e), -1);
	assert_string_equal(e.field, "pid");
	json_decref(v);
	assert_string_equal(signal_name(SIGTERM), "TERM");
	assert_null(signal_name(40));
	assert_int_equal(signal_number("15"), 15);
	assert_int_equal(signal_number("65"), 0);
	assert_int_equal(signal_number(NULL), 0);
}

static void test_paths(void **state)
{
	struct api_error e = { 0 };
	const char *a, *b;
	json_t *v;

	(void)state;
	v = parse("{\"path\": \"/tmp/x\"}");
	assert_int_equal(parse_path_body(v, &a, &e), 0);
	assert_string_equal(a, "/tmp/x");
	json_decref(v);
	v = parse("{\"from\": \"/a\", \"to\": \"/b\"}");
	assert_int_equal(parse_rename(v, &a, &b, &e), 0);
	assert_string_equal(a, "/a");
	assert_string_equal(b, "/b");
	json_decref(v);

	static const struct { const char *body, *field; } bad[] = {
		{ "{}", "path" }, { "{\"path\": \"x\"}", "path" }, { "{\"path\": 1}", "path" },
{ "{\"path\": \"/a\", \"x\": 1}", "x" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = parse(bad[i].body);
		assert_int_equal(parse_path_body(v, &a, &e), -1);
		assert_string_equal(e.field, bad[i].field);
		json_decref(v);
	}
	v = parse("{\"from\": \"/a\"}");
	assert_int_equal(parse_rename(v, &a, &b, &e), -1);
	assert_string_equal(e.field, "to");
	json_decref(v);
	v = parse("{\"from\": \"a\", \"to\": \"/b\"}");
	assert_int_equal(parse_rename(v, &a, &b, &e), -1);
	assert_string_equal(e.field, "from");
	json_decref(v);
	char *longp = malloc(4200);

	memset(longp, 'a', 4199);
	longp[0] = '/';
	longp[4199] = 0;
	v = json_pack("{s:s}", "path", longp);
	assert_int_equal(parse_path_body(v, &a, &e), -1);
	json_decref(v);
	free(longp);
}

static void test_flags_and_metadata(void **state)
{
	struct api_error e = { 0 };
	bool f;
	json_t *v;

	(void)state;
	assert_int_equal(query_flag(NULL, &f), 0);
	assert_false(f);
	assert_int_equal(query_flag("1", &f), 0);
	assert_true(f);
	assert_int_equal(query_flag("true", &f), 0);
	assert_true(f);
	assert_int_equal(query_flag("0", &f), 0);
	assert_false(f);
	assert_int_equal(query_flag("yes", &f), -1);
	assert_int_equal(query_flag("2", &f), -1);

	assert_true(metadata_key_ok("team.name_1-x"));
	assert_false(metadata_key_ok(""));
	assert_false(metadata_key_ok("a\"b"));
	assert_false(metadata_key_ok("a'b"));
	assert_false(metadata_key_ok("a b"));
	assert_false(metadata_key_ok("$.x[0]"));

	v = parse("{\"a\": \"1\", \"b.c\": \"\"}");
	assert_int_equal(check_metadata(v, &e), 0);
	json_decref(v);
	static const char *const bad[] = {
		"[]", "{\"a\": 1}", "{\"a\": null}", "{\"a\": {}}", "{\"a b\": \"x\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = json_loads(bad[i], 0, NULL);	/* "[]" too: not through body_object */
		assert_non_null(v);
		assert_int_equal(check_metadata(v, &e), -1);
		assert_string_equal(e.field, "metadata");
		json_decref(v);
	}
	v = json_object();
	for (int i = 0; i <= MAX_METADATA_KEYS; i++) {
		char k[16];

		snprintf(k, sizeof(k), "k%d", i);
		json_object_set_new(v, k, json_string("v"));
	}
	assert_int_equal(check_metadata(v, &e), -1);
	json_decref(v);
	char big[MAX_METADATA_VALUE + 2];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	v = json_pack("{s:s}", "k", big);
	assert_int_equal(check_metadata(v, &e), -1);
	json_decref(v);
	big[MAX_METADATA_VALUE] = 0;
	v = json_pack("{s:s}", "k", big);
	assert_int_equal(check_metadata(v, &e), 0);
	json_decref(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_process_defaults),
		cmocka_unit_test(test_process_rejects),
		cmocka_unit_test(test_signals),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_flags_and_metadata),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
