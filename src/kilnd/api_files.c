/*
 * api_files.c - /v1/sandboxes/{id}/files: upload and download streamed through a pipe to a
 * thread that talks to the guest agent (agent_write_file / agent_read_file copy between a
 * local fd and the guest), so a file of any size passes through a few pipe buffers of memory;
 * directory listings, stat, mkdir, remove and rename (one agent request each).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../client/agent_client.h"
#include "../host/vmctl.h"
#include "api_parse.h"
#include "db.h"
#include "http.h"

struct upload {
	int pipe_w, pipe_r, agent_fd;
	pthread_t thread;
	bool thread_started, finished;
	char path[4096];
	int result;
	uint64_t bytes;
	struct agent_error ae;
};

/* A guest file error as an API error naming field: the guest's errno decides the status. */
static void file_error_field(struct api_error *e, const struct agent_error *ae,
			     const char *field, const char *path)
{
	const char *msg = ae->message[0] ? ae->message : strerror(ae->err);

	if (ae->err == ENOENT)
		api_fail(e, 404, "file_not_found", field, "%.300s: %s", path, msg);
	else if (ae->err == EACCES || ae->err == EPERM)
		api_fail(e, 403, "permission_denied", field, "%.300s: %s", path, msg);
	else if (ae->err == EEXIST || ae->err == ENOTEMPTY || ae->err == EBUSY)
		api_fail(e, 409, ae->err == ENOTEMPTY ? "directory_not_empty" : "file_exists",
			 field, "%.300s: %s", path, msg);
	else if (ae->err == EISDIR || ae->err == ENOTDIR || ae->err == EINVAL ||
		 ae->err == ENAMETOOLONG || ae->err == ELOOP || ae->err == EXDEV)
		api_fail(e, 400, "invalid_path", field, "%.300s: %s", path, msg);
	else
		api_fail(e, 502, "file_error", field, "%.300s: %s", path, msg);
}

static void file_error(struct api_error *e, const struct agent_error *ae, const char *path)
{
	file_error_field(e, ae, "path", path);
}

/* A connection to the agent of the request's sandbox, which must be running. */
static int connect_running(struct request *r)
{
	struct agent_error ae = { 0 };
	char dir[PATH_MAX], sock[PATH_MAX];
	struct sandbox s;
	int fd;

	if (own_sandbox(r, &s))
		return -1;
	if (strcmp(s.state, "running"))
		return api_fail(&r->e, 409, "invalid_state", NULL, "the sandbox is %s, not running",
				s.state);
	sandbox_dir(s.id, dir, sizeof(dir));
	vm_sock_path(dir, sock, sizeof(sock));
	fd = agent_connect(sock, PROTO_AGENT_PORT, 10000, &ae);
	if (fd < 0)
		return api_fail(&r->e, 502, "agent_unreachable", NULL, "guest agent: %s", ae.message);
	return fd;
}

/* The running sandbox of the request, its path argument and a connection to its agent. */
static int open_agent(struct request *r, const char **path)
{
	/* The sandbox first: a foreign or unknown one is 404 whatever the arguments. */
	struct sandbox s;

	if (own_sandbox(r, &s))
		return -1;
	*path = query_arg(r, "path");
	if (!guest_path_ok(*path))
		return api_fail(&r->e, 400, "invalid_argument", "path",
				"path: must be an absolute guest path (?path=/...)");
	return connect_running(r);
}

static void *upload_thread(void *arg)
{
	struct upload *u = arg;

	u->result = agent_write_file(u->agent_fd, u->path, 0644, u->pipe_r, &u->bytes, &u->ae);
	close(u->pipe_r);	/* a writer still feeding us gets EPIPE and stops */
	u->pipe_r = -1;
	return NULL;
}

int upload_begin(struct request *r)
{
	struct upload *u = calloc(1, sizeof(*u));
	const char *path;
	int p[2];

	if (!u)
		return api_fail(&r->e, 500, "internal", NULL, "out of memory");
	u->pipe_w = u->pipe_r = -1;
	u->agent_fd = open_agent(r, &path);
	if (u->agent_fd < 0) {
		free(u);
		return -1;
	}
	snprintf(u->path, sizeof(u->path), "%s", path);
	if (pipe2(p, O_CLOEXEC))
		goto fail;
	u->pipe_r = p[0];
	u->pipe_w = p[1];
	if (pthread_create(&u->thread, NULL, upload_thread, u))
		goto fail;
	u->thread_started = true;
	r->upload = u;
	return 0;
fail:
	if (u->pipe_r >= 0) {
		close(u->pipe_r);
		close(u->pipe_w);
	}
	close(u->agent_fd);
	free(u);
	return api_fail(&r->e, 500, "internal", NULL, "cannot start the upload: %s",
			strerror(errno));
}

void upload_chunk(struct request *r, const char *data, size_t len)
{
	struct upload *u = r->upload;

	while (len && u->pipe_w >= 0) {
		ssize_t n = write(u->pipe_w, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* The guest side failed; drain the rest of the body, report at the end. */
			close(u->pipe_w);
			u->pipe_w = -1;
			return;
		}
		data += n;
		len -= n;
	}
}

