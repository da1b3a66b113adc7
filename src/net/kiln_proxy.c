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
 * rebinding answer cannot aim us at the host's side.  Then TLS bytes flow both ways
 * untouched; on plain HTTP every later request's header block is checked the same way before
 * it goes up (http_framing.h finds where each request ends), so a kept-alive connection cannot
 * carry a request for another host or a placeholder past us.
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
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "egress_policy.h"
#include "http_framing.h"
#include "listen_in_netns.h"
#include "relay.h"
#include "secrets.h"
#include "sniff.h"
#include "tls_intercept.h"

#include <openssl/err.h>

#define MAX_CONNS	256
#define SNIFF_TIMEOUT_MS 10000
#define CONNECT_TIMEOUT_MS 10000
#define RELAY_BUF	(64 << 10)
#define HEADER_MAX	(64 << 10)	/* an intercepted request's header block */
#define TLS_TIMEOUT_S	10
#define SPLICE_DOWN	(1 << 20)	/* the default pipe-max-size */
#define HTTP_IN_BUF	(256 << 10)	/* plain HTTP: client bytes read at once */
#define DRAIN_IDLE_MS	10000	/* after a refused request: the upstream's last answers */

struct proxy {
	const char *policy_path, *secrets_path, *upstream_ca;
	struct egress_policy *policy;
	struct secrets *secrets;	/* NULL without --secrets; under policy_lock too */
	struct tls_ca *ca;
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
	uint8_t head[SNIFF_MAX];	/* a copy of what the client sent before we decided:
					 * peeked, so it is still in the socket to relay */
	size_t headlen;
	uint64_t up, down;
	unsigned requests;		/* plain HTTP: requests let through */
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
		"[--netns NAME] [--log FILE]\n"
		"                  [--secrets FILE --ca DIR [--upstream-ca PEM]]\n"
		"                  [--http-upstream-port N] [--tls-upstream-port N]\n"
		"       kiln-proxy --make-ca DIR\n");
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
		"\"bytes_out\": %llu, \"bytes_in\": %llu, \"requests\": %u}\n",
		(long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, c->tls ? "tls" : "http",
		c->want.name, verdict, reason ? reason : "", addr, (unsigned long long)c->up,
		(unsigned long long)c->down, c->requests);
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

static void drain(int fd, size_t n)
{
	char buf[4096];

	while (n) {
		ssize_t r = recv(fd, buf, n < sizeof(buf) ? n : sizeof(buf), MSG_DONTWAIT);

		if (r <= 0)
			return;
		n -= r;
	}
}

/* Tell the guest why, in its own protocol: a 403 (502 when upstream failed) or a TLS alert. */
static void refuse(struct conn *c, const char *verdict, const char *reason, bool upstream_failed)
{
	char resp[512];
	/* TLS alert record: fatal (2), access_denied (49) or internal_error (80). */
	uint8_t alert[7] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02,
			     (uint8_t)(upstream_failed ? 80 : 49) };

	log_conn(c, verdict, reason);
	/* What we peeked is still queued: read it, or closing would reset the connection
	 * before the guest has read why. */
	drain(c->client, c->headlen);
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

/*
 * Peek until the sniffer has its answer: the bytes stay in the socket, for the upstream (or,
 * when we intercept, for OpenSSL, which must read the ClientHello itself).  SO_RCVLOWAT makes
 * poll wait for more than we have already seen.  NULL, or why the connection is refused.
 */
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
			break;
		if (r == SNIFF_BAD)
			return c->want.why;
		if (c->headlen == sizeof(c->head))
			return "request head too large";
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = SNIFF_TIMEOUT_MS - ((now.tv_sec - t0.tv_sec) * 1000 +
						(now.tv_nsec - t0.tv_nsec) / 1000000);
		struct pollfd p = { c->client, POLLIN, 0 };
		int lowat = c->headlen + 1;

		setsockopt(c->client, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat));
		if (left <= 0 || poll(&p, 1, left) <= 0)
			return "client sent nothing we could read in time";
		ssize_t n = recv(c->client, c->head, sizeof(c->head), MSG_PEEK);

		if (n <= 0 || (size_t)n == c->headlen)
			return "client closed before asking for a host";
		c->headlen = n;
	}
	int one = 1;

	setsockopt(c->client, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
	return NULL;
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
		struct dns_addr a;

		if (dns_addr_from_sockaddr(ai->ai_addr, &a) && egress_addr_allowed(px->policy, &a))
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

/* Whether the current policy still allows what c connected to; policy_lock held. */
static bool still_allowed_locked(struct conn *c)
{
	struct proxy *px = c->px;
	const struct egress_rewrite *rw;
	struct dns_addr lit;

	if (sniff_ip_literal(c->want.name, &lit))
		return egress_addr_listed(px->policy, &c->addr);
	return egress_name_verdict(px->policy, c->want.name, &rw) != EGRESS_DENY &&
	       egress_addr_allowed(px->policy, &c->addr);
}

static bool still_allowed(struct conn *c)
{
	bool ok;

	pthread_rwlock_rdlock(&c->px->policy_lock);
	ok = still_allowed_locked(c);
	pthread_rwlock_unlock(&c->px->policy_lock);
	return ok;
}

/* Methods a credential may go out with: not TRACE (it echoes the header back), not CONNECT. */
static bool allowed_method(const char *req)
{
	static const char *const ok[] = { "GET ", "HEAD ", "POST ", "PUT ", "PATCH ", "DELETE ",
					  "OPTIONS " };

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!strncmp(req, ok[i], strlen(ok[i])))
			return true;
	return false;
}

