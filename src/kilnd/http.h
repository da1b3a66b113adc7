/*
 * http.h - kilnd's HTTP front: libmicrohttpd with a thread per connection (a request may wait
 * seconds for a VM), JSON bodies bounded to 1 MiB, file uploads streamed.  Every request is
 * routed (router.h) and authenticated before its body is read; handlers in api_*.c answer it.
 */
#ifndef KILND_HTTP_H
#define KILND_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>

#include "auth.h"
#include "json.h"
#include "kilnd.h"
#include "router.h"

struct upload;

struct request {
	struct MHD_Connection *conn;
	struct route_match m;
	enum caller caller;
	struct agent agent;		/* the caller, when an agent */
	char *body;			/* JSON bodies, NUL-terminated */
	size_t len;
	size_t max_body;		/* MAX_JSON_BODY, or more for a multipart upload */
	bool failed;			/* e holds the answer */
	struct api_error e;
	struct upload *upload;		/* PUT files */
};

/* Start serving on a listening unix socket fd and optionally a TCP address. */
int http_start(int unix_fd, const char *listen_addr, char *err, size_t errlen);
void http_stop(void);

enum MHD_Result reply_json(struct request *r, unsigned status, json_t *body);
enum MHD_Result reply_error(struct request *r, const struct api_error *e);
enum MHD_Result reply_text(struct request *r, unsigned status, const char *type, char *text);
/* The first size bytes of the file fd (taken over: closed when sent). */
enum MHD_Result reply_fd(struct request *r, unsigned status, const char *type, int fd,
			 uint64_t size);

/*
 * A 200 answer of the given type whose body reader produces as the client reads, block bytes
 * at most at a time (libmicrohttpd's content reader); release(cls) when it ends, or at once
 * if it cannot start.  no_cache adds "Cache-Control: no-cache".
 */
enum MHD_Result reply_reader(struct request *r, const char *type, size_t block,
			     MHD_ContentReaderCallback reader,
			     MHD_ContentReaderFreeCallback release, void *cls, bool no_cache);

/*
 * A streamed NDJSON answer (200): next(cls, &done) gives each event (taken over), one a line,
 * as the client reads, and sets done with the last; NULL cuts the response short.  release(cls)
 * when the response ends.  no_cache adds "Cache-Control: no-cache".
 */
enum MHD_Result reply_ndjson(struct request *r, json_t *(*next)(void *cls, bool *done),
			     void (*release)(void *cls), void *cls, bool no_cache);

/* The request's query argument, or NULL. */
const char *query_arg(struct request *r, const char *name);

/* Handlers (api_sandboxes.c, api_files.c, api_admin.c). */
enum MHD_Result api_sandboxes(struct request *r);
enum MHD_Result api_admin(struct request *r);
enum MHD_Result api_files(struct request *r);
/* Answer with the guest file path, streamed from the agent connection agent_fd (taken over);
 * the caller has checked that it is a regular file (api_files.c). */
enum MHD_Result reply_guest_file(struct request *r, int agent_fd, const char *path);
enum MHD_Result api_processes(struct request *r);
/* A started command's events on the agent connection fd to its exit: {exit_code, signal,
 * signal_name, timed_out, stdout..., stderr...} (output_put), or NULL with e set. */
json_t *collect_process(int fd, uint8_t **buf, size_t *cap, struct api_error *e);
enum MHD_Result api_snapshots(struct request *r);
/* End process output streams so that their connections can close (at shutdown). */
void processes_stop(void);
enum MHD_Result api_templates(struct request *r);	/* api_templates.c */
enum MHD_Result api_network(struct request *r);		/* api_network.c */
enum MHD_Result api_secrets(struct request *r);		/* api_secrets.c */

/* The sandbox of the request's {id} if it belongs to the caller; 404 into r->e otherwise. */
int own_sandbox(struct request *r, struct sandbox *s);

/* PUT files: set up before the body arrives, fed its chunks, finished at the end. */
int upload_begin(struct request *r);
void upload_chunk(struct request *r, const char *data, size_t len);
enum MHD_Result upload_finish(struct request *r);
void upload_abort(struct request *r);

#endif
