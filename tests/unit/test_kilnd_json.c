/*
 * test_kilnd_json.c - kilnd's request validation: defaults, every field's type and range
 * checked with the field named in the error, unknown fields refused, env and argv built
 * right; the error body's shape; base64 and the text-or-base64 choice for command output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/kilnd/json.h"

static json_t *parse(const char *text)
{
	struct api_error e;
	json_t *v = body_object(text, strlen(text), &e);

	assert_non_null(v);
	return v;
}

/* The body fails to parse_create with 400 naming field. */
static void create_fails(const char *text, const char *field)
{
	struct create_req r;
	struct api_error e = { 0 };
	json_t *v = parse(text);

	assert_int_equal(parse_create(v, &r, &e), -1);
	assert_int_equal(e.status, 400);
	assert_string_equal(e.code, "invalid_argument");
	assert_string_equal(e.field, field);
	assert_non_null(strstr(e.message, field));
	json_decref(v);
}

static void test_create_defaults(void **state)
{
	struct create_req r;
	struct api_error e;
	json_t *v = parse("");

	(void)state;
	assert_int_equal(parse_create(v, &r, &e), 0);
	assert_string_equal(r.template, "base");
	assert_int_equal(r.cpus, 1);
	assert_int_equal(r.memory_mib, 256);
	assert_int_equal(r.timeout_s, 300);
	assert_null(r.env);
	assert_null(r.metadata);
	json_decref(v);
	v = parse("{\"template\": \"python\", \"cpus\": 32, \"memory_mib\": 65536, "
		  "\"timeout_s\": 1, \"env\": {\"A_1\": \"x=y\"}, \"metadata\": {\"k\": \"v\"}, "
		  "\"on_timeout\": \"pause\"}");
	assert_int_equal(parse_create(v, &r, &e), 0);
	assert_true(r.pause_on_timeout);
	assert_string_equal(r.template, "python");
	assert_int_equal(r.cpus, 32);
	assert_int_equal(r.memory_mib, 65536);
	char **env = env_strv(r.env);

	assert_string_equal(env[0], "A_1=x=y");
	assert_null(env[1]);
	strv_free(env);
	json_decref(v);
}

static void test_create_rejects(void **state)
{
	(void)state;
	create_fails("{\"cpus\": \"2\"}", "cpus");
	create_fails("{\"cpus\": 2.0}", "cpus");
	create_fails("{\"cpus\": false}", "cpus");
	create_fails("{\"cpus\": 33}", "cpus");
	create_fails("{\"cpus\": -1}", "cpus");
	create_fails("{\"cpus\": 4294967297}", "cpus");
	create_fails("{\"memory_mib\": 63}", "memory_mib");
	create_fails("{\"timeout_s\": 0}", "timeout_s");
	create_fails("{\"template\": \"\"}", "template");
	create_fails("{\"template\": \"a/b\"}", "template");
	create_fails("{\"template\": \"Base\"}", "template");
	create_fails("{\"template\": [\"base\"]}", "template");
	create_fails("{\"env\": \"A=1\"}", "env");
	create_fails("{\"env\": {\"A=\": \"1\"}}", "env");
	create_fails("{\"env\": {\"\": \"1\"}}", "env");
	create_fails("{\"env\": {\"A\": null}}", "env");
	create_fails("{\"metadata\": [1]}", "metadata");
	create_fails("{\"metadata\": {\"k\": [1]}}", "metadata");
	create_fails("{\"on_timeout\": \"never\"}", "on_timeout");
	create_fails("{\"on_timeout\": true}", "on_timeout");
	create_fails("{\"extra\": 1}", "extra");
}

static void test_bodies(void **state)
{
	const char *nul = "{\"a\": \"\\u0000\"}";
	struct api_error e = { 0 };

	(void)state;
	assert_null(body_object("{\"a\": 1", 7, &e));
	assert_string_equal(e.code, "invalid_json");
	assert_string_equal(e.field, "body");
	assert_null(body_object("[]", 2, &e));
	assert_string_equal(e.code, "invalid_argument");
	assert_null(body_object("{\"a\": 1, \"a\": 2}", 16, &e));
	assert_null(body_object("\"x\"", 3, &e));
	assert_null(body_object("{} {}", 5, &e));
	assert_null(body_object(nul, strlen(nul), &e));	/* no NULs in strings */
}

