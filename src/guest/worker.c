/*
 * worker.c - one host connection: read the request frame, dispatch it, exit.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

bool req_str(const struct request *req, uint16_t tag, char *dst, size_t max)
{
	struct field f;

	return frame_find(req->payload, req->len, tag, &f) && field_str(&f, dst, max);
}

bool req_u32(const struct request *req, uint16_t tag, uint32_t *v)
{
	struct field f;

	return frame_find(req->payload, req->len, tag, &f) && field_u32(&f, v);
}

bool req_u8(const struct request *req, uint16_t tag, uint8_t *v)
{
	struct field f;

	return frame_find(req->payload, req->len, tag, &f) && field_u8(&f, v);
}

int send_error(int conn, int err, const char *message, const char *path)
{
	struct frame f;
	int r = -1;

	if (frame_init(&f, MSG_ERROR))
		return -1;
	if (!frame_put_u32(&f, TAG_ERRNO, err) &&
	    !frame_put_str(&f, TAG_MESSAGE, message ? message : strerror(err)) &&
	    (!path || !frame_put_str(&f, TAG_PATH, path)))
		r = proto_write_frame(conn, &f);
	frame_free(&f);
	return r;
}

int send_simple(int conn, uint8_t type)
{
	struct frame f;
	int r;

	if (frame_init(&f, type))
		return -1;
	r = proto_write_frame(conn, &f);
	frame_free(&f);
	return r;
}

int send_ok(int conn)
{
	return send_simple(conn, MSG_OK);
}

static int dispatch(int conn, const struct request *req)
{
	switch (req->type) {
	case MSG_EXEC: return op_exec(conn, req);
	case MSG_ATTACH: return op_attach(conn, req);
	case MSG_PS: return op_ps(conn);
	case MSG_KILL: return op_kill(conn, req);
	case MSG_FILE_READ: return op_file_read(conn, req);
	case MSG_FILE_WRITE: return op_file_write(conn, req);
	case MSG_LIST: return op_list(conn, req);
	case MSG_STAT: return op_stat(conn, req);
	case MSG_MKDIR: return op_mkdir(conn, req);
	case MSG_REMOVE: return op_remove(conn, req);
	case MSG_RENAME: return op_rename(conn, req);
	case MSG_INFO: return op_info(conn);
	case MSG_IDENTITY: return op_identity(conn, req);
	case MSG_CONTEXT_CREATE: return op_context_create(conn, req);
	case MSG_CONTEXT_RUN: return op_context_run(conn, req);
	case MSG_CONTEXT_LIST: return op_context_list(conn);
	case MSG_CONTEXT_INTERRUPT: return op_context_interrupt(conn, req);
	case MSG_CONTEXT_RESTART: return op_context_restart(conn, req);
	case MSG_CONTEXT_DELETE: return op_context_delete(conn, req);
	default: return send_error(conn, EPROTO, "unknown request type", NULL);
	}
}

void worker_serve(int conn)
{
	uint8_t *buf = NULL;
	size_t cap = 0;
	struct request req;
	int r = proto_read_frame(conn, &buf, &cap, &req.type, &req.len);

	if (r < 0 && errno == EPROTO)
		send_error(conn, EPROTO, "malformed request frame", NULL);
	if (r == 1) {
		req.payload = buf;
		dispatch(conn, &req);
	}
	free(buf);
	close(conn);
}
