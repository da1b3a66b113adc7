/*
 * http_framing.h - where one HTTP/1.x request ends and the next begins on a plain-HTTP
 * connection from the guest (http_framing.c), so kiln-proxy inspects every request's header
 * block, not only the first (docs/egress.md).
 *
 * The bytes are the guest's: anything two HTTP parsers could read differently (Content-Length
 * with Transfer-Encoding, two lengths, an encoding other than chunked, whitespace before a
 * chunk extension, a bare CR or LF, trailers) is refused instead of guessed, because the
 * upstream — maybe a shared front end — must see the same request boundaries we checked.
 */
#ifndef KILN_HTTP_FRAMING_H
#define KILN_HTTP_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_CHUNK_LINE_MAX	1024	/* a chunk-size line with its extensions */

enum http_body_kind { HTTP_BODY_NONE, HTTP_BODY_LENGTH, HTTP_BODY_CHUNKED };

struct http_body {
	enum http_body_kind kind;
	uint64_t left;		/* LENGTH: bytes to come; CHUNKED: of the current chunk's data */
	int state;		/* CHUNKED: where in the chunk syntax (http_framing.c) */
	unsigned line;		/* CHUNKED: bytes of the current size line so far */
	unsigned digits;	/* CHUNKED: hex digits of the current size */
	bool last;		/* CHUNKED: the size line was the zero-size last chunk */
	bool done;		/* the request, body included, has ended */
};

/*
 * The body framing of the request whose complete header block (ending in the blank line) is
 * buf[0..len), as sniff_http accepted it.  Also refuses protocol upgrades, after which the
 * bytes would no longer be HTTP requests we could inspect.  0, or -1 with *why.
 */
int http_request_framing(const char *buf, size_t len, struct http_body *b, const char **why);

/*
 * Consume up to n bytes of the body at p: the count that belongs to this request (never a
 * byte of the next one).  b->done once the body has ended.  -1 with *why on bad framing.
 */
long http_body_feed(struct http_body *b, const uint8_t *p, size_t n, const char **why);

#endif
