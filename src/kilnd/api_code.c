/*
 * api_code.c - the code interpreter over HTTP.  POST /v1/sandboxes/{id}/code runs a cell in
 * one of the sandbox's code contexts (long-lived interpreters in the guest, src/guest/context.c)
 * and answers the whole outcome as one JSON object, or with "stream": true one NDJSON line per
 * event as the guest sends it; /v1/sandboxes/{id}/contexts creates, lists, restarts,
 * interrupts and deletes contexts.
 *
 * A cell without context_id runs in the sandbox's default context: the warm one a clone of a
 * warm snapshot already has (DIR/context, written by src/host/template.c), else a python
 * context created on first use and remembered in the same file, so `kiln code --dir` and the
 * API share it.  A cell's timeout interrupts it in the guest (KeyboardInterrupt): the context
 * keeps its state.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../client/agent_client.h"
#include "../host/vmctl.h"
#include "api_code.h"
#include "code_json.h"

#define MAX_CELL_RESULTS (32u << 20)	/* all results of a cell together */

/* Serialises making a sandbox's default context: two first cells must not make two. */
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;

int sandbox_agent(const struct sandbox *s, struct api_error *e)
{
	struct agent_error ae = { 0 };
	char dir[PATH_MAX], sock[PATH_MAX];
	int fd;

	if (strcmp(s->state, "running"))
		return api_fail(e, 409, "invalid_state", NULL, "the sandbox is %s, not running",
				s->state);
	sandbox_dir(s->id, dir, sizeof(dir));
	vm_sock_path(dir, sock, sizeof(sock));
	fd = agent_connect(sock, PROTO_AGENT_PORT, 10000, &ae);
	if (fd < 0)
		return api_fail(e, 502, "agent_unreachable", NULL, "guest agent: %s", ae.message);
	return fd;
}

/* A context operation's failure as an API error. */
static int context_error(struct api_error *e, const struct agent_error *ae, const char *id)
{
	if (ae->err == ESRCH && strstr(ae->message, "no such context"))
		return api_fail(e, 404, "context_not_found", "context_id", "no context %s", id);
	if (ae->err == ESRCH)
		return api_fail(e, 409, "context_not_running", "context_id", "%s: %s", id,
				ae->message);
	if (ae->err == EINVAL || ae->err == ENOENT || ae->err == ENOTDIR || ae->err == EACCES)
		return api_fail(e, 400, "invalid_argument", NULL, "%s%s%s", ae->path,
				ae->path[0] ? ": " : "", ae->message);
	if (ae->err == ETIMEDOUT)
		return api_fail(e, 504, "context_stopped", "context_id", "%s", ae->message);
	return api_fail(e, 502, "context_failed", NULL, "%s", ae->message);
}

static void default_path(const struct sandbox *s, char *path, size_t len)
{
	char dir[PATH_MAX];

	sandbox_dir(s->id, dir, sizeof(dir));
	snprintf(path, len, "%s/context", dir);
}

/* The sandbox's default context id from DIR/context; false if it has none. */
static bool read_default(const struct sandbox *s, char *id)
{
	char path[PATH_MAX + 16], buf[CONTEXT_ID_LEN + 8] = "";
	FILE *f;

	default_path(s, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	if (!context_id_ok(buf))
		return false;
	memcpy(id, buf, CONTEXT_ID_LEN + 1);
	return true;
}

static int write_default(const struct sandbox *s, const char *id)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 32];
	FILE *f;

	default_path(s, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		return -1;
	fprintf(f, "%s\n", id);
	if (fclose(f) || rename(tmp, path)) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static json_t *context_json(const struct agent_context *c, bool is_default)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:I, s:b, s:I, s:b}", "id", c->id,
			 "language", c->language, "cwd", c->cwd, "user", c->user,
			 "pid", (json_int_t)c->pid, "running", c->running,
			 "created_at", (json_int_t)c->created, "default", is_default);
}

static int create_context(const struct sandbox *s, const struct context_req *q,
			  struct agent_context *c, struct api_error *e)
{
	struct agent_error ae = { 0 };
	int fd = sandbox_agent(s, e), r;

	if (fd < 0)
		return -1;
	r = agent_context_create(fd, q->language, q->cwd, q->user, q->env, c, &ae);
	close(fd);
	return r ? context_error(e, &ae, "new context") : 0;
}

