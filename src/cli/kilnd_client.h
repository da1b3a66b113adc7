/*
 * kilnd_client.h - the CLI's side of kilnd's API: one HTTP/1.1 request over kilnd's unix
 * socket, its JSON answer parsed.
 */
#ifndef KILN_KILND_CLIENT_H
#define KILN_KILND_CLIENT_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>

/* The options every command that talks to kilnd takes: --kilnd SOCK (else $KILN_SOCKET,
 * else /run/kiln/kilnd.sock), --key KEY (else $KILN_API_KEY), --json. */
struct kilnd_opts {
	const char *sock, *key;
	bool json;
};

/* Their entries for a getopt_long table; kilnd_opt takes the letters 'k', 'K' and 'j'. */
#define KILND_LONGOPTS \
	{ "kilnd", required_argument, NULL, 'k' }, { "key", required_argument, NULL, 'K' }, \
	{ "json", no_argument, NULL, 'j' }

/* The tail of every such command's usage text. */
#define KILND_USAGE_COMMON \
	"       (each with [--kilnd SOCK] [--key KEY] [--json]; KILN_SOCKET, KILN_API_KEY)\n"

/* A command that talks to kilnd, as its options are parsed. */
struct kilnd_cmd {
	const char *name;		/* "sandbox": named when it has no API key */
	const char *shortopts;		/* for getopt_long */
	const struct option *longopts;	/* KILND_LONGOPTS and the command's own */
	/* Take one of the command's own options; false if it is not one. */
	bool (*opt)(void *o, int c, const char *arg);
	void (*usage)(void);		/* prints and exits */
};

/*
 * Parse argv: the common options into *k (from the environment first), the command's own
 * through cmd->opt(o, ...), cmd->usage() on anything else; exit 125 when no API key is known.
 * Returns optind.
 */
int kilnd_parse_opts(const struct kilnd_cmd *cmd, int argc, char **argv, struct kilnd_opts *k,
		     void *o);

/*
 * Send method path (with body, a JSON text or NULL) to the kilnd at sock with key as Bearer.
 * Returns the HTTP status and the parsed answer in *out (NULL if it was not JSON), or -1 with
 * a reason in err when kilnd could not be reached or answered garbage.
 */
int kilnd_request(const char *sock, const char *key, const char *method, const char *path,
		  const char *body, json_t **out, char *err, size_t errlen);

/*
 * The CLI's one request: the answer on success (2xx with JSON); otherwise kilnd's error (or
 * why it could not be reached) on stderr as "kiln: CODE (HTTP STATUS): MESSAGE" and exit 125.
 * body (may be NULL) is sent as JSON.
 */
json_t *kilnd_call(const char *sock, const char *key, const char *method, const char *path,
		   json_t *body);

/* A string field of a JSON object, or "-". */
const char *kilnd_str(json_t *o, const char *k);

/* v indented on stdout, for --json. */
void kilnd_print_json(json_t *v);

/* A positive number given to option opt, or exit 125 saying so. */
long kilnd_positive(const char *opt, const char *s);

/*
 * Files, streamed: upload the bytes of src with PUT path (chunked), or download GET path into
 * dst.  The HTTP status, with kilnd's JSON answer (or error) in *out when it sent one; -1 with
 * err when kilnd could not be reached, broke off, or a local read or write failed.
 */
int kilnd_upload(const char *sock, const char *key, const char *path, int src, json_t **out,
		 char *err, size_t errlen);
int kilnd_download(const char *sock, const char *key, const char *path, int dst,
		   json_t **out, char *err, size_t errlen);

#endif
