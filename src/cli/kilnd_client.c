/*
 * kilnd_client.c - see kilnd_client.h.  One request per connection ("Connection: close");
 * the answer ends at its Content-Length (or EOF without one), so a socket kept open elsewhere
 * cannot stall us.  Answers are bounded (64 MiB) so a confused peer cannot eat memory.
 */
#include "kilnd_client.h"

#include <errno.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_ANSWER	(64u << 20)

static int connect_unix(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: path too long for a socket", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "cannot reach kilnd at %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= w;
	}
	return 0;
}

/* Has buf (NUL-terminated) the whole answer: headers and Content-Length bytes of body? */
static bool complete(const char *buf, size_t len)
{
	const char *end = strstr(buf, "\r\n\r\n"), *cl;
	unsigned long body;

	if (!end)
		return false;
	cl = strcasestr(buf, "\r\nContent-Length:");
	if (!cl || cl > end)
		return false;	/* no length: until EOF */
	body = strtoul(cl + 17, NULL, 10);
	return len >= (size_t)(end + 4 - buf) + body;
}

/* The whole answer, NUL-terminated; NULL on error or when too big. */
static char *read_all(int fd, size_t *len)
{
	size_t cap = 4096;
	char *buf = malloc(cap), *grown;

	*len = 0;
	while (buf) {
		ssize_t n;

		buf[*len] = 0;
		if (complete(buf, *len))
			return buf;

		if (*len + 1 == cap) {
			grown = cap < MAX_ANSWER ? realloc(buf, cap * 2) : NULL;
			if (!grown)
				break;
			buf = grown;
			cap *= 2;
		}
		n = read(fd, buf + *len, cap - 1 - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (n == 0) {
			buf[*len] = 0;
			return buf;
		}
		*len += n;
	}
	free(buf);
	return NULL;
}

int kilnd_request(const char *sock, const char *key, const char *method, const char *path,
		  const char *body, json_t **out, char *err, size_t errlen)
{
	char *head = NULL, *answer, *payload;
	size_t blen = body ? strlen(body) : 0, alen;
	int fd, status = -1, n;

	*out = NULL;
	fd = connect_unix(sock, err, errlen);
	if (fd < 0)
		return -1;
	n = asprintf(&head, "%s %s HTTP/1.1\r\nHost: kilnd\r\nConnection: close\r\n"
		     "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\n\r\n", method, path, key ? key : "", blen);
	if (n < 0 || write_all(fd, head, n) || (blen && write_all(fd, body, blen))) {
		snprintf(err, errlen, "cannot send to kilnd: %s", strerror(errno));
		goto out;
	}
	answer = read_all(fd, &alen);
	if (!answer || sscanf(answer, "HTTP/1.%*d %d", &status) != 1 ||
	    !(payload = strstr(answer, "\r\n\r\n"))) {
		snprintf(err, errlen, "kilnd sent no valid HTTP answer");
		status = -1;
		free(answer);
		goto out;
	}
	*out = json_loads(payload + 4, 0, NULL);
	free(answer);
out:
	free(head);
	close(fd);
	return status;
}

/* ---- files: bodies streamed, never held whole ---- */

int kilnd_upload(const char *sock, const char *key, const char *path, int src, json_t **out,
		 char *err, size_t errlen)
{
	char head[512], buf[65536], *answer, *payload;
	size_t alen;
	int fd, n, status = -1;

	*out = NULL;
	fd = connect_unix(sock, err, errlen);
	if (fd < 0)
		return -1;
	/* Chunked: a pipe has no size up front, and kilnd takes either. */
	n = snprintf(head, sizeof(head), "PUT %s HTTP/1.1\r\nHost: kilnd\r\nConnection: close\r\n"
		     "Authorization: Bearer %s\r\nContent-Type: application/octet-stream\r\n"
		     "Transfer-Encoding: chunked\r\n\r\n", path, key ? key : "");
	if (n >= (int)sizeof(head) || write_all(fd, head, n))
		goto sendfail;
	for (;;) {
		ssize_t r = read(src, buf, sizeof(buf));
		char size[32];

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "reading the local file: %s", strerror(errno));
			goto out;
		}
		n = snprintf(size, sizeof(size), "%zx\r\n", (size_t)r);
		if (write_all(fd, size, n) || write_all(fd, buf, r) || write_all(fd, "\r\n", 2))
			goto sendfail;
		if (r == 0)
			break;		/* the zero-length chunk ends the body */
	}
	answer = read_all(fd, &alen);
	if (!answer || sscanf(answer, "HTTP/1.%*d %d", &status) != 1 ||
	    !(payload = strstr(answer, "\r\n\r\n"))) {
		snprintf(err, errlen, "kilnd sent no valid HTTP answer");
		status = -1;
	} else {
		*out = json_loads(payload + 4, 0, NULL);
	}
	free(answer);
	goto out;
sendfail:
	snprintf(err, errlen, "cannot send to kilnd: %s", strerror(errno));
out:
	close(fd);
	return status;
}

/* A buffered reader over the socket, for the head and a chunked body. */
struct reader {
	int fd;
	size_t off, len;
	char buf[65536];
};

static int fill(struct reader *r)
{
	ssize_t n;

	if (r->off == r->len)
		r->off = r->len = 0;
	do
		n = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return -1;
	r->len += n;
	return 0;
}

/* One line, without its CRLF.  0, or -1 at EOF or when it does not fit. */
static int get_line(struct reader *r, char *line, size_t cap)
{
	size_t n = 0;

	for (;;) {
		while (r->off < r->len) {
			char c = r->buf[r->off++];

			if (c == '\n') {
				line[n && line[n - 1] == '\r' ? n - 1 : n] = 0;
				return 0;
			}
			if (n + 1 == cap)
				return -1;
			line[n++] = c;
		}
		if (fill(r))
			return -1;
	}
}