/* The default context of s, made (python, the image's default user) if it has none yet. */
static int default_context(const struct sandbox *s, char *id, struct api_error *e)
{
	struct context_req q = { 0 };
	struct agent_context c;
	int ret = 0;

	pthread_mutex_lock(&default_lock);
	if (read_default(s, id))
		goto out;
	ret = create_context(s, &q, &c, e);
	if (ret)
		goto out;
	memcpy(id, c.id, CONTEXT_ID_LEN + 1);
	if (write_default(s, id))
		ret = api_fail(e, 500, "internal", NULL, "cannot record the default context: %s",
			       strerror(errno));
out:
	pthread_mutex_unlock(&default_lock);
	return ret;
}

static const char *status_name(uint8_t status)
{
	switch (status) {
	case CELL_OK: return "ok";
	case CELL_ERROR: return "error";
	case CELL_INTERRUPTED: return "interrupted";
	case CELL_TIMEOUT: return "timeout";
	default: return "unknown";
	}
}

/* A result's data as JSON: text as a string, JSON as itself, anything else base64. */
static json_t *result_data(const char *mime, const uint8_t *data, size_t len)
{
	bool b64;

	if (!strcmp(mime, "application/json")) {
		json_t *v = json_loadb((const char *)data, len, JSON_DECODE_ANY, NULL);

		if (v)
			return v;
	}
	if (!strncmp(mime, "text/", 5) || !strcmp(mime, "application/json") ||
	    !strcmp(mime, "image/svg+xml")) {
		json_t *v = bytes_json(data, len, &b64);

		if (!b64)
			return v;
		json_decref(v);
	}
	{
		char *s = base64_encode(data, len);
		json_t *v = s ? json_string(s) : NULL;

		free(s);
		return v;
	}
}

static json_t *error_json(const struct agent_cell_event *ev)
{
	return json_pack("{s:s, s:s, s:s}", "name", ev->ename, "value",
			 ev->evalue ? ev->evalue : "", "traceback",
			 ev->traceback ? ev->traceback : "");
}

/* The text of bytes for an output line or field, and whether it had to be base64. */
static void put_text(json_t *o, const char *key, const uint8_t *data, size_t len)
{
	char ekey[48];
	bool b64;

	json_object_set_new(o, key, bytes_json(data ? data : (const uint8_t *)"", len, &b64));
	if (b64) {
		snprintf(ekey, sizeof(ekey), "%s_encoding", key);
		json_object_set_new(o, ekey, json_string("base64"));
	}
}

/* Connect and send the cell; the fd or -1 with e set. */
static int start_cell(const struct sandbox *s, const struct code_req *q, const char *id,
		      struct api_error *e)
{
	struct agent_error ae = { 0 };
	int fd = sandbox_agent(s, e);

	if (fd < 0)
		return -1;
	if (agent_context_run(fd, id, q->code, q->len, q->timeout_s * 1000, &ae)) {
		close(fd);
		return context_error(e, &ae, id);
	}
	return fd;
}

/* The whole cell as one JSON object. */
static json_t *run_cell(int fd, const char *id, struct api_error *e)
{
	struct agent_cell_event ev = { 0 };
	struct kept_output out = { 0 }, err = { 0 };
	json_t *results = json_array(), *cur = NULL, *error = json_null(), *res = NULL;
	size_t result_bytes = 0;
	uint32_t cur_index = 0;
	uint8_t *buf = NULL;
	size_t cap = 0;

	while (agent_next_cell_event(fd, &ev, &buf, &cap) == 0) {
		switch (ev.type) {
		case CEV_STDOUT:
		case CEV_STDERR:
			output_keep(ev.type == CEV_STDOUT ? &out : &err, ev.data, ev.len);
			continue;
		case CEV_RESULT:
			result_bytes += ev.len;
			if (result_bytes > MAX_CELL_RESULTS)
				continue;
			if (!cur || ev.index != cur_index) {
				cur = json_object();
				json_array_append_new(results, cur);
				cur_index = ev.index;
			}
			json_object_set_new(cur, ev.mime, result_data(ev.mime, ev.data, ev.len));
			continue;
		case CEV_EXCEPTION:
			json_decref(error);
			error = error_json(&ev);
			continue;
		case CEV_ERROR:
			context_error(e, &ev.error, id);
			goto out;
		case CEV_DONE:
			break;
		}
		/* The value of the last expression comes last, and only it has text/plain. */
		json_t *last = json_array_get(results, json_array_size(results) - 1);
		json_t *value = last ? json_object_get(last, "text/plain") : NULL;

		res = json_pack("{s:s, s:O, s:o, s:O, s:I, s:s, s:b, s:b}", "context_id", id,
				"results", results, "value", value ? json_incref(value) : json_null(),
				"error", error, "execution_count", (json_int_t)ev.exec_count,
				"status", status_name(ev.status),
				"stdout_truncated", out.total > out.len,
				"stderr_truncated", err.total > err.len);
		if (res) {
			put_text(res, "stdout", out.data, out.len);
			put_text(res, "stderr", err.data, err.len);
		}
		goto out;
	}
	api_fail(e, 502, "agent_unreachable", NULL, "connection to the guest agent lost");
out:
	agent_cell_event_free(&ev);
	json_decref(results);
	json_decref(error);
	free(buf);
	free(out.data);
	free(err.data);
	return res;
}

