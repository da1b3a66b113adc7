/*
 * listen_in_netns.c - bind a socket inside a network namespace (listen_in_netns.h).
 *
 * setns() moves only the calling thread, so other threads are never inside the sandbox's
 * namespace.  If we cannot get back to our own namespace we exit, since everything after
 * would silently happen inside the sandbox's.
 */
#include "listen_in_netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse_addr(const char *addr_port, struct sockaddr_in *sa)
{
	char host[64], *colon, *end;
	long port;

	if (strlen(addr_port) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%s", addr_port);
	colon = strrchr(host, ':');
	if (!colon)
		return -1;
	*colon = 0;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port <= 0 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int bind_here(int type, const struct sockaddr_in *sa)
{
	int one = 1, fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ||
	    (type == SOCK_STREAM && listen(fd, 128) < 0)) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Run make(arg) with this thread inside /run/netns/NETNS.  Its fd, or -1 with err set. */
static int in_netns(const char *netns, int (*make)(const void *arg), const void *arg, char *err,
		    size_t errlen)
{
	char path[300];
	int self, target, fd = -1, e = 0;

	snprintf(path, sizeof(path), "/run/netns/%s", netns);
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	target = open(path, O_RDONLY | O_CLOEXEC);
	if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0) {
		snprintf(err, errlen, "network namespace %s: %s", netns, strerror(errno));
		goto out;
	}
	fd = make(arg);
	e = errno;
	if (setns(self, CLONE_NEWNET) < 0) {
		fprintf(stderr, "cannot return to our own network namespace: %s\n",
			strerror(errno));
		exit(1);
	}
	if (fd < 0)
		snprintf(err, errlen, "in %s: %s", netns, strerror(e));
out:
	if (self >= 0)
		close(self);
	if (target >= 0)
		close(target);
	return fd;
}

static int tcp_socket(const void *arg)
{
	(void)arg;
	return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

int socket_in_netns(const char *netns, char *err, size_t errlen)
{
	return in_netns(netns, tcp_socket, NULL, err, errlen);
}

struct bind_args {
	int type;
	struct sockaddr_in sa;
};

static int bind_args_here(const void *arg)
{
	const struct bind_args *b = arg;

	return bind_here(b->type, &b->sa);
}

int listen_in_netns(int type, const char *addr_port, const char *netns, char *err,
		    size_t errlen)
{
	struct bind_args b = { .type = type };
	int fd;

	if (parse_addr(addr_port, &b.sa)) {
		snprintf(err, errlen, "%s: expected IPv4ADDR:PORT", addr_port);
		return -1;
	}
	if (netns)
		return in_netns(netns, bind_args_here, &b, err, errlen);
	fd = bind_here(type, &b.sa);
	if (fd < 0)
		snprintf(err, errlen, "%s: %s", addr_port, strerror(errno));
	return fd;
}
