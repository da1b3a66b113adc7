/*
 * sniff.c - the server name a guest's connection asks for: TLS SNI or HTTP Host (sniff.h).
 *
 * Ambiguity is refused, because the proxy connects by the name we return and the guest may
 * be trying to make it connect somewhere the policy would not allow: two server_name
 * extensions or two host names in one, a ClientHello split over records, two Host headers,
 * a folded header, an absolute-form request target that names another host than Host, a
 * name with characters DNS names do not have.
 */
#include "sniff.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <strings.h>

#define TLS_HANDSHAKE		0x16
#define TLS_CLIENT_HELLO	1
#define EXT_SERVER_NAME		0x0000
#define EXT_ECH			0xfe0d
#define TLS_RECORD_MAX		16384

static unsigned get16(const uint8_t *p)
{
	return p[0] << 8 | p[1];
}

/* Copy a host name (len bytes at s) into out->name, lower case, checked; false if bad. */
static bool take_name(const char *s, size_t len, struct sniffed *out)
{
	size_t label = 0;

	if (len && s[len - 1] == '.')
		len--;			/* "example.com." is example.com */
	if (len == 0 || len > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			   c == '_') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
		out->name[i] = c;
	}
	out->name[len] = 0;
	return label > 0;
}

bool sniff_is_tls(const uint8_t *buf, size_t len)
{
	return len >= 1 && buf[0] == TLS_HANDSHAKE;
}

static enum sniff_result bad(struct sniffed *out, const char *why)
{
	out->why = why;
	return SNIFF_BAD;
}

/* The server_name extension's body: exactly one host_name. */
static enum sniff_result server_name(const uint8_t *p, size_t len, struct sniffed *out)
{
	size_t off = 2;
	bool have = false;

	if (len < 2 || get16(p) != len - 2)
		return bad(out, "malformed server_name extension");
	while (off < len) {
		if (off + 3 > len)
			return bad(out, "malformed server_name extension");
		unsigned type = p[off], n = get16(p + off + 1);

		off += 3;
		if (off + n > len)
			return bad(out, "malformed server_name extension");
		if (type == 0) {
			if (have)
				return bad(out, "two server names");
			if (!take_name((const char *)p + off, n, out))
				return bad(out, "server name is not a DNS name");
			have = true;
		}
		off += n;
	}
	return have ? SNIFF_OK : bad(out, "server_name extension without a host name");
}

enum sniff_result sniff_tls(const uint8_t *buf, size_t len, struct sniffed *out)
{
	const uint8_t *p, *end;
	size_t rec, hs, n;
	bool seen_sni = false;

	memset(out, 0, sizeof(*out));
	if (len < 5)
		return SNIFF_NEED_MORE;
	if (buf[0] != TLS_HANDSHAKE || buf[1] != 3)
		return bad(out, "not a TLS handshake");
	rec = get16(buf + 3);
	if (rec < 4 || rec > TLS_RECORD_MAX)
		return bad(out, "bad TLS record length");
	if (len < 5 + rec)
		return SNIFF_NEED_MORE;
	p = buf + 5;
	if (p[0] != TLS_CLIENT_HELLO)
		return bad(out, "not a ClientHello");
	hs = (size_t)p[1] << 16 | get16(p + 2);
	if (hs > rec - 4)
		return bad(out, "ClientHello split over records");
	end = p + 4 + hs;
	p += 4;
	/* version, random, session id, cipher suites, compression methods */
	if (end - p < 35 || (n = p[34]) > 32 || end - p < (ptrdiff_t)(35 + n + 2))
		return bad(out, "truncated ClientHello");
	p += 35 + n;
	n = get16(p);
	if (end - p < (ptrdiff_t)(2 + n + 1))
		return bad(out, "truncated ClientHello");
	p += 2 + n;
	n = p[0];
	if (end - p < (ptrdiff_t)(1 + n))
		return bad(out, "truncated ClientHello");
	p += 1 + n;
	if (p == end)
		return SNIFF_OK;	/* no extensions: no SNI */
	if (end - p < 2 || get16(p) != (size_t)(end - p - 2))
		return bad(out, "malformed extensions");
	p += 2;
	while (p < end) {
		unsigned type, elen;

		if (end - p < 4)
			return bad(out, "malformed extensions");
		type = get16(p);
		elen = get16(p + 2);
		p += 4;
		if (end - p < (ptrdiff_t)elen)
			return bad(out, "malformed extensions");
		if (type == EXT_ECH)
			out->ech = true;
		if (type == EXT_SERVER_NAME) {
			if (seen_sni)
				return bad(out, "two server_name extensions");
			seen_sni = true;
			if (server_name(p, elen, out) != SNIFF_OK)
				return SNIFF_BAD;
		}
		p += elen;
	}
	return SNIFF_OK;
}