static bool check_still_allowed(void *c)
{
	return still_allowed(c);
}

/* ---- credential injection: TLS terminated with the sandbox's CA (tls_intercept.h) ---- */

static bool wait_fd(int fd, short events, int ms)
{
	struct pollfd p = { fd, events, 0 };

	return poll(&p, 1, ms) > 0;
}

/* Retry an SSL call that wants the socket; false when it failed or timed out. */
static bool ssl_retry(SSL *ssl, int r, int ms)
{
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return wait_fd(SSL_get_fd(ssl), POLLIN, ms);
	case SSL_ERROR_WANT_WRITE:
		return wait_fd(SSL_get_fd(ssl), POLLOUT, ms);
	default:
		return false;
	}
}

static int ssl_handshake(SSL *ssl, bool server)
{
	for (;;) {
		int r = server ? SSL_accept(ssl) : SSL_connect(ssl);

		if (r == 1)
			return 0;
		if (!ssl_retry(ssl, r, TLS_TIMEOUT_S * 1000))
			return -1;
	}
}

static bool ssl_write_all(SSL *ssl, const char *buf, size_t n)
{
	while (n) {
		int w = SSL_write(ssl, buf, n > (1 << 20) ? (1 << 20) : (int)n);

		if (w > 0) {
			buf += w;
			n -= w;
		} else if (!ssl_retry(ssl, w, TLS_TIMEOUT_S * 1000)) {
			return false;
		}
	}
	return true;
}

/* Bytes read into buf until its header block is complete; *hdr its length.  -1 if none. */
static long read_request(SSL *ssl, char *buf, size_t cap, size_t *hdr)
{
	size_t n = 0;

	for (;;) {
		char *e = memmem(buf, n, "\r\n\r\n", 4);

		if (e) {
			*hdr = e + 4 - buf;
			return n;
		}
		if (n == cap)
			return -1;
		int r = SSL_read(ssl, buf + n, cap - n);

		if (r > 0)
			n += r;
		else if (!ssl_retry(ssl, r, SNIFF_TIMEOUT_MS * 3))
			return -1;
	}
}

/* Drop the request's Connection headers and close after this request: the next request on
 * the connection would otherwise go up without its header being rewritten. */
static size_t force_close(char *hdr, size_t len, size_t cap)
{
	static const char line[] = "Connection: close\r\n";
	char *p = memmem(hdr, len, "\r\n", 2) + 2, *end = hdr + len - 2;

	while (p < end) {
		char *eol = memmem(p, end + 2 - p, "\r\n", 2);

		if (!strncasecmp(p, "connection:", 11)) {
			memmove(p, eol + 2, hdr + len - (eol + 2));
			len -= eol + 2 - p;
			end -= eol + 2 - p;
			continue;
		}
		p = eol + 2;
	}
	if (len + sizeof(line) - 1 > cap)
		return len;
	memmove(end + sizeof(line) - 1, end, 2);
	memcpy(end, line, sizeof(line) - 1);
	return len + sizeof(line) - 1;
}

