/*
 * api_parse.c - see api_parse.h.
 */
#include "api_parse.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const process_only[] = { "background", "stream", "pty", "rows", "cols",
					    "stdin", NULL };

/* An optional boolean; def when absent or null. */
static int get_bool(json_t *obj, const char *name, bool def, bool *out, struct api_error *e)
{
	json_t *v = json_object_get(obj, name);

	*out = def;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return api_fail(e, 400, "invalid_argument", name, "%s: must be true or false", name);
	*out = json_is_true(v);
	return 0;
}

static int get_dim(json_t *obj, const char *name, unsigned def, unsigned *out,
		   struct api_error *e)
{
	json_t *v = json_object_get(obj, name);

	*out = def;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000)
		return api_fail(e, 400, "invalid_argument", name,
				"%s: must be an integer from 1 to 1000", name);
	*out = (unsigned)json_integer_value(v);
	return 0;
}

/* "stdin": true keeps it open for /stdin; a string is fed at the start, then closed. */
static int get_stdin(json_t *body, struct process_req *r, struct api_error *e)
{
	json_t *v = json_object_get(body, "stdin");

	if (!v || json_is_null(v) || json_is_false(v))
		return 0;
	if (json_is_true(v)) {
		if (!r->background)
			return api_fail(e, 400, "invalid_argument", "stdin",
					"stdin: true (fed later through /stdin) needs "
					"\"background\": true; give a string to feed a foreground "
					"process");
		r->stdin_open = true;
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) > MAX_STDIN_TEXT)
		return api_fail(e, 400, "invalid_argument", "stdin",
				"stdin: must be true or a string of at most %d bytes",
				MAX_STDIN_TEXT);
	r->stdin_data = json_string_value(v);
	r->stdin_len = json_string_length(v);
	return 0;
}

int parse_process(json_t *body, struct process_req *r, struct api_error *e)
{
	json_t *rest;
	int bad;

	memset(r, 0, sizeof(*r));
	if (get_bool(body, "background", false, &r->background, e) ||
	    get_bool(body, "stream", false, &r->stream, e) ||
	    get_bool(body, "pty", false, &r->pty, e) ||
	    get_dim(body, "rows", 24, &r->rows, e) || get_dim(body, "cols", 80, &r->cols, e) ||
	    get_stdin(body, r, e))
		return -1;
	if (r->background && r->stream)
		return api_fail(e, 400, "invalid_argument", "stream",
				"stream: a background process answers its pid; stream its output "
				"with GET .../processes/PID/output");
	/* The rest is exactly an /exec request: a shallow copy shares its strings with body. */
	rest = json_copy(body);
	if (!rest)
		return api_fail(e, 500, "internal", NULL, "out of memory");
	for (const char *const *f = process_only; *f; f++)
		json_object_del(rest, *f);
	bad = parse_exec(rest, &r->x, e);
	json_decref(rest);
	if (bad)
		return -1;
	/* A background process lives as long as the sandbox unless it asked for a limit. */
	if (r->background && !json_is_integer(json_object_get(body, "timeout_s")))
		r->x.timeout_s = 0;
	return 0;
}

void process_req_free(struct process_req *r)
{
	exec_req_free(&r->x);
}

