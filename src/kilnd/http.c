/*
 * http.c - see http.h.
 */
#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"
#include "api_code.h"
#include "db.h"
#include "sandbox.h"

#define CONNECTION_TIMEOUT_S	900	/* an idle client; a slow VM boot is not idle time */
#define MAX_CONNECTIONS		256

static struct MHD_Daemon *unix_daemon, *tcp_daemon;

static enum MHD_Result queue(struct request *r, unsigned status, struct MHD_Response *resp)
{
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	if (r->m.allow[0])
		MHD_add_response_header(resp, "Allow", r->m.allow);
	ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

enum MHD_Result reply_text(struct request *r, unsigned status, const char *type, char *text)
{
	struct MHD_Response *resp;

	if (!text)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (resp)
		MHD_add_response_header(resp, "Content-Type", type);
	else
		free(text);
	return queue(r, status, resp);
}

enum MHD_Result reply_fd(struct request *r, unsigned status, const char *type, int fd,
			 uint64_t size)
{
	struct MHD_Response *resp = MHD_create_response_from_fd64(size, fd);

	if (resp)
		MHD_add_response_header(resp, "Content-Type", type);
	else
		close(fd);
	return queue(r, status, resp);
}

enum MHD_Result reply_json(struct request *r, unsigned status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	size_t n;

	json_decref(body);
	if (!text)
		return MHD_NO;
	n = strlen(text);
	text = realloc(text, n + 2);	/* a trailing newline for people using curl */
	if (!text)
		return MHD_NO;
	text[n] = '\n';
	text[n + 1] = 0;
	return reply_text(r, status, "application/json", text);
}

enum MHD_Result reply_error(struct request *r, const struct api_error *e)
{
	return reply_json(r, e->status, api_error_json(e));
}

enum MHD_Result reply_reader(struct request *r, const char *type, size_t block,
			     MHD_ContentReaderCallback reader,
			     MHD_ContentReaderFreeCallback release, void *cls, bool no_cache)
{
	struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, block,
								      reader, cls, release);

	if (!resp) {
		release(cls);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	if (no_cache)
		MHD_add_response_header(resp, "Cache-Control", "no-cache");
	return queue(r, 200, resp);
}

/* A streamed NDJSON answer: the line being sent and how much of it has gone. */
struct ndjson {
	json_t *(*next)(void *cls, bool *done);
	void (*release)(void *cls);
	void *cls;
	char *line;
	size_t len, off;
	bool done;
};

static ssize_t ndjson_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct ndjson *nd = cls;
	size_t n;

