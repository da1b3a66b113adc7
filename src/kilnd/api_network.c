/*
 * api_network.c - a sandbox's network through the API (docs/kilnd.md "Network"):
 *
 *   GET  /v1/sandboxes/{id}/network          the policy as set, and the bytes metered so far
 *   PUT  /v1/sandboxes/{id}/network          replace the policy live (domains, CIDRs,
 *                                            rewrites); connections it no longer allows are cut
 *   GET  /v1/sandboxes/{id}/network/log      ?kind=dns|proxy: the resolver's or the proxy's
 *                                            JSON lines, for forensics
 *   GET  /v1/sandboxes/{id}/network/capture  the pcap of every frame, if asked for at create
 *   POST /v1/sandboxes/{id}/ports            {"port": N}: expose a guest port on the host
 *   GET  /v1/sandboxes/{id}/ports            the exposed ports
 *   DELETE /v1/sandboxes/{id}/ports/{port}
 *
 * The network itself is given at create ("network" in POST /v1/sandboxes, sandbox.c); this
 * file only reads and changes what exists.  Policy changes of one sandbox are serialised: the
 * services pick up a policy file that is replaced by rename.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../host/egress.h"
#include "../host/ingress.h"
#include "../host/vmctl.h"
#include "db.h"
#include "http.h"
#include "network.h"
#include "sandbox.h"

static pthread_mutex_t policy_mu = PTHREAD_MUTEX_INITIALIZER;

/* The sandbox of the request, with a network, in one of the states ("a|b"). */
static int networked(struct request *r, struct sandbox *s, json_t **net)
{
	*net = NULL;
	if (own_sandbox(r, s))
		return -1;
	*net = db_network_json(s->id);
	if (!*net)
		return api_fail(&r->e, 409, "no_network", NULL, "sandbox %s was created without "
				"a network (\"network\" at create)", s->id);
	return 0;
}

static bool live(const struct sandbox *s)
{
	return !strcmp(s->state, "running") || !strcmp(s->state, "paused");
}

/* Replace the policy: the egress services' file (SIGHUP) and the namespace's nftables. */
static int apply(const struct sandbox *s, const struct net_config *c, struct api_error *e)
{
	struct agent_error ae = { 0 };
	char dir[PATH_MAX], file[PATH_MAX], why[256];
	int ret;

	sandbox_dir(s->id, dir, sizeof(dir));
	if (write_private_file(c->policy, "policy", file, sizeof(file)))
		return api_fail(e, 500, "internal", NULL, "cannot write the policy: %s",
				strerror(errno));
	ret = egress_set_policy(dir, file, why, sizeof(why));
	unlink(file);
	if (ret)
		return api_fail(e, 500, "network_failed", NULL, "egress services: %s", why);
	if (vm_set_net_policy(dir, c->allow_cidrs, &ae))
		return api_fail(e, 500, "network_failed", NULL, "%s", ae.message);
	return 0;
}

static enum MHD_Result put_policy(struct request *r)
{
	struct sandbox s;
	struct net_config c;
	json_t *body, *old;

	if (networked(r, &s, &old))
		return reply_error(r, &r->e);
	body = body_object(r->body, r->len, &r->e);
	if (!body || net_config_parse(body, true, old, &c, &r->e)) {
		json_decref(body);
		json_decref(old);
		return reply_error(r, &r->e);
	}
	json_decref(body);
	json_decref(old);
	pthread_mutex_lock(&policy_mu);
	if (db_sandbox_get(s.id, r->agent.id, &s) || !live(&s))
		api_fail(&r->e, 409, "invalid_state", NULL, "cannot change the network of a "
			 "sandbox that is %s", s.state);
	else if (apply(&s, &c, &r->e) == 0 && db_set_network(s.id, c.record))
		api_fail(&r->e, 500, "internal", NULL, "cannot record the network");
	pthread_mutex_unlock(&policy_mu);
	net_config_free(&c);
	if (r->e.status)
		return reply_error(r, &r->e);
	return reply_json(r, 200, db_network_json(s.id));
}

/* A file of the VM directory as the answer; 404 naming what when it is not there. */
static enum MHD_Result send_file(struct request *r, const struct sandbox *s, const char *name,
				 const char *type, const char *what)
{
	char path[PATH_MAX];
	struct stat st;
	int fd;

	sandbox_dir(s->id, path, sizeof(path));
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		api_fail(&r->e, 404, "not_found", NULL, "sandbox %s has no %s", s->id, what);
		return reply_error(r, &r->e);
	}
	return reply_fd(r, 200, type, fd, (uint64_t)st.st_size);
}

