/*
 * kiln_dns.c - kiln-dns, the DNS policy resolver a sandbox's guest asks (docs/network.md).
 *
 *   kiln-dns --listen ADDR:PORT --policy FILE [--netns NAME] [--log FILE] [--rate QPS]
 *            [--ttl SEC]
 *
 * The guest's only resolver: its UDP queries reach us (inside the sandbox's network namespace,
 * where --netns binds the socket), and we answer from the sandbox's egress policy
 * (egress_policy.h): a denied or unlisted name is NXDOMAIN, a rewritten one gets its
 * configured address, an allowed one is resolved here on the host (getaddrinfo, in this
 * process's own namespace, so the guest never talks to a real resolver) and answered with
 * A/AAAA records, minus addresses the policy does not let the guest reach (a public name
 * resolving to 127.0.0.1 or 169.254.169.254 is DNS rebinding).  Every query is logged as one
 * JSON line; queries over --rate per second (burst twice that) are REFUSED.  SIGHUP re-reads
 * the policy, so kilnd can replace it live.
 *
 * Resolution can take seconds, so each allowed query is answered from its own short-lived
 * thread, at most MAX_INFLIGHT at once (SERVFAIL beyond); everything else is answered inline.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dns_msg.h"
#include "egress_policy.h"
#include "listen_in_netns.h"

#define MAX_INFLIGHT	32

struct server {
	int fd;
	const char *policy_path;
	struct egress_policy *policy;	/* swapped whole on SIGHUP, under policy_lock */
	pthread_rwlock_t policy_lock;
	FILE *log;
	pthread_mutex_t log_lock;
	double rate, tokens;
	struct timespec last;
	uint32_t ttl;
	atomic_int inflight;
};

struct lookup {
	struct server *srv;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	struct dns_question q;
	uint8_t query[DNS_UDP_MAX];	/* q.qsec points in here */
};

static volatile sig_atomic_t reload;

static void on_hup(int sig)
{
	(void)sig;
	reload = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: kiln-dns --listen ADDR:PORT --policy FILE [--netns NAME] "
		"[--log FILE] [--rate QPS] [--ttl SEC]\n");
	exit(2);
}

static const char *type_name(uint16_t t)
{
	return t == DNS_A ? "A" : t == DNS_AAAA ? "AAAA" : t == DNS_ANY ? "ANY" :
	       t == DNS_CNAME ? "CNAME" : "other";
}

/* One JSON line.  Names are [a-z0-9._-] (dns_msg.c), so they need no escaping. */
static void log_query(struct server *s, const char *name, uint16_t qtype, const char *verdict,
		      const struct dns_addr *addrs, unsigned n)
{
	struct timespec now;
	char text[INET6_ADDRSTRLEN];

	if (!s->log)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&s->log_lock);
	fprintf(s->log, "{\"time_ms\": %lld, \"name\": \"%s\", \"type\": \"%s\", "
		"\"verdict\": \"%s\", \"answers\": [", (long long)now.tv_sec * 1000 +
		now.tv_nsec / 1000000, name ? name : "", type_name(qtype), verdict);
	for (unsigned i = 0; i < n; i++) {
		inet_ntop(addrs[i].family, addrs[i].bytes, text, sizeof(text));
		fprintf(s->log, "%s\"%s\"", i ? ", " : "", text);
	}
	fprintf(s->log, "]}\n");
	fflush(s->log);
	pthread_mutex_unlock(&s->log_lock);
}

/* A refused query: the first of each second is logged, with how many the last second
 * refused besides (only the main thread calls this). */
static void log_refused(struct server *s, const char *name, uint16_t qtype)
{
	static time_t last;
	static unsigned long dropped;
	char verdict[64];
	time_t now = time(NULL);

	if (now == last) {
		dropped++;
		return;
	}
	snprintf(verdict, sizeof(verdict), "rate-limited (+%lu more)", dropped);
	log_query(s, name, qtype, dropped ? verdict : "rate-limited", NULL, 0);
	last = now;
	dropped = 0;
}

static void reply(struct server *s, const void *buf, size_t len,
		  const struct sockaddr_storage *peer, socklen_t peerlen)
{
	sendto(s->fd, buf, len, 0, (const struct sockaddr *)peer, peerlen);
}

