/*
 * kiln_ingress.c - kiln-ingress: expose one guest port on a host address, for dev-server
 * previews (docs/egress.md).
 *
 *   kiln-ingress --listen HOSTADDR:PORT --netns NAME --to GUESTADDR:PORT [--log FILE]
 *   kiln-ingress --listen-fd N ...   (a listening socket made by the caller, kilnd)
 *
 * The listening socket is on the host; each accepted connection gets a socket made inside
 * the sandbox's network namespace, connected to the guest's port there, and the two are
 * relayed (relay.c).  Nothing else of the namespace is reachable through us: the target is
 * fixed on the command line, never taken from the client.  Every connection is one JSON line
 * in the log.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "listen_in_netns.h"
#include "relay.h"

#define MAX_CONNS		256
#define CONNECT_TIMEOUT_MS	5000

struct ingress {
	const char *netns;
	struct sockaddr_in to;
	FILE *log;
	pthread_mutex_t log_lock;
	atomic_int conns;
};

struct conn {
	struct ingress *in;
	int client;
	char peer[INET6_ADDRSTRLEN + 8];
};

static void usage(void)
{
	fprintf(stderr, "usage: kiln-ingress --listen HOSTADDR:PORT|--listen-fd N --netns NAME "
		"--to GUESTADDR:PORT [--log FILE]\n");
	exit(2);
}

static void log_conn(struct conn *c, const char *verdict, const char *reason,
		     const struct relay_counts *n)
{
	struct ingress *in = c->in;
	struct timespec now;

	if (!in->log)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&in->log_lock);
	fprintf(in->log, "{\"time_ms\": %lld, \"client\": \"%s\", \"verdict\": \"%s\", "
		"\"reason\": \"%s\", \"bytes_in\": %llu, \"bytes_out\": %llu}\n",
		(long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, c->peer, verdict,
		reason ? reason : "", (unsigned long long)(n ? n->a_to_b : 0),
		(unsigned long long)(n ? n->b_to_a : 0));
	fflush(in->log);
	pthread_mutex_unlock(&in->log_lock);
}

/* A socket in the sandbox's namespace, connected to the guest's port; -1 with *why. */
static int connect_guest(struct ingress *in, const char **why)
{
	static __thread char err[300];
	int fd = socket_in_netns(in->netns, err, sizeof(err)), e = 0;
	socklen_t elen = sizeof(e);

	if (fd < 0) {
		*why = err;
		return -1;
	}
	struct timeval tv = { CONNECT_TIMEOUT_MS / 1000, 0 };

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&in->to, sizeof(in->to)) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0 || e) {
		*why = "the guest's port does not answer";
		close(fd);
		return -1;
	}
	tv.tv_sec = 0;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	struct relay_counts n = { 0 };
	const char *why = NULL;
	int guest = connect_guest(c->in, &why);

	if (guest < 0) {
		char junk[4096];

		log_conn(c, "failed", why, NULL);
		/* Read what the client already sent, so closing is a FIN, not a reset. */
		while (recv(c->client, junk, sizeof(junk), MSG_DONTWAIT) > 0)
			;
		shutdown(c->client, SHUT_WR);
	} else {
		why = relay(c->client, guest, &n, NULL, NULL, NULL);
		log_conn(c, "forwarded", why, &n);
		close(guest);
	}
	close(c->client);
	atomic_fetch_sub(&c->in->conns, 1);
	free(c);
	return NULL;
}

static void start_conn(struct ingress *in, int fd, const struct sockaddr_in *peer)
{
	struct conn *c;
	pthread_t t;
	pthread_attr_t attr;
	char addr[INET6_ADDRSTRLEN];

	if (atomic_fetch_add(&in->conns, 1) >= MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
		atomic_fetch_sub(&in->conns, 1);
		close(fd);
		return;
	}
	c->in = in;
	c->client = fd;
	inet_ntop(AF_INET, &peer->sin_addr, addr, sizeof(addr));
	snprintf(c->peer, sizeof(c->peer), "%s:%u", addr, ntohs(peer->sin_port));
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, conn_thread, c)) {
		atomic_fetch_sub(&in->conns, 1);
		close(fd);
		free(c);
	}
	pthread_attr_destroy(&attr);
}

/* --listen-fd N: a TCP socket already listening (kilnd binds it, so it knows the port the
 * kernel chose before we run).  Anything else is a usage error. */
static int listening_fd(const char *s)
{
	int fd, on = 0;
	socklen_t len = sizeof(on);
	char *end;
	long n = strtol(s, &end, 10);

	if (*end || n < 3 || n > 1024)
		usage();
	fd = (int)n;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) < 0 || !on)
		usage();
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

static int parse_target(const char *s, struct sockaddr_in *sa)
{
	char host[64], *colon, *end;
	long port;

	if (strlen(s) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%s", s);
	colon = strrchr(host, ':');
	if (!colon)
		return -1;
	*colon = 0;
	port = strtol(colon + 1, &end, 10);
	if (*end || port <= 0 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' }, { "netns", required_argument, NULL, 'n' },
		{ "to", required_argument, NULL, 't' }, { "log", required_argument, NULL, 'g' },
		{ "listen-fd", required_argument, NULL, 'f' }, { NULL, 0, NULL, 0 },
	};
	struct ingress in = { 0 };
	const char *listen = NULL, *to = NULL, *log = NULL;
	char err[512];
	int c, lfd = -1;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': listen = optarg; break;
		case 'n': in.netns = optarg; break;
		case 't': to = optarg; break;
		case 'g': log = optarg; break;
		case 'f': lfd = listening_fd(optarg); break;
		default: usage();
		}
	}
	if (!listen == (lfd < 0) || !in.netns || !to || optind != argc ||
	    parse_target(to, &in.to))
		usage();
	pthread_mutex_init(&in.log_lock, NULL);
	if (log && !(in.log = fopen(log, "ae"))) {
		fprintf(stderr, "kiln-ingress: %s: %s\n", log, strerror(errno));
		return 2;
	}
	/* Fail now, not at the first connection, if the namespace is not there. */
	int probe = socket_in_netns(in.netns, err, sizeof(err));

	if (probe < 0) {
		fprintf(stderr, "kiln-ingress: %s\n", err);
		return 2;
	}
	close(probe);
	if (listen)
		lfd = listen_in_netns(SOCK_STREAM, listen, NULL, err, sizeof(err));
	if (lfd < 0) {
		fprintf(stderr, "kiln-ingress: cannot listen: %s\n", err);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "kiln-ingress: serving %s -> %s in %s\n", listen ? listen : "its socket",
		to, in.netns);
	for (;;) {
		struct sockaddr_in peer;
		socklen_t plen = sizeof(peer);
		int fd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);

		if (fd >= 0)
			start_conn(&in, fd, &peer);
		else if (errno != EINTR && errno != ECONNABORTED)
			usleep(10000);	/* out of fds: do not spin */
	}
}
