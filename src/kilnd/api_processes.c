/*
 * api_processes.c - /v1/sandboxes/{id}/processes: run a process (a JSON result at the end,
 * NDJSON events as they happen, or in the background with its pid answered at once), list
 * them, signal one, feed its stdin, and stream a background process's output again.
 *
 * The guest agent keeps a background process's output only while nobody is attached, and
 * hands what it kept to the next ATTACH once (src/guest/exec.c); stdin can only be sent over
 * the attached connection.  So that every /output reader sees the whole output and /stdin loses
 * nothing, kilnd stays attached itself: a watcher thread per background process holds the agent
 * connection, appends output to a bounded log in memory and records the exit.  When that
 * connection breaks (the sandbox was paused, kilnd restarted), the guest keeps output again
 * and the next request for the process attaches anew.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../client/agent_client.h"
#include "../host/vmctl.h"
#include "api_parse.h"
#include "http.h"

#define LOG_MAX_BYTES	(1u << 20)	/* per process; the oldest output goes first */
#define LOG_MAX_CHUNKS	4096
#define LOGS_MAX_BYTES	(64u << 20)	/* all processes: past it a process keeps less */
#define MAX_PROCS	1024		/* background processes tracked over all sandboxes */
#define KEEP_IDLE_MS	(10 * 60 * 1000)	/* an ended, unwatched record is forgotten */
#define SEND_TIMEOUT_S	30		/* a guest that does not take stdin */
#define KEEPALIVE_S	15		/* a silent stream says so, to find clients gone */

struct chunk {
	struct chunk *next;
	uint64_t seq;
	uint8_t stream;			/* 0 stdout, 1 stderr */
	uint32_t len;
	uint8_t data[];
};

struct proc {
	struct proc *next;
	char sandbox[ROUTE_ID_MAX];
	uint32_t pid;
	char cmd[256];
	int refs;			/* requests and the watcher using it */
	int fd;				/* the watcher's agent connection, or -1 */
	bool watching, stdin_open;
	struct chunk *head, *tail;
	uint64_t next_seq;
	size_t bytes, nchunks;
	bool exited, lost;
	int exit_code, exit_signal;
	bool timed_out;
	int64_t idle_since;		/* ms: when the watcher stopped */
	pthread_mutex_t wlock;		/* writes to fd, and attaching */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static struct proc *procs;
static unsigned nprocs;
static bool stopping;		/* kilnd is stopping: streams end so their threads can */
static size_t log_bytes;	/* over all processes' logs */

static int connect_agent(const char *sandbox, struct api_error *e)
{
	struct agent_error ae = { 0 };
	char dir[PATH_MAX], sock[PATH_MAX];
	int fd;

	sandbox_dir(sandbox, dir, sizeof(dir));
	vm_sock_path(dir, sock, sizeof(sock));
	fd = agent_connect(sock, PROTO_AGENT_PORT, 10000, &ae);
	if (fd < 0)
		api_fail(e, 502, "agent_unreachable", NULL, "guest agent: %s", ae.message);
	return fd;
}

static void proc_free(struct proc *p)
{
	while (p->head) {
		struct chunk *c = p->head;

		p->head = c->next;
		log_bytes -= c->len;
		free(c);
	}
	pthread_mutex_destroy(&p->wlock);
	free(p);
}

/* Forget records nobody uses that ended or went unwatched long ago.  Under lock. */
static void reap(bool force_one)
{
	int64_t now = now_ms();

	for (struct proc **pp = &procs; *pp;) {
		struct proc *p = *pp;

		if (!p->refs && !p->watching &&
		    (now - p->idle_since > KEEP_IDLE_MS || force_one)) {
			*pp = p->next;
			proc_free(p);
			nprocs--;
			if (force_one)
				return;
			continue;
		}
		pp = &p->next;
	}
}

static void proc_put(struct proc *p)
{
	pthread_mutex_lock(&lock);
	p->refs--;
	pthread_mutex_unlock(&lock);
}

/* The record of sandbox/pid with a reference, or a new one if create; NULL if none. */
static struct proc *proc_get(const char *sandbox, uint32_t pid, bool create)
{
	struct proc *p;

