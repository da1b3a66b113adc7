/*
 * test_kilnd_code_json.c - validation of the code interpreter and OpenAI Containers requests:
 * each bad field refused and named, defaults applied; OpenAI list pagination (after, limit,
 * order) over a sorted list, its envelope and has_more.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/kilnd/code_json.h"

static json_t *js(const char *text)
{
	json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);

	assert_non_null(v);
	return v;
}

static void refused(int (*parse)(json_t *, void *, struct api_error *), const char *text,
		    const char *field)
{
	union { struct code_req c; struct container_req k; struct context_req x; } out;
	struct api_error e = { 0 };
	json_t *body = js(text);

	if (parse(body, &out, &e) != -1)
		fail_msg("accepted %s", text);
	assert_int_equal(e.status, 400);
	if (strcmp(e.field, field))
		fail_msg("%s: field '%s', expected '%s' (%s)", text, e.field, field, e.message);
	json_decref(body);
}

static int p_code(json_t *b, void *o, struct api_error *e) { return parse_code(b, o, e); }
static int p_cont(json_t *b, void *o, struct api_error *e) { return parse_container(b, o, e); }

static int p_ctx(json_t *b, void *o, struct api_error *e)
{
	int r = parse_context(b, o, e);

	strv_free(((struct context_req *)o)->env);
	return r;
}

static void test_code(void **state)
{
	struct api_error e = { 0 };
	struct code_req r;
	json_t *b = js("{\"code\": \"1+1\"}");

	(void)state;
	assert_int_equal(parse_code(b, &r, &e), 0);
	assert_string_equal(r.code, "1+1");
	assert_int_equal(r.len, 3);
	assert_string_equal(r.context_id, "");
	assert_int_equal(r.timeout_s, DEFAULT_CELL_TIMEOUT_S);
	assert_false(r.stream);
	json_decref(b);
	b = js("{\"code\": \"\", \"context_id\": \"0123456789abcdef\", \"timeout\": 5, "
	       "\"stream\": true}");
	assert_int_equal(parse_code(b, &r, &e), 0);
	assert_string_equal(r.context_id, "0123456789abcdef");
	assert_int_equal(r.timeout_s, 5);
	assert_true(r.stream);
	json_decref(b);

	refused(p_code, "{}", "code");
	refused(p_code, "{\"code\": 1}", "code");
	b = json_pack("{s:s%}", "code", "a\0b", (size_t)3);	/* jansson's parser refuses it */
	assert_int_equal(parse_code(b, &r, &e), -1);
	assert_string_equal(e.field, "code");
	json_decref(b);
	refused(p_code, "{\"code\": \"x\", \"context_id\": \"0123456789ABCDEF\"}", "context_id");
	refused(p_code, "{\"code\": \"x\", \"context_id\": \"../../etc\"}", "context_id");
	refused(p_code, "{\"code\": \"x\", \"context_id\": \"0123456789abcdef0\"}", "context_id");
	refused(p_code, "{\"code\": \"x\", \"timeout\": 0}", "timeout");
	refused(p_code, "{\"code\": \"x\", \"timeout\": 86401}", "timeout");
	refused(p_code, "{\"code\": \"x\", \"timeout\": 1.5}", "timeout");
	refused(p_code, "{\"code\": \"x\", \"stream\": \"yes\"}", "stream");
	refused(p_code, "{\"code\": \"x\", \"language\": \"r\"}", "language");
}

static void test_context(void **state)
{
	struct api_error e = { 0 };
	struct context_req r;
	json_t *b = js("{\"language\": \"python\", \"cwd\": \"/tmp\", \"env\": {\"A_1\": \"x=y\"}}");

	(void)state;
	assert_int_equal(parse_context(b, &r, &e), 0);
	assert_string_equal(r.language, "python");
	assert_string_equal(r.cwd, "/tmp");
	assert_string_equal(r.env[0], "A_1=x=y");
	assert_null(r.env[1]);
	strv_free(r.env);
	json_decref(b);
	refused(p_ctx, "{\"cwd\": \"relative\"}", "cwd");
	refused(p_ctx, "{\"env\": {\"1A\": \"x\"}}", "env");
	refused(p_ctx, "{\"env\": {\"A\": 1}}", "env");
	refused(p_ctx, "{\"env\": [\"A=1\"]}", "env");
	refused(p_ctx, "{\"language\": \"\"}", "language");
	refused(p_ctx, "{\"kernel\": \"x\"}", "kernel");
}

