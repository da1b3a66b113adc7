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

/* o from the environment, before any option. */
void kilnd_opts_init(struct kilnd_opts *o);
/* Take option c (with its argument); false if it is not one of these. */
bool kilnd_opt(struct kilnd_opts *o, int c, const char *arg);
/* Exit 125 saying that cmd needs an API key, when o has none. */
void kilnd_opts_need_key(const struct kilnd_opts *o, const char *cmd);

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
