/*
 * kilnd_client.c - see kilnd_client.h.  One request per connection ("Connection: close");
 * the answer ends at its Content-Length (or EOF without one), so a socket kept open elsewhere
 * cannot stall us.  Answers are bounded (64 MiB) so a confused peer cannot eat memory.
 */
#include "kilnd_client.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
