/*
 * netns.h - a sandbox's network namespace on the host: its tap, the veth to the host and the
 * nftables egress policy (netns.c, docs/network.md).  Root only.
 */
#ifndef KILN_NETNS_H
#define KILN_NETNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NETNS_PREFIX		"kiln-"		/* namespace kiln-N for slot N */
#define NETNS_HOST_PREFIX	"kv-"		/* host end of its veth: kv-N */
#define NETNS_TAP		"tap0"
#define NETNS_UPLINK		"eth-up"	/* namespace end of the veth */
#define NETNS_GATEWAY		"10.0.2.1"	/* the tap's address: the guest's gateway */
#define NETNS_GUEST		"10.0.2.2"
/* The gateway's MAC, the same in every namespace: a guest restored into another namespace
 * keeps the gateway in its ARP cache, and a tap drops frames not addressed to its own MAC.
 * Locally administered. */
#define NETNS_GATEWAY_MAC	"02:6b:69:6c:6e:fe"	/* the guest is ...:01 */
#define NETNS_MAX_CIDRS		256
#define NETNS_ALLOW_MAX		8192
#define NETNS_NAME_MAX		32
#define NETNS_DNS_PORT		53	/* kiln-dns, on NETNS_GATEWAY in the namespace */
#define NETNS_HTTP_PORT		8080	/* kiln-proxy's listeners, likewise */
#define NETNS_TLS_PORT		8443

/*
 * Create a namespace with its tap and veth and load the policy: TCP to the comma-separated
 * IPv4 CIDRs in allow (NULL or "" for none), never to the host, other sandboxes, link-local or
 * reserved ranges.  Its name in name.  0, or -1 with a reason in err and nothing left behind.
 * services: the guest's DNS (UDP and TCP 53) goes to kiln-dns at NETNS_GATEWAY:53 and its TCP
 * 80 and 443 to kiln-proxy at NETNS_GATEWAY:NETNS_HTTP_PORT/NETNS_TLS_PORT (docs/egress.md),
 * which the caller starts inside the namespace.
 */
int netns_create(const char *allow, bool services, char *name, size_t namelen, char *err,
		 size_t errlen);

/*
 * Replace the namespace's policy with allow (same form as netns_create), atomically; packets of
 * open connections the new policy does not allow are refused from then on.  0 or -1 with err.
 */
int netns_set_policy(const char *name, const char *allow, bool services, char *err,
		     size_t errlen);

/*
 * netns_create in two steps, for the namespace pool (netns_pool.h), which must record the slot
 * before it builds in it: claim a free slot (host-wide setup done, whatever a crash left in the
 * slot removed; the name in name), then build it and load the policy.  netns_build destroys the
 * namespace and frees its slot when it fails.  Both 0, or -1 with err.
 */
int netns_claim(char *name, size_t namelen, char *err, size_t errlen);
int netns_build(const char *name, const char *allow, bool services, char *err, size_t errlen);

/* Whether allow is a policy netns_set_policy would load (pure).  0 or -1 with err. */
int netns_check_policy(const char *allow, bool services, char *err, size_t errlen);

/* The slot of a namespace name kiln-N as netns_claim makes them (pure); 0, or -1 for any other
 * string (signs, leading zeros, trailing bytes, N out of range). */
int netns_slot(const char *name, unsigned *slot);

/* Remove the namespace (its tap and veth go with it) and free its slot. */
void netns_destroy(const char *name);

/* Move the calling process into the namespace (before exec'ing kiln-vmm). */
int netns_enter(const char *name);

/* Parse a.b.c.d[/n] into a host-order address with host bits cleared. */
int netns_parse_cidr(const char *s, uint32_t *addr, unsigned *len);

/* The nftables ruleset for allow and the host's own addresses, as `nft -f` text (pure). */
int netns_ruleset(const char *allow, bool services, const uint32_t *host_addrs, unsigned nhost,
		  char *out, size_t outlen, char *err, size_t errlen);

#endif
