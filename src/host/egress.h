/*
 * egress.h - a networked sandbox's egress services (egress.c): kiln-dns and kiln-proxy, run on
 * the host with their listening sockets inside the sandbox's network namespace, where its
 * nftables send the guest's DNS and web traffic (netns.h, docs/egress.md).
 *
 * Their files live in the VM directory: egress.policy (the policy they answer from), dns.log
 * and proxy.log (one JSON line per query and per connection), dns.pid, proxy.pid, and their
 * stderr in dns.err and proxy.err.  With secrets (egress_secrets.c): egress.secrets (the
 * proxy's, 0600), egress.env (the placeholders the guest gets), egress-ca/ (the sandbox's CA;
 * its key never leaves the host) and egress-upstream-ca.pem (tests' upstream roots).
 */
#ifndef KILN_EGRESS_H
#define KILN_EGRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "../client/agent_client.h"

#define EGRESS_SECRETS_FILE	"egress.secrets"
#define EGRESS_ENV_FILE		"egress.env"
#define EGRESS_CA_DIR		"egress-ca"
#define EGRESS_UPSTREAM_CA	"egress-upstream-ca.pem"
/* Where the guest finds the CA: the system bundle (which gets it appended) and alone. */
#define EGRESS_GUEST_BUNDLE	"/etc/ssl/certs/ca-certificates.crt"
#define EGRESS_GUEST_CA		"/usr/local/share/ca-certificates/kiln-egress.crt"

/*
 * Copy policy into dir/egress.policy and start both services in namespace ns; they are
 * listening when this returns.  With secrets (the user's file, egress_check_secrets), first
 * egress_prepare_secrets: kiln-proxy then injects them.  upstream_ca (NULL: the host's roots)
 * is what kiln-proxy verifies upstreams against.  0, or -1 with err (and neither left running).
 */
int egress_start(const char *dir, const char *ns, const char *policy, const char *secrets,
		 const char *upstream_ca, char *err, size_t errlen);

/*
 * Check a user's secrets file: lines "secret NAME ENV HEADER HOSTS VALUE..." (ENV: the guest
 * variable that gets the placeholder; HOSTS comma-separated names or *.names; VALUE the rest
 * of the line).  0, or -1 with "secrets FILE: line N: why" in err (never a value).
 */
int egress_check_secrets(const char *path, char *err, size_t errlen);

/* Make dir's placeholders, proxy secrets file, guest env file and CA from the user's file
 * secrets (and copy upstream_ca, if not NULL).  0 or -1 with err. */
int egress_prepare_secrets(const char *dir, const char *secrets, const char *upstream_ca,
			   char *err, size_t errlen);

/* Whether dir's sandbox has secrets (then its guest needs egress_guest_env and
 * egress_guest_install). */
bool egress_has_secrets(const char *dir);

/*
 * The environment the guest's processes get for dir's secrets, "K=V" strings, NULL-terminated
 * (egress_env_free): each secret's ENV=PLACEHOLDER, and SSL_CERT_FILE, REQUESTS_CA_BUNDLE,
 * CURL_CA_BUNDLE (the system bundle with the CA added) and NODE_EXTRA_CA_CERTS (the CA
 * alone).  Never a value.  Goes into the guest's IDENTITY request, with the caller's own
 * variables.  NULL with err on failure.
 */
char **egress_guest_env(const char *dir, char *err, size_t errlen);
void egress_env_free(char **env);

/* Install dir's CA certificate in the trust store of dir's running guest, through its agent
 * (egress_guest.c).  0 or -1 with e set. */
int egress_guest_install(const char *dir, struct agent_error *e);

/* Replace dir's egress policy with the file policy, live (SIGHUP).  0 or -1 with err. */
int egress_set_policy(const char *dir, const char *policy, char *err, size_t errlen);

/* Whether dir's sandbox runs egress services. */
bool egress_enabled(const char *dir);

/* Stop dir's services, if any. */
void egress_stop(const char *dir);

#endif
