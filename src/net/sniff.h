/*
 * sniff.h - what the egress proxy reads of a connection before deciding on it (sniff.c): the
 * server name of a TLS ClientHello (SNI) or of an HTTP request (Host).
 *
 * The bytes come from the guest: both parsers bound every read, report NEED_MORE until the
 * whole ClientHello or header block is there (up to a cap), and refuse what they cannot read
 * unambiguously rather than guess.
 */
#ifndef KILN_SNIFF_H
#define KILN_SNIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns_msg.h"

#define SNIFF_MAX	16384		/* a ClientHello record or an HTTP header block */

enum sniff_result { SNIFF_OK, SNIFF_NEED_MORE, SNIFF_BAD };

struct sniffed {
	char name[DNS_NAME_MAX + 1];	/* lower case, no port, no trailing dot */
	bool ech;			/* TLS: an encrypted_client_hello extension */
	const char *why;		/* SNIFF_BAD: what was wrong */
};

/* Whether the first byte says TLS (a handshake record). */
bool sniff_is_tls(const uint8_t *buf, size_t len);

/* The SNI of the ClientHello at buf.  SNIFF_OK with an empty name if it has none. */
enum sniff_result sniff_tls(const uint8_t *buf, size_t len, struct sniffed *out);

/* The Host of the HTTP/1.x request at buf (and of an absolute-form target, which must agree). */
enum sniff_result sniff_http(const uint8_t *buf, size_t len, struct sniffed *out);

/* Whether name is an IPv4 or IPv6 literal, in any form the C library would take as one
 * ("127.1", "0x7f000001" too): then it names an address, set in *a, not a host. */
bool sniff_ip_literal(const char *name, struct dns_addr *a);

#endif