static enum MHD_Result get_log(struct request *r, const struct sandbox *s)
{
	const char *kind = query_arg(r, "kind");

	if (!kind || (strcmp(kind, "dns") && strcmp(kind, "proxy"))) {
		api_fail(&r->e, 400, "invalid_argument", "kind", "kind: must be dns or proxy");
		return reply_error(r, &r->e);
	}
	return send_file(r, s, !strcmp(kind, "dns") ? "dns.log" : "proxy.log",
			 "application/x-ndjson", "log of that kind yet");
}

static json_t *port_json(const struct ingress *in)
{
	char url[128];

	snprintf(url, sizeof(url), "http://%s:%u", in->host_addr, in->host_port);
	return json_pack("{s:I, s:s, s:I, s:s}", "port", (json_int_t)in->guest_port, "host",
			 in->host_addr, "host_port", (json_int_t)in->host_port, "url", url);
}

static enum MHD_Result list_ports(struct request *r, const struct sandbox *s)
{
	struct ingress list[INGRESS_MAX];
	char dir[PATH_MAX];
	json_t *out = json_array();
	unsigned n;

	sandbox_dir(s->id, dir, sizeof(dir));
	n = ingress_list(dir, list);
	for (unsigned i = 0; i < n; i++)
		json_array_append_new(out, port_json(&list[i]));
	return reply_json(r, 200, json_pack("{s:o}", "ports", out));
}

static enum MHD_Result expose(struct request *r, const struct sandbox *s)
{
	static const char *const fields[] = { "port", NULL };
	json_t *body = body_object(r->body, r->len, &r->e);
	struct ingress in;
	char dir[PATH_MAX], why[256];
	unsigned port;
	int ret;

	if (!body || json_only_fields(body, fields, &r->e) ||
	    json_opt_uint(body, "port", 1, 65535, 0, &port, &r->e)) {
		json_decref(body);
		return reply_error(r, &r->e);
	}
	json_decref(body);
	if (!port) {
		api_fail(&r->e, 400, "invalid_argument", "port", "port: the guest's TCP port is "
			 "required");
		return reply_error(r, &r->e);
	}
	sandbox_dir(s->id, dir, sizeof(dir));
	pthread_mutex_lock(&policy_mu);
	ret = ingress_start(dir, port, cfg.ingress_addr, &in, why, sizeof(why));
	pthread_mutex_unlock(&policy_mu);
	if (ret) {
		api_fail(&r->e, ret == INGRESS_FULL ? 429 : 500, ret == INGRESS_FULL ?
			 "quota_exceeded" : "network_failed", NULL, "expose port %u: %s", port, why);
		return reply_error(r, &r->e);
	}
	return reply_json(r, 201, port_json(&in));
}

static enum MHD_Result unexpose(struct request *r, const struct sandbox *s)
{
	char dir[PATH_MAX], *end;
	unsigned long port = strtoul(r->m.sub, &end, 10);

	sandbox_dir(s->id, dir, sizeof(dir));
	if (*end || !r->m.sub[0] || port == 0 || port > 65535 || ingress_stop(dir, port)) {
		api_fail(&r->e, 404, "not_found", NULL, "port %.16s of sandbox %s is not exposed",
			 r->m.sub, s->id);
		return reply_error(r, &r->e);
	}
	return reply_json(r, 200, json_pack("{s:I, s:b}", "port", (json_int_t)port, "deleted",
					    1));
}

enum MHD_Result api_network(struct request *r)
{
	struct sandbox s;
	json_t *net;

	if (r->m.route == R_NETWORK_PUT)
		return put_policy(r);
	if (networked(r, &s, &net))
		return reply_error(r, &r->e);
	if (r->m.route == R_NETWORK_GET)
		return reply_json(r, 200, net);
	json_decref(net);
	switch (r->m.route) {
	case R_NETWORK_LOG:
		return get_log(r, &s);
	case R_NETWORK_CAPTURE:
		return send_file(r, &s, SANDBOX_PCAP, "application/vnd.tcpdump.pcap",
				 "capture (\"capture\": true at create)");
	case R_PORTS_LIST:
		return list_ports(r, &s);
	default:
		break;
	}
	if (!live(&s)) {
		api_fail(&r->e, 409, "invalid_state", NULL, "cannot change the ports of a sandbox "
			 "that is %s", s.state);
		return reply_error(r, &r->e);
	}
	return r->m.route == R_PORTS_CREATE ? expose(r, &s) : unexpose(r, &s);
}
