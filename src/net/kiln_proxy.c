/*
 * kiln_proxy.c - kiln-proxy, the transparent egress proxy of a sandbox (docs/egress.md).
 *
 *   kiln-proxy --http ADDR:PORT --tls ADDR:PORT --policy FILE [--netns NAME] [--log FILE]
 *              [--http-upstream-port N] [--tls-upstream-port N]
 *
 * The sandbox's nftables send the guest's TCP 80 and 443 here (listening inside its network
 * namespace with --netns).  For each connection we read what it asks for — the ClientHello's
 * SNI, or the HTTP request's Host (sniff.c) — and decide by the sandbox's egress policy
 * (egress_policy.h): a denied name, a missing SNI, an encrypted ClientHello (ECH: the real
 * name is hidden), an IP literal no allow-cidr names, or anything ambiguous is refused with an
 * HTTP 403 saying why, or a TLS access_denied alert.  An allowed name is resolved here, on the
 * host, and connected to by name: where the guest meant to connect (its own resolver, its
 * /etc/hosts) does not matter, and every address is checked again at connect time, so a
 * rebinding answer cannot aim us at the host's side.  Then bytes flow both ways untouched.
 * Every connection is one JSON line in the log.  SIGHUP re-reads the policy, and connections
 * it no longer allows are cut.
 *
 * One thread per connection, at most MAX_CONNS; the upstream ports are 80 and 443 unless the
 * --*-upstream-port options (for tests, whose servers cannot bind those) say otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
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

#include "egress_policy.h"
#include "listen_in_netns.h"
#include "sniff.h"

#define MAX_CONNS	256
#define SNIFF_TIMEOUT_MS 10000
#define CONNECT_TIMEOUT_MS 10000
#define RELAY_BUF	(64 << 10)

struct proxy {
	const char *policy_path;
	struct egress_policy *policy;
	pthread_rwlock_t policy_lock;
	atomic_uint generation;		/* bumped by each policy reload */
	FILE *log;
	pthread_mutex_t log_lock;
	unsigned http_port, tls_port;	/* upstream */
	atomic_int conns;
};

struct conn {
	struct proxy *px;
	int client, upstream;
	bool tls;			/* what the client speaks */
	bool tls_port;			/* which listener: the upstream port follows it */
	struct sniffed want;
	struct dns_addr addr;		/* what we connected to */
	uint8_t head[SNIFF_MAX];	/* what the client sent before we decided */
	size_t headlen;
	uint64_t up, down;
};

static volatile sig_atomic_t reload;

static void on_hup(int sig)
{
	(void)sig;
	reload = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: kiln-proxy --http ADDR:PORT --tls ADDR:PORT --policy FILE "
		"[--netns NAME] [--log FILE] [--http-upstream-port N] [--tls-upstream-port N]\n");
	exit(2);
}

/* One JSON line.  Names are DNS characters (sniff.c) and reasons our own constants. */
static void log_conn(struct conn *c, const char *verdict, const char *reason)
{
	struct proxy *px = c->px;
	struct timespec now;
	char addr[INET6_ADDRSTRLEN] = "";

	if (!px->log)
		return;
	if (c->addr.family)
		inet_ntop(c->addr.family, c->addr.bytes, addr, sizeof(addr));
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&px->log_lock);
	fprintf(px->log, "{\"time_ms\": %lld, \"kind\": \"%s\", \"name\": \"%s\", "
		"\"verdict\": \"%s\", \"reason\": \"%s\", \"upstream\": \"%s\", "
		"\"bytes_out\": %llu, \"bytes_in\": %llu}\n",
		(long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, c->tls ? "tls" : "http",
		c->want.name, verdict, reason ? reason : "", addr, (unsigned long long)c->up,
		(unsigned long long)c->down);
	fflush(px->log);
	pthread_mutex_unlock(&px->log_lock);
}

static void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= n;
	}
}

/* Tell the guest why, in its own protocol: a 403 (502 when upstream failed) or a TLS alert. */
static void refuse(struct conn *c, const char *reason, bool upstream_failed)
{
	char resp[512];
	/* TLS alert record: fatal (2), access_denied (49) or internal_error (80). */
	uint8_t alert[7] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02,
			     (uint8_t)(upstream_failed ? 80 : 49) };

	log_conn(c, upstream_failed ? "failed" : "refused", reason);
	if (c->tls) {
		write_all(c->client, alert, sizeof(alert));
		return;
	}
	int body = (int)strlen(reason) + 14;

	snprintf(resp, sizeof(resp), "HTTP/1.1 %s\r\nContent-Type: text/plain\r\n"
		 "Connection: close\r\nContent-Length: %d\r\n\r\nkiln egress: %s\n",
		 upstream_failed ? "502 Bad Gateway" : "403 Forbidden", body, reason);
	write_all(c->client, resp, strlen(resp));
}

