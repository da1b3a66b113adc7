/*
 * test_vsock.c - the virtio-vsock packet checks (vsock_pkt.c) against a hostile guest and a
 * careless host client: every header a guest can put on its TX queue must come out as act, drop
 * or reset exactly as documented, and only a well-formed "CONNECT <port>\n" may open a stream.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/vmm/virtio/vsock_pkt.h"

#define GUEST_CID	3
#define PAYLOAD_MAX	(2 * VSOCK_MAX_PAYLOAD)

struct packet {
	uint8_t bytes[VSOCK_HDR_SIZE + PAYLOAD_MAX];
	struct virtq_chain chain;
	struct vsock_hdr h;		/* what the guest wrote */
	struct vsock_hdr parsed;	/* what vsock_pkt_parse() copied out */
};

static struct packet *packet(void)
{
	struct packet *p = calloc(1, sizeof(*p));

	vsock_hdr_init(&p->h, GUEST_CID, 1234, VSOCK_HOST_CID, 52, VSOCK_OP_RW);
	p->h.buf_alloc = 262144;
	return p;
}

/* Lay the header and payload_len bytes out as one readable buffer of chain_len bytes. */
static enum vsock_verdict parse(struct packet *p, uint32_t chain_len)
{
	memcpy(p->bytes, &p->h, sizeof(p->h));
	p->chain.nr_out = 1;
	p->chain.out[0] = (struct virtq_buf){ .addr = p->bytes, .len = chain_len };
	p->chain.out_len = chain_len;
	return vsock_pkt_parse(&p->chain, GUEST_CID, &p->parsed);
}

static void test_good_data_packet(void **state)
{
	struct packet *p = packet();

	(void)state;
	p->h.len = 4096;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE + 4096), VSOCK_PKT_OK);
	assert_memory_equal(&p->parsed, &p->h, sizeof(p->h));
	free(p);
}

static void test_header_split_over_descriptors(void **state)
{
	struct packet *p = packet();

	(void)state;
	p->h.op = VSOCK_OP_REQUEST;
	memcpy(p->bytes, &p->h, sizeof(p->h));
	/* 10 + 30 + 4 bytes: the header straddles three descriptors, as a guest may lay it out. */
	p->chain.nr_out = 3;
	p->chain.out[0] = (struct virtq_buf){ p->bytes, 10 };
	p->chain.out[1] = (struct virtq_buf){ p->bytes + 10, 30 };
	p->chain.out[2] = (struct virtq_buf){ p->bytes + 40, 4 };
	p->chain.out_len = VSOCK_HDR_SIZE;
	assert_int_equal(vsock_pkt_parse(&p->chain, GUEST_CID, &p->parsed), VSOCK_PKT_OK);
	assert_int_equal(p->parsed.op, VSOCK_OP_REQUEST);
	assert_int_equal(p->parsed.src_port, 1234);
	free(p);
}

static void test_short_chain_is_dropped(void **state)
{
	struct packet *p = packet();

	(void)state;
	p->h.len = 0;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE - 1), VSOCK_PKT_DROP);
	assert_int_equal(parse(p, 0), VSOCK_PKT_DROP);
	free(p);
}

static void test_writable_only_chain_is_dropped(void **state)
{
	struct packet *p = packet();

	(void)state;
	memcpy(p->bytes, &p->h, sizeof(p->h));
	p->chain.nr_in = 1;
	p->chain.in[0] = (struct virtq_buf){ p->bytes, VSOCK_HDR_SIZE };
	p->chain.in_len = VSOCK_HDR_SIZE;
	assert_int_equal(vsock_pkt_parse(&p->chain, GUEST_CID, &p->parsed), VSOCK_PKT_DROP);
	free(p);
}

static void test_spoofed_source_is_dropped(void **state)
{
	struct packet *p = packet();

	(void)state;
	p->h.op = VSOCK_OP_REQUEST;
	p->h.src_cid = GUEST_CID + 1;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE), VSOCK_PKT_DROP);
	p->h.src_cid = VSOCK_HOST_CID;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE), VSOCK_PKT_DROP);
	/* The upper 32 bits count: 3 + 2^32 is not CID 3. */
	p->h.src_cid = GUEST_CID + (1ULL << 32);
	assert_int_equal(parse(p, VSOCK_HDR_SIZE), VSOCK_PKT_DROP);
	free(p);
}

