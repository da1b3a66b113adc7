/*
 * network.h - a sandbox's network as kilnd's API takes it: the "network" object of a create
 * request (and of PUT /v1/sandboxes/{id}/network) checked field by field and turned into what
 * the host side runs on (docs/kilnd.md "Network", docs/egress.md):
 *
 *   - the IPv4 CIDRs the namespace's nftables let TCP reach (netns.h, "a/n,b/m"),
 *   - the egress policy text kiln-dns and kiln-proxy answer from (egress_policy.h),
 *   - the secrets file kiln-proxy injects from, in the user form egress.h takes,
 *   - the rate limit and whether to capture frames,
 *   - and the record the API shows, which never holds a secret's value.
 *
 * Pure: no I/O, so unit tests feed it hostile requests.  Every string that ends up in a file
 * is checked by the same parser the services use, so nothing a client sends can add a line.
 */
#ifndef KILND_NETWORK_H
#define KILND_NETWORK_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "json.h"

#define NET_MAX_RULES		256	/* per list */
#define NET_MAX_SECRETS		16
#define NET_MAX_RATE_KIB	(1u << 30)

struct net_config {
	char *allow_cidrs;	/* "a.b.c.d/n,..." for the namespace, "" for none */
	char *policy;		/* egress policy text */
	char *secrets;		/* "secret NAME ENV HEADER HOSTS VALUE" lines, or NULL */
	uint64_t rate_bps;	/* each way; 0: unlimited */
	bool capture;		/* a pcap of every frame in the sandbox's directory */
	json_t *record;		/* the network as GET shows it (owned) */
};

/*
 * Parse a create request's "network" object into c.  update: a PUT's body, which may only
 * carry the policy fields (domains, CIDRs, rewrites) and takes the rest from the current
 * record `old`.  0, or -1 with a 400 naming the field in e (c then holds nothing).
 */
int net_config_parse(json_t *net, bool update, json_t *old, struct net_config *c,
		     struct api_error *e);

void net_config_free(struct net_config *c);

/*
 * Check one secret {name, env, header, hosts, value} as a sandbox or the agent's store
 * (api_secrets.c) takes it; where names it in errors.  *shown gets it normalised, without
 * its value (a new reference), or -1 with a 400 in e.
 */
int net_secret_check(json_t *sec, const char *where, json_t **shown, struct api_error *e);

/*
 * The network a create runs on: net (a create request's "network") with the agent's secrets
 * (agent: an array of full secrets, values included) that its "agent_secrets" picks (absent or
 * null: all; else an array of their names) put before the request's own "secrets"; a secret of
 * the request replaces the agent's of the same name or env.  The result has no
 * "agent_secrets", so net_config_parse checks every secret and the total.  *out is a new
 * reference, or -1 with a 400 in e.
 */
int net_merge_agent_secrets(json_t *net, json_t *agent, json_t **out, struct api_error *e);

#endif
