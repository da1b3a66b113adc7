/*
 * json.c - see json.h.
 */
#include "json.h"

#include "api_parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int api_fail(struct api_error *e, int status, const char *code, const char *field,
	     const char *fmt, ...)
{
	va_list ap;

	e->status = status;
	snprintf(e->code, sizeof(e->code), "%s", code);
	snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -1;
}

json_t *api_error_json(const struct api_error *e)
{
	json_t *inner = json_pack("{s:s, s:s}", "code", e->code, "message", e->message);

	if (inner && e->field[0])
		json_object_set_new(inner, "field", json_string(e->field));
	return json_pack("{s:o}", "error", inner);
}

json_t *body_object(const char *body, size_t len, struct api_error *e)
{
	json_error_t jerr;
	json_t *v;

	if (len == 0)
		return json_object();
	v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!v) {
		api_fail(e, 400, "invalid_json", "body", "request body is not valid JSON: %s "
			 "(line %d, column %d)", jerr.text, jerr.line, jerr.column);
		return NULL;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		api_fail(e, 400, "invalid_argument", "body", "request body must be a JSON object");
		return NULL;
	}
	return v;
}

/* Every key of obj is one of allowed (NULL-terminated). */
int json_only_fields(json_t *obj, const char *const *allowed, struct api_error *e)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		const char *const *a = allowed;

		while (*a && strcmp(*a, key))
			a++;
		if (!*a)
			return api_fail(e, 400, "invalid_argument", key, "%.60s: unknown field",
					key);
	}
	return 0;
}

/* An optional integer field from min to max; def when absent. */
int json_opt_uint(json_t *obj, const char *name, unsigned min, unsigned max, unsigned def,
		 unsigned *out, struct api_error *e)
{
	json_t *v = json_object_get(obj, name);
	json_int_t n;

	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	n = json_is_integer(v) ? json_integer_value(v) : -1;
	if (!json_is_integer(v) || n < (json_int_t)min || n > (json_int_t)max)
		return api_fail(e, 400, "invalid_argument", name,
				"%s: must be an integer from %u to %u", name, min, max);
	*out = (unsigned)n;
	return 0;
}

/* An optional string field of 1..max bytes without NULs; NULL when absent. */
int json_opt_string(json_t *obj, const char *name, size_t max, const char **out,
		    struct api_error *e)
{
	json_t *v = json_object_get(obj, name);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return api_fail(e, 400, "invalid_argument", name,
				"%s: must be a string of 1 to %zu bytes", name, max);
	*out = json_string_value(v);
	return 0;
}

static bool name_ok(const char *s, bool upper)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
		      *s == '_' || *s == '.' || (upper && *s >= 'A' && *s <= 'Z')))
			return false;
	return true;
}