/* host[:port] or [v6]:port from an authority (Host value or absolute target). */
static bool authority_host(const char *s, size_t len, struct sniffed *out)
{
	const char *colon;

	if (len && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		char lit[64];

		if (!close || close - s - 1 >= (ptrdiff_t)sizeof(lit))
			return false;
		memcpy(lit, s + 1, close - s - 1);
		lit[close - s - 1] = 0;
		uint8_t a[16];

		if (inet_pton(AF_INET6, lit, a) != 1)
			return false;
		snprintf(out->name, sizeof(out->name), "%s", lit);
		return true;
	}
	colon = memchr(s, ':', len);
	if (colon) {
		for (const char *d = colon + 1; d < s + len; d++)
			if (*d < '0' || *d > '9')
				return false;
		len = colon - s;
	}
	return take_name(s, len, out);
}

static const char *memmem_str(const uint8_t *buf, size_t len, const char *needle)
{
	return memmem(buf, len, needle, strlen(needle));
}

enum sniff_result sniff_http(const uint8_t *buf, size_t len, struct sniffed *out)
{
	const char *s = (const char *)buf, *head_end, *line, *eol, *sp1, *sp2;
	struct sniffed target = { 0 };
	bool have_target = false, have_host = false;

	memset(out, 0, sizeof(*out));
	if (len > SNIFF_MAX)
		len = SNIFF_MAX;
	head_end = memmem_str(buf, len, "\r\n\r\n");
	if (!head_end)
		return len >= SNIFF_MAX ? bad(out, "request header too large") : SNIFF_NEED_MORE;
	/* Line ends are CRLF and nothing else, and no control bytes: an upstream that takes a bare
	 * LF as a line end would otherwise see other headers (and a body) than we checked. */
	for (const char *q = s; q < head_end + 2; q++) {
		unsigned char c = *q;

		if (c == '\n' && (q == s || q[-1] != '\r'))
			return bad(out, "bare LF in the request header");
		if (c == '\r' && q[1] != '\n')
			return bad(out, "bare CR in the request header");
		if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
			return bad(out, "control byte in the request header");
	}
	eol = memmem_str(buf, head_end + 2 - s, "\r\n");
	sp1 = memchr(s, ' ', eol - s);
	sp2 = sp1 ? memchr(sp1 + 1, ' ', eol - sp1 - 1) : NULL;
	if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7))
		return bad(out, "not an HTTP/1.x request");
	for (const char *m = s; m < sp1; m++)
		if (*m < 'A' || *m > 'Z')
			return bad(out, "not an HTTP/1.x request");
	if (sp1 - s == 7 && !strncmp(s, "CONNECT", 7))
		return bad(out, "CONNECT is not proxied");
	/* Origin form, "*" (OPTIONS), or an absolute http(s) URL whose host must be Host's: a
	 * server routes by the target, so any other scheme or form could name another host. */
	size_t skip = sp2 - sp1 - 1 > 7 && !strncasecmp(sp1 + 1, "http://", 7) ? 7 :
		      sp2 - sp1 - 1 > 8 && !strncasecmp(sp1 + 1, "https://", 8) ? 8 : 0;

	if (!skip && sp1[1] != '/' && !(sp2 - sp1 == 2 && sp1[1] == '*'))
		return bad(out, "request target is neither a path nor an http(s) URL");
	if (skip) {
		const char *auth = sp1 + 1 + skip, *slash = memchr(auth, '/', sp2 - auth);
		size_t alen = (slash ? slash : sp2) - auth;

		if (memchr(auth, '@', alen) || !authority_host(auth, alen, &target))
			return bad(out, "bad host in the request target");
		have_target = true;
	}
	for (line = eol + 2; line < head_end + 2; line = eol + 2) {
		const char *colon, *v, *vend;

		eol = memmem_str((const uint8_t *)line, head_end + 2 - line, "\r\n");
		if (line[0] == ' ' || line[0] == '\t')
			return bad(out, "folded header line");
		colon = memchr(line, ':', eol - line);
		if (!colon)
			return bad(out, "header line without a colon");
		for (const char *n = line; n < colon; n++)
			if (*n <= ' ' || strchr("\"(),/:;<=>?@[\\]{}", *n))
				return bad(out, "header name is not a token");
		if (colon - line != 4 || strncasecmp(line, "host", 4))
			continue;
		if (have_host)
			return bad(out, "two Host headers");
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		for (vend = eol; vend > v && (vend[-1] == ' ' || vend[-1] == '\t'); vend--)
			;
		if (!authority_host(v, vend - v, out))
			return bad(out, "Host is not a host name");
		have_host = true;
	}
	if (!have_host)
		return bad(out, "no Host header");
	if (have_target && strcmp(target.name, out->name))
		return bad(out, "Host and the request target name different hosts");
	return SNIFF_OK;
}

bool sniff_ip_literal(const char *name, struct dns_addr *a)
{
	struct in_addr v4;

	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET6, name, a->bytes) == 1) {
		a->family = AF_INET6;
		return true;
	}
	/* inet_aton, not inet_pton: it also takes "127.1" and "0x7f000001", which getaddrinfo
	 * would resolve the same way, so they are addresses to check, not names. */
	if (inet_aton(name, &v4)) {
		a->family = AF_INET;
		memcpy(a->bytes, &v4, 4);
		return true;
	}
	return false;
}