/* A streamed cell: one NDJSON line per event, read from the guest as the client reads. */
struct stream {
	int fd;
	char id[CONTEXT_ID_LEN + 1];
	struct agent_cell_event ev;
	uint8_t *buf;
	size_t cap;
};

/* The next event of the cell; done set with the last. */
static json_t *stream_event(void *cls, bool *done)
{
	struct stream *st = cls;
	struct agent_cell_event *ev = &st->ev;
	struct api_error e;
	json_t *o;

	if (agent_next_cell_event(st->fd, ev, &st->buf, &st->cap)) {
		*done = true;
		return json_pack("{s:s, s:{s:s, s:s}}", "type", "failure", "error", "code",
				 "agent_unreachable", "message", "connection to the guest agent lost");
	}
	switch (ev->type) {
	case CEV_STDOUT:
	case CEV_STDERR:
		o = json_pack("{s:s}", "type", ev->type == CEV_STDOUT ? "stdout" : "stderr");
		put_text(o, "text", ev->data, ev->len);
		return o;
	case CEV_RESULT:
		return json_pack("{s:s, s:I, s:s, s:o}", "type", "result", "index",
				 (json_int_t)ev->index, "mime", ev->mime,
				 "data", result_data(ev->mime, ev->data, ev->len));
	case CEV_EXCEPTION:
		o = error_json(ev);
		json_object_set_new(o, "type", json_string("error"));
		return o;
	case CEV_ERROR:
		*done = true;
		context_error(&e, &ev->error, st->id);
		return json_pack("{s:s, s:{s:s, s:s}}", "type", "failure", "error", "code", e.code,
				 "message", e.message);
	case CEV_DONE:
		*done = true;
		return json_pack("{s:s, s:s, s:I, s:s}", "type", "done", "context_id", st->id,
				 "execution_count", (json_int_t)ev->exec_count,
				 "status", status_name(ev->status));
	}
	return json_object();
}

static void stream_free(void *cls)
{
	struct stream *st = cls;

	/* A client gone mid-cell: the cell runs on in the guest, its output unheard. */
	close(st->fd);
	agent_cell_event_free(&st->ev);
	free(st->buf);
	free(st);
}

/* Does context id exist?  Checked before a stream starts, to answer 404 rather than a 200
 * whose first line is a failure. */
struct find_ctx {
	const char *id;
	struct agent_context *out;
	bool found;
};

static void on_find(const struct agent_context *c, void *ctx)
{
	struct find_ctx *f = ctx;

	if (strcmp(c->id, f->id))
		return;
	f->found = true;
	if (f->out)
		*f->out = *c;
}

/* Context id's record (out may be NULL); 404 context_not_found if there is none. */
static int context_lookup(const struct sandbox *s, const char *id, struct agent_context *out,
			  struct api_error *e)
{
	struct agent_error ae = { 0 };
	struct find_ctx f = { id, out, false };
	int fd = sandbox_agent(s, e), r;

	if (fd < 0)
		return -1;
	r = agent_context_list(fd, on_find, &f, &ae);
	close(fd);
	if (r)
		return context_error(e, &ae, id);
	if (!f.found)
		return api_fail(e, 404, "context_not_found", "context_id", "no context %s", id);
	return 0;
}

static enum MHD_Result reply_stream(struct request *r, int fd, const char *id)
{
	struct stream *st = calloc(1, sizeof(*st));

	if (!st) {
		close(fd);
		return MHD_NO;
	}
	st->fd = fd;
	snprintf(st->id, sizeof(st->id), "%s", id);
	return reply_ndjson(r, stream_event, stream_free, st, true);
}

static enum MHD_Result run_code(struct request *r, const struct sandbox *s)
{
	json_t *body = body_object(r->body, r->len, &r->e), *res = NULL;
	char id[CONTEXT_ID_LEN + 1];
	struct code_req q;
	int fd = -1;