/* Read until the sniffer has its answer.  NULL, or why the connection is refused. */
static const char *read_head(struct conn *c)
{
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		enum sniff_result r = SNIFF_NEED_MORE;

		if (c->headlen) {
			c->tls = sniff_is_tls(c->head, c->headlen);
			r = c->tls ? sniff_tls(c->head, c->headlen, &c->want) :
				     sniff_http(c->head, c->headlen, &c->want);
		}
		if (r == SNIFF_OK)
			return NULL;
		if (r == SNIFF_BAD)
			return c->want.why;
		if (c->headlen == sizeof(c->head))
			return "request head too large";
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = SNIFF_TIMEOUT_MS - ((now.tv_sec - t0.tv_sec) * 1000 +
						(now.tv_nsec - t0.tv_nsec) / 1000000);
		struct pollfd p = { c->client, POLLIN, 0 };

		if (left <= 0 || poll(&p, 1, left) <= 0)
			return "client sent nothing we could read in time";
		ssize_t n = recv(c->client, c->head + c->headlen, sizeof(c->head) - c->headlen, 0);

		if (n <= 0)
			return "client closed before asking for a host";
		c->headlen += n;
	}
}

/* The addresses the policy lets us connect to for c->want; their count, or 0 with *why. */
static unsigned choose_addrs(struct conn *c, struct dns_addr *out, unsigned max,
			     const char **why)
{
	struct proxy *px = c->px;
	const struct egress_rewrite *rw;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	struct dns_addr lit;
	unsigned n = 0;

	pthread_rwlock_rdlock(&px->policy_lock);
	if (sniff_ip_literal(c->want.name, &lit)) {
		if (egress_addr_listed(px->policy, &lit))
			out[n++] = lit;
		else
			*why = "an IP address no allow-cidr names";
		goto out;
	}
	switch (egress_name_verdict(px->policy, c->want.name, &rw)) {
	case EGRESS_DENY:
		*why = "name not allowed";
		goto out;
	case EGRESS_REWRITE:
		if (egress_addr_allowed(px->policy, &rw->addr))
			out[n++] = rw->addr;
		else
			*why = "rewritten to an address the policy does not allow";
		goto out;
	case EGRESS_ALLOW:
		break;
	}
	pthread_rwlock_unlock(&px->policy_lock);
	/* Resolved without the lock: it can take seconds. */
	if (getaddrinfo(c->want.name, NULL, &hints, &res)) {
		*why = "name does not resolve";
		return 0;
	}
	pthread_rwlock_rdlock(&px->policy_lock);
	for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
		struct dns_addr a = { .family = ai->ai_family };

		if (ai->ai_family == AF_INET)
			memcpy(a.bytes, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, 4);
		else if (ai->ai_family == AF_INET6)
			memcpy(a.bytes, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
		else
			continue;
		if (egress_addr_allowed(px->policy, &a))
			out[n++] = a;
	}
	freeaddrinfo(res);
	if (!n)
		*why = "name resolves only to addresses the policy does not allow";
out:
	pthread_rwlock_unlock(&px->policy_lock);
	return n;
}

static int connect_to(const struct dns_addr *a, unsigned port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int fd, err = 0;
	socklen_t elen = sizeof(err);

	if (a->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, a->bytes, 4);
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, a->bytes, 16);
		len = sizeof(*sin6);
	}
	fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS)
		goto fail;
	struct pollfd p = { fd, POLLOUT, 0 };

	if (poll(&p, 1, CONNECT_TIMEOUT_MS) <= 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err)
		goto fail;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
fail:
	close(fd);
	return -1;
}

/* Whether the current policy still allows what c connected to. */
static bool still_allowed(struct conn *c)
{
	struct proxy *px = c->px;
	const struct egress_rewrite *rw;
	struct dns_addr lit;
	bool ok;

	pthread_rwlock_rdlock(&px->policy_lock);
	if (sniff_ip_literal(c->want.name, &lit))
		ok = egress_addr_listed(px->policy, &c->addr);
	else
		ok = egress_name_verdict(px->policy, c->want.name, &rw) != EGRESS_DENY &&
		     egress_addr_allowed(px->policy, &c->addr);
	pthread_rwlock_unlock(&px->policy_lock);
	return ok;
}

/* Copy what is ready from one side to the other.  false at EOF or error. */
static bool pump(int from, int to, uint64_t *count)
{
	static __thread char buf[RELAY_BUF];
	ssize_t n = recv(from, buf, sizeof(buf), 0);

	if (n <= 0)
		return false;
	write_all(to, buf, n);
	*count += n;
	return true;
}