static void test_exec(void **state)
{
	struct exec_req x;
	struct api_error e = { 0 };
	json_t *v = parse("{\"cmd\": [\"ls\", \"-l\", \"\"], \"env\": {\"X\": \"1\"}, "
			  "\"cwd\": \"/tmp\", \"user\": \"user\", \"timeout_s\": 5}");

	(void)state;
	assert_int_equal(parse_exec(v, &x, &e), 0);
	assert_string_equal(x.argv[0], "ls");
	assert_string_equal(x.argv[2], "");
	assert_null(x.argv[3]);
	assert_null(x.shell);
	assert_string_equal(x.env[0], "X=1");
	assert_string_equal(x.cwd, "/tmp");
	assert_int_equal(x.timeout_s, 5);
	exec_req_free(&x);
	json_decref(v);

	static const struct { const char *body, *field; } bad[] = {
		{ "{}", "cmd" },
		{ "{\"cmd\": [\"a\"], \"shell\": \"b\"}", "cmd" },
		{ "{\"cmd\": []}", "cmd" },
		{ "{\"cmd\": \"ls\"}", "cmd" },
		{ "{\"cmd\": [\"\"]}", "cmd" },
		{ "{\"cmd\": [\"ls\", 1]}", "cmd" },
		{ "{\"shell\": 5}", "shell" },
		{ "{\"shell\": \"\"}", "shell" },
		{ "{\"shell\": \"x\", \"cwd\": \"tmp\"}", "cwd" },
		{ "{\"shell\": \"x\", \"timeout_s\": 86401}", "timeout_s" },
		{ "{\"shell\": \"x\", \"user\": 0}", "user" },
		{ "{\"shell\": \"x\", \"stdin\": \"\"}", "stdin" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = parse(bad[i].body);
		assert_int_equal(parse_exec(v, &x, &e), -1);
		assert_int_equal(e.status, 400);
		assert_string_equal(e.field, bad[i].field);
		exec_req_free(&x);
		json_decref(v);
	}
}

static void test_agent_credit_timeout(void **state)
{
	struct agent_req a;
	struct api_error e = { 0 };
	char cur[8];
	int64_t amount;
	unsigned t;
	json_t *v = parse("{}");

	(void)state;
	assert_int_equal(parse_agent(v, &a, &e), 0);
	assert_string_equal(a.currency, "USDC");
	assert_int_equal(parse_timeout(v, &t, &e), -1);
	assert_string_equal(e.field, "timeout_s");
	assert_int_equal(parse_credit(v, &amount, cur, sizeof(cur), &e), -1);
	assert_string_equal(e.field, "amount_micro");
	json_decref(v);
	v = parse("{\"amount_micro\": 5, \"currency\": \"USDT\"}");
	assert_int_equal(parse_credit(v, &amount, cur, sizeof(cur), &e), 0);
	assert_int_equal(amount, 5);
	assert_string_equal(cur, "USDT");
	json_decref(v);
	v = parse("{\"amount_micro\": -5}");
	assert_int_equal(parse_credit(v, &amount, cur, sizeof(cur), &e), -1);
	json_decref(v);
	v = parse("{\"name\": \"a b\"}");
	assert_int_equal(parse_agent(v, &a, &e), -1);
	assert_string_equal(e.field, "name");
	json_decref(v);
}

static void test_error_shape(void **state)
{
	struct api_error e;
	json_t *j;
	char *s;

	(void)state;
	api_fail(&e, 400, "invalid_argument", "cpus", "cpus: must be an integer from %d to %d",
		 1, 32);
	j = api_error_json(&e);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"error\":{\"code\":\"invalid_argument\",\"field\":\"cpus\","
			       "\"message\":\"cpus: must be an integer from 1 to 32\"}}");
	free(s);
	json_decref(j);
	api_fail(&e, 404, "not_found", NULL, "no sandbox %s", "x");
	j = api_error_json(&e);
	assert_null(json_object_get(json_object_get(j, "error"), "field"));
	json_decref(j);
}

static void test_base64(void **state)
{
	static const struct { const char *in, *out; } v[] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	bool b64;

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char *s = base64_encode((const uint8_t *)v[i].in, strlen(v[i].in));

		assert_string_equal(s, v[i].out);
		free(s);
	}
	json_t *j = bytes_json((const uint8_t *)"h\xc3\xa9", 3, &b64);

	assert_false(b64);
	assert_string_equal(json_string_value(j), "h\xc3\xa9");
	json_decref(j);
	j = bytes_json((const uint8_t *)"\xff\x00", 2, &b64);
	assert_true(b64);
	assert_string_equal(json_string_value(j), "/wA=");
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_defaults),
		cmocka_unit_test(test_create_rejects),
		cmocka_unit_test(test_bodies),
		cmocka_unit_test(test_exec),
		cmocka_unit_test(test_agent_credit_timeout),
		cmocka_unit_test(test_error_shape),
		cmocka_unit_test(test_base64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
