/*
 * code_json.c - see code_json.h.
 */
#include "code_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool context_id_ok(const char *s)
{
	if (!s || strlen(s) != CONTEXT_ID_LEN)
		return false;
	return strspn(s, "0123456789abcdef") == CONTEXT_ID_LEN;
}

int parse_code(json_t *body, struct code_req *r, struct api_error *e)
{
	static const char *const fields[] = { "code", "context_id", "timeout", "stream", NULL };
	json_t *code = json_object_get(body, "code"), *stream = json_object_get(body, "stream");
	const char *ctx;

	memset(r, 0, sizeof(*r));
	if (json_only_fields(body, fields, e))
		return -1;
	if (!json_is_string(code))
		return api_fail(e, 400, "invalid_argument", "code", "code: a string is required");
	r->code = json_string_value(code);
	r->len = json_string_length(code);
	if (strlen(r->code) != r->len)
		return api_fail(e, 400, "invalid_argument", "code", "code: contains a NUL byte");
	if (r->len > MAX_CODE_BYTES)
		return api_fail(e, 400, "invalid_argument", "code", "code: at most %u bytes",
				MAX_CODE_BYTES);
	if (json_opt_string(body, "context_id", CONTEXT_ID_LEN, &ctx, e))
		return -1;
	if (ctx && !context_id_ok(ctx))
		return api_fail(e, 400, "invalid_argument", "context_id",
				"context_id: must be 16 lowercase hex digits");
	snprintf(r->context_id, sizeof(r->context_id), "%s", ctx ? ctx : "");
	if (json_opt_uint(body, "timeout", 1, MAX_CELL_TIMEOUT_S, DEFAULT_CELL_TIMEOUT_S,
		     &r->timeout_s, e))
		return -1;
	if (stream && !json_is_null(stream) && !json_is_boolean(stream))
		return api_fail(e, 400, "invalid_argument", "stream", "stream: must be a boolean");
	r->stream = json_is_true(stream);
	return 0;
}

/* The request's "env" as "K=V" strings (NULL when absent). */
static int get_env(json_t *body, char ***out, struct api_error *e)
{
	json_t *env;

	*out = NULL;
	if (json_opt_env(body, &env, e))
		return -1;
	if (env && !(*out = env_strv(env)))
		return api_fail(e, 500, "internal", NULL, "out of memory");
	return 0;
}

int parse_context(json_t *body, struct context_req *r, struct api_error *e)
{
	static const char *const fields[] = { "language", "cwd", "env", "user", NULL };

	memset(r, 0, sizeof(*r));
	if (json_only_fields(body, fields, e) ||
	    json_opt_string(body, "language", 31, &r->language, e) ||
	    json_opt_string(body, "cwd", 4095, &r->cwd, e) ||
	    json_opt_string(body, "user", 255, &r->user, e))
		return -1;
	if (r->cwd && r->cwd[0] != '/')
		return api_fail(e, 400, "invalid_argument", "cwd", "cwd: must be an absolute path");
	return get_env(body, &r->env, e);
}