static void test_other_destinations_are_reset(void **state)
{
	static const uint64_t bad[] = { 0, 1, GUEST_CID, 4, 0xffffffff, UINT64_MAX,
					VSOCK_HOST_CID + (1ULL << 32) };
	struct packet *p = packet();

	(void)state;
	p->h.op = VSOCK_OP_REQUEST;
	p->h.len = 0;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p->h.dst_cid = bad[i];
		assert_int_equal(parse(p, VSOCK_HDR_SIZE), VSOCK_PKT_RESET);
	}
	free(p);
}

static void test_bad_type_and_op_are_reset(void **state)
{
	struct packet *p = packet();

	(void)state;
	p->h.len = 0;
	p->h.type = 2;				/* SEQPACKET: never offered */
	assert_int_equal(parse(p, VSOCK_HDR_SIZE), VSOCK_PKT_RESET);
	p->h.type = 0;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE), VSOCK_PKT_RESET);
	p->h.type = VSOCK_TYPE_STREAM;
	for (unsigned op = 0; op <= 0xffff; op++) {
		enum vsock_verdict want = op >= VSOCK_OP_REQUEST && op <= VSOCK_OP_CREDIT_REQUEST ?
					  VSOCK_PKT_OK : VSOCK_PKT_RESET;

		p->h.op = op;
		assert_int_equal(parse(p, VSOCK_HDR_SIZE), want);
	}
	free(p);
}

static void test_length_beyond_chain_is_reset(void **state)
{
	struct packet *p = packet();

	(void)state;
	p->h.len = 100;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE + 99), VSOCK_PKT_RESET);
	assert_int_equal(parse(p, VSOCK_HDR_SIZE + 100), VSOCK_PKT_OK);
	assert_int_equal(parse(p, VSOCK_HDR_SIZE + 101), VSOCK_PKT_OK);	/* slack is ignored */
	p->h.len = UINT32_MAX;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE + 100), VSOCK_PKT_RESET);
	free(p);
}

static void test_oversized_payload_is_reset(void **state)
{
	struct packet *p = packet();

	(void)state;
	p->h.len = VSOCK_MAX_PAYLOAD;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE + PAYLOAD_MAX), VSOCK_PKT_OK);
	p->h.len = VSOCK_MAX_PAYLOAD + 1;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE + PAYLOAD_MAX), VSOCK_PKT_RESET);
	free(p);
}

static void test_payload_on_control_packet_is_reset(void **state)
{
	struct packet *p = packet();

	(void)state;
	p->h.len = 8;
	for (uint16_t op = VSOCK_OP_REQUEST; op <= VSOCK_OP_CREDIT_REQUEST; op++) {
		p->h.op = op;
		if (op == VSOCK_OP_RW)
			assert_int_equal(parse(p, VSOCK_HDR_SIZE + 8), VSOCK_PKT_OK);
		else if (op == VSOCK_OP_RST)
			assert_int_equal(parse(p, VSOCK_HDR_SIZE + 8), VSOCK_PKT_DROP);
		else
			assert_int_equal(parse(p, VSOCK_HDR_SIZE + 8), VSOCK_PKT_RESET);
	}
	free(p);
}

static void test_malformed_reset_is_never_answered(void **state)
{
	struct packet *p = packet();

	(void)state;
	p->h.op = VSOCK_OP_RST;
	p->h.dst_cid = 7;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE), VSOCK_PKT_DROP);
	p->h.dst_cid = VSOCK_HOST_CID;
	p->h.type = 9;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE), VSOCK_PKT_DROP);
	p->h.type = VSOCK_TYPE_STREAM;
	assert_int_equal(parse(p, VSOCK_HDR_SIZE), VSOCK_PKT_OK);
	free(p);
}