static const struct { const char *name; int sig; } signals[] = {
	{ "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "ILL", SIGILL },
	{ "TRAP", SIGTRAP }, { "ABRT", SIGABRT }, { "BUS", SIGBUS }, { "FPE", SIGFPE },
	{ "KILL", SIGKILL }, { "USR1", SIGUSR1 }, { "SEGV", SIGSEGV }, { "USR2", SIGUSR2 },
	{ "PIPE", SIGPIPE }, { "ALRM", SIGALRM }, { "TERM", SIGTERM }, { "CHLD", SIGCHLD },
	{ "CONT", SIGCONT }, { "STOP", SIGSTOP }, { "TSTP", SIGTSTP }, { "TTIN", SIGTTIN },
	{ "TTOU", SIGTTOU }, { "URG", SIGURG }, { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ },
	{ "VTALRM", SIGVTALRM }, { "PROF", SIGPROF }, { "WINCH", SIGWINCH }, { "IO", SIGIO },
	{ "PWR", SIGPWR }, { "SYS", SIGSYS },
};

int signal_number(const char *name)
{
	char *end;
	long n;

	if (!name || !*name)
		return 0;
	if (*name >= '0' && *name <= '9') {
		n = strtol(name, &end, 10);
		return *end || n < 1 || n > 64 ? 0 : (int)n;
	}
	if (!strncasecmp(name, "SIG", 3))
		name += 3;
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (!strcasecmp(signals[i].name, name))
			return signals[i].sig;
	return 0;
}

const char *signal_name(int sig)
{
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (signals[i].sig == sig)
			return signals[i].name;
	return NULL;
}

int parse_signal(json_t *body, int *sig, struct api_error *e)
{
	json_t *v = json_object_get(body, "signal");
	const char *key;
	json_t *val;

	json_object_foreach(body, key, val)
		if (strcmp(key, "signal"))
			return api_fail(e, 400, "invalid_argument", key, "%.60s: unknown field", key);
	*sig = SIGTERM;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 64) {
		*sig = (int)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v) && json_string_length(v) < 16 &&
	    strlen(json_string_value(v)) == json_string_length(v) &&
	    !(json_string_value(v)[0] >= '0' && json_string_value(v)[0] <= '9')) {
		*sig = signal_number(json_string_value(v));
		if (*sig)
			return 0;
	}
	return api_fail(e, 400, "invalid_argument", "signal",
			"signal: must be a name such as \"TERM\" or \"KILL\", or a number from 1 "
			"to 64");
}

/* A required absolute guest path field. */
static int get_path(json_t *body, const char *name, const char **out, struct api_error *e)
{
	json_t *v = json_object_get(body, name);

	*out = NULL;
	if (!v)
		return api_fail(e, 400, "invalid_argument", name, "%s: required", name);
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
	    !guest_path_ok(json_string_value(v)))
		return api_fail(e, 400, "invalid_argument", name,
				"%s: must be an absolute guest path of at most 4095 bytes", name);
	*out = json_string_value(v);
	return 0;
}

static int only(json_t *body, const char *a, const char *b, struct api_error *e)
{
	const char *key;
	json_t *val;

	json_object_foreach(body, key, val)
		if (strcmp(key, a) && (!b || strcmp(key, b)))
			return api_fail(e, 400, "invalid_argument", key, "%.60s: unknown field", key);
	return 0;
}

int parse_path_body(json_t *body, const char **path, struct api_error *e)
{
	return only(body, "path", NULL, e) ? -1 : get_path(body, "path", path, e);
}

int parse_rename(json_t *body, const char **from, const char **to, struct api_error *e)
{
	if (only(body, "from", "to", e) || get_path(body, "from", from, e) ||
	    get_path(body, "to", to, e))
		return -1;
	return 0;
}

int query_flag(const char *v, bool *out)
{
	*out = false;
	if (!v || !strcmp(v, "0") || !strcmp(v, "false"))
		return 0;
	if (!strcmp(v, "1") || !strcmp(v, "true") || !*v) {
		*out = true;
		return 0;
	}
	return -1;
}

bool metadata_key_ok(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > MAX_METADATA_KEY)
		return false;
	for (; *k; k++)
		if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') ||
		      (*k >= '0' && *k <= '9') || *k == '.' || *k == '_' || *k == '-'))
			return false;
	return true;
}

int check_metadata(json_t *md, struct api_error *e)
{
	const char *k;
	json_t *v;

	if (!json_is_object(md) || json_object_size(md) > MAX_METADATA_KEYS)
		return api_fail(e, 400, "invalid_argument", "metadata",
				"metadata: must be an object of at most %d \"key\": \"value\" "
				"strings", MAX_METADATA_KEYS);
	json_object_foreach(md, k, v) {
		if (!metadata_key_ok(k))
			return api_fail(e, 400, "invalid_argument", "metadata",
					"metadata: key '%.70s' must be 1 to %d bytes of "
					"[A-Za-z0-9._-]", k, MAX_METADATA_KEY);
		if (!json_is_string(v) || json_string_length(v) > MAX_METADATA_VALUE ||
		    strlen(json_string_value(v)) != json_string_length(v))
			return api_fail(e, 400, "invalid_argument", "metadata",
					"metadata: %.64s: value must be a string of at most %d "
					"bytes", k, MAX_METADATA_VALUE);
	}
	return 0;
}