	pthread_mutex_lock(&lock);
	reap(false);
	for (p = procs; p; p = p->next)
		if (p->pid == pid && !strcmp(p->sandbox, sandbox))
			break;
	if (!p && create) {
		if (nprocs >= MAX_PROCS)
			reap(true);
		p = nprocs < MAX_PROCS ? calloc(1, sizeof(*p)) : NULL;
		if (p) {
			snprintf(p->sandbox, sizeof(p->sandbox), "%s", sandbox);
			p->pid = pid;
			p->fd = -1;
			p->stdin_open = true;
			p->idle_since = now_ms();
			pthread_mutex_init(&p->wlock, NULL);
			p->next = procs;
			procs = p;
			nprocs++;
		}
	}
	if (p)
		p->refs++;
	pthread_mutex_unlock(&lock);
	return p;
}

/* A record that never got attached goes at once (another request may hold it: then later). */
static void proc_drop(struct proc *p)
{
	pthread_mutex_lock(&lock);
	p->refs--;
	p->idle_since = 0;
	pthread_mutex_unlock(&lock);
}

/* Append output to the log, dropping the oldest beyond the bounds.  Under lock. */
static void log_append(struct proc *p, uint8_t stream, const uint8_t *data, uint32_t len)
{
	struct chunk *c = malloc(sizeof(*c) + len);

	if (!c)
		return;
	c->next = NULL;
	c->seq = p->next_seq++;
	c->stream = stream;
	c->len = len;
	memcpy(c->data, data, len);
	if (p->tail)
		p->tail->next = c;
	else
		p->head = c;
	p->tail = c;
	p->bytes += len;
	p->nchunks++;
	log_bytes += len;
	/* A chatty process past the global budget loses its own oldest output, nobody else's. */
	while (p->head != p->tail && (p->bytes > LOG_MAX_BYTES || p->nchunks > LOG_MAX_CHUNKS ||
				      log_bytes > LOGS_MAX_BYTES)) {
		struct chunk *old = p->head;

		p->head = old->next;
		p->bytes -= old->len;
		p->nchunks--;
		log_bytes -= old->len;
		free(old);
	}
}

static void *watch(void *arg)
{
	struct proc *p = arg;
	struct agent_event ev;
	uint8_t *buf = NULL;
	size_t cap = 0;
	int fd = p->fd;

	while (agent_next_event(fd, &ev, &buf, &cap) == 0) {
		pthread_mutex_lock(&lock);
		if (ev.type == EV_STDOUT || ev.type == EV_STDERR) {
			log_append(p, ev.type == EV_STDERR, ev.data, ev.len);
		} else if (ev.type == EV_EXIT) {
			p->exited = true;
			p->exit_code = ev.exit_code;
			p->exit_signal = ev.exit_signal;
			p->timed_out = ev.timed_out;
		} else {
			p->lost = true;
		}
		pthread_cond_broadcast(&changed);
		pthread_mutex_unlock(&lock);
		if (ev.type == EV_EXIT || ev.type == EV_ERROR)
			break;
	}
	free(buf);
	pthread_mutex_lock(&p->wlock);
	close(fd);
	pthread_mutex_lock(&lock);
	p->fd = -1;
	p->watching = false;
	p->idle_since = now_ms();
	p->refs--;
	pthread_cond_broadcast(&changed);
	pthread_mutex_unlock(&lock);
	pthread_mutex_unlock(&p->wlock);
	return NULL;
}

/* Hand fd to a new watcher thread.  Under p->wlock. */
static int start_watcher(struct proc *p, int fd, struct api_error *e)
{
	struct timeval tv = { .tv_sec = SEND_TIMEOUT_S };
	pthread_attr_t attr;
	pthread_t t;
	int bad;

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	pthread_mutex_lock(&lock);
	p->fd = fd;
	p->watching = true;
	p->refs++;
	pthread_mutex_unlock(&lock);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	bad = pthread_create(&t, &attr, watch, p);
	pthread_attr_destroy(&attr);
	if (!bad)
		return 0;
	pthread_mutex_lock(&lock);
	p->fd = -1;
	p->watching = false;
	p->refs--;
	pthread_mutex_unlock(&lock);
	close(fd);
	return api_fail(e, 500, "internal", NULL, "cannot watch the process: %s", strerror(bad));
}

/* Make sure someone watches p unless it ended: attach to it again if needed. */
static int ensure_watched(struct proc *p, struct api_error *e)
{
	struct agent_error ae = { 0 };
	bool need;
	int fd, ret = 0;

	pthread_mutex_lock(&p->wlock);
	pthread_mutex_lock(&lock);
	need = !p->watching && !p->exited && !p->lost;
	pthread_mutex_unlock(&lock);
	if (!need)
		goto out;
	fd = connect_agent(p->sandbox, e);
	if (fd < 0) {
		ret = -1;
		goto out;
	}
	if (agent_attach(fd, p->pid, &ae)) {
		close(fd);
		if (ae.err == EBUSY) {
			ret = api_fail(e, 409, "process_busy", NULL,
				       "process %u is attached elsewhere (kiln attach?)", p->pid);
		} else if (p->cmd[0] || p->head) {
			/* Known to kilnd but gone from the guest: what was kept is all there is. */
			pthread_mutex_lock(&lock);
			p->lost = true;
			pthread_cond_broadcast(&changed);
			pthread_mutex_unlock(&lock);
		} else {
			ret = api_fail(e, 404, "process_not_found", NULL,
				       "no background process %u in this sandbox", p->pid);
		}
		goto out;
	}
	ret = start_watcher(p, fd, e);
out:
	pthread_mutex_unlock(&p->wlock);
	return ret;
}

/* The tracked (or re-attached) background process of the request. */
static struct proc *find_proc(struct request *r, const struct sandbox *s)
{
	struct proc *p = proc_get(s->id, r->m.pid, true);
	bool fresh;