static void test_container(void **state)
{
	struct api_error e = { 0 };
	struct container_req r;
	json_t *b = js("{\"name\": \"c1\"}");

	(void)state;
	assert_int_equal(parse_container(b, &r, &e), 0);
	assert_string_equal(r.name, "c1");
	assert_int_equal(r.minutes, DEFAULT_IDLE_MINUTES);
	assert_string_equal(r.memory_limit, "1g");
	assert_int_equal(r.memory_mib, 1024);
	json_decref(b);
	b = js("{\"name\": \"c\", \"file_ids\": [], \"memory_limit\": \"4g\", "
	       "\"expires_after\": {\"anchor\": \"last_active_at\", \"minutes\": 3}}");
	assert_int_equal(parse_container(b, &r, &e), 0);
	assert_int_equal(r.minutes, 3);
	assert_int_equal(r.memory_mib, 4096);
	json_decref(b);

	refused(p_cont, "{}", "name");
	refused(p_cont, "{\"name\": \"\"}", "name");
	refused(p_cont, "{\"name\": \"c\", \"file_ids\": [\"file-1\"]}", "file_ids");
	refused(p_cont, "{\"name\": \"c\", \"file_ids\": \"file-1\"}", "file_ids");
	refused(p_cont, "{\"name\": \"c\", \"memory_limit\": \"2g\"}", "memory_limit");
	refused(p_cont, "{\"name\": \"c\", \"memory_limit\": 1}", "memory_limit");
	refused(p_cont, "{\"name\": \"c\", \"expires_after\": 5}", "expires_after");
	refused(p_cont, "{\"name\": \"c\", \"expires_after\": {\"anchor\": \"created_at\", "
			"\"minutes\": 5}}", "expires_after");
	refused(p_cont, "{\"name\": \"c\", \"expires_after\": {\"anchor\": \"last_active_at\"}}",
		"expires_after");
	refused(p_cont, "{\"name\": \"c\", \"expires_after\": {\"anchor\": \"last_active_at\", "
			"\"minutes\": 0}}", "expires_after");
	refused(p_cont, "{\"name\": \"c\", \"expires_after\": {\"anchor\": \"last_active_at\", "
			"\"minutes\": 5, \"x\": 1}}", "expires_after");
	refused(p_cont, "{\"name\": \"c\", \"image\": \"x\"}", "image");
	assert_int_equal(e.status, 0);
}

static json_t *items(int n)
{
	json_t *a = json_array();

	for (int i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:s#, s:i}", "id", "abcdefghij" + i, 1,
						   "created_at", i));
	return a;
}

static const char *id_at(json_t *page, size_t i)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(page, "data"), i),
						 "id"));
}

static void test_list(void **state)
{
	struct api_error e = { 0 };
	unsigned limit;
	bool asc;
	json_t *p;

	(void)state;
	assert_int_equal(parse_list_query(NULL, NULL, NULL, &limit, &asc, &e), 0);
	assert_int_equal(limit, 20);
	assert_false(asc);
	assert_int_equal(parse_list_query("100", "asc", "x", &limit, &asc, &e), 0);
	assert_true(asc);
	assert_int_equal(parse_list_query("0", NULL, NULL, &limit, &asc, &e), -1);
	assert_string_equal(e.field, "limit");
	assert_int_equal(parse_list_query("101", NULL, NULL, &limit, &asc, &e), -1);
	assert_int_equal(parse_list_query("-1", NULL, NULL, &limit, &asc, &e), -1);
	assert_int_equal(parse_list_query("5x", NULL, NULL, &limit, &asc, &e), -1);
	assert_int_equal(parse_list_query("", NULL, NULL, &limit, &asc, &e), -1);
	assert_int_equal(parse_list_query(NULL, "up", NULL, &limit, &asc, &e), -1);
	assert_string_equal(e.field, "order");
	assert_int_equal(parse_list_query(NULL, NULL, "", &limit, &asc, &e), -1);
	assert_string_equal(e.field, "after");

	/* Newest first by default: j i h; then after h: g f e ... */
	p = list_page(items(10), 3, false, NULL);
	assert_string_equal(json_string_value(json_object_get(p, "object")), "list");
	assert_string_equal(id_at(p, 0), "j");
	assert_string_equal(json_string_value(json_object_get(p, "first_id")), "j");
	assert_string_equal(json_string_value(json_object_get(p, "last_id")), "h");
	assert_true(json_is_true(json_object_get(p, "has_more")));
	json_decref(p);
	p = list_page(items(10), 3, false, "h");
	assert_string_equal(id_at(p, 0), "g");
	json_decref(p);
	p = list_page(items(10), 5, true, "f");
	assert_int_equal(json_array_size(json_object_get(p, "data")), 4);
	assert_string_equal(id_at(p, 0), "g");
	assert_true(json_is_false(json_object_get(p, "has_more")));
	json_decref(p);
	p = list_page(items(3), 3, true, NULL);
	assert_true(json_is_false(json_object_get(p, "has_more")));
	json_decref(p);
	p = list_page(items(0), 20, false, NULL);
	assert_true(json_is_null(json_object_get(p, "first_id")));
	assert_true(json_is_null(json_object_get(p, "last_id")));
	json_decref(p);
	p = list_page(items(4), 20, false, "zzz");	/* an unknown cursor: nothing after it */
	assert_int_equal(json_array_size(json_object_get(p, "data")), 0);
	json_decref(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_code),
		cmocka_unit_test(test_context),
		cmocka_unit_test(test_container),
		cmocka_unit_test(test_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
