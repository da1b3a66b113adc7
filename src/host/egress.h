/*
 * egress.h - a networked sandbox's egress services (egress.c): kiln-dns and kiln-proxy, run on
 * the host with their listening sockets inside the sandbox's network namespace, where its
 * nftables send the guest's DNS and web traffic (netns.h, docs/egress.md).
 *
 * Their files live in the VM directory: egress.policy (the policy they answer from), dns.log
 * and proxy.log (one JSON line per query and per connection), dns.pid, proxy.pid, and their
 * stderr in dns.err and proxy.err.
 */
#ifndef KILN_EGRESS_H
#define KILN_EGRESS_H

#include <stdbool.h>
#include <stddef.h>

/* Copy policy into dir/egress.policy and start both services in namespace ns; they are
 * listening when this returns.  0, or -1 with err (and neither left running). */
int egress_start(const char *dir, const char *ns, const char *policy, char *err, size_t errlen);

/* Replace dir's egress policy with the file policy, live (SIGHUP).  0 or -1 with err. */
int egress_set_policy(const char *dir, const char *policy, char *err, size_t errlen);

/* Whether dir's sandbox runs egress services. */
bool egress_enabled(const char *dir);

/* Stop dir's services, if any. */
void egress_stop(const char *dir);

#endif
