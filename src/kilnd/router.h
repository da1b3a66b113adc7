/*
 * router.h - map an HTTP method and path to one of kilnd's routes.  Pure: no I/O, so the
 * unit tests feed it hostile paths directly.
 */
#ifndef KILND_ROUTER_H
#define KILND_ROUTER_H

#include <stdbool.h>

enum route {
	R_NONE,
	R_HEALTH, R_METRICS,
	R_AGENTS, R_AGENT_CREDIT,		/* admin */
	R_USAGE, R_WALLET,
	R_SANDBOXES_CREATE, R_SANDBOXES_LIST,
	R_SANDBOX_GET, R_SANDBOX_DELETE,
	R_SANDBOX_PAUSE, R_SANDBOX_RESUME, R_SANDBOX_TIMEOUT, R_SANDBOX_EXEC,
	R_FILES_PUT, R_FILES_GET, R_FILES_LIST,
	R_PROCS_START, R_PROCS_LIST, R_PROC_SIGNAL, R_PROC_STDIN, R_PROC_OUTPUT,
	R_FILES_STAT, R_FILES_MKDIR, R_FILES_DELETE, R_FILES_RENAME,
	R_SANDBOX_SNAPSHOT, R_SNAPSHOTS_LIST, R_SNAPSHOT_GET, R_SNAPSHOT_DELETE,
	R_TEMPLATES_LIST, R_TEMPLATE_GET, R_TEMPLATE_BUILD, R_TEMPLATE_BUILD_GET,
	R_TEMPLATE_WARM, R_TEMPLATE_WARM_GET, R_TEMPLATE_UNWARM,
	R_SANDBOX_CODE, R_CONTEXTS_CREATE, R_CONTEXTS_LIST,	/* api_code.c */
	R_CONTEXT_DELETE, R_CONTEXT_RESTART, R_CONTEXT_INTERRUPT,
	R_CONTAINERS_CREATE, R_CONTAINERS_LIST,			/* api_containers.c */
	R_CONTAINER_GET, R_CONTAINER_DELETE,
	R_CFILES_CREATE, R_CFILES_LIST, R_CFILE_GET, R_CFILE_DELETE, R_CFILE_CONTENT,
	R_NETWORK_GET, R_NETWORK_PUT, R_NETWORK_LOG, R_NETWORK_CAPTURE,	/* api_network.c */
	R_PORTS_CREATE, R_PORTS_LIST, R_PORT_DELETE,
	R_SECRETS_LIST, R_SECRET_PUT, R_SECRET_GET, R_SECRET_DELETE,	/* api_secrets.c */
};

#define ROUTE_ID_MAX	64

struct route_match {
	enum route route;
	bool admin;			/* only the admin key may call it */
	bool agent;			/* only an agent key may call it */
	char id[ROUTE_ID_MAX];		/* the first {...} segment, if the route has one */
	char sub[ROUTE_ID_MAX];		/* the second (a context or file id), if any */
	unsigned pid;			/* the {pid} segment: 1 to 2^31-1 */
	char allow[64];			/* on 405: the methods the path accepts */
};

/* 200 and m filled in, 404 for an unknown path, 405 for a known path with another method.
 * path excludes the query string.  A {...} segment must be 1-63 characters of [a-z0-9-]; the
 * first goes to m->id, a second to m->sub.  A {pid} is 1-10 decimal digits without a leading
 * zero, at most 2^31-1 (a Linux pid).  A {name} is any non-empty segment, copied like an id
 * for its handler to judge and answer 400 (one of 64 bytes or more becomes "", never a valid
 * name). */
int router_match(const char *method, const char *path, struct route_match *m);

#endif
