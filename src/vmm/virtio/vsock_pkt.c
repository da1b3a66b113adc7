/*
 * vsock_pkt.c - virtio-vsock packet checks and builders (see vsock_pkt.h).
 */
#include "vsock_pkt.h"

#include <string.h>

static enum vsock_verdict judge(const struct vsock_hdr *h, uint64_t payload_room)
{
	if (h->dst_cid != VSOCK_HOST_CID)
		return VSOCK_PKT_RESET;		/* nothing else is reachable through us */
	if (h->type != VSOCK_TYPE_STREAM)
		return VSOCK_PKT_RESET;		/* we never offered SEQPACKET */
	if (h->op < VSOCK_OP_REQUEST || h->op > VSOCK_OP_CREDIT_REQUEST)
		return VSOCK_PKT_RESET;
	if (h->len > VSOCK_MAX_PAYLOAD || h->len > payload_room)
		return VSOCK_PKT_RESET;
	if (h->op != VSOCK_OP_RW && h->len)
		return VSOCK_PKT_RESET;		/* only data packets carry a payload */
	return VSOCK_PKT_OK;
}

enum vsock_verdict vsock_pkt_parse(const struct virtq_chain *c, uint64_t guest_cid,
				   struct vsock_hdr *h)
{
	/* One copy: the guest may rewrite the header in its memory while we look at it. */
	if (c->out_len < VSOCK_HDR_SIZE ||
	    virtq_chain_read(c, 0, h, VSOCK_HDR_SIZE) != VSOCK_HDR_SIZE)
		return VSOCK_PKT_DROP;
	/* A forged source would make our answer go to someone else: never answer it. */
	if (h->src_cid != guest_cid)
		return VSOCK_PKT_DROP;

	enum vsock_verdict v = judge(h, c->out_len - VSOCK_HDR_SIZE);

	/* Never answer a reset with a reset: two peers doing so would ping-pong forever. */
	if (v == VSOCK_PKT_RESET && h->op == VSOCK_OP_RST)
		return VSOCK_PKT_DROP;
	return v;
}

void vsock_hdr_init(struct vsock_hdr *h, uint64_t src_cid, uint32_t src_port,
		    uint64_t dst_cid, uint32_t dst_port, uint16_t op)
{
	memset(h, 0, sizeof(*h));
	h->src_cid = src_cid;
	h->src_port = src_port;
	h->dst_cid = dst_cid;
	h->dst_port = dst_port;
	h->type = VSOCK_TYPE_STREAM;
	h->op = op;
}

void vsock_hdr_reset_reply(struct vsock_hdr *rst, const struct vsock_hdr *h)
{
	vsock_hdr_init(rst, h->dst_cid, h->dst_port, h->src_cid, h->src_port, VSOCK_OP_RST);
}

uint32_t vsock_credit(uint32_t buf_alloc, uint32_t fwd_cnt, uint32_t sent)
{
	uint32_t in_flight = sent - fwd_cnt;	/* modulo 2^32, as the spec counts */

	return in_flight >= buf_alloc ? 0 : buf_alloc - in_flight;
}

int vsock_parse_connect(const char *line, size_t len, uint32_t *port)
{
	static const char verb[] = "CONNECT ";
	const size_t vlen = sizeof(verb) - 1;
	uint64_t v = 0;
	size_t i;

	if (len < vlen + 2 || len > VSOCK_CONNECT_MAX || memcmp(line, verb, vlen) ||
	    line[len - 1] != '\n')
		return -1;
	/* At most 10 digits, so v cannot overflow before the range check. */
	if (len - 1 - vlen > 10 || (line[vlen] == '0' && len - 1 - vlen > 1))
		return -1;
	for (i = vlen; i < len - 1; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(line[i] - '0');
	}
	if (v > UINT32_MAX)
		return -1;
	*port = (uint32_t)v;
	return 0;
}