static bool env_name_ok(const char *s)
{
	if (!*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

/* An optional object of NAME: "value" environment variables. */
int json_opt_env(json_t *obj, json_t **out, struct api_error *e)
{
	json_t *env = json_object_get(obj, "env"), *v;
	const char *k;

	*out = NULL;
	if (!env || json_is_null(env))
		return 0;
	if (!json_is_object(env) || json_object_size(env) > MAX_ENV_VARS)
		return api_fail(e, 400, "invalid_argument", "env",
				"env: must be an object of at most %d NAME: \"value\" pairs",
				MAX_ENV_VARS);
	json_object_foreach(env, k, v) {
		if (!env_name_ok(k) || strlen(k) > 256)
			return api_fail(e, 400, "invalid_argument", "env",
					"env: '%.60s' is not a valid variable name", k);
		if (!json_is_string(v) || json_string_length(v) > MAX_STRING ||
		    strlen(json_string_value(v)) != json_string_length(v))
			return api_fail(e, 400, "invalid_argument", "env",
					"env: %.60s: value must be a string of at most %d bytes",
					k, MAX_STRING);
	}
	*out = env;
	return 0;
}

int parse_create(json_t *body, struct create_req *r, struct api_error *e)
{
	static const char *const fields[] = { "template", "cpus", "memory_mib", "timeout_s",
					      "env", "metadata", "on_timeout", "snapshot", "network",
					      NULL };
	const char *tmpl, *on_timeout, *snap;
	json_t *md, *net;

	memset(r, 0, sizeof(*r));
	if (json_only_fields(body, fields, e) || json_opt_string(body, "template", 63, &tmpl, e) ||
	    json_opt_uint(body, "cpus", 1, MAX_CPUS, 1, &r->cpus, e) ||
	    json_opt_uint(body, "memory_mib", MIN_MEMORY_MIB, MAX_MEMORY_MIB, 256, &r->memory_mib, e) ||
	    json_opt_uint(body, "timeout_s", 1, MAX_TIMEOUT_S, 300, &r->timeout_s, e) ||
	    json_opt_env(body, &r->env, e))
		return -1;
	if (tmpl && !name_ok(tmpl, false))
		return api_fail(e, 400, "invalid_argument", "template",
				"template: must be a name of [a-z0-9._-]");
	snprintf(r->template, sizeof(r->template), "%s", tmpl ? tmpl : "base");
	md = json_object_get(body, "metadata");
	if (md && !json_is_null(md)) {
		if (check_metadata(md, e))
			return -1;
		r->metadata = md;
	}
	if (json_opt_string(body, "on_timeout", 16, &on_timeout, e))
		return -1;
	if (on_timeout && strcmp(on_timeout, "kill") && strcmp(on_timeout, "pause"))
		return api_fail(e, 400, "invalid_argument", "on_timeout",
				"on_timeout: must be \"kill\" or \"pause\"");
	r->pause_on_timeout = on_timeout && !strcmp(on_timeout, "pause");
	if (json_opt_string(body, "snapshot", 63, &snap, e))
		return -1;
	if (snap) {
		/* The snapshot fixes the image and the shape: naming them too is a mistake. */
		if (tmpl || json_object_get(body, "cpus") || json_object_get(body, "memory_mib"))
			return api_fail(e, 400, "invalid_argument", "snapshot",
					"snapshot: a sandbox made from a snapshot takes its template, "
					"cpus and memory_mib from it; do not give them");
		if (!name_ok(snap, false))
			return api_fail(e, 400, "invalid_argument", "snapshot",
					"snapshot: must be a snapshot id");
		snprintf(r->snapshot, sizeof(r->snapshot), "%s", snap);
	}
	/* Checked in full by network.c; null and false mean no network at all. */
	net = json_object_get(body, "network");
	if (net && !json_is_null(net) && !json_is_false(net))
		r->network = net;	/* with a snapshot, checked against it (sandbox.c) */
	return 0;
}

bool guest_path_ok(const char *p)
{
	return p && p[0] == '/' && strlen(p) < 4096;
}

char **env_strv(json_t *env)
{
	size_t n = env ? json_object_size(env) : 0, i = 0;
	char **v = calloc(n + 1, sizeof(*v));
	const char *k;
	json_t *val;

	if (!v || !env)
		return v;
	json_object_foreach(env, k, val) {
		if (asprintf(&v[i], "%s=%s", k, json_string_value(val)) < 0) {
			v[i] = NULL;
			strv_free(v);
			return NULL;
		}
		i++;
	}
	return v;
}

void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

static int get_argv(json_t *cmd, struct exec_req *r, struct api_error *e)
{
	size_t n = json_array_size(cmd), i;
	json_t *v;

	if (!json_is_array(cmd) || n == 0 || n > MAX_ARGV)
		return api_fail(e, 400, "invalid_argument", "cmd",
				"cmd: must be an array of 1 to %d strings", MAX_ARGV);
	r->argv = calloc(n + 1, sizeof(*r->argv));
	if (!r->argv)
		return api_fail(e, 500, "internal", NULL, "out of memory");
	json_array_foreach(cmd, i, v) {
		if (!json_is_string(v) || json_string_length(v) > MAX_STRING ||
		    strlen(json_string_value(v)) != json_string_length(v) ||
		    (i == 0 && json_string_length(v) == 0))
			return api_fail(e, 400, "invalid_argument", "cmd",
					"cmd[%zu]: must be a string of at most %d bytes "
					"(the first not empty)", i, MAX_STRING);
		r->argv[i] = json_string_value(v);
	}
	return 0;
}

int parse_exec(json_t *body, struct exec_req *r, struct api_error *e)
{
	static const char *const fields[] = { "cmd", "shell", "env", "cwd", "user", "timeout_s",
					      NULL };
	json_t *cmd = json_object_get(body, "cmd"), *env;

	memset(r, 0, sizeof(*r));
	if (json_only_fields(body, fields, e) || json_opt_string(body, "shell", MAX_SHELL, &r->shell, e) ||
	    json_opt_string(body, "cwd", MAX_STRING - 1, &r->cwd, e) ||
	    json_opt_string(body, "user", 255, &r->user, e) ||
	    json_opt_uint(body, "timeout_s", 1, MAX_EXEC_TIMEOUT_S, 600, &r->timeout_s, e) ||
	    json_opt_env(body, &env, e))
		return -1;
	if (cmd && json_is_null(cmd))
		cmd = NULL;
	if (!cmd == !r->shell)
		return api_fail(e, 400, "invalid_argument", "cmd",
				"cmd: give exactly one of cmd (an array) and shell (a string)");
	if (r->cwd && !guest_path_ok(r->cwd))
		return api_fail(e, 400, "invalid_argument", "cwd", "cwd: must be an absolute path");
	if (cmd && get_argv(cmd, r, e))
		return -1;
	r->env = env_strv(env);
	if (!r->env)
		return api_fail(e, 500, "internal", NULL, "out of memory");
	return 0;
}

void exec_req_free(struct exec_req *r)
{
	free(r->argv);
	strv_free(r->env);
	r->argv = NULL;
	r->env = NULL;
}

int parse_timeout(json_t *body, unsigned *timeout_s, struct api_error *e)
{
	static const char *const fields[] = { "timeout_s", NULL };

	if (json_only_fields(body, fields, e))
		return -1;
	if (!json_object_get(body, "timeout_s"))
		return api_fail(e, 400, "invalid_argument", "timeout_s", "timeout_s: required");
	return json_opt_uint(body, "timeout_s", 1, MAX_TIMEOUT_S, 0, timeout_s, e);
}

static int get_currency(json_t *body, char *out, size_t len, struct api_error *e)
{
	const char *c;

	if (json_opt_string(body, "currency", 8, &c, e))
		return -1;
	if (c && strcmp(c, "USDC") && strcmp(c, "USDT"))
		return api_fail(e, 400, "invalid_argument", "currency",
				"currency: must be \"USDC\" or \"USDT\"");
	snprintf(out, len, "%s", c ? c : "USDC");
	return 0;
}

int parse_agent(json_t *body, struct agent_req *r, struct api_error *e)
{
	static const char *const fields[] = { "name", "currency", "max_sandboxes", "max_cpus",
					      "max_memory_mib", "max_total_memory_mib", NULL };
	const char *name;

	memset(r, 0, sizeof(*r));
	if (json_only_fields(body, fields, e) || json_opt_string(body, "name", 63, &name, e) ||
	    get_currency(body, r->currency, sizeof(r->currency), e) ||
	    json_opt_uint(body, "max_sandboxes", 0, 10000, 10, &r->max_sandboxes, e) ||
	    json_opt_uint(body, "max_cpus", 1, MAX_CPUS, 4, &r->max_cpus, e) ||
	    json_opt_uint(body, "max_memory_mib", MIN_MEMORY_MIB, MAX_MEMORY_MIB, 4096,
		     &r->max_memory_mib, e) ||
	    json_opt_uint(body, "max_total_memory_mib", MIN_MEMORY_MIB, 64 * MAX_MEMORY_MIB, 0,
		     &r->max_total_memory_mib, e))
		return -1;
	if (name && !name_ok(name, true))
		return api_fail(e, 400, "invalid_argument", "name",
				"name: must be letters, digits, '.', '_' or '-'");
	snprintf(r->name, sizeof(r->name), "%s", name ? name : "");
	return 0;
}

int parse_credit(json_t *body, int64_t *amount_micro, char *currency, size_t len,
		 struct api_error *e)
{
	static const char *const fields[] = { "amount_micro", "currency", NULL };
	json_t *v = json_object_get(body, "amount_micro");

	if (json_only_fields(body, fields, e) || get_currency(body, currency, len, e))
		return -1;
	/* At most a trillion USDC at once: sums of many credits stay far from overflow. */
	if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
	    json_integer_value(v) > 1000000000000000000LL)
		return api_fail(e, 400, "invalid_argument", "amount_micro",
				"amount_micro: must be an integer from 1 to 10^18");
	*amount_micro = json_integer_value(v);
	return 0;
}

char *base64_encode(const uint8_t *d, size_t len)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = d[i] << 16 | d[i + 1] << 8 | d[i + 2];

		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
		*o++ = tab[v & 63];
	}
	if (i < len) {
		uint32_t v = d[i] << 16 | (i + 1 < len ? d[i + 1] << 8 : 0);

		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = 0;
	return out;
}

