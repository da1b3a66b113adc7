/*
 * api_sandboxes.c - /v1/sandboxes: create, list, get, delete, pause, resume, timeout, exec.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../client/agent_client.h"
#include "../host/vmctl.h"
#include "api_parse.h"
#include "db.h"
#include "http.h"
#include "sandbox.h"

#define MAX_LIST_LIMIT	1000

int own_sandbox(struct request *r, struct sandbox *s)
{
	/* Another agent's sandbox is "not found", exactly like one that never existed. */
	if (db_sandbox_get(r->m.id, r->agent.id, s) == 0)
		return 0;
	return api_fail(&r->e, 404, "not_found", NULL, "no sandbox %s", r->m.id);
}

static json_t *parse_body(struct request *r)
{
	return body_object(r->body, r->len, &r->e);
}

static enum MHD_Result create(struct request *r)
{
	struct create_req req;
	json_t *body = parse_body(r), *out = NULL;
	enum MHD_Result ret;

	if (!body)
		return reply_error(r, &r->e);
	if (parse_create(body, &req, &r->e) || sandbox_create(&r->agent, &req, &out, &r->e))
		ret = reply_error(r, &r->e);
	else
		ret = reply_json(r, 201, out);
	json_decref(body);
	return ret;
}

static bool state_name_ok(const char *s)
{
	static const char *const states[] = { "creating", "running", "pausing", "paused",
					      "resuming", "deleting", "deleted", "expired", "failed",
					      "lost", NULL };

	for (const char *const *p = states; *p; p++)
		if (!strcmp(*p, s))
			return true;
	return false;
}

struct filters {
	struct list_filter f[MAX_LIST_FILTERS];
	unsigned n;
	struct api_error *e;
	bool bad;
};

/* metadata.KEY=VALUE query arguments become list filters. */
static enum MHD_Result on_arg(void *cls, enum MHD_ValueKind kind, const char *key,
			      const char *value)
{
	struct filters *fs = cls;

	(void)kind;
	if (fs->bad || strncmp(key, "metadata.", 9))
		return MHD_YES;
	if (!metadata_key_ok(key + 9) || !value || strlen(value) > MAX_METADATA_VALUE) {
		fs->bad = true;
		api_fail(fs->e, 400, "invalid_argument", "metadata",
			 "metadata.KEY=VALUE: KEY must be 1 to %d bytes of [A-Za-z0-9._-] and "
			 "VALUE at most %d bytes", MAX_METADATA_KEY, MAX_METADATA_VALUE);
		return MHD_NO;
	}
	if (fs->n == MAX_LIST_FILTERS) {
		fs->bad = true;
		api_fail(fs->e, 400, "invalid_argument", "metadata",
			 "metadata: at most %d metadata.KEY=VALUE filters", MAX_LIST_FILTERS);
		return MHD_NO;
	}
	fs->f[fs->n].key = key + 9;
	fs->f[fs->n++].value = value;
	return MHD_YES;
}

static enum MHD_Result list(struct request *r)
{
	struct filters fs = { .e = &r->e };
	json_t *res;

	const char *state = query_arg(r, "state"), *limit_s = query_arg(r, "limit");
	const char *after = query_arg(r, "after");
	unsigned long limit = 100;
	char *end;

	if (state && !state_name_ok(state)) {
		api_fail(&r->e, 400, "invalid_argument", "state", "state: no such state '%.40s'",
			 state);
		return reply_error(r, &r->e);
	}
	if (limit_s) {
		limit = strtoul(limit_s, &end, 10);
		if (!*limit_s || *end || *limit_s == '-' || limit < 1 || limit > MAX_LIST_LIMIT) {
			api_fail(&r->e, 400, "invalid_argument", "limit",
				 "limit: must be an integer from 1 to %d", MAX_LIST_LIMIT);
			return reply_error(r, &r->e);
		}
	}
	if (after && strlen(after) >= ROUTE_ID_MAX) {
		api_fail(&r->e, 400, "invalid_argument", "after", "after: not a sandbox id");
		return reply_error(r, &r->e);
	}
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, on_arg, &fs);
	if (fs.bad)
		return reply_error(r, &r->e);
	res = db_sandbox_list(r->agent.id, state, limit, after, fs.f, fs.n);
	if (!res) {
		api_fail(&r->e, 500, "internal", NULL, "cannot list sandboxes");
		return reply_error(r, &r->e);
	}
	return reply_json(r, 200, res);
}