static void test_reset_reply_swaps_addresses(void **state)
{
	struct vsock_hdr h, rst;

	(void)state;
	vsock_hdr_init(&h, GUEST_CID, 1000, VSOCK_HOST_CID, 52, VSOCK_OP_REQUEST);
	h.buf_alloc = 99;
	h.fwd_cnt = 7;
	h.flags = 3;
	vsock_hdr_reset_reply(&rst, &h);
	assert_int_equal(rst.src_cid, VSOCK_HOST_CID);
	assert_int_equal(rst.src_port, 52);
	assert_int_equal(rst.dst_cid, GUEST_CID);
	assert_int_equal(rst.dst_port, 1000);
	assert_int_equal(rst.op, VSOCK_OP_RST);
	assert_int_equal(rst.type, VSOCK_TYPE_STREAM);
	assert_int_equal(rst.len, 0);
	assert_int_equal(rst.flags, 0);
	assert_int_equal(rst.buf_alloc, 0);
	assert_int_equal(rst.fwd_cnt, 0);
}

static void test_credit(void **state)
{
	(void)state;
	assert_int_equal(vsock_credit(65536, 0, 0), 65536);
	assert_int_equal(vsock_credit(65536, 0, 1000), 64536);
	assert_int_equal(vsock_credit(65536, 1000, 1000), 65536);
	assert_int_equal(vsock_credit(65536, 0, 65536), 0);
	/* The counters wrap at 2^32. */
	assert_int_equal(vsock_credit(65536, UINT32_MAX - 99, 100), 65336);
	/* A peer that claims to have consumed more than we sent gets nothing, not 4 GiB. */
	assert_int_equal(vsock_credit(65536, 5000, 1000), 0);
	/* Nor does one that shrank its buffer below what is already in flight. */
	assert_int_equal(vsock_credit(100, 0, 1000), 0);
	assert_int_equal(vsock_credit(0, 0, 0), 0);
	assert_int_equal(vsock_credit(UINT32_MAX, 0, 0), UINT32_MAX);
}

static int connect_line(const char *s, uint32_t *port)
{
	return vsock_parse_connect(s, strlen(s), port);
}

static void test_connect_line_good(void **state)
{
	uint32_t port = 7;

	(void)state;
	assert_int_equal(connect_line("CONNECT 52\n", &port), 0);
	assert_int_equal(port, 52);
	assert_int_equal(connect_line("CONNECT 0\n", &port), 0);
	assert_int_equal(port, 0);
	assert_int_equal(connect_line("CONNECT 4294967295\n", &port), 0);
	assert_int_equal(port, UINT32_MAX);
}

static void test_connect_line_bad(void **state)
{
	static const char *const bad[] = {
		"", "\n", "CONNECT\n", "CONNECT \n", "CONNECT 52", "connect 52\n", "CONNECT  52\n",
		"CONNECT 52 \n", "CONNECT 52\r\n", "CONNECT -1\n", "CONNECT +5\n", "CONNECT 0x10\n",
		"CONNECT 052\n", "CONNECT 4294967296\n", "CONNECT 99999999999\n",
		"CONNECT 18446744073709551617\n", "CONNECT 5a\n", "CONNECTX 5\n", "OK 5\n",
		"CONNECT 52\nextra", "CONNECT 1234567890123456789012345\n",
	};
	uint32_t port = 7;

	(void)state;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (connect_line(bad[i], &port) != -1)
			fail_msg("accepted %s", bad[i]);
	}
	/* An embedded NUL is not a digit. */
	assert_int_equal(vsock_parse_connect("CONNECT 5\0\n", 11, &port), -1);
	assert_int_equal(port, 7);	/* untouched on failure */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_data_packet),
		cmocka_unit_test(test_header_split_over_descriptors),
		cmocka_unit_test(test_short_chain_is_dropped),
		cmocka_unit_test(test_writable_only_chain_is_dropped),
		cmocka_unit_test(test_spoofed_source_is_dropped),
		cmocka_unit_test(test_other_destinations_are_reset),
		cmocka_unit_test(test_bad_type_and_op_are_reset),
		cmocka_unit_test(test_length_beyond_chain_is_reset),
		cmocka_unit_test(test_oversized_payload_is_reset),
		cmocka_unit_test(test_payload_on_control_packet_is_reset),
		cmocka_unit_test(test_malformed_reset_is_never_answered),
		cmocka_unit_test(test_reset_reply_swaps_addresses),
		cmocka_unit_test(test_credit),
		cmocka_unit_test(test_connect_line_good),
		cmocka_unit_test(test_connect_line_bad),
	};

	return cmocka_run_group_tests_name("vsock packets", tests, NULL, NULL);
}