static const char *relay(struct conn *c)
{
	unsigned gen = atomic_load(&c->px->generation);
	bool up_open = true, down_open = true;

	while (up_open || down_open) {
		struct pollfd p[2] = { { up_open ? c->client : -1, POLLIN, 0 },
				       { down_open ? c->upstream : -1, POLLIN, 0 } };

		if (poll(p, 2, 500) < 0 && errno != EINTR)
			break;
		if (atomic_load(&c->px->generation) != gen) {
			gen = atomic_load(&c->px->generation);
			if (!still_allowed(c))
				return "cut: the new policy does not allow it";
		}
		if (p[0].revents && !pump(c->client, c->upstream, &c->up)) {
			up_open = false;
			shutdown(c->upstream, SHUT_WR);
		}
		if (p[1].revents && !pump(c->upstream, c->client, &c->down)) {
			down_open = false;
			shutdown(c->client, SHUT_WR);
		}
	}
	return NULL;
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	struct dns_addr addrs[8];
	const char *why = NULL, *end;
	unsigned n;

	why = read_head(c);
	if (!why && c->tls && c->want.ech)
		why = "encrypted ClientHello (ECH) hides the server name";
	if (!why && c->tls && !c->want.name[0])
		why = "TLS without a server name (SNI)";
	if (why) {
		refuse(c, why, false);
		goto out;
	}
	n = choose_addrs(c, addrs, 8, &why);
	if (!n) {
		refuse(c, why, false);
		goto out;
	}
	for (unsigned i = 0; i < n && c->upstream < 0; i++) {
		c->upstream = connect_to(&addrs[i], c->tls_port ? c->px->tls_port :
							     c->px->http_port);
		c->addr = addrs[i];
	}
	if (c->upstream < 0) {
		refuse(c, "cannot connect to the upstream server", true);
		goto out;
	}
	write_all(c->upstream, c->head, c->headlen);
	c->up = c->headlen;
	end = relay(c);
	log_conn(c, end ? "cut" : "allowed", end);
out:
	close(c->client);
	if (c->upstream >= 0)
		close(c->upstream);
	atomic_fetch_sub(&c->px->conns, 1);
	free(c);
	return NULL;
}

static void start_conn(struct proxy *px, int fd, bool tls_port)
{
	struct conn *c;
	pthread_t t;
	pthread_attr_t attr;

	if (atomic_fetch_add(&px->conns, 1) >= MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
		atomic_fetch_sub(&px->conns, 1);
		close(fd);
		return;
	}
	c->px = px;
	c->client = fd;
	c->upstream = -1;
	c->tls_port = c->tls = tls_port;	/* until the client's first bytes say */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, conn_thread, c)) {
		atomic_fetch_sub(&px->conns, 1);
		close(fd);
		free(c);
	}
	pthread_attr_destroy(&attr);
}

static void reload_policy(struct proxy *px)
{
	struct egress_policy *p = calloc(1, sizeof(*p)), *old;
	char err[256];

	if (!p || egress_policy_load(p, px->policy_path, err, sizeof(err))) {
		fprintf(stderr, "kiln-proxy: policy not replaced: %s\n", p ? err : "out of memory");
		free(p);
		return;
	}
	pthread_rwlock_wrlock(&px->policy_lock);
	old = px->policy;
	px->policy = p;
	pthread_rwlock_unlock(&px->policy_lock);
	atomic_fetch_add(&px->generation, 1);
	free(old);
}

static unsigned parse_port(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end || v <= 0 || v > 65535)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "http", required_argument, NULL, 'h' }, { "tls", required_argument, NULL, 't' },
		{ "policy", required_argument, NULL, 'p' }, { "netns", required_argument, NULL, 'n' },
		{ "log", required_argument, NULL, 'g' },
		{ "http-upstream-port", required_argument, NULL, 'H' },
		{ "tls-upstream-port", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	struct proxy px = { .http_port = 80, .tls_port = 443 };
	const char *http = NULL, *tls = NULL, *netns = NULL, *log = NULL;
	struct sigaction sa = { .sa_handler = on_hup };
	char err[512];
	int c, lfd[2];

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'h': http = optarg; break;
		case 't': tls = optarg; break;
		case 'p': px.policy_path = optarg; break;
		case 'n': netns = optarg; break;
		case 'g': log = optarg; break;
		case 'H': px.http_port = parse_port(optarg); break;
		case 'T': px.tls_port = parse_port(optarg); break;
		default: usage();
		}
	}
	if (!http || !tls || !px.policy_path || optind != argc)
		usage();
	pthread_rwlock_init(&px.policy_lock, NULL);
	pthread_mutex_init(&px.log_lock, NULL);
	reload_policy(&px);
	if (!px.policy)
		return 2;
	if (log && !(px.log = fopen(log, "ae"))) {
		fprintf(stderr, "kiln-proxy: %s: %s\n", log, strerror(errno));
		return 2;
	}
	lfd[0] = listen_in_netns(SOCK_STREAM, http, netns, err, sizeof(err));
	lfd[1] = lfd[0] < 0 ? -1 : listen_in_netns(SOCK_STREAM, tls, netns, err, sizeof(err));
	if (lfd[0] < 0 || lfd[1] < 0) {
		fprintf(stderr, "kiln-proxy: cannot listen: %s\n", err);
		return 1;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "kiln-proxy: serving http %s, tls %s\n", http, tls);
	for (;;) {
		struct pollfd p[2] = { { lfd[0], POLLIN, 0 }, { lfd[1], POLLIN, 0 } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return 1;
		if (reload) {
			reload = 0;
			reload_policy(&px);
		}
		for (int i = 0; i < 2; i++) {
			int fd;

			if (!(p[i].revents & POLLIN))
				continue;
			fd = accept4(lfd[i], NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				start_conn(&px, fd, i == 1);
		}
	}
}