static void ssl_refuse(struct conn *c, SSL *g, const char *verdict, const char *reason,
		       int status)
{
	char resp[512];

	log_conn(c, verdict, reason);
	snprintf(resp, sizeof(resp), "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
		 "Connection: close\r\nContent-Length: %zu\r\n\r\nkiln egress: %s\n", status,
		 status == 403 ? "Forbidden" : "Bad Gateway", strlen(reason) + 14, reason);
	ssl_write_all(g, resp, strlen(resp));
	SSL_shutdown(g);
}

/* Copy what src has to dst: n > 0 copied, 0 nothing yet, -1 closed or failed. */
static int ssl_pump(SSL *src, SSL *dst, char *buf, size_t cap, uint64_t *count)
{
	int n = SSL_read(src, buf, cap);

	if (n <= 0) {
		int e = SSL_get_error(src, n);

		return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
	}
	if (!ssl_write_all(dst, buf, n))
		return -1;
	*count += n;
	return n;
}

/* Until the upstream has answered and closed (we asked for Connection: close). */
static const char *relay_tls(struct conn *c, SSL *g, SSL *u)
{
	unsigned gen = atomic_load(&c->px->generation);
	bool up_open = true;
	char *buf = malloc(RELAY_BUF);

	if (!buf)
		return "out of memory";
	for (;;) {
		struct pollfd p[2] = { { up_open ? c->client : -1, POLLIN, 0 },
				       { c->upstream, POLLIN, 0 } };
		int r;

		if (!SSL_pending(g) && !SSL_pending(u) && poll(p, 2, 500) < 0 && errno != EINTR)
			break;
		if (atomic_load(&c->px->generation) != gen) {
			gen = atomic_load(&c->px->generation);
			if (!still_allowed(c)) {
				free(buf);
				return "cut: the new policy does not allow it";
			}
		}
		if (up_open && ssl_pump(g, u, buf, RELAY_BUF, &c->up) < 0)
			up_open = false;
		while ((r = ssl_pump(u, g, buf, RELAY_BUF, &c->down)) > 0)
			;
		if (r < 0)
			break;
	}
	free(buf);
	return NULL;
}

/* Rewrite and forward the request's header: NULL, or (with *verdict) why not. */
static const char *forward_header(struct conn *c, SSL *u, char *in, size_t hdr, long total,
				  const char **verdict)
{
	struct proxy *px = c->px;
	const struct secret *alert;
	static __thread char reason[160];
	struct sniffed h;
	size_t cap = 4 * HEADER_MAX;
	char *out = malloc(cap);
	long len;

	*verdict = "refused";
	if (!out)
		return "out of memory";
	if (sniff_http((uint8_t *)in, hdr, &h) != SNIFF_OK) {
		free(out);
		return h.why ? h.why : "not an HTTP/1.x request";
	}
	if (strcmp(h.name, c->want.name)) {
		free(out);
		return "Host differs from the TLS server name";
	}
	/* Origin form only: an absolute target could route the request to another host. */
	if (!allowed_method(in) || in[strcspn(in, " ") + 1] != '/') {
		free(out);
		return "only GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS with a path are injected";
	}
	pthread_rwlock_rdlock(&px->policy_lock);
	/* The policy may have changed since the connection was let through. */
	if (!still_allowed_locked(c)) {
		pthread_rwlock_unlock(&px->policy_lock);
		free(out);
		return "the policy no longer allows this host";
	}
	len = secrets_rewrite(px->secrets, c->want.name, in, hdr, out, cap - 64, &alert);
	if (len < 0 && alert) {
		*verdict = "alert";
		snprintf(reason, sizeof(reason), "the placeholder of secret %s sent where it does "
			 "not belong", alert->name);
	}
	pthread_rwlock_unlock(&px->policy_lock);
	if (len < 0) {
		free(out);
		return *verdict[0] == 'a' ? reason : "request header too large";
	}
	len = force_close(out, len, cap);
	c->up = len + (total - hdr);
	if (!ssl_write_all(u, out, len) || !ssl_write_all(u, in + hdr, total - hdr)) {
		free(out);
		*verdict = "failed";
		return "the upstream server went away";
	}
	free(out);
	return NULL;
}

