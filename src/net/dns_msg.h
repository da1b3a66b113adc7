/*
 * dns_msg.h - the DNS wire format, as much of it as the policy resolver needs (dns_msg.c):
 * read one question from a query a guest sent, and write the answer we decide on.
 *
 * Queries come from the guest and are hostile: the parser bounds every read, accepts exactly
 * one question with uncompressed labels, and never trusts a count.  Answers are built from
 * scratch (the question echoed, then A/AAAA records), never by patching the query.
 */
#ifndef KILN_DNS_MSG_H
#define KILN_DNS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_NAME_MAX	253		/* text form, without the trailing dot */
#define DNS_UDP_MAX	512		/* what we answer in, without EDNS */
#define DNS_MAX_ADDRS	16		/* records in one answer */

enum dns_type { DNS_A = 1, DNS_CNAME = 5, DNS_AAAA = 28, DNS_ANY = 255 };
enum dns_class { DNS_IN = 1 };
enum dns_rcode { DNS_NOERROR = 0, DNS_FORMERR = 1, DNS_SERVFAIL = 2, DNS_NXDOMAIN = 3,
		 DNS_NOTIMP = 4, DNS_REFUSED = 5 };

struct dns_question {
	uint16_t id;
	uint16_t flags;			/* the query's, for RD */
	char name[DNS_NAME_MAX + 1];	/* lower case, no trailing dot; "" for the root */
	uint16_t qtype, qclass;
	size_t qlen;			/* bytes of the question section, to echo it */
	const uint8_t *qsec;		/* points into the query */
};

struct dns_addr {
	int family;			/* AF_INET or AF_INET6 */
	uint8_t bytes[16];
};

/* The address of an IPv4 or IPv6 sockaddr (a getaddrinfo result); false for other families. */
struct sockaddr;
bool dns_addr_from_sockaddr(const struct sockaddr *sa, struct dns_addr *a);

/*
 * Parse a query.  0, or -1 with *rcode the error to answer with (FORMERR for garbage, NOTIMP
 * for an opcode other than QUERY) when the header at least was readable (*rcode = -1: drop
 * it, not even an id to answer to).
 */
int dns_parse_query(const uint8_t *msg, size_t len, struct dns_question *q, int *rcode);

/*
 * Write the answer to q into out (at least DNS_UDP_MAX bytes): rcode, and for NOERROR the
 * addresses among addrs whose family matches q's type, with ttl.  Returns its length.
 */
size_t dns_build_answer(const struct dns_question *q, int rcode, const struct dns_addr *addrs,
			unsigned naddrs, uint32_t ttl, uint8_t *out);

/* An error answer to a query whose question could not be read: header only. */
size_t dns_build_error(uint16_t id, uint16_t flags, int rcode, uint8_t *out);

#endif
