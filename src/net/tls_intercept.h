/*
 * tls_intercept.h - the TLS pieces of credential injection (tls_intercept.c): a per-sandbox CA
 * whose key never leaves the host, certificates minted from it for the hosts a secret belongs
 * to, and the contexts for both ends of an intercepted connection.
 *
 * The guest trusts its sandbox's CA (its certificate goes into the guest's trust store); the
 * proxy presents a certificate for the SNI the guest asked for, and itself verifies the real
 * server against the host's roots, so the guest can never make us talk to an impostor while
 * holding a real credential.
 */
#ifndef KILN_TLS_INTERCEPT_H
#define KILN_TLS_INTERCEPT_H

#include <stddef.h>
#include <openssl/ssl.h>

struct tls_ca;

/* Make DIR/ca.pem (the certificate, for the guest) and DIR/ca.key (mode 0600).  0 or -1. */
int tls_make_ca(const char *dir, char *err, size_t errlen);

/* Load DIR/ca.pem and DIR/ca.key.  NULL with err set. */
struct tls_ca *tls_ca_load(const char *dir, char *err, size_t errlen);

/* An SSL for the guest's side of a connection to host, with a certificate for host (minted
 * once per host and cached).  NULL on failure. */
SSL *tls_guest_side(struct tls_ca *ca, const char *host);

/* An SSL for the upstream side, verifying host's certificate against upstream_ca (a PEM file)
 * or, when NULL, the host's system roots.  NULL on failure. */
SSL *tls_upstream_side(const char *upstream_ca, const char *host);

#endif