json_t *bytes_json(const uint8_t *data, size_t len, bool *base64)
{
	json_t *s = json_stringn((const char *)data, len);	/* NULL unless valid UTF-8 */
	char *b;

	*base64 = false;
	if (s)
		return s;
	b = base64_encode(data, len);
	if (!b)
		return NULL;
	*base64 = true;
	s = json_string(b);
	free(b);
	return s;
}

void output_keep(struct kept_output *o, const uint8_t *data, size_t len)
{
	size_t room = OUTPUT_KEPT_MAX - o->len, n = len < room ? len : room;
	uint8_t *grown;

	o->total += len;
	if (!n || !(grown = realloc(o->data, o->len + n)))
		return;
	o->data = grown;
	memcpy(o->data + o->len, data, n);
	o->len += n;
}

void output_put(json_t *res, const char *name, struct kept_output *o)
{
	char key[32];
	bool b64;

	json_object_set_new(res, name, bytes_json(o->data ? o->data : (uint8_t *)"", o->len, &b64));
	snprintf(key, sizeof(key), "%s_encoding", name);
	json_object_set_new(res, key, json_string(b64 ? "base64" : "utf-8"));
	snprintf(key, sizeof(key), "%s_truncated", name);
	json_object_set_new(res, key, json_boolean(o->total > o->len));
	free(o->data);
	o->data = NULL;
}

const char *iso_time(int64_t ms, char *buf, size_t len)
{
	time_t t = ms / 1000;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}