static void intercept_conn(struct conn *c)
{
	struct proxy *px = c->px;
	SSL *g = tls_guest_side(px->ca, c->want.name), *u = NULL;
	char *in = malloc(HEADER_MAX);
	const char *why, *verdict;
	size_t hdr;
	long total;

	fcntl(c->client, F_SETFL, fcntl(c->client, F_GETFL) | O_NONBLOCK);
	fcntl(c->upstream, F_SETFL, fcntl(c->upstream, F_GETFL) | O_NONBLOCK);
	if (!g || !in || !SSL_set_fd(g, c->client) || ssl_handshake(g, true)) {
		log_conn(c, "refused", "TLS with the guest failed (does it trust the sandbox CA?)");
		goto out;
	}
	/* The request first: refusing it before it was read would reset the connection. */
	total = read_request(g, in, HEADER_MAX, &hdr);
	if (total < 0) {
		ssl_refuse(c, g, "refused", "no HTTP/1.x request header", 403);
		goto out;
	}
	u = tls_upstream_side(px->upstream_ca, c->want.name);
	if (!u || !SSL_set_fd(u, c->upstream) || ssl_handshake(u, false)) {
		ssl_refuse(c, g, "failed", "the upstream server's certificate did not verify", 502);
		goto out;
	}
	why = forward_header(c, u, in, hdr, total, &verdict);
	if (why) {
		ssl_refuse(c, g, verdict, why, verdict[0] == 'f' ? 502 : 403);
		goto out;
	}
	why = relay_tls(c, g, u);
	log_conn(c, why ? "cut" : "injected", why);
	SSL_shutdown(g);
out:
	ERR_clear_error();
	SSL_free(g);
	SSL_free(u);
	free(in);
}

/* ---- plain HTTP: every request's header block inspected (http_framing.h) ---- */

struct http_relay {
	struct conn *c;
	char in[HTTP_IN_BUF];		/* client bytes not yet forwarded: a header in the making
					 * (at most SNIFF_MAX), or body read in large pieces */
	size_t have;
	struct http_body body;		/* the current request's; done: a header comes next */
	char carry[SECRET_PH_MAX];	/* the last bytes forwarded, for placeholders split
					 * across reads */
	size_t ncarry;
	const char *verdict;		/* set once a request is refused */
	bool refused_header;		/* at a request boundary: the client gets a 403 */
};

/* Whether a placeholder occurs in what went before (carry) followed by p[0..n). */
static bool placeholder_in_stream(struct http_relay *r, const char *p, size_t n)
{
	struct proxy *px = r->c->px;
	char win[2 * SECRET_PH_MAX];
	size_t k = n < SECRET_PH_MAX ? n : SECRET_PH_MAX;
	bool hit;

	pthread_rwlock_rdlock(&px->policy_lock);
	if (!px->secrets) {
		pthread_rwlock_unlock(&px->policy_lock);
		return false;
	}
	/* The seam: the carry and the first bytes of p; then p itself. */
	memcpy(win, r->carry, r->ncarry);
	memcpy(win + r->ncarry, p, k);
	hit = secrets_find_placeholder(px->secrets, win, r->ncarry + k) ||
	      secrets_find_placeholder(px->secrets, p, n);
	pthread_rwlock_unlock(&px->policy_lock);
	/* Keep the last SECRET_PH_MAX - 1 bytes of the stream. */
	if (n >= SECRET_PH_MAX - 1) {
		memcpy(r->carry, p + n - (SECRET_PH_MAX - 1), SECRET_PH_MAX - 1);
		r->ncarry = SECRET_PH_MAX - 1;
	} else {
		size_t keep = r->ncarry + n > SECRET_PH_MAX - 1 ? SECRET_PH_MAX - 1 - n : r->ncarry;

		memmove(r->carry, r->carry + r->ncarry - keep, keep);
		memcpy(r->carry + keep, p, n);
		r->ncarry = keep + n;
	}
	return hit;
}

/* The header block in[0..hdr) of the next request: NULL if it may go up, else why not. */
static const char *check_request(struct http_relay *r, size_t hdr)
{
	struct conn *c = r->c;
	struct sniffed h;
	const char *why;

	r->verdict = "refused";
	if (sniff_http((uint8_t *)r->in, hdr, &h) != SNIFF_OK)
		return h.why ? h.why : "not an HTTP/1.x request";
	/* We connected to one host by name: a request for another would reach it through this
	 * one (a shared front end routes by Host). */
	if (strcmp(h.name, c->want.name))
		return "a later request on the connection names another host";
	if (http_request_framing(r->in, hdr, &r->body, &why))
		return why;
	if (!still_allowed(c))
		return "the policy no longer allows this host";
	if (placeholder_in_stream(r, r->in, hdr)) {
		r->verdict = "alert";
		return "a credential placeholder sent where it does not belong";
	}
	r->verdict = NULL;
	return NULL;
}