static enum MHD_Result set_timeout(struct request *r, const struct sandbox *s)
{
	json_t *body = parse_body(r);
	unsigned timeout_s;
	int bad;

	if (!body)
		return reply_error(r, &r->e);
	bad = parse_timeout(body, &timeout_s, &r->e);
	json_decref(body);
	if (bad)
		return reply_error(r, &r->e);
	if (strcmp(s->state, "running") && strcmp(s->state, "paused")) {
		api_fail(&r->e, 409, "invalid_state", NULL, "the sandbox is %s", s->state);
		return reply_error(r, &r->e);
	}
	db_set_timeout(s->id, timeout_s, now_ms() + (int64_t)timeout_s * 1000);
	return reply_json(r, 200, db_sandbox_json(s->id));
}

/* Run the command to the end, collecting its output; the JSON result or NULL with e set. */
static json_t *run_exec(const struct sandbox *s, const struct exec_req *x, struct api_error *e)
{
	struct agent_exec ax = { .argv = (char *const *)x->argv, .shell = x->shell,
				 .env = x->env, .cwd = x->cwd, .user = x->user,
				 .timeout_ms = x->timeout_s * 1000 };
	struct agent_error ae = { 0 };
	char dir[PATH_MAX], sock[PATH_MAX];
	uint8_t *buf = NULL;
	size_t cap = 0;
	uint32_t pid;
	json_t *res = NULL;
	int fd;

	sandbox_dir(s->id, dir, sizeof(dir));
	vm_sock_path(dir, sock, sizeof(sock));
	fd = agent_connect(sock, PROTO_AGENT_PORT, 10000, &ae);
	if (fd < 0) {
		api_fail(e, 502, "agent_unreachable", NULL, "guest agent: %s", ae.message);
		return NULL;
	}
	if (agent_exec_start(fd, &ax, &pid, &ae)) {
		api_fail(e, 400, "exec_failed", x->shell ? "shell" : "cmd", "%s%s%s", ae.path,
			 ae.path[0] ? ": " : "", ae.message);
		goto out;
	}
	res = collect_process(fd, &buf, &cap, e);
out:
	free(buf);
	close(fd);
	return res;
}

static enum MHD_Result exec(struct request *r, const struct sandbox *s)
{
	json_t *body = parse_body(r), *res = NULL;
	struct exec_req x;

	if (!body)
		return reply_error(r, &r->e);
	if (parse_exec(body, &x, &r->e) == 0) {
		if (strcmp(s->state, "running"))
			api_fail(&r->e, 409, "invalid_state", NULL, "the sandbox is %s, not running",
				 s->state);
		else
			res = run_exec(s, &x, &r->e);
	}
	exec_req_free(&x);
	json_decref(body);
	return res ? reply_json(r, 200, res) : reply_error(r, &r->e);
}

enum MHD_Result api_sandboxes(struct request *r)
{
	struct sandbox s;
	int bad = 0;

	if (r->m.route == R_SANDBOXES_CREATE)
		return create(r);
	if (r->m.route == R_SANDBOXES_LIST)
		return list(r);
	if (own_sandbox(r, &s))
		return reply_error(r, &r->e);
	switch (r->m.route) {
	case R_SANDBOX_GET:
		return reply_json(r, 200, db_sandbox_json(s.id));
	case R_SANDBOX_DELETE:
		bad = sandbox_delete(&s, &r->e);
		break;
	case R_SANDBOX_PAUSE:
		bad = sandbox_pause(&s, NULL, &r->e);
		break;
	case R_SANDBOX_RESUME:
		bad = sandbox_resume(&s, &r->e);
		break;
	case R_SANDBOX_TIMEOUT:
		return set_timeout(r, &s);
	case R_SANDBOX_EXEC:
		return exec(r, &s);
	default:
		api_fail(&r->e, 500, "internal", NULL, "unrouted request");
		return reply_error(r, &r->e);
	}
	return bad ? reply_error(r, &r->e) : reply_json(r, 200, db_sandbox_json(s.id));
}