/* Token bucket: true if this query may be served. */
static bool rate_ok(struct server *s)
{
	struct timespec now;
	double dt;

	clock_gettime(CLOCK_MONOTONIC, &now);
	dt = (now.tv_sec - s->last.tv_sec) + (now.tv_nsec - s->last.tv_nsec) / 1e9;
	s->last = now;
	s->tokens += dt * s->rate;
	if (s->tokens > 2 * s->rate)
		s->tokens = 2 * s->rate;
	if (s->tokens < 1)
		return false;
	s->tokens -= 1;
	return true;
}

/* The addresses of name the policy lets the guest reach; their count. */
static unsigned resolve(struct server *s, const char *name, uint16_t qtype,
			struct dns_addr *out, unsigned *filtered)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
	unsigned n = 0;

	*filtered = 0;
	hints.ai_family = qtype == DNS_A ? AF_INET : qtype == DNS_AAAA ? AF_INET6 : AF_UNSPEC;
	if (getaddrinfo(name, NULL, &hints, &res))
		return 0;
	pthread_rwlock_rdlock(&s->policy_lock);
	for (ai = res; ai && n < DNS_MAX_ADDRS; ai = ai->ai_next) {
		struct dns_addr a;
		bool dup = false;

		if (!dns_addr_from_sockaddr(ai->ai_addr, &a))
			continue;

		for (unsigned i = 0; i < n; i++)
			dup |= !memcmp(&out[i], &a, sizeof(a));
		if (dup)
			continue;
		if (!egress_addr_allowed(s->policy, &a)) {
			(*filtered)++;
			continue;
		}
		out[n++] = a;
	}
	pthread_rwlock_unlock(&s->policy_lock);
	freeaddrinfo(res);
	return n;
}

static void *lookup_thread(void *arg)
{
	struct lookup *l = arg;
	struct server *s = l->srv;
	struct dns_addr addrs[DNS_MAX_ADDRS] = { 0 };
	uint8_t out[DNS_UDP_MAX];
	unsigned filtered, n = 0;
	bool address_type = l->q.qtype == DNS_A || l->q.qtype == DNS_AAAA || l->q.qtype == DNS_ANY;

	/* Other types of an allowed name (MX, TXT, ...): no data, never a lookup of ours. */
	if (address_type && l->q.qclass == DNS_IN)
		n = resolve(s, l->q.name, l->q.qtype, addrs, &filtered);
	else
		filtered = 0;
	/* Logged before the answer leaves: the log never lags what the guest has seen. */
	log_query(s, l->q.name, l->q.qtype, filtered && !n ? "allow-filtered" : "allow", addrs,
		  n);
	reply(s, out, dns_build_answer(&l->q, DNS_NOERROR, addrs, n, s->ttl, out), &l->peer,
	      l->peerlen);
	atomic_fetch_sub(&s->inflight, 1);
	free(l);
	return NULL;
}

static void serve_allowed(struct server *s, const struct dns_question *q, const uint8_t *msg,
			  size_t len, const struct sockaddr_storage *peer, socklen_t peerlen)
{
	struct lookup *l;
	pthread_t t;
	pthread_attr_t attr;
	uint8_t out[DNS_UDP_MAX];

	if (atomic_fetch_add(&s->inflight, 1) >= MAX_INFLIGHT || !(l = calloc(1, sizeof(*l)))) {
		atomic_fetch_sub(&s->inflight, 1);
		log_query(s, q->name, q->qtype, "busy", NULL, 0);
		reply(s, out, dns_build_answer(q, DNS_SERVFAIL, NULL, 0, 0, out), peer, peerlen);
		return;
	}
	l->srv = s;
	l->peer = *peer;
	l->peerlen = peerlen;
	memcpy(l->query, msg, len);
	l->q = *q;
	l->q.qsec = l->query + (q->qsec - msg);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, lookup_thread, l)) {
		atomic_fetch_sub(&s->inflight, 1);
		free(l);
		reply(s, out, dns_build_answer(q, DNS_SERVFAIL, NULL, 0, 0, out), peer, peerlen);
	}
	pthread_attr_destroy(&attr);
}