	if (!body)
		return reply_error(r, &r->e);
	if (parse_code(body, &q, &r->e))
		goto fail;
	if (q.context_id[0])
		memcpy(id, q.context_id, sizeof(id));
	else if (default_context(s, id, &r->e))
		goto fail;
	container_touch(s->id);
	if (q.stream && q.context_id[0] && context_lookup(s, id, NULL, &r->e))
		goto fail;
	fd = start_cell(s, &q, id, &r->e);
	if (fd < 0)
		goto fail;
	if (q.stream) {
		json_decref(body);
		return reply_stream(r, fd, id);
	}
	res = run_cell(fd, id, &r->e);
	close(fd);
	container_touch(s->id);
	json_decref(body);
	return res ? reply_json(r, 200, res) : reply_error(r, &r->e);
fail:
	json_decref(body);
	return reply_error(r, &r->e);
}

static enum MHD_Result new_context(struct request *r, const struct sandbox *s)
{
	json_t *body = body_object(r->body, r->len, &r->e);
	struct context_req q;
	struct agent_context c;
	int bad;

	if (!body)
		return reply_error(r, &r->e);
	/* CONTEXT_CREATE answers the id and pid; the listing has the rest. */
	bad = parse_context(body, &q, &r->e) || create_context(s, &q, &c, &r->e) ||
	      context_lookup(s, c.id, &c, &r->e);
	strv_free(q.env);
	json_decref(body);
	if (bad)
		return reply_error(r, &r->e);
	return reply_json(r, 201, context_json(&c, false));
}

struct list_ctx {
	json_t *list;
	const char *def;
};

static void on_context(const struct agent_context *c, void *ctx)
{
	struct list_ctx *l = ctx;

	json_array_append_new(l->list, context_json(c, l->def && !strcmp(l->def, c->id)));
}

static enum MHD_Result list_contexts(struct request *r, const struct sandbox *s)
{
	struct agent_error ae = { 0 };
	char def[CONTEXT_ID_LEN + 1];
	struct list_ctx l = { json_array(), read_default(s, def) ? def : NULL };
	int fd = sandbox_agent(s, &r->e), bad;

	if (fd < 0) {
		json_decref(l.list);
		return reply_error(r, &r->e);
	}
	bad = agent_context_list(fd, on_context, &l, &ae);
	close(fd);
	if (bad) {
		json_decref(l.list);
		context_error(&r->e, &ae, "");
		return reply_error(r, &r->e);
	}
	return reply_json(r, 200, json_pack("{s:o}", "contexts", l.list));
}

/* DELETE, restart, interrupt of context r->m.sub. */
static enum MHD_Result context_op(struct request *r, const struct sandbox *s, uint8_t type)
{
	struct agent_error ae = { 0 };
	char def[CONTEXT_ID_LEN + 1], path[PATH_MAX + 16];
	const char *id = r->m.sub;
	uint32_t pid = 0;
	int fd, bad;

	if (!context_id_ok(id)) {
		api_fail(&r->e, 404, "context_not_found", "context_id", "no context %s", id);
		return reply_error(r, &r->e);
	}
	fd = sandbox_agent(s, &r->e);
	if (fd < 0)
		return reply_error(r, &r->e);
	bad = agent_context_op(fd, type, id, &pid, &ae);
	close(fd);
	if (bad) {
		context_error(&r->e, &ae, id);
		return reply_error(r, &r->e);
	}
	if (type == MSG_CONTEXT_DELETE) {
		/* The default is made anew on the next cell without context_id. */
		pthread_mutex_lock(&default_lock);
		if (read_default(s, def) && !strcmp(def, id)) {
			default_path(s, path, sizeof(path));
			unlink(path);
		}
		pthread_mutex_unlock(&default_lock);
		return reply_json(r, 200, json_pack("{s:s, s:b}", "id", id, "deleted", 1));
	}
	if (type == MSG_CONTEXT_RESTART)
		return reply_json(r, 200, json_pack("{s:s, s:I}", "id", id, "pid",
						    (json_int_t)pid));
	return reply_json(r, 200, json_pack("{s:s, s:b}", "id", id, "interrupted", 1));
}

enum MHD_Result api_code(struct request *r)
{
	struct sandbox s;

	if (own_sandbox(r, &s))
		return reply_error(r, &r->e);
	switch (r->m.route) {
	case R_SANDBOX_CODE:
		return run_code(r, &s);
	case R_CONTEXTS_CREATE:
		return new_context(r, &s);
	case R_CONTEXTS_LIST:
		return list_contexts(r, &s);
	case R_CONTEXT_DELETE:
		return context_op(r, &s, MSG_CONTEXT_DELETE);
	case R_CONTEXT_RESTART:
		return context_op(r, &s, MSG_CONTEXT_RESTART);
	case R_CONTEXT_INTERRUPT:
		return context_op(r, &s, MSG_CONTEXT_INTERRUPT);
	default:
		api_fail(&r->e, 500, "internal", NULL, "unrouted request");
		return reply_error(r, &r->e);
	}
}
