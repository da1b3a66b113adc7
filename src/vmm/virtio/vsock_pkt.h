/*
 * vsock_pkt.h - the virtio-vsock wire format (virtio 1.2 section 5.10.6) and the checks a packet
 * from the guest must pass before the device (vsock.c) acts on it.
 *
 * Everything here is pure: no sockets, no threads, no device state.  vsock.c pops a chain from
 * the TX queue and hands it to vsock_pkt_parse(), which copies the header out of guest memory
 * once and says whether to act on the packet, drop it, or answer it with a reset.  The host
 * side's one line of protocol, "CONNECT <port>\n", is parsed here too.  tests/unit/test_vsock.c
 * feeds both every malformed input we could think of.
 */
#ifndef KILN_VIRTIO_VSOCK_PKT_H
#define KILN_VIRTIO_VSOCK_PKT_H

#include <stddef.h>
#include <stdint.h>

#include "queue.h"

#define VSOCK_HOST_CID		2

/* Every packet, in both directions, starts with this header (little-endian, as on x86). */
struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;		/* payload bytes after the header */
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;	/* sender's receive buffer for this connection */
	uint32_t fwd_cnt;	/* bytes the sender has consumed from it so far */
} __attribute__((packed));

#define VSOCK_HDR_SIZE		44
_Static_assert(sizeof(struct vsock_hdr) == VSOCK_HDR_SIZE, "virtio_vsock_hdr is 44 bytes");

#define VSOCK_TYPE_STREAM	1

enum vsock_op {
	VSOCK_OP_INVALID = 0,
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};

/* SHUTDOWN flags: the sender will receive no more (RCV) / send no more (SEND). */
#define VSOCK_SHUTDOWN_RCV	1
#define VSOCK_SHUTDOWN_SEND	2
#define VSOCK_SHUTDOWN_BOTH	(VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)

/* The event queue's one event (struct virtio_vsock_event is a single le32 id). */
#define VSOCK_EVENT_TRANSPORT_RESET	0

/* Largest payload we accept in one packet; Linux never sends more than this. */
#define VSOCK_MAX_PAYLOAD	(64 * 1024)

enum vsock_verdict {
	VSOCK_PKT_OK,		/* well-formed: act on it */
	VSOCK_PKT_DROP,		/* ignore it: too short to answer, spoofed, or itself a reset */
	VSOCK_PKT_RESET,	/* malformed but addressable: answer with RST */
};

/*
 * Copy the header of TX chain c into *h and judge it.  guest_cid is the only source the guest
 * may claim; the only destination it can reach is VSOCK_HOST_CID.  The payload (h->len bytes
 * from offset VSOCK_HDR_SIZE) is known to lie within the chain's readable part when OK.
 */
enum vsock_verdict vsock_pkt_parse(const struct virtq_chain *c, uint64_t guest_cid,
				   struct vsock_hdr *h);

/* A header for a packet we send, with every field but the credit ones filled in. */
void vsock_hdr_init(struct vsock_hdr *h, uint64_t src_cid, uint32_t src_port,
		    uint64_t dst_cid, uint32_t dst_port, uint16_t op);

/* The RST answering packet h (source and destination swapped). */
void vsock_hdr_reset_reply(struct vsock_hdr *rst, const struct vsock_hdr *h);

/*
 * Bytes we may still send to a peer that advertised buf_alloc and fwd_cnt when we have sent it
 * sent bytes in total.  Counters wrap at 2^32; a peer claiming to have consumed more than we
 * sent, or a window it has already overrun, yields 0 rather than a huge credit.
 */
uint32_t vsock_credit(uint32_t buf_alloc, uint32_t fwd_cnt, uint32_t sent);

/* Longest CONNECT line we accept, newline included ("CONNECT 4294967295\n" is 19). */
#define VSOCK_CONNECT_MAX	32

/*
 * Parse a host client's request line, exactly "CONNECT <port>\n" with a decimal port below 2^32
 * and no sign, spaces or leading zeros beyond a lone "0".  0 with *port set, or -1.
 */
int vsock_parse_connect(const char *line, size_t len, uint32_t *port);

#endif