	if (!p) {
		api_fail(&r->e, 503, "too_many_processes", NULL,
			 "kilnd tracks at most %d background processes", MAX_PROCS);
		return NULL;
	}
	pthread_mutex_lock(&lock);
	fresh = !p->watching && !p->exited && !p->lost && !p->head && !p->cmd[0];
	pthread_mutex_unlock(&lock);
	if (ensure_watched(p, &r->e) == 0)
		return p;
	if (fresh)
		proc_drop(p);
	else
		proc_put(p);
	return NULL;
}

static json_t *output_event(uint8_t stream, const uint8_t *data, size_t len)
{
	bool b64;
	json_t *d = bytes_json(data, len, &b64);

	return json_pack("{s:s, s:o, s:s}", "type", stream ? "stderr" : "stdout", "data", d,
			 "encoding", b64 ? "base64" : "utf-8");
}

static json_t *exit_event(int code, int sig, bool timed_out)
{
	const char *name = sig ? signal_name(sig) : NULL;

	return json_pack("{s:s, s:o, s:o, s:o, s:b}", "type", "exit",
			 "exit_code", sig ? json_null() : json_integer(code),
			 "signal", sig ? json_integer(sig) : json_null(),
			 "signal_name", name ? json_string(name) : json_null(),
			 "timed_out", timed_out);
}

/* One NDJSON response (reply_ndjson): a foreground process's events or a background log. */
struct stream {
	/* a foreground process */
	int fd;
	pthread_t feeder;
	bool feeding;
	const char *feed;
	size_t feed_len;
	char *feed_copy;
	uint8_t *buf;
	size_t cap;
	uint32_t pid;
	bool started;
	/* a background process's log */
	struct proc *p;
	uint64_t cursor;
};

static json_t *next_foreground(struct stream *st, bool *done)
{
	struct agent_event ev;

	if (!st->started) {
		st->started = true;
		return json_pack("{s:s, s:I}", "type", "start", "pid", (json_int_t)st->pid);
	}
	for (int waited = 0; ; waited++) {
		struct pollfd pfd = { st->fd, POLLIN, 0 };

		if (stopping)
			return NULL;
		if (poll(&pfd, 1, 1000) != 0)
			break;
		if (waited == KEEPALIVE_S)
			return json_pack("{s:s}", "type", "keepalive");
	}
	if (agent_next_event(st->fd, &ev, &st->buf, &st->cap)) {
		*done = true;
		return json_pack("{s:s, s:s}", "type", "error", "message",
				 "connection to the guest agent lost");
	}
	if (ev.type == EV_STDOUT || ev.type == EV_STDERR)
		return output_event(ev.type == EV_STDERR, ev.data, ev.len);
	*done = true;
	if (ev.type == EV_ERROR)
		return json_pack("{s:s, s:s}", "type", "error", "message", ev.error.message);
	return exit_event(ev.exit_code, ev.exit_signal, ev.timed_out);
}

/* Wait for a change, at most KEEPALIVE_S seconds; true on the timeout.  Under lock. */
static bool wait_changed(void)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += KEEPALIVE_S;
	return pthread_cond_timedwait(&changed, &lock, &until) == ETIMEDOUT;
}

