/*
 * secrets.h - credentials the egress proxy adds on the way out (secrets.c, docs/egress.md).
 *
 * The guest holds only a random placeholder for each secret; kiln-proxy, terminating TLS for
 * the secret's hosts, replaces the placeholder in request headers with the value.  The file,
 * written by kilnd (mode 0600, on the host only), has one secret per line:
 *
 *	secret NAME PLACEHOLDER HEADER HOSTS VALUE...
 *	secret github KILN_PH_3f9c0a1b2c3d4e5f Authorization api.github.com,*.github.com Bearer ghp_x
 *
 * HOSTS are names or *.names as in the egress policy; VALUE is the rest of the line.
 */
#ifndef KILN_SECRETS_H
#define KILN_SECRETS_H

#include <stdbool.h>
#include <stddef.h>

#include "egress_policy.h"

#define SECRETS_MAX		64
#define SECRET_HOSTS_MAX	16
#define SECRET_PH_MIN		16	/* a placeholder must not be guessable or common text */
#define SECRET_PH_MAX		128
#define SECRET_VALUE_MAX	4096

struct secret {
	char name[64];
	char placeholder[SECRET_PH_MAX + 1];
	char header[64];
	struct egress_pattern hosts[SECRET_HOSTS_MAX];
	unsigned nhosts;
	char value[SECRET_VALUE_MAX + 1];
};

struct secrets {
	struct secret s[SECRETS_MAX];
	unsigned n;
};

/* Parse the text (NUL-terminated).  0, or -1 with "line N: why" in err. */
int secrets_parse(struct secrets *sec, const char *text, char *err, size_t errlen);

/* Add the secret of one line (modified in place) to sec: NULL, or why the line is wrong
 * (never the line itself).  For files parsed line by line elsewhere (the host's egress.c). */
const char *secrets_add_line(struct secrets *sec, char *line);

/* Read and parse a file.  0, or -1 with the reason in err. */
int secrets_load(struct secrets *sec, const char *path, char *err, size_t errlen);

/* Whether any secret belongs to host (then its TLS is terminated to inject it). */
bool secrets_for_host(const struct secrets *sec, const char *host);

/*
 * Rewrite one request header block for host: every placeholder of a secret for host, in the
 * header the secret names, becomes its value.  in (inlen bytes, ending with the blank line)
 * is copied to out (outcap bytes).  Returns the new length; -1 with *alert set to the secret
 * whose placeholder appears where it may not go (another header, or a secret for other
 * hosts), or with *alert NULL if out is too small.
 */
long secrets_rewrite(const struct secrets *sec, const char *host, const char *in, size_t inlen,
		     char *out, size_t outcap, const struct secret **alert);

/* The first secret whose placeholder occurs in buf[0..len), or NULL. */
const struct secret *secrets_find_placeholder(const struct secrets *sec, const void *buf,
					      size_t len);

#endif