/* Close our end and wait for the thread; the result is in u. */
static void upload_join(struct upload *u, bool abort)
{
	if (u->pipe_w >= 0)
		close(u->pipe_w);
	u->pipe_w = -1;
	if (abort)
		shutdown(u->agent_fd, SHUT_RDWR);	/* not a complete file: break it off */
	if (u->thread_started)
		pthread_join(u->thread, NULL);
	u->thread_started = false;
	if (u->pipe_r >= 0)
		close(u->pipe_r);
	u->pipe_r = -1;
	close(u->agent_fd);
	u->agent_fd = -1;
}

enum MHD_Result upload_finish(struct request *r)
{
	struct upload *u = r->upload;
	enum MHD_Result ret;

	upload_join(u, false);
	if (u->result) {
		file_error(&r->e, &u->ae, u->path);
		ret = reply_error(r, &r->e);
	} else {
		ret = reply_json(r, 201, json_pack("{s:s, s:I}", "path", u->path, "bytes",
						   (json_int_t)u->bytes));
	}
	free(u);
	r->upload = NULL;
	return ret;
}

void upload_abort(struct request *r)
{
	if (!r->upload)
		return;
	upload_join(r->upload, true);
	free(r->upload);
	r->upload = NULL;
}

struct download {
	int pipe_r, pipe_w, agent_fd;
	pthread_t thread;
	char path[4096];
};

static void *download_thread(void *arg)
{
	struct download *d = arg;
	struct agent_error ae = { 0 };
	uint64_t bytes = 0;

	agent_read_file(d->agent_fd, d->path, d->pipe_w, &bytes, &ae);
	close(d->pipe_w);	/* end of the response (cut short if the guest failed) */
	d->pipe_w = -1;
	return NULL;
}

static ssize_t download_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct download *d = cls;
	ssize_t n;

	(void)pos;
	do
		n = read(d->pipe_r, buf, max);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	return n < 0 ? MHD_CONTENT_READER_END_WITH_ERROR : n;
}

static void download_free(void *cls)
{
	struct download *d = cls;

	close(d->pipe_r);		/* a thread still writing gets EPIPE */
	shutdown(d->agent_fd, SHUT_RDWR);
	pthread_join(d->thread, NULL);
	close(d->agent_fd);
	free(d);
}

struct stat_result {
	bool found;
	struct agent_entry entry;
};

static void on_stat(const struct agent_entry *en, void *ctx)
{
	struct stat_result *s = ctx;

	s->found = true;
	s->entry = *en;
}

/* The path must name a regular file: else a clear error before any byte is sent. */
static int check_regular(struct request *r, int fd, const char *path)
{
	struct stat_result *st = calloc(1, sizeof(*st));
	struct agent_error ae = { 0 };
	int ret = -1;

	if (!st)
		return api_fail(&r->e, 500, "internal", NULL, "out of memory");
	if (agent_entries(fd, MSG_STAT, path, 0, on_stat, st, &ae))
		file_error(&r->e, &ae, path);
	else if (!st->found || st->entry.type != 'f')
		api_fail(&r->e, 400, "invalid_path", "path", "%.300s: not a regular file", path);
	else
		ret = 0;
	free(st);
	return ret;
}

enum MHD_Result reply_guest_file(struct request *r, int agent_fd, const char *path)
{
	struct download *d = calloc(1, sizeof(*d));
	int p[2];

	if (!d || pipe2(p, O_CLOEXEC)) {
		close(agent_fd);
		free(d);
		api_fail(&r->e, 500, "internal", NULL, "cannot start the download");
		return reply_error(r, &r->e);
	}
	d->pipe_r = p[0];
	d->pipe_w = p[1];
	d->agent_fd = agent_fd;
	snprintf(d->path, sizeof(d->path), "%s", path);
	if (pthread_create(&d->thread, NULL, download_thread, d)) {
		close(p[0]);
		close(p[1]);
		close(agent_fd);
		free(d);
		api_fail(&r->e, 500, "internal", NULL, "cannot start the download");
		return reply_error(r, &r->e);
	}
	return reply_reader(r, "application/octet-stream", 64 * 1024, download_read, download_free,
			    d, false);
}

static enum MHD_Result download(struct request *r)
{
	const char *path;
	int fd = open_agent(r, &path);

	if (fd < 0)
		return reply_error(r, &r->e);
	if (check_regular(r, fd, path)) {
		close(fd);
		return reply_error(r, &r->e);
	}
	close(fd);
	fd = open_agent(r, &path);	/* a connection carries one operation */
	if (fd < 0)
		return reply_error(r, &r->e);
	return reply_guest_file(r, fd, path);
}

static void on_entry(const struct agent_entry *en, void *ctx)
{
	char type[2] = { en->type, 0 };

	json_array_append_new(ctx, json_pack("{s:s, s:s, s:I, s:I, s:I}", "path", en->path,
					     "type", type, "size", (json_int_t)en->size,
					     "mode", (json_int_t)en->mode,
					     "mtime", (json_int_t)en->mtime));
}

