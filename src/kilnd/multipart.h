/*
 * multipart.h - find one field of a multipart/form-data body (RFC 7578), as OpenAI's container
 * file upload sends it.  The body is the client's, whole, in memory (bounded by http.c): every
 * length, delimiter and header is checked; nothing is copied.  Pure, for the unit tests.
 */
#ifndef KILND_MULTIPART_H
#define KILND_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#define MULTIPART_BOUNDARY_MAX	70	/* RFC 2046 */
#define MULTIPART_HEADERS_MAX	8192	/* one part's header block */
#define MULTIPART_NAME_MAX	255

struct multipart_part {
	char name[MULTIPART_NAME_MAX + 1];	/* the form field */
	char filename[MULTIPART_NAME_MAX + 1];	/* "" when the part has none */
	const uint8_t *data;			/* into the body */
	size_t len;
};

/* The boundary parameter of a Content-Type header value; 0, or -1 with err set. */
int multipart_boundary(const char *content_type, char *boundary, size_t len, char *err,
		       size_t errlen);

/* The first part whose field name is `field`; 0, or -1 with err set (no such field, or a
 * malformed body: missing delimiters, truncated, headers too long, no Content-Disposition). */
int multipart_find(const uint8_t *body, size_t len, const char *boundary, const char *field,
		   struct multipart_part *out, char *err, size_t errlen);

/* A file name safe as one path component: the last component of name (clients may send a
 * path), without control characters; 0, or -1 if nothing usable is left ("", ".", ".."). */
int multipart_safe_filename(const char *name, char *out, size_t len);

#endif
