/*
 * code_json.h - request validation for the code interpreter and OpenAI Containers routes
 * (api_code.c, api_containers.c).  Pure (jansson only), like json.h, so unit tests feed it
 * hostile bodies directly; every failure names the bad field.
 */
#ifndef KILND_CODE_JSON_H
#define KILND_CODE_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "json.h"

#define CONTEXT_ID_LEN		16
#define DEFAULT_CELL_TIMEOUT_S	300
#define MAX_CELL_TIMEOUT_S	(24 * 3600)
#define MAX_CODE_BYTES		((1u << 20) - 4096)	/* a cell fits one agent frame */
#define DEFAULT_IDLE_MINUTES	20			/* OpenAI's default */
#define MAX_IDLE_MINUTES	(7 * 24 * 60)
#define MAX_CONTAINER_NAME	256

struct code_req {
	const char *code;	/* borrowed from the body */
	size_t len;
	char context_id[CONTEXT_ID_LEN + 1];	/* "" for the sandbox's default context */
	unsigned timeout_s;
	bool stream;
};

struct context_req {
	const char *language, *cwd, *user;	/* borrowed, NULL when absent */
	char **env;		/* "K=V", NULL-terminated, owned (strv_free), or NULL */
};

struct container_req {
	char name[MAX_CONTAINER_NAME + 1];
	unsigned minutes;
	char memory_limit[8];	/* "1g", "4g", "16g", "64g" */
	unsigned memory_mib, cpus;
};

/* A context id as the guest makes them: 16 lowercase hex digits. */
bool context_id_ok(const char *s);

int parse_code(json_t *body, struct code_req *r, struct api_error *e);
int parse_context(json_t *body, struct context_req *r, struct api_error *e);
int parse_container(json_t *body, struct container_req *r, struct api_error *e);

/* ?limit=&order=&after= of an OpenAI list: limit 1..100 (default 20), order asc|desc
 * (default desc), after an id of at most 63 bytes.  Any may be NULL. */
int parse_list_query(const char *limit_s, const char *order, const char *after,
		     unsigned *limit, bool *asc, struct api_error *e);

/*
 * One page of an OpenAI list from items (an array sorted ascending by created_at, each with
 * an "id"): the items after `after` in the requested order, at most limit of them, in the
 * envelope {object: "list", data, first_id, last_id, has_more}.  Steals items.
 */
json_t *list_page(json_t *items, unsigned limit, bool asc, const char *after);

#endif