	(void)pos;
	while (nd->off == nd->len) {
		json_t *ev;

		free(nd->line);
		nd->line = NULL;
		nd->len = nd->off = 0;
		if (nd->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		ev = nd->next(nd->cls, &nd->done);
		nd->line = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
		json_decref(ev);
		if (!nd->line)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		nd->len = strlen(nd->line);
		nd->line[nd->len++] = '\n';	/* over the NUL: no longer a C string */
	}
	n = nd->len - nd->off < max ? nd->len - nd->off : max;
	memcpy(out, nd->line + nd->off, n);
	nd->off += n;
	return n;
}

static void ndjson_free(void *cls)
{
	struct ndjson *nd = cls;

	nd->release(nd->cls);
	free(nd->line);
	free(nd);
}

enum MHD_Result reply_ndjson(struct request *r, json_t *(*next)(void *cls, bool *done),
			     void (*release)(void *cls), void *cls, bool no_cache)
{
	struct ndjson *nd = calloc(1, sizeof(*nd));

	if (!nd) {
		release(cls);
		return MHD_NO;
	}
	nd->next = next;
	nd->release = release;
	nd->cls = cls;
	return reply_reader(r, "application/x-ndjson", 16 * 1024, ndjson_read, ndjson_free, nd,
			    no_cache);
}

const char *query_arg(struct request *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* Route and authenticate: fills r->e and sets r->failed when the request is refused. */
static void admit(struct request *r, const char *method, const char *url)
{
	int status = router_match(method, url, &r->m);
	const char *auth;

	if (status == 404) {
		api_fail(&r->e, 404, "not_found", NULL, "no such route: %.200s", url);
		goto refuse;
	}
	if (status == 405) {
		api_fail(&r->e, 405, "method_not_allowed", NULL, "%s %.200s: allowed: %s", method,
			 url, r->m.allow);
		goto refuse;
	}
	if (r->m.route == R_HEALTH || r->m.route == R_METRICS)
		return;
	auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
	r->caller = auth_check(auth, &r->agent);
	if (r->caller == CALLER_NONE) {
		api_fail(&r->e, 401, "unauthenticated", NULL,
			 auth ? "the API key is not valid" : "missing Authorization: Bearer KEY");
		goto refuse;
	}
	if ((r->m.admin && r->caller != CALLER_ADMIN) ||
	    (r->m.agent && r->caller != CALLER_AGENT)) {
		api_fail(&r->e, 403, "forbidden", NULL, r->m.admin ?
			 "this route needs the admin key" : "this route needs an agent's key");
		goto refuse;
	}
	if (r->m.route == R_FILES_PUT && upload_begin(r))
		goto refuse;
	if (r->m.route == R_CFILES_CREATE)
		r->max_body = MAX_MULTIPART_BODY;
	return;
refuse:
	r->failed = true;
}

static enum MHD_Result dispatch(struct request *r)
{
	switch (r->m.route) {
	case R_HEALTH:
		return reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
	case R_METRICS:
		return reply_text(r, 200, "text/plain; version=0.0.4", sandbox_metrics());
	case R_AGENTS:
	case R_AGENT_CREDIT:
	case R_USAGE:
	case R_WALLET:
		return api_admin(r);
	case R_FILES_PUT:
		return upload_finish(r);
	case R_FILES_GET:
	case R_FILES_LIST:
	case R_FILES_STAT:
	case R_FILES_MKDIR:
	case R_FILES_DELETE:
	case R_FILES_RENAME:
		return api_files(r);
	case R_PROCS_START:
	case R_PROCS_LIST:
	case R_PROC_SIGNAL:
	case R_PROC_STDIN:
	case R_PROC_OUTPUT:
		return api_processes(r);
	case R_SANDBOX_SNAPSHOT:
	case R_SNAPSHOTS_LIST:
	case R_SNAPSHOT_GET:
	case R_SNAPSHOT_DELETE:
		return api_snapshots(r);
	case R_TEMPLATES_LIST:
	case R_TEMPLATE_GET:
	case R_TEMPLATE_BUILD:
	case R_TEMPLATE_BUILD_GET:
	case R_TEMPLATE_WARM:
	case R_TEMPLATE_WARM_GET:
	case R_TEMPLATE_UNWARM:
		return api_templates(r);
	case R_SANDBOX_CODE:
	case R_CONTEXTS_CREATE:
	case R_CONTEXTS_LIST:
	case R_CONTEXT_DELETE:
	case R_CONTEXT_RESTART:
	case R_CONTEXT_INTERRUPT:
		return api_code(r);
	case R_CONTAINERS_CREATE:
	case R_CONTAINERS_LIST:
	case R_CONTAINER_GET:
	case R_CONTAINER_DELETE:
	case R_CFILES_CREATE:
	case R_CFILES_LIST:
	case R_CFILE_GET:
	case R_CFILE_DELETE:
	case R_CFILE_CONTENT:
		return api_containers(r);
	case R_NETWORK_GET:
	case R_NETWORK_PUT:
	case R_NETWORK_LOG:
	case R_NETWORK_CAPTURE:
	case R_PORTS_CREATE:
	case R_PORTS_LIST:
	case R_PORT_DELETE:
		return api_network(r);
	case R_SECRETS_LIST:
	case R_SECRET_PUT:
	case R_SECRET_GET:
	case R_SECRET_DELETE:
		return api_secrets(r);
	default:
		return api_sandboxes(r);
	}
}

static void body_append(struct request *r, const char *data, size_t len)
{
	char *grown;

	if (r->failed)
		return;		/* drained and dropped */
	if (r->len + len > r->max_body) {
		api_fail(&r->e, 413, "body_too_large", NULL, "request bodies are at most %zu bytes",
			 r->max_body);
		r->failed = true;
		return;
	}
	grown = realloc(r->body, r->len + len + 1);
	if (!grown) {
		api_fail(&r->e, 500, "internal", NULL, "out of memory");
		r->failed = true;
		return;
	}
	r->body = grown;
	memcpy(r->body + r->len, data, len);
	r->len += len;
	r->body[r->len] = 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct request *r = *con_cls;

	(void)cls, (void)version;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		r->conn = conn;
		r->max_body = MAX_JSON_BODY;
		*con_cls = r;
		admit(r, method, url);
		return MHD_YES;
	}
	if (*upload_size) {
		if (r->upload && !r->failed)
			upload_chunk(r, upload_data, *upload_size);
		else
			body_append(r, upload_data, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->failed) {
		upload_abort(r);
		return reply_error(r, &r->e);
	}
	return dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *r = *con_cls;

	(void)cls, (void)conn, (void)toe;
	if (!r)
		return;
	upload_abort(r);
	free(r->body);
	free(r);
	*con_cls = NULL;
}

static struct MHD_Daemon *start(unsigned flags, uint16_t port, int fd,
				const struct sockaddr *addr)
{
	return MHD_start_daemon(flags | MHD_USE_THREAD_PER_CONNECTION |
				MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, port,
				NULL, NULL, on_request, NULL,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
				MHD_OPTION_THREAD_STACK_SIZE, (size_t)(256 * 1024),
				fd >= 0 ? MHD_OPTION_LISTEN_SOCKET : MHD_OPTION_SOCK_ADDR,
				fd >= 0 ? (void *)(intptr_t)fd : (void *)addr,
				MHD_OPTION_END);
}

/* "ADDR:PORT" with an IPv4 address. */
static int parse_listen(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long port;

	if (!colon || colon == s || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, colon - s);
	host[colon - s] = 0;
	port = strtoul(colon + 1, &end, 10);
	if (*end || port == 0 || port > 65535)
		return -1;
	*sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(port) };
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

int http_start(int unix_fd, const char *listen_addr, char *err, size_t errlen)
{
	struct sockaddr_in sa;

	unix_daemon = start(0, 0, unix_fd, NULL);
	if (!unix_daemon) {
		snprintf(err, errlen, "cannot serve the unix socket");
		return -1;
	}
	if (!listen_addr)
		return 0;
	if (parse_listen(listen_addr, &sa)) {
		snprintf(err, errlen, "--listen %s: expected IPV4ADDR:PORT", listen_addr);
		return -1;
	}
	tcp_daemon = start(0, ntohs(sa.sin_port), -1, (const struct sockaddr *)&sa);
	if (!tcp_daemon) {
		snprintf(err, errlen, "cannot listen on %s", listen_addr);
		return -1;
	}
	return 0;
}

void http_stop(void)
{
	if (tcp_daemon)
		MHD_stop_daemon(tcp_daemon);
	if (unix_daemon)
		MHD_stop_daemon(unix_daemon);
}