static void consume(struct http_relay *r, size_t n)
{
	memmove(r->in, r->in + n, r->have - n);
	r->have -= n;
}

/* Forward what of r->in may go: whole checked headers and the bodies after them.  NULL, or
 * why the connection stops (r->verdict says how). */
static const char *forward_requests(struct http_relay *r)
{
	struct conn *c = r->c;
	const char *why = NULL;

	while (r->have) {
		size_t n;

		if (r->body.done) {
			size_t look = r->have < SNIFF_MAX ? r->have : SNIFF_MAX;
			char *e = memmem(r->in, look, "\r\n\r\n", 4);

			if (!e) {
				if (look < SNIFF_MAX)
					return NULL;
				r->verdict = "refused";
				r->refused_header = true;
				return "request header too large";
			}
			n = e + 4 - r->in;
			why = check_request(r, n);
			if (why) {
				r->refused_header = true;
				return why;
			}
			c->requests++;
		} else {
			long b = http_body_feed(&r->body, (uint8_t *)r->in, r->have, &why);

			if (b < 0) {
				r->verdict = "refused";
				return why;
			}
			n = b;
			if (placeholder_in_stream(r, r->in, n)) {
				r->verdict = "alert";
				return "a credential placeholder sent where it does not belong";
			}
		}
		write_all(c->upstream, r->in, n);
		c->up += n;
		consume(r, n);
	}
	return NULL;
}

/* Copy what the upstream has to the client, socket to socket through pipe (answers are not
 * inspected): false at its end. */
static bool pump_down(struct conn *c, int down[2])
{
	return relay_pump(c->upstream, c->client, down, &c->down);
}

/* After a refused request: nothing more goes up; the answers to the requests before it come
 * down until the upstream ends (or idles), then the guest gets the 403 in its place. */
static void finish_refused(struct http_relay *r, int down[2], const char *why)
{
	struct conn *c = r->c;
	char resp[512];

	shutdown(c->upstream, SHUT_WR);
	for (;;) {
		struct pollfd p = { c->upstream, POLLIN, 0 };

		if (poll(&p, 1, DRAIN_IDLE_MS) <= 0 || !pump_down(c, down))
			break;
	}
	log_conn(c, r->verdict, why);
	if (!r->refused_header)
		return;
	snprintf(resp, sizeof(resp), "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
		 "Connection: close\r\nContent-Length: %zu\r\n\r\nkiln egress: %s\n",
		 strlen(why) + 14, why);
	write_all(c->client, resp, strlen(resp));
}

static void relay_http(struct conn *c)
{
	struct http_relay *r = calloc(1, sizeof(*r));
	unsigned gen = atomic_load(&c->px->generation);
	bool client_open = true;
	const char *why = NULL;
	int down[2] = { -1, -1 };

	if (!r || pipe2(down, O_CLOEXEC)) {
		log_conn(c, "failed", r ? "out of pipes" : "out of memory");
		goto out;
	}
	fcntl(down[1], F_SETPIPE_SZ, SPLICE_DOWN);
	r->c = c;
	r->body.done = true;
	for (;;) {
		struct pollfd p[2] = { { client_open ? c->client : -1, POLLIN, 0 },
				       { c->upstream, POLLIN, 0 } };

		if (poll(p, 2, 500) < 0 && errno != EINTR)
			break;
		if (atomic_load(&c->px->generation) != gen) {
			gen = atomic_load(&c->px->generation);
			if (!still_allowed(c)) {
				why = "cut: the new policy does not allow it";
				break;
			}
		}
		if (p[0].revents) {
			ssize_t n = recv(c->client, r->in + r->have, sizeof(r->in) - r->have,
					 MSG_DONTWAIT);

			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				client_open = false;
				shutdown(c->upstream, SHUT_WR);
			} else if (n > 0) {
				r->have += n;
				why = forward_requests(r);
				if (why) {
					finish_refused(r, down, why);
					goto out;
				}
			}
		}
		if (p[1].revents && !pump_down(c, down)) {
			shutdown(c->client, SHUT_WR);
			break;
		}
	}
	log_conn(c, why ? "cut" : "allowed", why);