int parse_container(json_t *body, struct container_req *r, struct api_error *e)
{
	static const char *const fields[] = { "name", "file_ids", "expires_after", "memory_limit",
					      NULL };
	static const struct { const char *name; unsigned mib, cpus; } limits[] = {
		{ "1g", 1024, 1 }, { "4g", 4096, 2 }, { "16g", 16384, 4 }, { "64g", 65536, 8 },
	};
	json_t *ids = json_object_get(body, "file_ids"), *exp = json_object_get(body, "expires_after");
	const char *name, *mem;
	size_t i;

	memset(r, 0, sizeof(*r));
	if (json_only_fields(body, fields, e) ||
	    json_opt_string(body, "name", MAX_CONTAINER_NAME, &name, e) ||
	    json_opt_string(body, "memory_limit", 7, &mem, e))
		return -1;
	if (!name)
		return api_fail(e, 400, "invalid_argument", "name", "name: a string is required");
	snprintf(r->name, sizeof(r->name), "%s", name);
	if (ids && !json_is_null(ids) && (!json_is_array(ids) || json_array_size(ids)))
		return api_fail(e, 400, "unsupported", "file_ids",
				"file_ids: kilnd has no Files API; upload files to the container "
				"with POST /v1/containers/{id}/files instead");
	r->minutes = DEFAULT_IDLE_MINUTES;
	if (exp && !json_is_null(exp)) {
		static const char *const efields[] = { "anchor", "minutes", NULL };
		json_t *anchor = json_object_get(exp, "anchor");

		if (!json_is_object(exp))
			return api_fail(e, 400, "invalid_argument", "expires_after",
					"expires_after: must be an object {anchor, minutes}");
		if (json_only_fields(exp, efields, e))
			return api_fail(e, 400, "invalid_argument", "expires_after",
					"expires_after: unknown field %s", e->field);
		if (!json_is_string(anchor) || strcmp(json_string_value(anchor), "last_active_at"))
			return api_fail(e, 400, "invalid_argument", "expires_after",
					"expires_after.anchor: must be \"last_active_at\"");
		if (!json_object_get(exp, "minutes") ||
		    json_opt_uint(exp, "minutes", 1, MAX_IDLE_MINUTES, 0, &r->minutes, e))
			return api_fail(e, 400, "invalid_argument", "expires_after",
					"expires_after.minutes: must be an integer from 1 to %d",
					MAX_IDLE_MINUTES);
	}
	if (!mem)
		mem = "1g";
	for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
		if (!strcmp(limits[i].name, mem))
			break;
	if (i == sizeof(limits) / sizeof(limits[0]))
		return api_fail(e, 400, "invalid_argument", "memory_limit",
				"memory_limit: must be one of \"1g\", \"4g\", \"16g\", \"64g\"");
	snprintf(r->memory_limit, sizeof(r->memory_limit), "%s", limits[i].name);
	r->memory_mib = limits[i].mib;
	r->cpus = limits[i].cpus;
	return 0;
}

int parse_list_query(const char *limit_s, const char *order, const char *after,
		     unsigned *limit, bool *asc, struct api_error *e)
{
	char *end;
	unsigned long n;

	*limit = 20;
	*asc = false;
	if (limit_s) {
		n = strtoul(limit_s, &end, 10);
		if (!*limit_s || *end || *limit_s == '-' || *limit_s == '+' || n < 1 || n > 100)
			return api_fail(e, 400, "invalid_argument", "limit",
					"limit: must be an integer from 1 to 100");
		*limit = n;
	}
	if (order && strcmp(order, "asc") && strcmp(order, "desc"))
		return api_fail(e, 400, "invalid_argument", "order",
				"order: must be \"asc\" or \"desc\"");
	*asc = order && !strcmp(order, "asc");
	if (after && (!*after || strlen(after) > 63))
		return api_fail(e, 400, "invalid_argument", "after", "after: not an object id");
	return 0;
}

json_t *list_page(json_t *items, unsigned limit, bool asc, const char *after)
{
	json_t *data = json_array();
	size_t n = json_array_size(items), start = 0, taken = 0;
	bool more = false;

	/* Walk in the requested order; `after` is exclusive. */
	if (after) {
		start = n;
		for (size_t i = 0; i < n; i++) {
			size_t k = asc ? i : n - 1 - i;
			const char *id = json_string_value(json_object_get(json_array_get(items, k),
									   "id"));

			if (id && !strcmp(id, after)) {
				start = i + 1;
				break;
			}
		}
	}
	for (size_t i = start; i < n; i++) {
		if (taken == limit) {
			more = true;
			break;
		}
		json_array_append(data, json_array_get(items, asc ? i : n - 1 - i));
		taken++;
	}
	json_decref(items);
	return json_pack("{s:s, s:o, s:o, s:o, s:b}", "object", "list", "data", data,
			 "first_id", taken ? json_incref(json_object_get(json_array_get(data, 0),
									  "id")) : json_null(),
			 "last_id", taken ? json_incref(json_object_get(json_array_get(data,
										   taken - 1), "id"))
					  : json_null(),
			 "has_more", more);
}
