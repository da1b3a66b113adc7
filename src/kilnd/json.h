/*
 * json.h - kilnd's request validation and JSON helpers.  Every request body is hostile: each
 * parser checks types, sizes and ranges, refuses unknown fields, and on failure fills an
 * api_error naming the bad field.  Pure (jansson only), so unit tests drive it directly.
 */
#ifndef KILND_JSON_H
#define KILND_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_JSON_BODY		(1 << 20)
#define MAX_CPUS		32
#define MAX_MEMORY_MIB		(64 * 1024)
#define MIN_MEMORY_MIB		64
#define MAX_TIMEOUT_S		(30 * 24 * 3600)
#define MAX_EXEC_TIMEOUT_S	(24 * 3600)
#define MAX_ENV_VARS		256
#define MAX_ARGV		1024
#define MAX_STRING		4096
#define MAX_SHELL		(64 * 1024)
#define MAX_METADATA_BYTES	(16 * 1024)

struct api_error {
	int status;		/* HTTP status */
	char code[40];		/* stable: invalid_argument, not_found, ... */
	char message[512];
	char field[64];		/* the offending field, or "" */
};

/* Fill e; returns -1 so callers can `return api_fail(...)`. */
int api_fail(struct api_error *e, int status, const char *code, const char *field,
	     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* {"error": {"code", "message", "field"?}} */
json_t *api_error_json(const struct api_error *e);

/* Parse a request body: empty means {}; anything but a JSON object is a 400. */
json_t *body_object(const char *body, size_t len, struct api_error *e);

struct create_req {
	char template[64];
	char snapshot[64];	/* create from this snapshot instead of the template; or "" */
	unsigned cpus, memory_mib, timeout_s;
	json_t *env;		/* object of strings, borrowed from the body, or NULL */
	json_t *metadata;	/* object of strings, borrowed, or NULL */
	bool pause_on_timeout;	/* on_timeout: "pause" (else "kill") */
	bool timeout_from_ready; /* count timeout_s from the end of the boot, not the request */
	json_t *network;	/* object, borrowed, or NULL: no NIC (network.h) */
};

struct exec_req {
	const char **argv;	/* NULL-terminated, strings borrowed from the body; free() it */
	const char *shell;
	char **env;		/* "K=V", NULL-terminated, owned; free with strv_free */
	const char *cwd, *user;
	unsigned timeout_s;
};

struct agent_req {
	char name[64];
	char currency[8];
	unsigned max_sandboxes, max_cpus, max_memory_mib;
	unsigned max_total_memory_mib;	/* 0: no limit */
};

int parse_create(json_t *body, struct create_req *r, struct api_error *e);
int parse_exec(json_t *body, struct exec_req *r, struct api_error *e);
void exec_req_free(struct exec_req *r);
int parse_timeout(json_t *body, unsigned *timeout_s, struct api_error *e);
int parse_agent(json_t *body, struct agent_req *r, struct api_error *e);
int parse_credit(json_t *body, int64_t *amount_micro, char *currency, size_t len,
		 struct api_error *e);

/* "K=V" strings from an object of strings (already validated), NULL-terminated. */
char **env_strv(json_t *env);

/*
 * Field checks every request parser shares: only the allowed fields; an optional string of
 * 1..max bytes without NULs (NULL when absent or null); an optional integer in [min, max]
 * (def when absent); an optional "env" object of NAME: "value" (borrowed, NULL when absent).
 * Each returns 0, or -1 with a 400 naming the field in e.
 */
int json_only_fields(json_t *obj, const char *const *allowed, struct api_error *e);
int json_opt_string(json_t *obj, const char *name, size_t max, const char **out,
		    struct api_error *e);
int json_opt_uint(json_t *obj, const char *name, unsigned min, unsigned max, unsigned def,
		  unsigned *out, struct api_error *e);
int json_opt_env(json_t *obj, json_t **out, struct api_error *e);
void strv_free(char **v);

/* A guest path: absolute, no NUL, at most 4095 bytes. */
bool guest_path_ok(const char *p);

/* Base64 (RFC 4648, padded) of len bytes into a malloc'd string. */
char *base64_encode(const uint8_t *data, size_t len);

/* A JSON string for bytes: the text itself if it is UTF-8, else base64 and *base64 = true. */
json_t *bytes_json(const uint8_t *data, size_t len, bool *base64);

/* "2026-11-28T03:01:05Z" for ms since the epoch, in buf; returns buf. */
const char *iso_time(int64_t ms, char *buf, size_t len);

/* A command's or a cell's output stream, kept up to OUTPUT_KEPT_MAX bytes for a JSON answer;
 * what comes after is counted, not kept. */
#define OUTPUT_KEPT_MAX	(8u << 20)

struct kept_output {
	uint8_t *data;
	size_t len, total;
};

void output_keep(struct kept_output *o, const uint8_t *data, size_t len);
/* res[name] (bytes_json), res[name_encoding] ("utf-8" or "base64"), res[name_truncated];
 * frees o's data. */
void output_put(json_t *res, const char *name, struct kept_output *o);

#endif
