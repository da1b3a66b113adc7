/*
 * secrets.c - the credentials kiln-proxy injects, and the header rewrite that does it
 * (secrets.h).
 *
 * The rewrite works on whole header lines of one request.  A placeholder is replaced only in
 * the header its secret names and only for its own hosts; one found anywhere else in the
 * header block (another header, the request line, a secret of another host) is an alert, and
 * the request is refused: the guest, which may be running injected instructions, is trying to
 * send a credential where it does not belong, or to learn it by reflection.  Values may hold
 * no CR, LF or NUL, so a replacement can never add a header line.
 */
#include "secrets.h"
#include "text_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SECRETS_FILE_MAX	(1 << 20)

static bool token(const char *s, size_t min, size_t max, const char *extra)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr(extra, *s)))
			return false;
	return true;
}

static const char *parse_hosts(struct secret *s, char *hosts)
{
	char *save = NULL;

	for (char *h = strtok_r(hosts, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
		if (s->nhosts == SECRET_HOSTS_MAX)
			return "too many hosts";
		if (egress_parse_pattern(h, &s->hosts[s->nhosts++]))
			return "a host is not a name or *.name";
	}
	return s->nhosts ? NULL : "no hosts";
}

/* "secret NAME PLACEHOLDER HEADER HOSTS VALUE..." */
const char *secrets_add_line(struct secrets *sec, char *line)
{
	char *f[5], *rest = line, *value;
	struct secret *s;
	const char *why;

	for (int i = 0; i < 5; i++) {
		rest += strspn(rest, " \t");
		f[i] = rest;
		rest += strcspn(rest, " \t");
		if (rest == f[i])
			return "expected: secret NAME PLACEHOLDER HEADER HOSTS VALUE";
		if (*rest)
			*rest++ = 0;
	}
	value = rest + strspn(rest, " \t");
	if (strcmp(f[0], "secret"))
		return "unknown directive (secret)";
	if (!*value)
		return "no value";
	if (sec->n == SECRETS_MAX)
		return "too many secrets";
	s = &sec->s[sec->n];
	memset(s, 0, sizeof(*s));
	if (!token(f[1], 1, sizeof(s->name) - 1, "-_."))
		return "bad name";
	if (!token(f[2], SECRET_PH_MIN, SECRET_PH_MAX, "-_"))
		return "placeholder must be 16-128 letters, digits, '-' or '_'";
	if (!token(f[3], 1, sizeof(s->header) - 1, "-"))
		return "bad header name";
	if (strlen(value) > SECRET_VALUE_MAX || strpbrk(value, "\r\n"))
		return "value too long, or holds a line break";
	for (unsigned i = 0; i < sec->n; i++)
		if (strstr(sec->s[i].placeholder, f[2]) || strstr(f[2], sec->s[i].placeholder))
			return "placeholder overlaps another secret's";
	why = parse_hosts(s, f[4]);
	if (why)
		return why;
	snprintf(s->name, sizeof(s->name), "%s", f[1]);
	snprintf(s->placeholder, sizeof(s->placeholder), "%s", f[2]);
	snprintf(s->header, sizeof(s->header), "%s", f[3]);
	snprintf(s->value, sizeof(s->value), "%s", value);
	sec->n++;
	return NULL;
}

static const char *secret_line(char *line, void *ctx)
{
	return secrets_add_line(ctx, line);
}

int secrets_parse(struct secrets *sec, const char *text, char *err, size_t errlen)
{
	memset(sec, 0, sizeof(*sec));
	return parse_lines(text, secret_line, sec, err, errlen);
}

int secrets_load(struct secrets *sec, const char *path, char *err, size_t errlen)
{
	char *text = read_text_file(path, SECRETS_FILE_MAX, err, errlen);
	int r;

	if (!text)
		return -1;
	r = secrets_parse(sec, text, err, errlen);
	free(text);
	return r;
}

static bool for_host(const struct secret *s, const char *host)
{
	for (unsigned i = 0; i < s->nhosts; i++)
		if (egress_pattern_matches(&s->hosts[i], host))
			return true;
	return false;
}

bool secrets_for_host(const struct secrets *sec, const char *host)
{
	for (unsigned i = 0; i < sec->n; i++)
		if (for_host(&sec->s[i], host))
			return true;
	return false;
}

const struct secret *secrets_find_placeholder(const struct secrets *sec, const void *buf,
					      size_t len)
{
	for (unsigned i = 0; i < sec->n; i++)
		if (memmem(buf, len, sec->s[i].placeholder, strlen(sec->s[i].placeholder)))
			return &sec->s[i];
	return NULL;
}

/* Append n bytes to out; false if it does not fit. */
static bool put(char *out, size_t cap, size_t *len, const char *p, size_t n)
{
	if (*len + n > cap)
		return false;
	memcpy(out + *len, p, n);
	*len += n;
	return true;
}

/* One header line (without CRLF), with the placeholders it may carry replaced. */
static int rewrite_line(const struct secrets *sec, const char *host, const char *line,
			size_t n, char *out, size_t cap, size_t *len, const struct secret **alert)
{
	const char *colon = memchr(line, ':', n);
	size_t name_len = colon ? (size_t)(colon - line) : 0;
	const char *p = line, *end = line + n;

	while (p < end) {
		const struct secret *hit = NULL;
		const char *at = end;

		for (unsigned i = 0; i < sec->n; i++) {
			const char *f = memmem(p, end - p, sec->s[i].placeholder,
					       strlen(sec->s[i].placeholder));

			if (f && f < at) {
				at = f;
				hit = &sec->s[i];
			}
		}
		if (!put(out, cap, len, p, at - p))
			return -1;
		if (!hit)
			break;
		/* Only in its own header, past the name, and for its own hosts. */
		if (!colon || at < colon || strlen(hit->header) != name_len ||
		    strncasecmp(line, hit->header, name_len) || !for_host(hit, host)) {
			*alert = hit;
			return -1;
		}
		if (!put(out, cap, len, hit->value, strlen(hit->value)))
			return -1;
		p = at + strlen(hit->placeholder);
	}
	return put(out, cap, len, "\r\n", 2) ? 0 : -1;
}

long secrets_rewrite(const struct secrets *sec, const char *host, const char *in, size_t inlen,
		     char *out, size_t outcap, const struct secret **alert)
{
	const char *p = in, *end = in + inlen;
	size_t len = 0;
	bool first = true;

	*alert = NULL;
	while (p < end) {
		const char *eol = memmem(p, end - p, "\r\n", 2);

		if (!eol)
			eol = end;
		if (eol == p) {		/* the blank line */
			if (!put(out, outcap, &len, "\r\n", 2))
				return -1;
			p += 2;
			break;
		}
		if (first) {
			/* The request line is no place for a credential. */
			*alert = secrets_find_placeholder(sec, p, eol - p);
			if (*alert || !put(out, outcap, &len, p, eol - p) ||
			    !put(out, outcap, &len, "\r\n", 2))
				return -1;
			first = false;
		} else if (rewrite_line(sec, host, p, eol - p, out, outcap, &len, alert)) {
			return -1;
		}
		p = eol + 2;
	}
	return (long)len;
}