static void handle(struct server *s, const uint8_t *msg, size_t len,
		   const struct sockaddr_storage *peer, socklen_t peerlen)
{
	struct dns_question q;
	const struct egress_rewrite *rw;
	uint8_t out[DNS_UDP_MAX];
	enum egress_verdict v;
	int rcode;

	int bad = dns_parse_query(msg, len, &q, &rcode);

	/* Every datagram counts against the rate, garbage too, before anything is logged: a
	 * flood must not fill the host's disk with log lines.  What the limit refuses is
	 * logged as one line per second with its count. */
	if (!rate_ok(s)) {
		log_refused(s, bad ? NULL : q.name, bad ? 0 : q.qtype);
		if (!bad)
			reply(s, out, dns_build_answer(&q, DNS_REFUSED, NULL, 0, 0, out), peer,
			      peerlen);
		return;
	}
	if (bad) {
		log_query(s, NULL, 0, "malformed", NULL, 0);
		if (rcode >= 0 && len >= 4)
			reply(s, out, dns_build_error(q.id, q.flags, rcode, out), peer, peerlen);
		return;
	}
	pthread_rwlock_rdlock(&s->policy_lock);
	v = egress_name_verdict(s->policy, q.name, &rw);
	struct dns_addr rwaddr = rw ? rw->addr : (struct dns_addr){ 0 };

	pthread_rwlock_unlock(&s->policy_lock);
	if (v == EGRESS_ALLOW) {
		serve_allowed(s, &q, msg, len, peer, peerlen);
		return;
	}
	if (v == EGRESS_REWRITE) {
		log_query(s, q.name, q.qtype, "rewrite", &rwaddr, 1);
		reply(s, out, dns_build_answer(&q, DNS_NOERROR, &rwaddr, 1, s->ttl, out), peer,
		      peerlen);
		return;
	}
	log_query(s, q.name, q.qtype, "deny", NULL, 0);
	reply(s, out, dns_build_answer(&q, DNS_NXDOMAIN, NULL, 0, 0, out), peer, peerlen);
}

static void reload_policy(struct server *s)
{
	struct egress_policy *p = calloc(1, sizeof(*p)), *old;
	char err[256];

	if (!p || egress_policy_load(p, s->policy_path, err, sizeof(err))) {
		fprintf(stderr, "kiln-dns: policy not replaced: %s\n", p ? err : "out of memory");
		free(p);
		return;
	}
	pthread_rwlock_wrlock(&s->policy_lock);
	old = s->policy;
	s->policy = p;
	pthread_rwlock_unlock(&s->policy_lock);
	free(old);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' }, { "policy", required_argument, NULL, 'p' },
		{ "netns", required_argument, NULL, 'n' }, { "log", required_argument, NULL, 'g' },
		{ "rate", required_argument, NULL, 'r' }, { "ttl", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct server s = { .rate = 100, .ttl = 30 };
	const char *listen = NULL, *netns = NULL, *log = NULL;
	struct sigaction sa = { .sa_handler = on_hup };
	char err[512];
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': listen = optarg; break;
		case 'p': s.policy_path = optarg; break;
		case 'n': netns = optarg; break;
		case 'g': log = optarg; break;
		case 'r': s.rate = atof(optarg); break;
		case 't': s.ttl = strtoul(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (!listen || !s.policy_path || optind != argc || !(s.rate >= 1 && s.rate <= 1e6) ||
	    s.ttl > 86400)
		usage();
	pthread_rwlock_init(&s.policy_lock, NULL);
	pthread_mutex_init(&s.log_lock, NULL);
	reload_policy(&s);
	if (!s.policy)
		return 2;
	if (log && !(s.log = fopen(log, "ae"))) {
		fprintf(stderr, "kiln-dns: %s: %s\n", log, strerror(errno));
		return 2;
	}
	s.fd = listen_in_netns(SOCK_DGRAM, listen, netns, err, sizeof(err));
	if (s.fd < 0) {
		fprintf(stderr, "kiln-dns: cannot listen: %s\n", err);
		return 1;
	}
	s.tokens = 2 * s.rate;
	clock_gettime(CLOCK_MONOTONIC, &s.last);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);	/* no SA_RESTART: recvfrom returns to reload */
	fprintf(stderr, "kiln-dns: serving %s\n", listen);
	for (;;) {
		uint8_t msg[DNS_UDP_MAX];
		struct sockaddr_storage peer;
		socklen_t peerlen = sizeof(peer);
		ssize_t n = recvfrom(s.fd, msg, sizeof(msg), 0, (struct sockaddr *)&peer, &peerlen);

		if (reload) {
			reload = 0;
			reload_policy(&s);
		}
		if (n > 0)
			handle(&s, msg, n, &peer, peerlen);
	}
}
