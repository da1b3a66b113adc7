/*
 * files.c - file operations: streamed read and write of any size, list with depth, stat,
 * mkdir -p, remove (optionally recursive), rename.  Every failure is an ERROR with the errno
 * and the path it concerns.
 *
 * A write goes to a temporary file beside the target and is renamed into place only when the
 * host says END, so a dropped connection or a full disk never leaves a half-written file where
 * the old one was.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define LIST_MAX_DEPTH	64

static int get_path(int conn, const struct request *req, uint16_t tag, char *path)
{
	if (!req_str(req, tag, path, PATH_MAX) || !path[0]) {
		send_error(conn, EINVAL, "missing or invalid path", NULL);
		return -1;
	}
	return 0;
}

static int fail(int conn, const char *path)
{
	return send_error(conn, errno, NULL, path);
}

/* The request's PATH, which must exist (a link is not followed); -1 once an ERROR is sent. */
static int get_existing_path(int conn, const struct request *req, char *path, struct stat *st)
{
	if (get_path(conn, req, TAG_PATH, path))
		return -1;
	if (lstat(path, st) < 0) {
		fail(conn, path);
		return -1;
	}
	return 0;
}

/* mkdir -p for the directory part of path (or all of it with whole). */
static int make_parents(const char *path, bool whole, mode_t mode)
{
	char tmp[PATH_MAX];
	char *p;

	snprintf(tmp, sizeof(tmp), "%s", path);
	if (!whole) {
		p = strrchr(tmp, '/');
		if (!p || p == tmp)
			return 0;
		*p = 0;
	}
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -1;
	struct stat st;

	if (stat(tmp, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

static int send_u64_frame(int conn, uint8_t type, uint16_t tag, uint64_t v)
{
	struct frame f;
	int r = -1;

	if (frame_init(&f, type))
		return -1;
	if (!frame_put_u64(&f, tag, v))
		r = proto_write_frame(conn, &f);
	frame_free(&f);
	return r;
}

int op_file_read(int conn, const struct request *req)
{
	char path[PATH_MAX];
	uint64_t off = 0, limit = UINT64_MAX, sent = 0;
	struct field f;
	struct stat st;
	uint8_t *buf;
	int fd;

	if (get_path(conn, req, TAG_PATH, path))
		return -1;
	if (frame_find(req->payload, req->len, TAG_OFFSET, &f))
		field_u64(&f, &off);
	if (frame_find(req->payload, req->len, TAG_LENGTH, &f))
		field_u64(&f, &limit);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(conn, path);
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		errno = EISDIR;
		return fail(conn, path);
	}
	buf = malloc(PROTO_DATA_CHUNK);
	while (buf && sent < limit) {
		size_t want = limit - sent < PROTO_DATA_CHUNK ? limit - sent : PROTO_DATA_CHUNK;
		ssize_t n = pread(fd, buf, want, off + sent);

		if (n < 0) {
			int e = errno;

			free(buf);
			close(fd);
			errno = e;
			return fail(conn, path);
		}
		if (n == 0)
			break;
		struct frame fr;

		if (frame_init(&fr, MSG_DATA) || frame_put(&fr, TAG_DATA, buf, n) ||
		    proto_write_frame(conn, &fr)) {
			frame_free(&fr);
			free(buf);
			close(fd);
			return -1;
		}
		frame_free(&fr);
		sent += n;
	}
	free(buf);
	close(fd);
	return send_u64_frame(conn, MSG_END, TAG_BYTES, sent);
}

/* Receive DATA frames into fd until END.  0 on END, -1 with errno (or the connection lost). */
static int receive_into(int conn, int fd, uint64_t *total, bool *conn_lost)
{
	struct frame_in in = { 0 };
	struct field f;
	int r = -1;

	*conn_lost = false;
	for (;;) {
		if (proto_read_in(conn, &in) != 1) {
			*conn_lost = true;
			break;
		}
		if (in.type == MSG_END) {
			r = 0;
			break;
		}
		if (in.type != MSG_DATA || !frame_find(in.buf, in.len, TAG_DATA, &f)) {
			errno = EPROTO;
			break;
		}
		if (proto_write_all(fd, f.val, f.len) < 0)
			break;
		*total += f.len;
	}
	free(in.buf);
	return r;
}

/* After a failure mid-stream, read and discard the rest so the host sees our ERROR. */
static void drain_until_end(int conn)
{
	struct frame_in in = { 0 };

	while (proto_read_in(conn, &in) == 1 && in.type != MSG_END)
		;
	free(in.buf);
}

int op_file_write(int conn, const struct request *req)
{
	char path[PATH_MAX], tmp[PATH_MAX + 32];
	uint32_t mode = 0644;
	uint8_t append = 0;
	uint64_t total = 0;
	bool lost;
	int fd, e;

	if (get_path(conn, req, TAG_PATH, path))
		return -1;
	req_u32(req, TAG_MODE, &mode);
	req_u8(req, TAG_APPEND, &append);
	if (make_parents(path, false, 0755) < 0) {
		e = errno;
		drain_until_end(conn);
		errno = e;
		return fail(conn, path);
	}
	if (append) {
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode & 07777);
		snprintf(tmp, sizeof(tmp), "%s", path);
	} else {
		snprintf(tmp, sizeof(tmp), "%s.kiln-tmp-XXXXXX", path);
		fd = mkostemp(tmp, O_CLOEXEC);
	}
	if (fd < 0) {
		e = errno;
		drain_until_end(conn);
		errno = e;
		return fail(conn, path);
	}
	int r = receive_into(conn, fd, &total, &lost);
	bool ended = r == 0;	/* END consumed: nothing left to drain after a later failure */

	e = errno;
	if (r == 0 && !append && (fchmod(fd, mode & 07777) < 0 || rename(tmp, path) < 0))
		r = -1, e = errno;
	close(fd);
	if (r < 0 && !append)
		unlink(tmp);
	if (lost)
		return -1;
	if (r < 0) {
		if (!ended && e != EPROTO)
			drain_until_end(conn);
		errno = e;
		return fail(conn, path);
	}
	return send_u64_frame(conn, MSG_OK, TAG_BYTES, total);
}

static char type_char(mode_t m)
{
	return S_ISREG(m) ? 'f' : S_ISDIR(m) ? 'd' : S_ISLNK(m) ? 'l' : 'o';
}

static int send_entry(int conn, const char *path, const struct stat *st)
{
	struct frame f;
	int r = -1;

	if (frame_init(&f, MSG_ENTRY))
		return -1;
	if (!frame_put_str(&f, TAG_PATH, path) &&
	    !frame_put_u8(&f, TAG_TYPE, type_char(st->st_mode)) &&
	    !frame_put_u64(&f, TAG_SIZE, st->st_size) &&
	    !frame_put_u32(&f, TAG_MODE, st->st_mode & 07777) &&
	    !frame_put_u64(&f, TAG_MTIME, st->st_mtim.tv_sec))
		r = proto_write_frame(conn, &f);
	frame_free(&f);
	return r;
}

static int list_dir(int conn, const char *dir, unsigned depth)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int r = 0;

	if (!d)
		return 0;		/* unreadable subdirectories are skipped, not fatal */
	while (r == 0 && (e = readdir(d))) {
		char path[PATH_MAX];
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", strcmp(dir, "/") ? dir : "",
			     e->d_name) >= (int)sizeof(path))
			continue;
		if (lstat(path, &st) < 0)
			continue;
		r = send_entry(conn, path, &st);
		if (r == 0 && S_ISDIR(st.st_mode) && depth > 1)
			r = list_dir(conn, path, depth - 1);
	}
	closedir(d);
	return r;
}

