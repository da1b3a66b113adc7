/*
 * router.c - see router.h.  Routes are a table of method, path pattern and flags; a pattern
 * segment "{pid}" matches a process id, "{name}" any segment (its handler validates it, so a
 * bad template name is a 400 that says why rather than a 404), and any other "{...}" one
 * identifier: the first into id, a second (a context or file id) into sub.
 */
#include "router.h"

#include <stdio.h>
#include <string.h>

struct route_def {
	const char *method, *pattern;
	enum route route;
	bool admin, agent;
};

static const struct route_def routes[] = {
	{ "GET", "/v1/health", R_HEALTH, false, false },
	{ "GET", "/metrics", R_METRICS, false, false },
	{ "POST", "/v1/agents", R_AGENTS, true, false },
	{ "POST", "/v1/agents/{id}/credit", R_AGENT_CREDIT, true, false },
	{ "GET", "/v1/usage", R_USAGE, false, true },
	{ "GET", "/v1/wallet", R_WALLET, false, true },
	{ "POST", "/v1/sandboxes", R_SANDBOXES_CREATE, false, true },
	{ "GET", "/v1/sandboxes", R_SANDBOXES_LIST, false, true },
	{ "GET", "/v1/sandboxes/{id}", R_SANDBOX_GET, false, true },
	{ "DELETE", "/v1/sandboxes/{id}", R_SANDBOX_DELETE, false, true },
	{ "POST", "/v1/sandboxes/{id}/pause", R_SANDBOX_PAUSE, false, true },
	{ "POST", "/v1/sandboxes/{id}/resume", R_SANDBOX_RESUME, false, true },
	{ "POST", "/v1/sandboxes/{id}/timeout", R_SANDBOX_TIMEOUT, false, true },
	{ "POST", "/v1/sandboxes/{id}/exec", R_SANDBOX_EXEC, false, true },
	{ "PUT", "/v1/sandboxes/{id}/files", R_FILES_PUT, false, true },
	{ "GET", "/v1/sandboxes/{id}/files", R_FILES_GET, false, true },
	{ "GET", "/v1/sandboxes/{id}/files/list", R_FILES_LIST, false, true },
	{ "GET", "/v1/sandboxes/{id}/files/stat", R_FILES_STAT, false, true },
	{ "POST", "/v1/sandboxes/{id}/files/mkdir", R_FILES_MKDIR, false, true },
	{ "DELETE", "/v1/sandboxes/{id}/files", R_FILES_DELETE, false, true },
	{ "POST", "/v1/sandboxes/{id}/files/rename", R_FILES_RENAME, false, true },
	{ "POST", "/v1/sandboxes/{id}/processes", R_PROCS_START, false, true },
	{ "GET", "/v1/sandboxes/{id}/processes", R_PROCS_LIST, false, true },
	{ "POST", "/v1/sandboxes/{id}/processes/{pid}/signal", R_PROC_SIGNAL, false, true },
	{ "POST", "/v1/sandboxes/{id}/processes/{pid}/stdin", R_PROC_STDIN, false, true },
	{ "GET", "/v1/sandboxes/{id}/processes/{pid}/output", R_PROC_OUTPUT, false, true },
	{ "POST", "/v1/sandboxes/{id}/snapshots", R_SANDBOX_SNAPSHOT, false, true },
	{ "GET", "/v1/snapshots", R_SNAPSHOTS_LIST, false, true },
	{ "GET", "/v1/snapshots/{id}", R_SNAPSHOT_GET, false, true },
	{ "DELETE", "/v1/snapshots/{id}", R_SNAPSHOT_DELETE, false, true },
	{ "GET", "/v1/templates", R_TEMPLATES_LIST, false, false },
	{ "GET", "/v1/templates/{name}", R_TEMPLATE_GET, false, false },
	{ "POST", "/v1/templates/{name}/build", R_TEMPLATE_BUILD, true, false },
	{ "GET", "/v1/templates/{name}/build", R_TEMPLATE_BUILD_GET, false, false },
	{ "POST", "/v1/templates/{name}/warm", R_TEMPLATE_WARM, true, false },
	{ "GET", "/v1/templates/{name}/warm", R_TEMPLATE_WARM_GET, false, false },
	{ "DELETE", "/v1/templates/{name}/warm", R_TEMPLATE_UNWARM, true, false },
	{ "POST", "/v1/sandboxes/{id}/code", R_SANDBOX_CODE, false, true },
	{ "POST", "/v1/sandboxes/{id}/contexts", R_CONTEXTS_CREATE, false, true },
	{ "GET", "/v1/sandboxes/{id}/contexts", R_CONTEXTS_LIST, false, true },
	{ "DELETE", "/v1/sandboxes/{id}/contexts/{context_id}", R_CONTEXT_DELETE, false, true },
	{ "POST", "/v1/sandboxes/{id}/contexts/{context_id}/restart", R_CONTEXT_RESTART, false,
	  true },
	{ "POST", "/v1/sandboxes/{id}/contexts/{context_id}/interrupt", R_CONTEXT_INTERRUPT,
	  false, true },
	{ "POST", "/v1/containers", R_CONTAINERS_CREATE, false, true },
	{ "GET", "/v1/containers", R_CONTAINERS_LIST, false, true },
	{ "GET", "/v1/containers/{id}", R_CONTAINER_GET, false, true },
	{ "DELETE", "/v1/containers/{id}", R_CONTAINER_DELETE, false, true },
	{ "POST", "/v1/containers/{id}/files", R_CFILES_CREATE, false, true },
	{ "GET", "/v1/containers/{id}/files", R_CFILES_LIST, false, true },
	{ "GET", "/v1/containers/{id}/files/{file_id}", R_CFILE_GET, false, true },
	{ "DELETE", "/v1/containers/{id}/files/{file_id}", R_CFILE_DELETE, false, true },
	{ "GET", "/v1/containers/{id}/files/{file_id}/content", R_CFILE_CONTENT, false, true },
	{ "GET", "/v1/sandboxes/{id}/network", R_NETWORK_GET, false, true },
	{ "PUT", "/v1/sandboxes/{id}/network", R_NETWORK_PUT, false, true },
	{ "GET", "/v1/sandboxes/{id}/network/log", R_NETWORK_LOG, false, true },
	{ "GET", "/v1/sandboxes/{id}/network/capture", R_NETWORK_CAPTURE, false, true },
	{ "POST", "/v1/sandboxes/{id}/ports", R_PORTS_CREATE, false, true },
	{ "GET", "/v1/sandboxes/{id}/ports", R_PORTS_LIST, false, true },
	{ "DELETE", "/v1/sandboxes/{id}/ports/{port}", R_PORT_DELETE, false, true },
	{ "GET", "/v1/secrets", R_SECRETS_LIST, false, true },
	{ "PUT", "/v1/secrets/{name}", R_SECRET_PUT, false, true },
	{ "GET", "/v1/secrets/{name}", R_SECRET_GET, false, true },
	{ "DELETE", "/v1/secrets/{name}", R_SECRET_DELETE, false, true },
};

