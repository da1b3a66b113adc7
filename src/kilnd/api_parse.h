/*
 * api_parse.h - validation of the request bodies and query values of kilnd's process, file
 * and list-filter routes (api_processes.c, api_files.c, api_sandboxes.c).  Like json.h it is
 * pure (jansson only) so the unit tests drive it with hostile input directly; every failure
 * fills an api_error naming the bad field.
 */
#ifndef KILND_API_PARSE_H
#define KILND_API_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "json.h"

#define MAX_STDIN_TEXT		(256 * 1024)
#define MAX_METADATA_KEYS	32
#define MAX_METADATA_KEY	64
#define MAX_METADATA_VALUE	512

/* POST /processes: an exec request plus how to run it. */
struct process_req {
	struct exec_req x;	/* cmd/shell, env, cwd, user, timeout_s (0: none) */
	bool background;	/* answer the pid at once; output kept for /output */
	bool stream;		/* foreground: NDJSON events as they happen */
	bool pty;
	unsigned rows, cols;
	bool stdin_open;	/* "stdin": true - fed later through /stdin */
	const char *stdin_data;	/* "stdin": "text" - sent at the start, then closed */
	size_t stdin_len;
};

int parse_process(json_t *body, struct process_req *r, struct api_error *e);
void process_req_free(struct process_req *r);

/* {"signal": "TERM" | "SIGTERM" | 15}; default TERM when absent. */
int parse_signal(json_t *body, int *sig, struct api_error *e);

/* A signal by name (with or without SIG) or decimal number; 0 if unknown. */
int signal_number(const char *name);
/* Its name without SIG, or NULL for a number without a name. */
const char *signal_name(int sig);

/* {"path": "/abs"} for mkdir. */
int parse_path_body(json_t *body, const char **path, struct api_error *e);
/* {"from": "/abs", "to": "/abs"} for rename. */
int parse_rename(json_t *body, const char **from, const char **to, struct api_error *e);

/* A query flag: absent, "0", "false" -> false; "1", "true" -> true; else -1. */
int query_flag(const char *v, bool *out);

/* Sandbox metadata: an object of at most MAX_METADATA_KEYS string values. */
int check_metadata(json_t *md, struct api_error *e);
/* A metadata key, as in a metadata.KEY=VALUE list filter: [A-Za-z0-9._-], 1-64 bytes. */
bool metadata_key_ok(const char *k);

#endif