/* Copy n bytes (or, with n == UINT64_MAX, everything until EOF) to dst. */
static int copy_n(struct reader *r, uint64_t n, int dst)
{
	while (n) {
		size_t take;

		if (r->off == r->len && fill(r))
			return n == UINT64_MAX ? 0 : -1;
		take = r->len - r->off < n ? r->len - r->off : n;
		if (write_all(dst, r->buf + r->off, take))
			return -1;
		r->off += take;
		if (n != UINT64_MAX)
			n -= take;
	}
	return 0;
}

static int copy_chunked(struct reader *r, int dst)
{
	char line[128];

	for (;;) {
		char *end;
		unsigned long long n;

		if (get_line(r, line, sizeof(line)))
			return -1;
		n = strtoull(line, &end, 16);
		if (end == line)
			return -1;
		if (n == 0)
			return 0;
		if (copy_n(r, n, dst) || get_line(r, line, sizeof(line)) || line[0])
			return -1;
	}
}

int kilnd_download(const char *sock, const char *key, const char *path, int dst,
		   json_t **out, char *err, size_t errlen)
{
	struct reader *r = calloc(1, sizeof(*r));
	char head[512], line[1024];
	bool chunked = false;
	uint64_t length = UINT64_MAX;
	int n, status = -1;

	*out = NULL;
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->fd = connect_unix(sock, err, errlen);
	if (r->fd < 0) {
		free(r);
		return -1;
	}
	n = snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: kilnd\r\nConnection: close\r\n"
		     "Authorization: Bearer %s\r\n\r\n", path, key ? key : "");
	if (n >= (int)sizeof(head) || write_all(r->fd, head, n) || get_line(r, line, sizeof(line)) ||
	    sscanf(line, "HTTP/1.%*d %d", &status) != 1) {
		snprintf(err, errlen, "kilnd sent no valid HTTP answer");
		status = -1;
		goto out;
	}
	for (;;) {
		if (get_line(r, line, sizeof(line))) {
			snprintf(err, errlen, "kilnd's answer ended in its headers");
			status = -1;
			goto out;
		}
		if (!line[0])
			break;
		if (!strncasecmp(line, "Transfer-Encoding:", 18) && strcasestr(line, "chunked"))
			chunked = true;
		if (!strncasecmp(line, "Content-Length:", 15))
			length = strtoull(line + 15, NULL, 10);
	}
	if (status != 200) {
		/* An error: kilnd's JSON, small. */
		char tmp[4096];
		size_t got = 0;

		while (got < sizeof(tmp) - 1 && (r->off < r->len || !fill(r))) {
			size_t take = r->len - r->off;

			if (take > sizeof(tmp) - 1 - got)
				take = sizeof(tmp) - 1 - got;
			memcpy(tmp + got, r->buf + r->off, take);
			r->off += take;
			got += take;
		}
		tmp[got] = 0;
		*out = json_loads(tmp, 0, NULL);
		goto out;
	}
	if (chunked ? copy_chunked(r, dst) : copy_n(r, length, dst)) {
		snprintf(err, errlen, "the download broke off, or the local file cannot be written");
		status = -1;
	}
out:
	close(r->fd);
	free(r);
	return status;
}

/* ---- what every kilnd command of the CLI does the same way ---- */

json_t *kilnd_call(const char *sock, const char *key, const char *method, const char *path,
		   json_t *body)
{
	char err[512], *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_t *out, *e;
	int status = kilnd_request(sock, key, method, path, text, &out, err, sizeof(err));

	free(text);
	if (status < 0) {
		fprintf(stderr, "kiln: %s\n", err);
		exit(125);
	}
	if (status >= 200 && status < 300 && out)
		return out;
	e = json_object_get(out, "error");
	fprintf(stderr, "kiln: %s (HTTP %d): %s\n",
		json_string_value(json_object_get(e, "code")) ?: "error", status,
		json_string_value(json_object_get(e, "message")) ?: "no JSON answer");
	exit(125);
}

const char *kilnd_str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "-";
}

void kilnd_print_json(json_t *v)
{
	json_dumpf(v, stdout, JSON_INDENT(2));
	putchar('\n');
}

long kilnd_positive(const char *opt, const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (end == s || *end || v <= 0) {
		fprintf(stderr, "kiln: %s: '%s' must be a positive number\n", opt, s);
		exit(125);
	}
	return v;
}

static void kilnd_opts_init(struct kilnd_opts *o)
{
	const char *sock = getenv("KILN_SOCKET");

	o->sock = sock && *sock ? sock : "/run/kiln/kilnd.sock";
	o->key = getenv("KILN_API_KEY");
	o->json = false;
}

static bool kilnd_opt(struct kilnd_opts *o, int c, const char *arg)
{
	switch (c) {
	case 'k': o->sock = arg; return true;
	case 'K': o->key = arg; return true;
	case 'j': o->json = true; return true;
	default: return false;
	}
}

int kilnd_parse_opts(const struct kilnd_cmd *cmd, int argc, char **argv, struct kilnd_opts *k,
		     void *o)
{
	int c;

	kilnd_opts_init(k);
	optind = 1;
	while ((c = getopt_long(argc, argv, cmd->shortopts, cmd->longopts, NULL)) != -1)
		if (!cmd->opt(o, c, optarg) && !kilnd_opt(k, c, optarg))
			cmd->usage();
	if (k->key && *k->key)
		return optind;
	fprintf(stderr, "kiln: %s: need an API key (--key KEY or KILN_API_KEY)\n", cmd->name);
	exit(125);
}