static json_t *next_background(struct stream *st, bool *done)
{
	struct proc *p = st->p;
	json_t *ev = NULL;

	pthread_mutex_lock(&lock);
	for (;;) {
		struct chunk *c = p->head;

		while (c && c->seq < st->cursor)
			c = c->next;
		if (c) {
			st->cursor = c->seq + 1;
			ev = output_event(c->stream, c->data, c->len);
			break;
		}
		*done = true;
		if (p->exited) {
			ev = exit_event(p->exit_code, p->exit_signal, p->timed_out);
			break;
		}
		if (p->lost || !p->watching) {
			ev = json_pack("{s:s, s:s}", "type", "error", "message", p->lost ?
				       "the guest agent lost the process; its exit is unknown" :
				       "connection to the process lost (was the sandbox paused?); "
				       "GET its output again to continue");
			break;
		}
		*done = false;
		if (stopping) {
			pthread_mutex_unlock(&lock);
			return NULL;
		}
		if (wait_changed()) {
			ev = json_pack("{s:s}", "type", "keepalive");
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	return ev;
}

static json_t *next_event(void *cls, bool *done)
{
	struct stream *st = cls;

	return st->p ? next_background(st, done) : next_foreground(st, done);
}

static void stream_free(void *cls)
{
	struct stream *st = cls;

	if (st->fd >= 0)
		shutdown(st->fd, SHUT_RDWR);	/* a foreground process dies with its client */
	if (st->feeding)
		pthread_join(st->feeder, NULL);
	if (st->fd >= 0)
		close(st->fd);
	if (st->p)
		proc_put(st->p);
	free(st->feed_copy);
	free(st->buf);
	free(st);
}

/* Feed a foreground process's stdin beside reading its output, so neither side can stall
 * the other. */
static void *feed(void *arg)
{
	struct stream *st = arg;

	if (st->feed_len)
		agent_send_stdin(st->fd, st->feed, st->feed_len);
	agent_close_stdin(st->fd);
	return NULL;
}

static int running_sandbox(struct request *r, struct sandbox *s)
{
	if (own_sandbox(r, s))
		return -1;
	if (strcmp(s->state, "running"))
		return api_fail(&r->e, 409, "invalid_state", NULL, "the sandbox is %s, not running",
				s->state);
	return 0;
}

static void describe(const struct process_req *q, char *out, size_t len)
{
	size_t used = 0;

	out[0] = 0;
	if (q->x.shell) {
		snprintf(out, len, "%s", q->x.shell);
		return;
	}
	for (const char **a = q->x.argv; *a && used < len - 1; a++)
		used += snprintf(out + used, len - used, "%s%s", a == q->x.argv ? "" : " ", *a);
}

json_t *collect_process(int fd, uint8_t **buf, size_t *cap, struct api_error *e)
{
	struct kept_output out = { 0 }, err = { 0 };
	struct agent_event ev;
	json_t *res = NULL;

	while (agent_next_event(fd, &ev, buf, cap) == 0) {
		if (ev.type == EV_STDOUT || ev.type == EV_STDERR) {
			output_keep(ev.type == EV_STDOUT ? &out : &err, ev.data, ev.len);
			continue;
		}
		if (ev.type == EV_ERROR) {
			api_fail(e, 502, "exec_failed", NULL, "%s", ev.error.message);
			break;
		}
		res = exit_event(ev.exit_code, ev.exit_signal, ev.timed_out);
		json_object_del(res, "type");
		break;
	}
	if (!res && !e->status)
		api_fail(e, 502, "agent_unreachable", NULL, "connection to the guest agent lost");
	if (res) {
		output_put(res, "stdout", &out);
		output_put(res, "stderr", &err);
	}
	free(out.data);
	free(err.data);
	return res;
}

/* Foreground without streaming: the whole result as one JSON object, like /exec. */
static enum MHD_Result reply_collected(struct request *r, struct stream *st)
{
	json_t *res = collect_process(st->fd, &st->buf, &st->cap, &r->e);

	if (res)
		json_object_set_new(res, "pid", json_integer(st->pid));
	stream_free(st);
	return res ? reply_json(r, 200, res) : reply_error(r, &r->e);
}

/* A background process was started on fd: track and watch it, feed it, answer its pid. */
static enum MHD_Result track_background(struct request *r, const struct sandbox *s,
					const struct process_req *q, int fd, uint32_t pid)
{
	struct proc *p = proc_get(s->id, pid, true);
	bool stdin_open = q->stdin_open;
	json_t *res;

	if (!p) {
		close(fd);	/* the guest keeps it running; GET .../output attaches later */
		api_fail(&r->e, 503, "too_many_processes", NULL,
			 "kilnd tracks at most %d background processes", MAX_PROCS);
		return reply_error(r, &r->e);
	}
	pthread_mutex_lock(&p->wlock);
	describe(q, p->cmd, sizeof(p->cmd));
	if (start_watcher(p, fd, &r->e)) {
		pthread_mutex_unlock(&p->wlock);
		proc_put(p);
		return reply_error(r, &r->e);
	}
	/* Fed under wlock with the watcher already draining output, so neither side stalls; a
	 * process that exits before reading it all simply gets less. */
	if (q->stdin_data) {
		agent_send_stdin(p->fd, q->stdin_data, q->stdin_len);
		agent_close_stdin(p->fd);
	}
	p->stdin_open = stdin_open;
	res = json_pack("{s:I, s:b, s:b, s:s}", "pid", (json_int_t)pid, "background", 1,
			"stdin_open", stdin_open, "cmd", p->cmd);
	pthread_mutex_unlock(&p->wlock);
	proc_put(p);
	return reply_json(r, 201, res);
}

static enum MHD_Result start(struct request *r, const struct sandbox *s)
{
	json_t *body = body_object(r->body, r->len, &r->e);
	struct process_req q;
	struct agent_error ae = { 0 };
	struct agent_exec ax;
	struct stream *st = NULL;
	enum MHD_Result ret;
	uint32_t pid;
	int fd = -1;

	if (!body)
		return reply_error(r, &r->e);
	if (parse_process(body, &q, &r->e))
		goto fail;
	ax = (struct agent_exec){ .argv = (char *const *)q.x.argv, .shell = q.x.shell,
				  .env = q.x.env, .cwd = q.x.cwd, .user = q.x.user,
				  .timeout_ms = q.x.timeout_s * 1000, .pty = q.pty,
				  .rows = q.rows, .cols = q.cols,
				  .stdin_stream = q.stdin_open || q.stdin_data,
				  .background = q.background };
	fd = connect_agent(s->id, &r->e);
	if (fd < 0)
		goto fail;
	if (agent_exec_start(fd, &ax, &pid, &ae)) {
		api_fail(&r->e, 400, "exec_failed", q.x.shell ? "shell" : "cmd", "%s%s%s", ae.path,
			 ae.path[0] ? ": " : "", ae.message);
		goto fail;
	}
	if (q.background) {
		ret = track_background(r, s, &q, fd, pid);
		goto out;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		api_fail(&r->e, 500, "internal", NULL, "out of memory");
		goto fail;
	}
	st->fd = fd;
	st->pid = pid;
	fd = -1;
	if (q.stdin_data) {
		/* body goes away when this returns; a stream outlives it */
		st->feed_copy = malloc(q.stdin_len + 1);
		if (st->feed_copy)
			memcpy(st->feed_copy, q.stdin_data, q.stdin_len);
		st->feed = st->feed_copy;
		st->feed_len = st->feed_copy ? q.stdin_len : 0;
		st->feeding = pthread_create(&st->feeder, NULL, feed, st) == 0;
	}
	if (q.stream)
		ret = reply_ndjson(r, next_event, stream_free, st, false);
	else
		ret = reply_collected(r, st);
	goto out;
fail:
	if (fd >= 0)
		close(fd);
	ret = reply_error(r, &r->e);
out:
	process_req_free(&q);
	json_decref(body);
	return ret;
}

struct ps_ctx {
	json_t *list;
	const char *sandbox;
};

static void on_ps(const struct agent_entry *en, void *ctx)
{
	struct ps_ctx *c = ctx;
	json_t *o = json_pack("{s:I, s:s, s:b, s:b}", "pid", (json_int_t)en->pid, "cmd", en->path,
			      "running", en->running, "background", en->background);

	json_array_append_new(c->list, o);
}

/* Add what kilnd saw of background processes that have ended (the guest forgot them). */
static void add_ended(struct ps_ctx *c)
{
	pthread_mutex_lock(&lock);
	for (struct proc *p = procs; p; p = p->next) {
		size_t i;
		json_t *o;

		if (strcmp(p->sandbox, c->sandbox) || !p->exited)
			continue;
		json_array_foreach(c->list, i, o)
			if (json_integer_value(json_object_get(o, "pid")) == p->pid)
				break;
		if (i < json_array_size(c->list)) {
			o = json_array_get(c->list, i);
		} else {
			o = json_pack("{s:I, s:s, s:b, s:b}", "pid", (json_int_t)p->pid, "cmd",
				      p->cmd, "running", 0, "background", 1);
			json_array_append_new(c->list, o);
		}
		json_object_set_new(o, "running", json_false());
		json_object_set_new(o, "exit_code", p->exit_signal ? json_null() :
				    json_integer(p->exit_code));
		json_object_set_new(o, "signal", p->exit_signal ? json_integer(p->exit_signal) :
				    json_null());
	}
	pthread_mutex_unlock(&lock);
}

static enum MHD_Result list(struct request *r, const struct sandbox *s)
{
	struct agent_error ae = { 0 };
	struct ps_ctx c = { json_array(), s->id };
	int fd = connect_agent(s->id, &r->e), bad;

	if (fd < 0) {
		json_decref(c.list);
		return reply_error(r, &r->e);
	}
	bad = agent_entries(fd, MSG_PS, NULL, 0, on_ps, &c, &ae);
	close(fd);
	if (bad) {
		json_decref(c.list);
		api_fail(&r->e, 502, "agent_error", NULL, "process list: %s", ae.message);
		return reply_error(r, &r->e);
	}
	add_ended(&c);
	return reply_json(r, 200, json_pack("{s:o}", "processes", c.list));
}

static enum MHD_Result send_signal(struct request *r, const struct sandbox *s)
{
	json_t *body = body_object(r->body, r->len, &r->e);
	struct agent_error ae = { 0 };
	const char *name;
	int sig, fd, bad;

	if (!body)
		return reply_error(r, &r->e);
	bad = parse_signal(body, &sig, &r->e);
	json_decref(body);
	if (bad)
		return reply_error(r, &r->e);
	fd = connect_agent(s->id, &r->e);
	if (fd < 0)
		return reply_error(r, &r->e);
	bad = agent_kill(fd, r->m.pid, sig, &ae);
	close(fd);
	if (bad) {
		if (ae.err == ESRCH)
			api_fail(&r->e, 404, "process_not_found", NULL,
				 "no process %u started through kiln runs in this sandbox",
				 r->m.pid);
		else
			api_fail(&r->e, 502, "agent_error", NULL, "signal: %s", ae.message);
		return reply_error(r, &r->e);
	}
	name = signal_name(sig);
	return reply_json(r, 200, json_pack("{s:I, s:i, s:o}", "pid", (json_int_t)r->m.pid,
					    "signal", sig, "signal_name",
					    name ? json_string(name) : json_null()));
}

static enum MHD_Result feed_stdin(struct request *r, const struct sandbox *s)
{
	bool close_it;
	struct proc *p;
	int bad = 0;

	if (query_flag(query_arg(r, "close"), &close_it)) {
		api_fail(&r->e, 400, "invalid_argument", "close", "close: must be 1 or 0");
		return reply_error(r, &r->e);
	}
	p = find_proc(r, s);
	if (!p)
		return reply_error(r, &r->e);
	pthread_mutex_lock(&p->wlock);
	if (p->exited || p->lost)
		bad = api_fail(&r->e, 409, "process_exited", NULL, "process %u has exited",
			       p->pid);
	else if (!p->stdin_open)
		bad = api_fail(&r->e, 409, "stdin_closed", NULL, "process %u: stdin is closed "
			       "(start it with \"stdin\": true to feed it later)", p->pid);
	else if (p->fd < 0)
		bad = api_fail(&r->e, 409, "process_detached", NULL,
			       "connection to process %u lost; try again", p->pid);
	else if ((r->len && agent_send_stdin(p->fd, r->body, r->len)) ||
		 (close_it && agent_close_stdin(p->fd)))
		bad = api_fail(&r->e, 504, "stdin_stalled", NULL,
			       "process %u did not take its stdin within %d s", p->pid,
			       SEND_TIMEOUT_S);
	if (!bad && close_it)
		p->stdin_open = false;
	pthread_mutex_unlock(&p->wlock);
	proc_put(p);
	if (bad)
		return reply_error(r, &r->e);
	return reply_json(r, 200, json_pack("{s:I, s:I, s:b}", "pid", (json_int_t)r->m.pid,
					    "bytes", (json_int_t)r->len, "stdin_open",
					    !close_it));
}

static enum MHD_Result output(struct request *r, const struct sandbox *s)
{
	struct proc *p = find_proc(r, s);
	struct stream *st;

	if (!p)
		return reply_error(r, &r->e);
	st = calloc(1, sizeof(*st));
	if (!st) {
		proc_put(p);
		api_fail(&r->e, 500, "internal", NULL, "out of memory");
		return reply_error(r, &r->e);
	}
	st->fd = -1;
	st->p = p;
	return reply_ndjson(r, next_event, stream_free, st, false);
}

enum MHD_Result api_processes(struct request *r)
{
	struct sandbox s;

	if (running_sandbox(r, &s))
		return reply_error(r, &r->e);
	switch (r->m.route) {
	case R_PROCS_START:
		return start(r, &s);
	case R_PROCS_LIST:
		return list(r, &s);
	case R_PROC_SIGNAL:
		return send_signal(r, &s);
	case R_PROC_STDIN:
		return feed_stdin(r, &s);
	case R_PROC_OUTPUT:
		return output(r, &s);
	default:
		api_fail(&r->e, 500, "internal", NULL, "unrouted request");
		return reply_error(r, &r->e);
	}
}

void processes_stop(void)
{
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_broadcast(&changed);
	pthread_mutex_unlock(&lock);
}