static enum MHD_Result list(struct request *r)
{
	struct agent_error ae = { 0 };
	json_t *entries;
	const char *path;
	int fd = open_agent(r, &path), bad;

	if (fd < 0)
		return reply_error(r, &r->e);
	entries = json_array();
	bad = agent_entries(fd, MSG_LIST, path, 1, on_entry, entries, &ae);
	close(fd);
	if (bad) {
		json_decref(entries);
		file_error(&r->e, &ae, path);
		return reply_error(r, &r->e);
	}
	return reply_json(r, 200, json_pack("{s:s, s:o}", "path", path, "entries", entries));
}

static const char *type_name(char t)
{
	return t == 'f' ? "file" : t == 'd' ? "directory" : t == 'l' ? "symlink" : "other";
}

static enum MHD_Result stat_path(struct request *r)
{
	struct stat_result *st;
	struct agent_error ae = { 0 };
	const char *path;
	json_t *res = NULL;
	int fd = open_agent(r, &path);

	if (fd < 0)
		return reply_error(r, &r->e);
	st = calloc(1, sizeof(*st));
	if (!st)
		api_fail(&r->e, 500, "internal", NULL, "out of memory");
	else if (agent_entries(fd, MSG_STAT, path, 0, on_stat, st, &ae))
		file_error(&r->e, &ae, path);
	else if (!st->found)
		api_fail(&r->e, 502, "file_error", "path", "%.300s: the guest sent no entry", path);
	else
		res = json_pack("{s:s, s:s, s:I, s:I, s:I}", "path", path, "type",
				type_name(st->entry.type), "size", (json_int_t)st->entry.size,
				"mode", (json_int_t)(st->entry.mode & 07777),
				"mtime", (json_int_t)st->entry.mtime);
	close(fd);
	free(st);
	return res ? reply_json(r, 200, res) : reply_error(r, &r->e);
}

/* One request answered by OK or ERROR; field names the path the error is about. */
static enum MHD_Result simple_op(struct request *r, uint8_t type, const char *path,
				 const char *path2, uint32_t num, const char *field, json_t *res)
{
	struct agent_error ae = { 0 };
	int fd = connect_running(r), bad;

	if (fd < 0) {
		json_decref(res);
		return reply_error(r, &r->e);
	}
	bad = agent_simple(fd, type, path, path2, num, &ae);
	close(fd);
	if (bad) {
		json_decref(res);
		/* a rename whose source exists failed on its destination */
		if (type == MSG_RENAME && ae.err != ENOENT)
			field = "to", path = path2;
		/* mkdir -p over a file: a file is in the way, whichever component it is */
		if (type == MSG_MKDIR && ae.err == ENOTDIR)
			ae.err = EEXIST;
		file_error_field(&r->e, &ae, field, path);
		return reply_error(r, &r->e);
	}
	return reply_json(r, 200, res);
}

static enum MHD_Result remove_path(struct request *r)
{
	struct sandbox s;
	const char *path = query_arg(r, "path");
	bool recursive;

	if (own_sandbox(r, &s))
		return reply_error(r, &r->e);
	if (!guest_path_ok(path)) {
		api_fail(&r->e, 400, "invalid_argument", "path",
			 "path: must be an absolute guest path (?path=/...)");
		return reply_error(r, &r->e);
	}
	if (query_flag(query_arg(r, "recursive"), &recursive)) {
		api_fail(&r->e, 400, "invalid_argument", "recursive", "recursive: must be 1 or 0");
		return reply_error(r, &r->e);
	}
	return simple_op(r, MSG_REMOVE, path, NULL, recursive, "path",
			 json_pack("{s:s, s:b}", "removed", path, "recursive", recursive));
}

/* mkdir and rename take JSON bodies. */
static enum MHD_Result body_op(struct request *r)
{
	json_t *body = body_object(r->body, r->len, &r->e);
	const char *path, *from, *to;
	enum MHD_Result ret;
	struct sandbox s;

	if (!body || own_sandbox(r, &s)) {
		json_decref(body);
		return reply_error(r, &r->e);
	}
	if (r->m.route == R_FILES_MKDIR)
		ret = parse_path_body(body, &path, &r->e) ? reply_error(r, &r->e) :
		      simple_op(r, MSG_MKDIR, path, NULL, 0, "path",
				json_pack("{s:s}", "path", path));
	else
		ret = parse_rename(body, &from, &to, &r->e) ? reply_error(r, &r->e) :
		      simple_op(r, MSG_RENAME, from, to, 0, "from",
				json_pack("{s:s, s:s}", "from", from, "to", to));
	json_decref(body);
	return ret;
}

enum MHD_Result api_files(struct request *r)
{
	switch (r->m.route) {
	case R_FILES_LIST:
		return list(r);
	case R_FILES_STAT:
		return stat_path(r);
	case R_FILES_DELETE:
		return remove_path(r);
	case R_FILES_MKDIR:
	case R_FILES_RENAME:
		return body_op(r);
	default:
		return download(r);
	}
}