int op_list(int conn, const struct request *req)
{
	char path[PATH_MAX];
	uint32_t depth = 1;
	struct stat st;

	if (get_path(conn, req, TAG_PATH, path))
		return -1;
	req_u32(req, TAG_DEPTH, &depth);
	if (depth == 0 || depth > LIST_MAX_DEPTH)
		return send_error(conn, EINVAL, "depth must be 1 to 64", path);
	if (stat(path, &st) < 0)
		return fail(conn, path);
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return fail(conn, path);
	}
	if (list_dir(conn, path, depth))
		return -1;
	return send_simple(conn, MSG_END);
}

int op_stat(int conn, const struct request *req)
{
	char path[PATH_MAX];
	struct stat st;

	if (get_existing_path(conn, req, path, &st))
		return -1;
	return send_entry(conn, path, &st);
}

int op_mkdir(int conn, const struct request *req)
{
	char path[PATH_MAX];
	uint32_t mode = 0755;

	if (get_path(conn, req, TAG_PATH, path))
		return -1;
	req_u32(req, TAG_MODE, &mode);
	if (make_parents(path, true, mode & 07777) < 0)
		return fail(conn, path);
	return send_ok(conn);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

int op_remove(int conn, const struct request *req)
{
	char path[PATH_MAX];
	uint8_t recursive = 0;
	struct stat st;

	if (get_existing_path(conn, req, path, &st))
		return -1;
	req_u8(req, TAG_RECURSIVE, &recursive);
	if (!strcmp(path, "/"))
		return send_error(conn, EBUSY, "refusing to remove /", path);
	if (S_ISDIR(st.st_mode)) {
		int r = recursive ? nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) : rmdir(path);

		if (r < 0)
			return fail(conn, path);
	} else if (unlink(path) < 0) {
		return fail(conn, path);
	}
	return send_ok(conn);
}

int op_rename(int conn, const struct request *req)
{
	char from[PATH_MAX], to[PATH_MAX];

	if (get_path(conn, req, TAG_PATH, from) || get_path(conn, req, TAG_PATH2, to))
		return -1;
	if (rename(from, to) < 0)
		return fail(conn, from);
	return send_ok(conn);
}
