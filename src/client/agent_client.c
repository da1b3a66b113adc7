/*
 * agent_client.c - see agent_client.h.
 */
#include "agent_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LOST		"connection to the guest agent lost"
#define UNEXPECTED	"unexpected reply from the guest agent"

static void set_error(struct agent_error *e, int err, const char *msg, const char *path)
{
	if (!e)
		return;
	e->err = err;
	snprintf(e->message, sizeof(e->message), "%s", msg ? msg : strerror(err));
	snprintf(e->path, sizeof(e->path), "%s", path ? path : "");
}

static void error_from_frame(const uint8_t *p, uint32_t len, struct agent_error *e)
{
	struct field f;
	uint32_t err = EIO;

	if (frame_find(p, len, TAG_ERRNO, &f))
		field_u32(&f, &err);
	set_error(e, err, NULL, NULL);
	if (frame_find(p, len, TAG_MESSAGE, &f))
		field_str(&f, e->message, sizeof(e->message));
	if (frame_find(p, len, TAG_PATH, &f))
		field_str(&f, e->path, sizeof(e->path));
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int unix_connect(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(a.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Read one line ("OK 1073741824\n") byte by byte: nothing after it may be consumed. */
static int read_line(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = { fd, POLLIN, 0 };

		if (poll(&p, 1, timeout_ms) <= 0)
			return -1;
		if (read(fd, buf + n, 1) != 1)
			return -1;
		if (buf[n] == '\n') {
			buf[n] = 0;
			return 0;
		}
		n++;
	}
	return -1;
}

static int vsock_handshake(int fd, unsigned port, int timeout_ms)
{
	char line[64];

	snprintf(line, sizeof(line), "CONNECT %u\n", port);
	if (proto_write_all(fd, line, strlen(line)) < 0 || read_line(fd, line, sizeof(line), timeout_ms))
		return -1;
	return strncmp(line, "OK ", 3) ? -1 : 0;
}

int agent_connect(const char *sock, unsigned port, int timeout_ms, struct agent_error *e)
{
	bool direct = !strncmp(sock, "unix:", 5);
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		int fd = unix_connect(direct ? sock + 5 : sock);

		if (fd >= 0 && (direct || vsock_handshake(fd, port, 2000) == 0))
			return fd;
		if (fd >= 0)
			close(fd);
		if (now_ms() >= deadline)
			break;
		usleep(20000);		/* the guest is still booting, or the VMM starting */
	}
	set_error(e, ETIMEDOUT, "guest agent did not answer", sock);
	return -1;
}

static int put_strv(struct frame *f, uint16_t tag, char *const *v)
{
	for (; v && *v; v++)
		if (frame_put_str(f, tag, *v))
			return -1;
	return 0;
}

static int build_exec(struct frame *f, const struct agent_exec *x)
{
	if (frame_init(f, MSG_EXEC))
		return -1;
	if (x->shell ? frame_put_str(f, TAG_SHELL, x->shell) : put_strv(f, TAG_ARG, x->argv))
		return -1;
	if (put_strv(f, TAG_ENV, x->env))
		return -1;
	if (x->cwd && frame_put_str(f, TAG_CWD, x->cwd))
		return -1;
	if (x->user && frame_put_str(f, TAG_USER, x->user))
		return -1;
	if (x->timeout_ms && frame_put_u32(f, TAG_TIMEOUT_MS, x->timeout_ms))
		return -1;
	if (x->pty && (frame_put_u16(f, TAG_PTY_ROWS, x->rows ? x->rows : 24) ||
		       frame_put_u16(f, TAG_PTY_COLS, x->cols ? x->cols : 80)))
		return -1;
	if (x->stdin_stream && frame_put_u8(f, TAG_STDIN, 1))
		return -1;
	if (x->background && frame_put_u8(f, TAG_BACKGROUND, 1))
		return -1;
	return 0;
}

static int send_frame_free(int fd, struct frame *f)
{
	int r = proto_write_frame(fd, f);

	frame_free(f);
	return r;
}

/*
 * Send a request the caller built (built false: frame_init or a frame_put_* failed) and free
 * it; -1 with *e set if it could not be built or sent.
 */
static int send_request(int fd, struct frame *f, bool built, const char *path,
			struct agent_error *e)
{
	if (!built) {
		frame_free(f);
		set_error(e, EPIPE, LOST, path);
		return -1;
	}
	if (send_frame_free(fd, f)) {
		set_error(e, EPIPE, LOST, path);
		return -1;
	}
	return 0;
}

/*
 * Read the frame that answers a request into *in: 0 when its type is want or also (which
 * may be the same), else -1 with *e set from the agent's ERROR, a lost connection or an
 * unexpected frame.  The caller frees in->buf either way.
 */
static int read_reply(int fd, uint8_t want, uint8_t also, struct frame_in *in, const char *path,
		      struct agent_error *e)
{
	if (proto_read_in(fd, in) != 1)
		set_error(e, EPIPE, LOST, path);
	else if (in->type == want || in->type == also)
		return 0;
	else if (in->type == MSG_ERROR)
		error_from_frame(in->buf, in->len, e);
	else
		set_error(e, EPROTO, UNEXPECTED, path);
	return -1;
}

int agent_exec_start(int fd, const struct agent_exec *x, uint32_t *pid, struct agent_error *e)
{
	struct frame f;
	struct frame_in in = { 0 };
	struct field fl;
	int r;

	if (build_exec(&f, x)) {
		frame_free(&f);
		set_error(e, E2BIG, "command, arguments and environment exceed 1 MiB", NULL);
		return -1;
	}
	if (send_frame_free(fd, &f)) {
		set_error(e, errno ? errno : EPIPE, LOST, NULL);
		return -1;
	}
	r = read_reply(fd, MSG_STARTED, MSG_STARTED, &in, NULL, e);
	if (r == 0 && !(frame_find(in.buf, in.len, TAG_PID, &fl) && field_u32(&fl, pid))) {
		set_error(e, EPROTO, UNEXPECTED, NULL);
		r = -1;
	}
	free(in.buf);
	return r;
}

/*
 * The next frame of a process's or a cell's stream, with what the two readers share done:
 * STDOUT and STDERR come back with their bytes in *data and *dlen (output frames without
 * bytes are skipped), ERROR with *err filled in.  Returns the frame's type, -1 when the
 * connection broke.
 */
static int stream_frame(int fd, uint8_t **buf, size_t *cap, uint32_t *len, const uint8_t **data,
			uint32_t *dlen, struct agent_error *err)
{
	uint8_t type;
	struct field f;

	for (;;) {
		if (proto_read_frame(fd, buf, cap, &type, len) != 1)
			return -1;
		if (type == MSG_ERROR)
			error_from_frame(*buf, *len, err);
		if (type != MSG_STDOUT && type != MSG_STDERR)
			return type;
		if (frame_find(*buf, *len, TAG_DATA, &f)) {
			*data = f.val;
			*dlen = f.len;
			return type;
		}
	}
}

int agent_next_event(int fd, struct agent_event *ev, uint8_t **buf, size_t *cap)
{
	uint32_t len, v;
	struct field f;

	for (;;) {
		memset(ev, 0, sizeof(*ev));
		switch (stream_frame(fd, buf, cap, &len, &ev->data, &ev->len, &ev->error)) {
		case -1:
			return -1;
		case MSG_STDOUT:
			ev->type = EV_STDOUT;
			return 0;
		case MSG_STDERR:
			ev->type = EV_STDERR;
			return 0;
		case MSG_ERROR:
			ev->type = EV_ERROR;
			return 0;
		case MSG_EXIT:
			ev->type = EV_EXIT;
			ev->exit_code = -1;
			if (frame_find(*buf, len, TAG_EXIT_CODE, &f) && field_u32(&f, &v))
				ev->exit_code = v;
			if (frame_find(*buf, len, TAG_EXIT_SIGNAL, &f) && field_u32(&f, &v))
				ev->exit_signal = v;
			ev->timed_out = frame_find(*buf, len, TAG_TIMED_OUT, &f);
			return 0;
		default:
			continue;	/* STARTED again after an attach, or future frames */
		}
	}
}

static int send_data_frame(int fd, uint8_t type, const void *data, size_t len)
{
	struct frame f;

	if (frame_init(&f, type) || (type != MSG_STDIN_CLOSE && type != MSG_END &&
				     frame_put(&f, TAG_DATA, data, len))) {
		frame_free(&f);
		return -1;
	}
	return send_frame_free(fd, &f);
}

int agent_send_stdin(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		size_t n = len < PROTO_DATA_CHUNK ? len : PROTO_DATA_CHUNK;

		if (send_data_frame(fd, MSG_STDIN, p, n))
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

int agent_close_stdin(int fd)
{
	return send_data_frame(fd, MSG_STDIN_CLOSE, NULL, 0);
}

int agent_send_signal(int fd, int sig)
{
	struct frame f;

	if (frame_init(&f, MSG_SIGNAL) || frame_put_u32(&f, TAG_SIGNAL, sig)) {
		frame_free(&f);
		return -1;
	}
	return send_frame_free(fd, &f);
}

int agent_resize(int fd, uint16_t rows, uint16_t cols)
{
	struct frame f;

	if (frame_init(&f, MSG_RESIZE) || frame_put_u16(&f, TAG_ROWS, rows) ||
	    frame_put_u16(&f, TAG_COLS, cols)) {
		frame_free(&f);
		return -1;
	}
	return send_frame_free(fd, &f);
}

/* Wait for the final OK/END/ENTRY or ERROR of an operation. */
static int final_reply(int fd, struct agent_error *e, uint64_t *bytes)
{
	struct frame_in in = { 0 };
	struct field f;
	int r = read_reply(fd, MSG_OK, MSG_END, &in, NULL, e);

	if (r == 0 && bytes && frame_find(in.buf, in.len, TAG_BYTES, &f))
		field_u64(&f, bytes);
	free(in.buf);
	return r;
}

/*
 * Read a reply that is a stream of `item` frames ended by END (or cut short by ERROR): each
 * item goes to on_item, which returns 0 to go on, 1 to stop with success (STAT's single
 * entry), -1 to stop with *e set.  0 on success, -1 with *e set.
 */
static int read_stream(int fd, uint8_t item, const char *path, struct agent_error *e,
		       int (*on_item)(const uint8_t *p, uint32_t len, void *ctx,
				      struct agent_error *e),
		       void *ctx)
{
	struct frame_in in = { 0 };
	int r;

	for (;;) {
		r = read_reply(fd, item, MSG_END, &in, path, e);
		if (r || in.type == MSG_END)
			break;
		r = on_item(in.buf, in.len, ctx, e);
		if (r) {
			r = r > 0 ? 0 : -1;
			break;
		}
	}
	free(in.buf);
	return r;
}

int agent_write_file(int fd, const char *path, uint32_t mode, int src, uint64_t *bytes,
		     struct agent_error *e)
{
	struct frame f;
	uint8_t *buf = malloc(PROTO_DATA_CHUNK);
	ssize_t n;

	if (!buf || frame_init(&f, MSG_FILE_WRITE) || frame_put_str(&f, TAG_PATH, path) ||
	    frame_put_u32(&f, TAG_MODE, mode) || send_frame_free(fd, &f)) {
		free(buf);
		set_error(e, EIO, "cannot send the request", path);
		return -1;
	}
	while ((n = read(src, buf, PROTO_DATA_CHUNK)) > 0)
		if (send_data_frame(fd, MSG_DATA, buf, n))
			break;
	free(buf);
	if (n < 0) {
		set_error(e, errno, "reading the local file", NULL);
		close(fd);	/* the agent drops the half-written file */
		return -1;
	}
	if (n == 0 && send_data_frame(fd, MSG_END, NULL, 0) == 0)
		return final_reply(fd, e, bytes);
	return final_reply(fd, e, bytes);	/* the agent refused early: read its reason */
}

struct file_sink {
	int dst;
	uint64_t *bytes;
};

static int file_data(const uint8_t *p, uint32_t len, void *ctx, struct agent_error *e)
{
	struct file_sink *sink = ctx;
	struct field fl;

	if (!frame_find(p, len, TAG_DATA, &fl)) {
		set_error(e, EPROTO, UNEXPECTED, NULL);
		return -1;
	}
	if (proto_write_all(sink->dst, fl.val, fl.len) < 0) {
		set_error(e, errno, "writing the local file", NULL);
		return -1;
	}
	*sink->bytes += fl.len;
	return 0;
}

int agent_read_file(int fd, const char *path, int dst, uint64_t *bytes, struct agent_error *e)
{
	struct frame f;
	struct file_sink sink = { dst, bytes };

	*bytes = 0;
	if (frame_init(&f, MSG_FILE_READ) || frame_put_str(&f, TAG_PATH, path) ||
	    send_frame_free(fd, &f)) {
		set_error(e, EIO, "cannot send the request", path);
		return -1;
	}
	return read_stream(fd, MSG_DATA, path, e, file_data, &sink);
}

int agent_simple(int fd, uint8_t type, const char *path, const char *path2, uint32_t num,
		 struct agent_error *e)
{
	struct frame f;

	if (frame_init(&f, type) || (path && frame_put_str(&f, TAG_PATH, path)) ||
	    (path2 && frame_put_str(&f, TAG_PATH2, path2))) {
		frame_free(&f);
		return -1;
	}
	if (type == MSG_REMOVE && num && frame_put_u8(&f, TAG_RECURSIVE, 1)) {
		frame_free(&f);
		return -1;
	}
	if (send_request(fd, &f, true, path, e))
		return -1;
	return final_reply(fd, e, NULL);
}

int agent_attach(int fd, uint32_t pid, struct agent_error *e)
{
	struct frame f;
	struct frame_in in = { 0 };
	bool built = !frame_init(&f, MSG_ATTACH) && !frame_put_u32(&f, TAG_PID, pid);
	int r;

	if (send_request(fd, &f, built, NULL, e))
		return -1;
	r = read_reply(fd, MSG_STARTED, MSG_STARTED, &in, NULL, e);
	free(in.buf);
	return r;
}

static void entry_from_frame(const uint8_t *p, uint32_t len, struct agent_entry *en)
{
	struct field f;
	uint8_t v8;

	memset(en, 0, sizeof(*en));
	if (frame_find(p, len, TAG_PID, &f))
		field_u32(&f, &en->pid);
	if (frame_find(p, len, TAG_PATH, &f) || frame_find(p, len, TAG_MESSAGE, &f))
		field_str(&f, en->path, sizeof(en->path));
	if (frame_find(p, len, TAG_RUNNING, &f) && field_u8(&f, &v8))
		en->running = v8;
	if (frame_find(p, len, TAG_BACKGROUND, &f) && field_u8(&f, &v8))
		en->background = v8;
	if (frame_find(p, len, TAG_TYPE, &f) && field_u8(&f, &v8))
		en->type = v8;
	if (frame_find(p, len, TAG_SIZE, &f))
		field_u64(&f, &en->size);
	if (frame_find(p, len, TAG_MTIME, &f))
		field_u64(&f, &en->mtime);
	if (frame_find(p, len, TAG_MODE, &f))
		field_u32(&f, &en->mode);
}

struct entry_sink {
	void (*fn)(const struct agent_entry *, void *);
	void *ctx;
	bool single;		/* STAT: one entry, no END */
};

static int entry_item(const uint8_t *p, uint32_t len, void *ctx, struct agent_error *e)
{
	struct entry_sink *sink = ctx;
	struct agent_entry en;

	(void)e;
	entry_from_frame(p, len, &en);
	sink->fn(&en, sink->ctx);
	return sink->single;
}

int agent_entries(int fd, uint8_t type, const char *path, uint32_t depth,
		  void (*fn)(const struct agent_entry *, void *), void *ctx, struct agent_error *e)
{
	struct frame f;
	struct entry_sink sink = { fn, ctx, type == MSG_STAT };
	bool built = !frame_init(&f, type) && !(path && frame_put_str(&f, TAG_PATH, path)) &&
		     !(depth && frame_put_u32(&f, TAG_DEPTH, depth));

	if (send_request(fd, &f, built, path, e))
		return -1;
	return read_stream(fd, MSG_ENTRY, path, e, entry_item, &sink);
}

int agent_kill(int fd, uint32_t pid, uint32_t sig, struct agent_error *e)
{
	struct frame f;
	bool built = !frame_init(&f, MSG_KILL) && !frame_put_u32(&f, TAG_PID, pid) &&
		     !frame_put_u32(&f, TAG_SIGNAL, sig);

	if (send_request(fd, &f, built, NULL, e))
		return -1;
	return final_reply(fd, e, NULL);
}

int agent_set_identity(int fd, const char *hostname, const char *sandbox_id, char *const *env,
		       struct agent_error *e)
{
	struct frame f;
	struct timespec now;
	uint8_t entropy[64];
	bool built;

	if (getrandom(entropy, sizeof(entropy), 0) != sizeof(entropy)) {
		set_error(e, errno, "no host entropy", NULL);
		return -1;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	built = !frame_init(&f, MSG_IDENTITY) &&
		!frame_put(&f, TAG_DATA, entropy, sizeof(entropy)) &&
		!frame_put_u64(&f, TAG_TIME_NS,
			       (uint64_t)now.tv_sec * 1000000000ULL + now.tv_nsec) &&
		!(hostname && frame_put_str(&f, TAG_HOSTNAME, hostname)) &&
		!(sandbox_id && frame_put_str(&f, TAG_SANDBOX_ID, sandbox_id)) &&
		!put_strv(&f, TAG_ENV, env);
	if (send_request(fd, &f, built, NULL, e))
		return -1;
	return final_reply(fd, e, NULL);
}

static void context_from_frame(const uint8_t *p, uint32_t len, struct agent_context *c)
{
	struct field f;
	uint8_t v8;

	memset(c, 0, sizeof(*c));
	if (frame_find(p, len, TAG_CONTEXT_ID, &f))
		field_str(&f, c->id, sizeof(c->id));
	if (frame_find(p, len, TAG_LANGUAGE, &f))
		field_str(&f, c->language, sizeof(c->language));
	if (frame_find(p, len, TAG_CWD, &f))
		field_str(&f, c->cwd, sizeof(c->cwd));
	if (frame_find(p, len, TAG_USER, &f))
		field_str(&f, c->user, sizeof(c->user));
	if (frame_find(p, len, TAG_PID, &f))
		field_u32(&f, &c->pid);
	if (frame_find(p, len, TAG_RUNNING, &f) && field_u8(&f, &v8))
		c->running = v8;
	if (frame_find(p, len, TAG_CREATED, &f))
		field_u64(&f, &c->created);
}

/* Send a built frame and read the OK (with a context id and pid) or ERROR. */
static int context_reply(int fd, struct frame *f, struct agent_context *out, uint32_t *pid,
			  struct agent_error *e)
{
	struct frame_in in = { 0 };
	struct agent_context c;
	int r;

	if (send_request(fd, f, true, NULL, e))
		return -1;
	r = read_reply(fd, MSG_OK, MSG_OK, &in, NULL, e);
	if (r == 0) {
		context_from_frame(in.buf, in.len, &c);
		if (out)
			*out = c;
		if (pid)
			*pid = c.pid;
	}
	free(in.buf);
	return r;
}

int agent_context_create(int fd, const char *language, const char *cwd, const char *user,
			 char *const *env, struct agent_context *out, struct agent_error *e)
{
	struct frame f;

	if (frame_init(&f, MSG_CONTEXT_CREATE) ||
	    frame_put_str(&f, TAG_LANGUAGE, language ? language : "python") ||
	    (cwd && frame_put_str(&f, TAG_CWD, cwd)) || (user && frame_put_str(&f, TAG_USER, user)) ||
	    put_strv(&f, TAG_ENV, env)) {
		frame_free(&f);
		set_error(e, E2BIG, "request too large", NULL);
		return -1;
	}
	if (context_reply(fd, &f, out, NULL, e))
		return -1;
	if (strlen(out->id) != AGENT_CONTEXT_ID_LEN) {
		set_error(e, EPROTO, "the guest agent sent no context id", NULL);
		return -1;
	}
	return 0;
}

int agent_context_op(int fd, uint8_t type, const char *id, uint32_t *pid, struct agent_error *e)
{
	struct frame f;

	if (frame_init(&f, type) || frame_put_str(&f, TAG_CONTEXT_ID, id)) {
		frame_free(&f);
		set_error(e, ENOMEM, NULL, NULL);
		return -1;
	}
	return context_reply(fd, &f, NULL, pid, e);
}

int agent_context_run(int fd, const char *id, const char *code, size_t len, uint32_t timeout_ms,
		      struct agent_error *e)
{
	struct frame f;

	if (len > PROTO_MAX_PAYLOAD) {
		set_error(e, E2BIG, "the cell's code exceeds 1 MiB", NULL);
		return -1;
	}
	if (frame_init(&f, MSG_CONTEXT_RUN) || frame_put_str(&f, TAG_CONTEXT_ID, id) ||
	    frame_put(&f, TAG_CODE, code, len) ||
	    (timeout_ms && frame_put_u32(&f, TAG_TIMEOUT_MS, timeout_ms))) {
		frame_free(&f);
		set_error(e, E2BIG, "the cell's code exceeds 1 MiB", NULL);
		return -1;
	}
	return send_request(fd, &f, true, NULL, e);
}

void agent_cell_event_free(struct agent_cell_event *ev)
{
	free(ev->evalue);
	free(ev->traceback);
	ev->evalue = ev->traceback = NULL;
}

static char *strndup_field(const struct field *f)
{
	return strndup((const char *)f->val, f->len);
}

/* The traceback lines of an EXCEPTION frame, joined with newlines. */
static char *join_traceback(const uint8_t *p, uint32_t len)
{
	uint32_t off = 0;
	size_t total = 1, at = 0;
	struct field f;
	char *s;

	while (frame_next(p, len, &off, &f))
		if (f.tag == TAG_TRACEBACK)
			total += f.len + 1;
	s = malloc(total);
	if (!s)
		return NULL;
	off = 0;
	while (frame_next(p, len, &off, &f)) {
		if (f.tag != TAG_TRACEBACK)
			continue;
		memcpy(s + at, f.val, f.len);
		at += f.len;
		s[at++] = '\n';
	}
	s[at] = 0;
	return s;
}

int agent_next_cell_event(int fd, struct agent_cell_event *ev, uint8_t **buf, size_t *cap)
{
	uint32_t len;
	struct field f;

	agent_cell_event_free(ev);
	for (;;) {
		memset(ev, 0, sizeof(*ev));
		switch (stream_frame(fd, buf, cap, &len, &ev->data, &ev->len, &ev->error)) {
		case -1:
			return -1;
		case MSG_STDOUT:
			ev->type = CEV_STDOUT;
			return 0;
		case MSG_STDERR:
			ev->type = CEV_STDERR;
			return 0;
		case MSG_ERROR:
			ev->type = CEV_ERROR;
			return 0;
		case MSG_RESULT:
			if (!frame_find(*buf, len, TAG_MIME, &f) ||
			    !field_str(&f, ev->mime, sizeof(ev->mime)) ||
			    !frame_find(*buf, len, TAG_DATA, &f))
				continue;
			ev->type = CEV_RESULT;
			ev->data = f.val;
			ev->len = f.len;
			if (frame_find(*buf, len, TAG_INDEX, &f))
				field_u32(&f, &ev->index);
			return 0;
		case MSG_EXCEPTION:
			ev->type = CEV_EXCEPTION;
			if (frame_find(*buf, len, TAG_ENAME, &f) &&
			    !field_str(&f, ev->ename, sizeof(ev->ename)))
				snprintf(ev->ename, sizeof(ev->ename), "Exception");
			ev->evalue = frame_find(*buf, len, TAG_EVALUE, &f) ? strndup_field(&f) :
									      strdup("");
			ev->traceback = join_traceback(*buf, len);
			if (!ev->evalue || !ev->traceback) {
				agent_cell_event_free(ev);
				return -1;
			}
			return 0;
		case MSG_DONE:
			ev->type = CEV_DONE;
			if (frame_find(*buf, len, TAG_EXEC_COUNT, &f))
				field_u32(&f, &ev->exec_count);
			if (frame_find(*buf, len, TAG_STATUS, &f))
				field_u8(&f, &ev->status);
			return 0;
		default:
			continue;	/* frames of a later protocol */
		}
	}
}

struct context_sink {
	void (*fn)(const struct agent_context *, void *);
	void *ctx;
};

static int context_item(const uint8_t *p, uint32_t len, void *ctx, struct agent_error *e)
{
	struct context_sink *sink = ctx;
	struct agent_context c;

	(void)e;
	context_from_frame(p, len, &c);
	sink->fn(&c, sink->ctx);
	return 0;
}

int agent_context_list(int fd, void (*fn)(const struct agent_context *, void *), void *ctx,
		       struct agent_error *e)
{
	struct frame f;
	struct context_sink sink = { fn, ctx };

	if (send_request(fd, &f, !frame_init(&f, MSG_CONTEXT_LIST), NULL, e))
		return -1;
	return read_stream(fd, MSG_ENTRY, NULL, e, context_item, &sink);
}
