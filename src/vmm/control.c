/*
 * control.c - line framing for the control socket (see control.h).
 *
 * Clients are served on the main thread from its epoll loop: a readable client is read until
 * EAGAIN, each complete line is handled and answered at once.  Answers are short and a client
 * that does not read them is dropped rather than waited for.  A line longer than
 * CONTROL_LINE_MAX gets an error and the connection is closed.
 */
#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/unix_listen.h"

int control_listen(struct control *c, const char *path, control_handler handle, void *ctx,
		   char *err, size_t errlen)
{
	char why[256];
	mode_t old;

	memset(c, 0, sizeof(*c));
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		c->client[i].fd = -1;
	c->handle = handle;
	c->ctx = ctx;
	c->ep = -1;
	/* The socket file is created by bind(): born 0600, never briefly open to others. */
	old = umask(0077);
	c->listen_fd = unix_listen(path, 16, why, sizeof(why));
	umask(old);
	if (c->listen_fd < 0) {
		snprintf(err, errlen, "--control %s", why);
		return -1;
	}
	return 0;
}

static void watch(struct control *c, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev);
}

void control_attach(struct control *c, int ep)
{
	c->ep = ep;
	if (c->listen_fd >= 0)
		watch(c, c->listen_fd);
}

bool control_owns(const struct control *c, int fd)
{
	if (fd < 0 || c->listen_fd < 0)
		return false;
	if (fd == c->listen_fd)
		return true;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->client[i].fd == fd)
			return true;
	return false;
}

static void drop(struct control *c, struct control_client *cl)
{
	epoll_ctl(c->ep, EPOLL_CTL_DEL, cl->fd, NULL);
	close(cl->fd);
	cl->fd = -1;
	cl->len = 0;
}

static void accept_client(struct control *c)
{
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		if (c->client[i].fd < 0) {
			c->client[i].fd = fd;
			c->client[i].len = 0;
			watch(c, fd);
			return;
		}
	}
	close(fd);	/* all slots busy: the client sees EOF and may retry */
}

/* The answer line, or false if the client cannot take it now (it is then dropped). */
static bool answer(struct control_client *cl, const char *reply)
{
	char line[CONTROL_REPLY_MAX + 1];
	int n = snprintf(line, sizeof(line), "%s\n", reply);

	if (n >= (int)sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	return send(cl->fd, line, n, MSG_NOSIGNAL | MSG_DONTWAIT) == n;
}

/* Split "cmd arg" at the first space; trailing spaces and a CR are ignored. */
static bool run_line(struct control *c, struct control_client *cl, char *line)
{
	char reply[CONTROL_REPLY_MAX];
	size_t len = strlen(line);
	char *arg;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		line[--len] = '\0';
	if (!len)
		return true;
	arg = strchr(line, ' ');
	if (arg)
		*arg++ = '\0';
	else
		arg = line + len;
	c->handle(c->ctx, line, arg, reply, sizeof(reply));
	return answer(cl, reply);
}

/* Handle every complete line in the buffer; false if the client must go. */
static bool run_lines(struct control *c, struct control_client *cl)
{
	char *nl;

	while ((nl = memchr(cl->line, '\n', cl->len))) {
		size_t used = nl - cl->line + 1;

		*nl = '\0';
		if (!run_line(c, cl, cl->line))
			return false;
		memmove(cl->line, cl->line + used, cl->len - used);
		cl->len -= used;
	}
	if (cl->len == sizeof(cl->line)) {
		answer(cl, "error line too long");
		return false;
	}
	return true;
}

static void serve(struct control *c, struct control_client *cl)
{
	for (;;) {
		ssize_t n = read(cl->fd, cl->line + cl->len, sizeof(cl->line) - cl->len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			drop(c, cl);
			return;
		}
		cl->len += n;
		if (!run_lines(c, cl)) {
			drop(c, cl);
			return;
		}
	}
}

void control_event(struct control *c, int fd)
{
	if (fd == c->listen_fd) {
		accept_client(c);
		return;
	}
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->client[i].fd == fd)
			serve(c, &c->client[i]);
}