out:
	if (down[0] >= 0) {
		close(down[0]);
		close(down[1]);
	}
	free(r);
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	struct dns_addr addrs[8];
	const char *why = NULL, *end;
	bool intercept;
	unsigned n;

	why = read_head(c);
	if (!why && c->tls && c->want.ech)
		why = "encrypted ClientHello (ECH) hides the server name";
	if (!why && c->tls && !c->want.name[0])
		why = "TLS without a server name (SNI)";
	if (why) {
		refuse(c, "refused", why, false);
		goto out;
	}
	pthread_rwlock_rdlock(&c->px->policy_lock);
	intercept = c->tls && c->px->secrets && c->px->ca &&
		    secrets_for_host(c->px->secrets, c->want.name);
	/* In plain HTTP a placeholder is visible: it may go nowhere in the clear. */
	const struct secret *leak = !c->tls && c->px->secrets ?
		secrets_find_placeholder(c->px->secrets, c->head, c->headlen) : NULL;
	pthread_rwlock_unlock(&c->px->policy_lock);
	if (leak) {
		refuse(c, "alert", "a credential placeholder sent where it does not belong",
		       false);
		goto out;
	}
	if (!c->tls) {
		/* The first request's framing, before anything is connected. */
		const uint8_t *e = memmem(c->head, c->headlen, "\r\n\r\n", 4);
		struct http_body b;

		if (e && http_request_framing((char *)c->head, e + 4 - c->head, &b, &why)) {
			refuse(c, "refused", why, false);
			goto out;
		}
	}
	n = choose_addrs(c, addrs, 8, &why);
	if (!n) {
		refuse(c, "refused", why, false);
		goto out;
	}
	for (unsigned i = 0; i < n && c->upstream < 0; i++) {
		c->upstream = connect_to(&addrs[i], c->tls_port ? c->px->tls_port :
							     c->px->http_port);
		c->addr = addrs[i];
	}
	if (c->upstream < 0) {
		refuse(c, "failed", "cannot connect to the upstream server", true);
		goto out;
	}
	if (intercept) {
		intercept_conn(c);
		goto out;
	}
	if (!c->tls) {
		relay_http(c);
		goto out;
	}
	struct relay_counts rc = { 0 };

	end = relay(c->client, c->upstream, &rc, &c->px->generation,
		    check_still_allowed, c);
	c->up = rc.a_to_b;
	c->down = rc.b_to_a;
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
	struct secrets *sec = NULL, *old_sec;
	char err[256];

	if (!p || egress_policy_load(p, px->policy_path, err, sizeof(err))) {
		fprintf(stderr, "kiln-proxy: policy not replaced: %s\n", p ? err : "out of memory");
		free(p);
		return;
	}
	if (px->secrets_path && (!(sec = calloc(1, sizeof(*sec))) ||
				 secrets_load(sec, px->secrets_path, err, sizeof(err)))) {
		fprintf(stderr, "kiln-proxy: policy not replaced: secrets: %s\n",
			sec ? err : "out of memory");
		free(sec);
		free(p);
		return;
	}
	pthread_rwlock_wrlock(&px->policy_lock);
	old = px->policy;
	old_sec = px->secrets;
	px->policy = p;
	px->secrets = sec;
	pthread_rwlock_unlock(&px->policy_lock);
	atomic_fetch_add(&px->generation, 1);
	free(old);
	free(old_sec);
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
		{ "secrets", required_argument, NULL, 's' }, { "ca", required_argument, NULL, 'c' },
		{ "upstream-ca", required_argument, NULL, 'u' },
		{ "make-ca", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 },
	};
	struct proxy px = { .http_port = 80, .tls_port = 443 };
	const char *http = NULL, *tls = NULL, *netns = NULL, *log = NULL, *ca_dir = NULL;
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
		case 's': px.secrets_path = optarg; break;
		case 'c': ca_dir = optarg; break;
		case 'u': px.upstream_ca = optarg; break;
		case 'm':
			if (tls_make_ca(optarg, err, sizeof(err))) {
				fprintf(stderr, "kiln-proxy: %s\n", err);
				return 1;
			}
			return 0;
		default: usage();
		}
	}
	if (!http || !tls || !px.policy_path || optind != argc || !px.secrets_path != !ca_dir)
		usage();
	if (ca_dir && !(px.ca = tls_ca_load(ca_dir, err, sizeof(err)))) {
		fprintf(stderr, "kiln-proxy: %s\n", err);
		return 2;
	}
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
