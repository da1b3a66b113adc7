/*
 * dns_msg.c - read a guest's DNS query, write the policy resolver's answer (dns_msg.h).
 *
 * Only what a stub resolver sends is accepted: one question, no answer or authority records
 * (an EDNS OPT in the additional section is ignored, and we answer without EDNS, so replies
 * stay within 512 bytes), labels of letters, digits, '-' and '_' only.  A label holding a dot
 * or other bytes would read, once printed as text, like a different name than the one the
 * wire carries ("example.com" as one label under "attacker"), so such a name is FORMERR rather
 * than something the allow list could be fooled by.
 */
#include "dns_msg.h"

#include <stdbool.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define HDR_LEN		12
#define FLAG_QR		0x8000
#define FLAG_RD		0x0100
#define FLAG_RA		0x0080
#define OPCODE(f)	(((f) >> 11) & 0xf)

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint8_t *put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
	return p + 2;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
	p = put16(p, v >> 16);
	return put16(p, v & 0xffff);
}

static bool label_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* The question's name at msg[*off], as lower-case text.  0, or -1 if it is not acceptable. */
static int read_name(const uint8_t *msg, size_t len, size_t *off, char *name)
{
	size_t o = *off, n = 0;

	for (;;) {
		if (o >= len)
			return -1;
		uint8_t l = msg[o++];

		if (l == 0)
			break;
		if (l > 63 || o + l > len)	/* compression pointers or reserved bits too */
			return -1;
		if (n + (n ? 1 : 0) + l > DNS_NAME_MAX)
			return -1;
		if (n)
			name[n++] = '.';
		for (unsigned i = 0; i < l; i++) {
			uint8_t c = msg[o + i];

			if (c >= 'A' && c <= 'Z')
				c += 'a' - 'A';
			if (!label_char(c))
				return -1;
			name[n++] = c;
		}
		o += l;
	}
	name[n] = 0;
	*off = o;
	return 0;
}

int dns_parse_query(const uint8_t *msg, size_t len, struct dns_question *q, int *rcode)
{
	size_t off = HDR_LEN;

	memset(q, 0, sizeof(*q));
	*rcode = -1;
	if (len < HDR_LEN)
		return -1;
	q->id = get16(msg);
	q->flags = get16(msg + 2);
	if (q->flags & FLAG_QR)
		return -1;		/* a response: answering it could start a loop */
	*rcode = DNS_NOTIMP;
	if (OPCODE(q->flags) != 0)
		return -1;
	*rcode = DNS_FORMERR;
	if (get16(msg + 4) != 1 || get16(msg + 6) != 0 || get16(msg + 8) != 0)
		return -1;
	if (read_name(msg, len, &off, q->name) || off + 4 > len)
		return -1;
	q->qtype = get16(msg + off);
	q->qclass = get16(msg + off + 2);
	off += 4;
	q->qsec = msg + HDR_LEN;
	q->qlen = off - HDR_LEN;
	*rcode = DNS_NOERROR;
	return 0;
}

static uint8_t *put_header(uint8_t *p, uint16_t id, uint16_t qflags, int rcode, uint16_t qd,
			   uint16_t an)
{
	p = put16(p, id);
	p = put16(p, FLAG_QR | (qflags & FLAG_RD) | FLAG_RA | (rcode & 0xf));
	p = put16(p, qd);
	p = put16(p, an);
	p = put16(p, 0);
	return put16(p, 0);
}

static bool wanted(const struct dns_question *q, const struct dns_addr *a)
{
	if (q->qtype == DNS_ANY)
		return true;
	return (q->qtype == DNS_A && a->family == AF_INET) ||
	       (q->qtype == DNS_AAAA && a->family == AF_INET6);
}

size_t dns_build_answer(const struct dns_question *q, int rcode, const struct dns_addr *addrs,
			unsigned naddrs, uint32_t ttl, uint8_t *out)
{
	uint8_t *p = out + HDR_LEN;
	uint16_t an = 0;

	memcpy(p, q->qsec, q->qlen);
	p += q->qlen;
	for (unsigned i = 0; rcode == DNS_NOERROR && q->qclass == DNS_IN && i < naddrs; i++) {
		const struct dns_addr *a = &addrs[i];
		unsigned rdlen = a->family == AF_INET ? 4 : 16;

		if (!wanted(q, a))
			continue;
		if ((size_t)(p - out) + 12 + rdlen > DNS_UDP_MAX)
			break;
		p = put16(p, 0xc000 | HDR_LEN);	/* the name: a pointer to the question's */
		p = put16(p, a->family == AF_INET ? DNS_A : DNS_AAAA);
		p = put16(p, DNS_IN);
		p = put32(p, ttl);
		p = put16(p, rdlen);
		memcpy(p, a->bytes, rdlen);
		p += rdlen;
		an++;
	}
	put_header(out, q->id, q->flags, rcode, 1, an);
	return p - out;
}

size_t dns_build_error(uint16_t id, uint16_t flags, int rcode, uint8_t *out)
{
	put_header(out, id, flags, rcode, 0, 0);
	return HDR_LEN;
}

bool dns_addr_from_sockaddr(const struct sockaddr *sa, struct dns_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->family = sa->sa_family;
	if (sa->sa_family == AF_INET)
		memcpy(a->bytes, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	else if (sa->sa_family == AF_INET6)
		memcpy(a->bytes, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	else
		return false;
	return true;
}