static bool id_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* A {pid} segment at path: its length, or 0 if it is not one. */
static size_t pid_segment(const char *path, unsigned *pid)
{
	unsigned long long v = 0;
	size_t n = 0;

	if (path[0] == '0')
		return 0;
	while (path[n] >= '0' && path[n] <= '9') {
		if (n == 10)
			return 0;
		v = v * 10 + (unsigned)(path[n] - '0');
		n++;
	}
	if (n == 0 || (path[n] && path[n] != '/') || v > 0x7fffffff)
		return 0;
	*pid = (unsigned)v;
	return n;
}

/* One identifier segment of path into out; its length, or 0 if it is not one. */
static size_t take_id(const char *path, char *out)
{
	size_t n = 0;

	while (path[n] && path[n] != '/') {
		if (!id_char(path[n]) || n == ROUTE_ID_MAX - 1)
			return 0;
		n++;
	}
	memcpy(out, path, n);
	out[n] = 0;
	return n;
}

/* Any segment into out (cut to "" when too long: never a valid name); its length. */
static size_t take_name(const char *path, char *out)
{
	size_t n = strcspn(path, "/");

	if (n < ROUTE_ID_MAX)
		memcpy(out, path, n);
	out[n < ROUTE_ID_MAX ? n : 0] = 0;
	return n;
}

/* Does path match pattern?  {pid} goes to pid; {name} and the other {...} segments to id,
 * then sub. */
static bool path_matches(const char *pattern, const char *path, char *id, char *sub,
			 unsigned *pid)
{
	int nids = 0;

	while (*pattern && *path) {
		if (*pattern == '{') {
			const char *close = strchr(pattern, '}');
			size_t n;

			if (!close)
				return false;
			if (!strncmp(pattern, "{pid}", 5)) {
				n = pid_segment(path, pid);
			} else {
				if (nids == 2)
					return false;
				n = !strncmp(pattern, "{name}", 6) ?
					take_name(path, nids ? sub : id) :
					take_id(path, nids ? sub : id);
				nids++;
			}
			if (!n)
				return false;
			path += n;
			pattern = close + 1;
			continue;
		}
		if (*pattern != *path)
			return false;
		pattern++;
		path++;
	}
	return *pattern == 0 && *path == 0;
}

int router_match(const char *method, const char *path, struct route_match *m)
{
	bool path_known = false;
	char id[ROUTE_ID_MAX], sub[ROUTE_ID_MAX];
	unsigned pid = 0;

	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route_def *r = &routes[i];

		id[0] = sub[0] = 0;
		pid = 0;
		if (!path_matches(r->pattern, path, id, sub, &pid))
			continue;
		if (strcmp(r->method, method)) {
			size_t used = strlen(m->allow);

			if (!strstr(m->allow, r->method))
				snprintf(m->allow + used, sizeof(m->allow) - used, "%s%s",
					 used ? ", " : "", r->method);
			path_known = true;
			continue;
		}
		m->route = r->route;
		m->admin = r->admin;
		m->agent = r->agent;
		memcpy(m->id, id, sizeof(id));
		m->pid = pid;
		memcpy(m->sub, sub, sizeof(sub));
		m->allow[0] = 0;
		return 200;
	}
	return path_known ? 405 : 404;
}
