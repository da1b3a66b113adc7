/*
 * multipart.c - see multipart.h.
 *
 * Body:  [preamble CRLF] "--" B [LWSP] CRLF headers CRLF CRLF data CRLF "--" B ... "--" B "--"
 * A part's data ends at the first CRLF "--" B; the boundary is chosen by the client so that it
 * never occurs inside the data.
 */
#include "multipart.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* RFC 2046 bchars, without the space (it may not end a boundary; we refuse it anywhere). */
static bool bchar(char c)
{
	return isalnum((unsigned char)c) || strchr("'()+_,-./:=?", c);
}

/* A parameter value: a token, or a quoted string with backslash escapes.  Returns the number
 * of bytes consumed from s, or 0 if the value is malformed or longer than len - 1. */
static size_t param_value(const char *s, const char *end, char *out, size_t len)
{
	const char *p = s;
	size_t n = 0;

	if (p < end && *p == '"') {
		for (p++; p < end && *p != '"'; p++) {
			if (*p == '\\' && p + 1 < end)
				p++;
			if (n + 1 >= len || (unsigned char)*p < 0x20)
				return 0;
			out[n++] = *p;
		}
		if (p == end)
			return 0;	/* unterminated */
		out[n] = 0;
		return p + 1 - s;
	}
	while (p < end && *p != ';' && *p != ' ' && *p != '\t') {
		if (n + 1 >= len || (unsigned char)*p < 0x21 || *p == '"')
			return 0;
		out[n++] = *p++;
	}
	out[n] = 0;
	return n ? (size_t)(p - s) : 0;
}

/* The parameter `name` of a header value like `type; a=1; b="x"` (end bounds it). */
static int header_param(const char *v, const char *end, const char *name, char *out,
			size_t len)
{
	size_t nl = strlen(name);
	const char *p = memchr(v, ';', end - v);

	while (p && p < end) {
		p++;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if ((size_t)(end - p) > nl && !strncasecmp(p, name, nl) && p[nl] == '=') {
			size_t used = param_value(p + nl + 1, end, out, len);

			return used ? 0 : -1;
		}
		/* Skip this parameter, quoted semicolons included. */
		bool quoted = false;

		for (; p < end; p++) {
			if (*p == '"' && p[-1] != '\\')
				quoted = !quoted;
			if (*p == ';' && !quoted)
				break;
		}
	}
	return -1;
}

int multipart_boundary(const char *ct, char *boundary, size_t len, char *err, size_t errlen)
{
	const char *end;

	if (!ct)
		return fail(err, errlen, "Content-Type: missing (expected multipart/form-data)");
	end = ct + strlen(ct);
	if (strncasecmp(ct, "multipart/form-data", 19) || (ct[19] && ct[19] != ';' &&
							   ct[19] != ' '))
		return fail(err, errlen, "Content-Type: expected multipart/form-data");
	if (header_param(ct, end, "boundary", boundary, len))
		return fail(err, errlen, "Content-Type: no usable boundary parameter");
	if (strlen(boundary) > MULTIPART_BOUNDARY_MAX)
		return fail(err, errlen, "Content-Type: the boundary is over %d characters",
			    MULTIPART_BOUNDARY_MAX);
	for (const char *b = boundary; *b; b++)
		if (!bchar(*b))
			return fail(err, errlen, "Content-Type: the boundary has a character "
				    "multipart does not allow");
	return 0;
}

/* Parse one part's header block [h, hend): its field name and file name. */
static int part_headers(const char *h, const char *hend, struct multipart_part *part,
			char *err, size_t errlen)
{
	bool disposition = false;

	part->name[0] = part->filename[0] = 0;
	while (h < hend) {
		const char *eol = memmem(h, hend - h, "\r\n", 2);

		if (!eol)
			eol = hend;
		if ((size_t)(eol - h) > 20 && !strncasecmp(h, "Content-Disposition:", 20)) {
			const char *v = h + 20;

			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			if ((size_t)(eol - v) < 9 || strncasecmp(v, "form-data", 9))
				return fail(err, errlen, "a part's Content-Disposition is not form-data");
			if (header_param(v, eol, "name", part->name, sizeof(part->name)))
				return fail(err, errlen, "a part has no usable field name");
			if (header_param(v, eol, "filename", part->filename, sizeof(part->filename)))
				part->filename[0] = 0;
			disposition = true;
		}
		h = eol + 2;
	}
	if (!disposition)
		return fail(err, errlen, "a part has no Content-Disposition header");
	return 0;
}

int multipart_find(const uint8_t *body, size_t len, const char *boundary, const char *field,
		   struct multipart_part *out, char *err, size_t errlen)
{
	char delim[MULTIPART_BOUNDARY_MAX + 5];
	const char *p = (const char *)body, *end = p + len;
	size_t dl;

	if (!*boundary || strlen(boundary) > MULTIPART_BOUNDARY_MAX)
		return fail(err, errlen, "bad boundary");
	dl = snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	/* The first delimiter may start the body (no CRLF before it) or follow a preamble. */
	if (len >= dl - 2 && !memcmp(p, delim + 2, dl - 2)) {
		p += dl - 2;
	} else {
		p = memmem(p, len, delim, dl);
		if (!p)
			return fail(err, errlen, "the body has no multipart delimiter");
		p += dl;
	}
	for (;;) {
		struct multipart_part part;
		const char *hend, *dend;

		/* After a delimiter: "--" closes the body, else padding and CRLF open a part. */
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
			break;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
			return fail(err, errlen, "the body is truncated or malformed after a delimiter");
		p += 2;
		hend = memmem(p, (size_t)(end - p) < MULTIPART_HEADERS_MAX + 4 ?
			      (size_t)(end - p) : MULTIPART_HEADERS_MAX + 4, "\r\n\r\n", 4);
		if (!hend && p + 2 <= end && p[0] == '\r' && p[1] == '\n')
			hend = p - 2;	/* a part without headers */
		if (!hend)
			return fail(err, errlen, (size_t)(end - p) > MULTIPART_HEADERS_MAX ?
				    "a part's headers are over %d bytes" :
				    "the body ends inside a part's headers", MULTIPART_HEADERS_MAX);
		if (part_headers(p, hend, &part, err, errlen))
			return -1;
		p = hend + 4;
		dend = memmem(p, end - p, delim, dl);
		if (!dend)
			return fail(err, errlen, "the body ends inside part '%.60s' (no closing "
				    "delimiter)", part.name);
		part.data = (const uint8_t *)p;
		part.len = dend - p;
		p = dend + dl;
		if (!strcmp(part.name, field)) {
			*out = part;
			return 0;
		}
	}
	return fail(err, errlen, "no form field '%s'", field);
}

int multipart_safe_filename(const char *name, char *out, size_t len)
{
	const char *base = name;
	size_t n = 0;

	for (const char *p = name; *p; p++)
		if (*p == '/' || *p == '\\')
			base = p + 1;
	for (; *base && n + 1 < len; base++) {
		if ((unsigned char)*base < 0x20 || *base == 0x7f)
			continue;
		out[n++] = *base;
	}
	out[n] = 0;
	if (!n || !strcmp(out, ".") || !strcmp(out, ".."))
		return -1;
	return 0;
}
