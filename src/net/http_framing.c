/*
 * http_framing.c - request boundaries on a plain-HTTP connection (http_framing.h).
 *
 * A request's body is what its header says (RFC 9112 section 6): nothing, Content-Length
 * bytes, or chunked.  We accept only the unambiguous forms and read chunked bodies with a byte
 * state machine, so a request split anywhere across reads frames the same as one read whole.
 */
#include "http_framing.h"

#include <string.h>
#include <strings.h>

enum {
	S_SIZE,		/* hex digits of a chunk size */
	S_EXT,		/* after ';': a chunk extension, up to CR */
	S_SIZE_LF,	/* the LF ending a size line */
	S_DATA,		/* chunk data */
	S_DATA_CR,	/* the CRLF after chunk data */
	S_DATA_LF,
	S_END_CR,	/* after the last chunk: CRLF, no trailers */
	S_END_LF,
};

static int fail(const char **why, const char *reason)
{
	*why = reason;
	return -1;
}

/* The value of a header line, without the optional whitespace around it. */
static void value_of(const char *colon, const char *eol, const char **v, size_t *vlen)
{
	const char *s = colon + 1, *e = eol;

	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*v = s;
	*vlen = e - s;
}

static bool named(const char *line, const char *colon, const char *name)
{
	return (size_t)(colon - line) == strlen(name) && !strncasecmp(line, name, strlen(name));
}

/* Content-Length: 1 to 18 digits (less than 10^18: no overflow), nothing else. */
static int parse_length(const char *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;

	if (n < 1 || n > 18)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

int http_request_framing(const char *buf, size_t len, struct http_body *b, const char **why)
{
	const char *end = buf + len, *line, *eol;
	bool has_length = false, chunked = false, http10;
	uint64_t length = 0;

	memset(b, 0, sizeof(*b));
	eol = memmem(buf, len, "\r\n", 2);
	if (!eol || len < 4 || memcmp(end - 4, "\r\n\r\n", 4))
		return fail(why, "incomplete request header");
	http10 = eol - buf >= 8 && !memcmp(eol - 8, "HTTP/1.0", 8);
	for (line = eol + 2; line < end - 2; line = eol + 2) {
		const char *colon, *v;
		size_t vlen;

		eol = memmem(line, end - line, "\r\n", 2);
		colon = memchr(line, ':', eol - line);
		if (!colon)
			return fail(why, "header line without a colon");
		value_of(colon, eol, &v, &vlen);
		if (named(line, colon, "content-length")) {
			if (has_length)
				return fail(why, "two Content-Length headers");
			if (parse_length(v, vlen, &length))
				return fail(why, "Content-Length is not a number");
			has_length = true;
		} else if (named(line, colon, "transfer-encoding")) {
			if (chunked)
				return fail(why, "two Transfer-Encoding headers");
			if (vlen != 7 || strncasecmp(v, "chunked", 7))
				return fail(why, "a Transfer-Encoding other than chunked");
			chunked = true;
		} else if (named(line, colon, "upgrade")) {
			return fail(why, "protocol upgrades are not proxied over plain HTTP");
		}
	}
	if (has_length && chunked)
		return fail(why, "both Content-Length and Transfer-Encoding");
	if (chunked && http10)
		return fail(why, "Transfer-Encoding in an HTTP/1.0 request");
	if (chunked) {
		b->kind = HTTP_BODY_CHUNKED;
		b->state = S_SIZE;
	} else if (has_length && length) {
		b->kind = HTTP_BODY_LENGTH;
		b->left = length;
	} else {
		b->done = true;
	}
	return 0;
}

static int hex(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* One byte of chunk syntax outside the data.  0, or -1 with *why. */
static int chunk_byte(struct http_body *b, uint8_t c, const char **why)
{
	if (b->state <= S_SIZE_LF && ++b->line > HTTP_CHUNK_LINE_MAX)
		return fail(why, "chunk size line too long");
	switch (b->state) {
	case S_SIZE:
		if (hex(c) >= 0) {
			/* At most 15 hex digits: below 2^60, so no overflow. */
			if (b->digits++ == 15)
				return fail(why, "chunk size too large");
			b->left = b->left * 16 + hex(c);
			return 0;
		}
		if (!b->digits)
			return fail(why, "bad chunk size");
		if (c == ';') {
			b->state = S_EXT;
			return 0;
		}
		if (c == '\r') {
			b->state = S_SIZE_LF;
			return 0;
		}
		return fail(why, "bad chunk size");
	case S_EXT:
		if (c == '\r') {
			b->state = S_SIZE_LF;
			return 0;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return fail(why, "control byte in a chunk extension");
		return 0;
	case S_SIZE_LF:
		if (c != '\n')
			return fail(why, "bare CR in a chunk size line");
		b->line = b->digits = 0;
		b->state = b->left ? S_DATA : S_END_CR;
		return 0;
	case S_DATA_CR:
		if (c != '\r')
			return fail(why, "chunk data longer than its size");
		b->state = S_DATA_LF;
		return 0;
	case S_DATA_LF:
		if (c != '\n')
			return fail(why, "chunk data not followed by CRLF");
		b->state = S_SIZE;
		return 0;
	case S_END_CR:
		if (c != '\r')
			return fail(why, "trailers are not proxied");
		b->state = S_END_LF;
		return 0;
	case S_END_LF:
		if (c != '\n')
			return fail(why, "bare CR after the last chunk");
		b->done = true;
		return 0;
	}
	return fail(why, "bad chunk state");
}

long http_body_feed(struct http_body *b, const uint8_t *p, size_t n, const char **why)
{
	size_t used = 0;

	while (used < n && !b->done) {
		if (b->kind == HTTP_BODY_LENGTH || b->state == S_DATA) {
			size_t take = n - used < b->left ? n - used : (size_t)b->left;

			used += take;
			b->left -= take;
			if (b->left)
				continue;
			if (b->kind == HTTP_BODY_LENGTH)
				b->done = true;
			else
				b->state = S_DATA_CR;
			continue;
		}
		if (b->kind != HTTP_BODY_CHUNKED)
			return fail(why, "no body expected");
		if (chunk_byte(b, p[used], why))
			return -1;
		used++;
	}
	return (long)used;
}
