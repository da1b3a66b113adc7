/*
 * test_vsock_dev.c - the virtio-vsock device end to end without a VM: this file plays the guest
 * driver (fake_driver.c: rings in a fake guest RAM, registers through the real MMIO transport)
 * and the host programs (real unix sockets), and checks the protocol on both sides: connects
 * both ways, refusals and timeouts, half-close and teardown, credit in both directions, resets,
 * the connection cap, and a guest that lies (spoofed CIDs, bogus ops, overrun credit).
 *
 * One device serves every test; each test starts with a driver reset, which must drop whatever
 * the previous test left open.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/vmm/virtio/devices.h"
#include "../../src/vmm/virtio/vsock_pkt.h"
#include "fake_driver.h"

#define RAM_SIZE	(16 << 20)
#define QSIZE		64
#define RXBUF(i)	(0x100000 + (i) * 0x2000)
#define RXLEN		4096
#define TXBUF(i)	(0x200000 + (i) * 0x11000)
#define EVBUF(i)	(0x800000 + (i) * 16)
#define CID		3
#define GUEST_BUF	(256 * 1024)
#define WAIT_MS		3000

static struct fake_driver G;		/* the guest's side */
static struct {
	char dir[64], path[128];
} D;

static void rx_post(uint16_t i)
{
	drv_post_buf(&G, 0, i, RXBUF(i), RXLEN, VIRTQ_DESC_F_WRITE);
}

static void driver_init(void)
{
	drv_init(&G, F_VERSION_1, 3, QSIZE);
	for (uint16_t i = 0; i < QSIZE; i++)
		rx_post(i);
	for (uint16_t i = 0; i < 4; i++)
		drv_post_buf(&G, 2, i, EVBUF(i), 4, VIRTQ_DESC_F_WRITE);
}

static void tx_raw(const void *bytes, uint32_t len)
{
	uint16_t slot = drv_next_slot(&G, 1, WAIT_MS);

	memcpy(G.ram + TXBUF(slot), bytes, len);
	drv_post_buf(&G, 1, slot, TXBUF(slot), len, 0);
}

static struct vsock_hdr hdr(uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	struct vsock_hdr h;

	vsock_hdr_init(&h, CID, src_port, VSOCK_HOST_CID, dst_port, op);
	h.buf_alloc = GUEST_BUF;
	return h;
}

static void tx(struct vsock_hdr h, const void *payload, uint32_t len)
{
	static uint8_t pkt[VSOCK_HDR_SIZE + VSOCK_MAX_PAYLOAD];

	h.len = len;
	memcpy(pkt, &h, sizeof(h));
	if (len)
		memcpy(pkt + sizeof(h), payload, len);
	tx_raw(pkt, sizeof(h) + len);
}

static void tx_op(uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	tx(hdr(op, src_port, dst_port), NULL, 0);
}

/* The next packet the device put on the RX queue; false if none came within ms. */
static bool rx(struct vsock_hdr *h, void *payload, long ms)
{
	struct virtq_used_elem e;

	if (!drv_next_used(&G, 0, &e, ms))
		return false;
	assert_true(e.id < QSIZE);
	assert_true(e.len >= VSOCK_HDR_SIZE && e.len <= RXLEN);
	memcpy(h, G.ram + RXBUF(e.id), sizeof(*h));
	assert_int_equal(e.len, VSOCK_HDR_SIZE + h->len);
	assert_int_equal(h->dst_cid, CID);
	assert_int_equal(h->type, VSOCK_TYPE_STREAM);
	if (payload)
		memcpy(payload, G.ram + RXBUF(e.id) + VSOCK_HDR_SIZE, h->len);
	rx_post(e.id);
	return true;
}

static struct vsock_hdr rx_expect(uint16_t op, uint32_t src_port, uint32_t dst_port)
{
	struct vsock_hdr h;

	if (!rx(&h, NULL, WAIT_MS))
		fail_msg("no packet, expected op %u", op);
	if (h.op != op)
		fail_msg("got op %u, expected %u", h.op, op);
	assert_int_equal(h.src_cid, VSOCK_HOST_CID);
	if (src_port != UINT32_MAX)
		assert_int_equal(h.src_port, src_port);
	assert_int_equal(h.dst_port, dst_port);
	return h;
}

static void rx_nothing(long ms)
{
	struct vsock_hdr h;

	if (rx(&h, NULL, ms))
		fail_msg("unexpected packet op %u %u->%u", h.op, h.src_port, h.dst_port);
}

/* ---- host side helpers ---- */

static int host_listen(uint32_t port)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", D.path, port);
	unlink(sa.sun_path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 64), 0);
	return fd;
}

static int host_accept(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	return accept(lfd, NULL, NULL);
}

static int host_client(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", D.path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Read exactly len bytes (or up to EOF) within WAIT_MS; returns bytes read. */
static size_t host_read(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, WAIT_MS) != 1)
			break;
		ssize_t r = read(fd, (uint8_t *)buf + got, len - got);

		if (r <= 0)
			break;
		got += r;
	}
	return got;
}

static void host_expect_eof(int fd)
{
	char c;

	assert_int_equal(host_read(fd, &c, 1), 0);
	struct pollfd p = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&p, 1, 0), 1);	/* readable: EOF, not a timeout */
}

static void host_write(int fd, const void *buf, size_t len)
{
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
}

/* A host client through the CONNECT handshake; *host_port is the port the guest sees. */
static int host_connect(uint32_t guest_port, uint32_t *host_port)
{
	char line[64], want[64];
	int fd = host_client();

	snprintf(line, sizeof(line), "CONNECT %u\n", guest_port);
	host_write(fd, line, strlen(line));
	struct vsock_hdr h = rx_expect(VSOCK_OP_REQUEST, UINT32_MAX, guest_port);

	assert_true(h.src_port >= 1u << 30);
	assert_int_equal(h.len, 0);
	*host_port = h.src_port;
	tx_op(VSOCK_OP_RESPONSE, guest_port, h.src_port);
	int n = snprintf(want, sizeof(want), "OK %u\n", h.src_port);

	assert_int_equal(host_read(fd, line, n), n);
	assert_memory_equal(line, want, n);
	return fd;
}

/* A guest connect to host port through a listener; returns the accepted host socket. */
static int guest_connect(int lfd, uint32_t guest_port, uint32_t port)
{
	tx_op(VSOCK_OP_REQUEST, guest_port, port);
	struct vsock_hdr h = rx_expect(VSOCK_OP_RESPONSE, port, guest_port);

	assert_int_equal(h.buf_alloc, 64 * 1024);
	return host_accept(lfd);
}

/* ---- fixtures ---- */

static int group_setup(void **state)
{
	struct virtio_dev *d;
	char err[256];

	(void)state;
	drv_ram(&G, RAM_SIZE);
	snprintf(D.dir, sizeof(D.dir), "/tmp/kiln-vsock-XXXXXX");
	if (!mkdtemp(D.dir))
		return -1;
	snprintf(D.path, sizeof(D.path), "%s/v.sock", D.dir);
	d = virtio_vsock_create(&G.gm, CID, D.path, err, sizeof(err));
	if (!d) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	drv_attach(&G, d);
	return 0;
}

static int group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	/* The device lives until exit; only its files go now. */
	snprintf(cmd, sizeof(cmd), "rm -rf %s", D.dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int setup(void **state)
{
	(void)state;
	driver_init();
	return 0;
}

/* ---- tests ---- */

static void test_config_space(void **state)
{
	uint64_t cid = 0;

	(void)state;
	virtio_mmio_read(G.d, R_CONFIG, &cid, 8);
	assert_int_equal(cid, CID);
	assert_int_equal(drv_read(&G, R_DEVICE_ID), VIRTIO_ID_VSOCK);
}

static void test_guest_connect_nobody_listens(void **state)
{
	(void)state;
	tx_op(VSOCK_OP_REQUEST, 1000, 7777);
	rx_expect(VSOCK_OP_RST, 7777, 1000);
	rx_nothing(100);
}

static void test_guest_connect_data_and_close(void **state)
{
	char buf[64];
	int lfd = host_listen(5001);
	int fd = guest_connect(lfd, 1001, 5001);
	struct vsock_hdr h;

	(void)state;
	tx(hdr(VSOCK_OP_RW, 1001, 5001), "hello", 5);
	assert_int_equal(host_read(fd, buf, 5), 5);
	assert_memory_equal(buf, "hello", 5);
	host_write(fd, "world!", 6);
	assert_true(rx(&h, buf, WAIT_MS));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.len, 6);
	assert_memory_equal(buf, "world!", 6);
	assert_int_equal(h.fwd_cnt, 5);		/* the host took our 5 bytes */

	/* The guest half-closes: the host reads EOF but can still answer. */
	struct vsock_hdr sh = hdr(VSOCK_OP_SHUTDOWN, 1001, 5001);

	sh.flags = VSOCK_SHUTDOWN_SEND;
	tx(sh, NULL, 0);
	host_expect_eof(fd);
	host_write(fd, "bye", 3);
	assert_true(rx(&h, buf, WAIT_MS));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_memory_equal(buf, "bye", 3);

	/* The host closes: the guest is asked to close both ways, and confirms with RST. */
	close(fd);
	h = rx_expect(VSOCK_OP_SHUTDOWN, 5001, 1001);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_BOTH);
	tx_op(VSOCK_OP_RST, 1001, 5001);
	rx_nothing(100);

	/* The same ports are free again. */
	fd = guest_connect(lfd, 1001, 5001);
	close(fd);
	close(lfd);
}

static void test_host_connect_data_and_half_close(void **state)
{
	uint32_t hp;
	int fd = host_connect(6000, &hp);
	struct vsock_hdr h;
	char buf[64];

	(void)state;
	host_write(fd, "ping", 4);
	assert_true(rx(&h, buf, WAIT_MS));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.src_port, hp);
	assert_memory_equal(buf, "ping", 4);
	tx(hdr(VSOCK_OP_RW, 6000, hp), "pong", 4);
	assert_int_equal(host_read(fd, buf, 4), 4);
	assert_memory_equal(buf, "pong", 4);

	/* Host half-close becomes SHUTDOWN(SEND); the guest's data still flows back. */
	shutdown(fd, SHUT_WR);
	h = rx_expect(VSOCK_OP_SHUTDOWN, hp, 6000);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
	tx(hdr(VSOCK_OP_RW, 6000, hp), "tail", 4);
	assert_int_equal(host_read(fd, buf, 4), 4);
	assert_memory_equal(buf, "tail", 4);

	/* The guest closes: the client gets EOF, the guest its confirming RST. */
	struct vsock_hdr sh = hdr(VSOCK_OP_SHUTDOWN, 6000, hp);

	sh.flags = VSOCK_SHUTDOWN_BOTH;
	tx(sh, NULL, 0);
	host_expect_eof(fd);
	rx_expect(VSOCK_OP_RST, hp, 6000);
	close(fd);
}

static void test_host_ports_are_unique(void **state)
{
	uint32_t a, b;
	int fa = host_connect(6000, &a);
	int fb = host_connect(6000, &b);

	(void)state;
	assert_int_not_equal(a, b);
	close(fa);
	close(fb);
}

static void test_connect_line_and_early_data(void **state)
{
	int fd = host_client();
	struct vsock_hdr h;
	char buf[64];

	(void)state;
	/* Data right behind the line, in the same write, belongs to the stream. */
	host_write(fd, "CONNECT 6003\nearly", 18);
	h = rx_expect(VSOCK_OP_REQUEST, UINT32_MAX, 6003);
	tx_op(VSOCK_OP_RESPONSE, 6003, h.src_port);
	assert_int_equal(host_read(fd, buf, 3), 3);
	assert_memory_equal(buf, "OK ", 3);
	assert_true(rx(&h, buf, WAIT_MS));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.len, 5);
	assert_memory_equal(buf, "early", 5);
	close(fd);
}

static void test_host_connect_refused(void **state)
{
	int fd = host_client();
	struct vsock_hdr h;

	(void)state;
	host_write(fd, "CONNECT 6001\n", 13);
	h = rx_expect(VSOCK_OP_REQUEST, UINT32_MAX, 6001);
	tx_op(VSOCK_OP_RST, 6001, h.src_port);
	host_expect_eof(fd);
	rx_nothing(100);
	close(fd);
}

static void test_host_connect_guest_silent(void **state)
{
	struct timespec t0;
	int fd = host_client();
	struct vsock_hdr h;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	host_write(fd, "CONNECT 6002\n", 13);
	h = rx_expect(VSOCK_OP_REQUEST, UINT32_MAX, 6002);
	char c;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&p, 1, 4000), 1);
	assert_int_equal(read(fd, &c, 1), 0);
	long ms = ms_since(&t0);

	assert_true(ms >= 1900 && ms < 3500);
	/* The guest may have a half-open stream: it is reset. */
	rx_expect(VSOCK_OP_RST, h.src_port, 6002);
	close(fd);
}

static void test_garbage_connect_lines(void **state)
{
	static const char *const bad[] = {
		"HELLO\n", "CONNECT\n", "CONNECT 99999999999\n", "CONNECT 5 6\n",
		"CONNECT 1234567890123456789012345678901234567890",	/* too long, no newline */
	};

	(void)state;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = host_client();

		host_write(fd, bad[i], strlen(bad[i]));
		host_expect_eof(fd);
		close(fd);
	}
	/* A client that leaves mid-line is forgotten too. */
	int fd = host_client();

	host_write(fd, "CONN", 4);
	close(fd);
	rx_nothing(100);
	/* And the device still works. */
	uint32_t hp;

	fd = host_connect(6010, &hp);
	close(fd);
}

static void test_hostile_packets(void **state)
{
	struct vsock_hdr h;

	(void)state;
	/* Spoofed source CID: no answer at all. */
	h = hdr(VSOCK_OP_REQUEST, 2000, 5000);
	h.src_cid = 4;
	tx(h, NULL, 0);
	h.src_cid = VSOCK_HOST_CID;
	tx(h, NULL, 0);
	rx_nothing(100);
	/* Somewhere other than the host: reset. */
	h = hdr(VSOCK_OP_REQUEST, 2001, 5000);
	h.dst_cid = 5;
	tx(h, NULL, 0);
	assert_true(rx(&h, NULL, WAIT_MS));
	assert_int_equal(h.op, VSOCK_OP_RST);
	assert_int_equal(h.src_cid, 5);		/* from where the guest meant to go */
	assert_int_equal(h.dst_port, 2001);
	/* Unknown op, wrong type: reset. */
	tx_op(99, 2002, 5000);
	rx_expect(VSOCK_OP_RST, 5000, 2002);
	h = hdr(VSOCK_OP_REQUEST, 2003, 5000);
	h.type = 2;
	tx(h, NULL, 0);
	rx_expect(VSOCK_OP_RST, 5000, 2003);
	/* Data, shutdown, credit for a stream that does not exist: reset; a stray RST: nothing. */
	tx(hdr(VSOCK_OP_RW, 2004, 5000), "x", 1);
	rx_expect(VSOCK_OP_RST, 5000, 2004);
	tx_op(VSOCK_OP_CREDIT_UPDATE, 2005, 5000);
	rx_expect(VSOCK_OP_RST, 5000, 2005);
	tx_op(VSOCK_OP_RST, 2006, 5000);
	rx_nothing(100);
	/* A length beyond the buffer: reset, and nothing read past it. */
	h = hdr(VSOCK_OP_RW, 2007, 5000);
	h.len = 1000;
	tx_raw(&h, sizeof(h));
	rx_expect(VSOCK_OP_RST, 5000, 2007);
	/* A header cut short: dropped. */
	tx_raw(&h, 20);
	rx_nothing(100);
	/* A flood of junk is answered with at most a bounded number of resets. */
	for (unsigned i = 0; i < 500; i++)
		tx_op(99, 3000 + i, 5000);
	unsigned n = 0;

	while (rx(&h, NULL, 300))
		n++;
	assert_true(n > 0 && n <= 500);
}

static void test_guest_overruns_credit(void **state)
{
	static uint8_t chunk[VSOCK_MAX_PAYLOAD];
	int lfd = host_listen(5002);
	int fd = guest_connect(lfd, 1002, 5002);
	struct vsock_hdr h;
	unsigned sent = 0;

	(void)state;
	/* The host never reads; a guest ignoring credit must be reset, not buffered for. */
	for (h.op = 0; sent < 64 && h.op != VSOCK_OP_RST; sent++) {
		tx(hdr(VSOCK_OP_RW, 1002, 5002), chunk, sizeof(chunk));
		/* The socket itself takes a few hundred KiB, so credit updates come first. */
		while (rx(&h, NULL, 50) && h.op != VSOCK_OP_RST)
			assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
	}
	assert_int_equal(h.op, VSOCK_OP_RST);
	assert_true(sent < 64);
	/* The host still gets what its socket took before the reset, then EOF; nothing more. */
	static uint8_t sink[1 << 20];
	size_t got = host_read(fd, sink, sizeof(sink));

	assert_true(got > 0 && got < sent * sizeof(chunk));
	host_expect_eof(fd);
	close(fd);
	close(lfd);
}

/* Guest -> host bulk with a guest that obeys credit and a host that reads late. */
static void test_guest_to_host_credit_flow(void **state)
{
	static uint8_t chunk[4000];
	const unsigned total = 1 << 20;
	int lfd = host_listen(5003);
	int fd = guest_connect(lfd, 1003, 5003);
	uint32_t sent = 0, peer_fwd = 0, peer_buf = 64 * 1024;
	uint8_t *got = malloc(total);
	size_t have = 0;
	struct vsock_hdr h;
	bool stalled = false;

	(void)state;
	while (sent < total || have < total) {
		uint32_t credit = vsock_credit(peer_buf, peer_fwd, sent);
		uint32_t n = total - sent < sizeof(chunk) ? total - sent : sizeof(chunk);

		if (n && credit >= n) {
			for (uint32_t i = 0; i < n; i++)
				chunk[i] = (uint8_t)((sent + i) * 7);
			tx(hdr(VSOCK_OP_RW, 1003, 5003), chunk, n);
			sent += n;
			continue;
		}
		/* Out of credit: from the second stall on, the host starts reading. */
		if (n)
			stalled = true;
		if (stalled) {
			ssize_t r = recv(fd, got + have, total - have, MSG_DONTWAIT);

			if (r > 0)
				have += r;
		}
		while (rx(&h, NULL, 20)) {
			assert_true(h.op == VSOCK_OP_CREDIT_UPDATE || h.op == VSOCK_OP_RW);
			peer_fwd = h.fwd_cnt;
			peer_buf = h.buf_alloc;
		}
	}
	for (uint32_t i = 0; i < total; i++)
		if (got[i] != (uint8_t)(i * 7))
			fail_msg("byte %u corrupted", i);
	free(got);
	close(fd);
	close(lfd);
}

struct writer {
	int fd;
	size_t len;
};

static void *write_pattern(void *arg)
{
	struct writer *w = arg;
	uint8_t buf[8192];

	for (size_t off = 0; off < w->len; off += sizeof(buf)) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)((off + i) * 13 + 1);
		if (write(w->fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			break;
	}
	shutdown(w->fd, SHUT_WR);
	return NULL;
}

/* Host -> guest bulk into a guest with a small window that it reopens slowly. */
static void test_host_to_guest_credit_flow(void **state)
{
	const uint32_t window = 16 * 1024;
	struct writer w = { .len = 1 << 20 };
	uint32_t hp, got = 0, fwd = 0;
	uint8_t buf[RXLEN];
	struct vsock_hdr h;
	pthread_t t;

	(void)state;
	w.fd = host_client();
	host_write(w.fd, "CONNECT 6004\n", 13);
	h = rx_expect(VSOCK_OP_REQUEST, UINT32_MAX, 6004);
	hp = h.src_port;
	struct vsock_hdr resp = hdr(VSOCK_OP_RESPONSE, 6004, hp);

	resp.buf_alloc = window;
	tx(resp, NULL, 0);
	assert_int_equal(host_read(w.fd, buf, 3), 3);
	while (buf[0] != '\n')
		assert_int_equal(host_read(w.fd, buf, 1), 1);
	pthread_create(&t, NULL, write_pattern, &w);
	for (;;) {
		if (!rx(&h, buf, WAIT_MS))
			fail_msg("stalled at %u bytes", got);
		if (h.op == VSOCK_OP_SHUTDOWN)
			break;
		struct vsock_hdr cu = hdr(VSOCK_OP_CREDIT_UPDATE, 6004, hp);

		cu.buf_alloc = window;
		if (h.op == VSOCK_OP_CREDIT_REQUEST) {
			cu.fwd_cnt = fwd;
			tx(cu, NULL, 0);
			continue;
		}
		assert_int_equal(h.op, VSOCK_OP_RW);
		for (uint32_t i = 0; i < h.len; i++)
			if (buf[i] != (uint8_t)((got + i) * 13 + 1))
				fail_msg("byte %u corrupted", got + i);
		got += h.len;
		/* Never beyond the window we advertised. */
		assert_true(got - fwd <= window);
		/* Consume, but only tell the device when half the window is free. */
		if (got - fwd >= window / 2) {
			fwd = got;
			cu.fwd_cnt = fwd;
			tx(cu, NULL, 0);
		}
	}
	assert_int_equal(got, w.len);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
	pthread_join(t, NULL);
	close(w.fd);
}

static void test_device_reset_drops_streams(void **state)
{
	uint32_t hp;
	int lfd = host_listen(5004);
	int a = host_connect(6005, &hp);
	int b = guest_connect(lfd, 1004, 5004);

	(void)state;
	driver_init();
	host_expect_eof(a);
	host_expect_eof(b);
	rx_nothing(100);
	close(a);
	close(b);
	close(lfd);
}

static void test_transport_reset_event(void **state)
{
	struct virtq_used_elem e;
	uint32_t hp, id = 99;
	int fd = host_connect(6006, &hp);

	(void)state;
	assert_int_equal(virtio_vsock_transport_reset(G.d), 0);
	assert_true(drv_next_used(&G, 2, &e, WAIT_MS));
	assert_int_equal(e.len, 4);
	memcpy(&id, G.ram + EVBUF(e.id), 4);
	assert_int_equal(id, VSOCK_EVENT_TRANSPORT_RESET);
	host_expect_eof(fd);
	close(fd);
	/* Packets for the forgotten stream are answered with a reset. */
	tx(hdr(VSOCK_OP_RW, 6006, hp), "x", 1);
	rx_expect(VSOCK_OP_RST, hp, 6006);
}

/*
 * Paused for a snapshot, the device touches no ring: guest packets wait in the TX queue, a host
 * connect waits for the RX queue, and the guest's 2 s to answer does not run.  Resumed, all of
 * it goes through.
 */
static void test_pause_holds_the_rings(void **state)
{
	struct vsock_hdr h;
	char line[32];
	int fd;

	(void)state;
	virtio_pause(G.d, true);
	tx_op(VSOCK_OP_REQUEST, 7001, 9999);		/* nobody listens at PATH_9999 */
	usleep(300 * 1000);
	assert_int_equal(drv_used_idx(&G, 1), G.used_seen[1]);
	virtio_pause(G.d, false);
	rx_expect(VSOCK_OP_RST, 9999, 7001);

	virtio_pause(G.d, true);
	fd = host_client();
	host_write(fd, "CONNECT 6010\n", 13);
	rx_nothing(2500);
	virtio_pause(G.d, false);
	h = rx_expect(VSOCK_OP_REQUEST, UINT32_MAX, 6010);
	tx_op(VSOCK_OP_RESPONSE, 6010, h.src_port);
	snprintf(line, sizeof(line), "OK %u\n", h.src_port);
	assert_int_equal(host_read(fd, line, strlen(line)), strlen(line));
	assert_int_equal(strncmp(line, "OK ", 3), 0);
	close(fd);
}

static void test_connection_cap(void **state)
{
	enum { CAP = 1024 };
	static int fds[CAP + 1];
	char c;

	(void)state;
	for (unsigned i = 0; i < CAP; i++)
		fds[i] = host_client();
	/* Let the device take them all, then one more is turned away at once. */
	usleep(300 * 1000);
	fds[CAP] = host_client();
	struct pollfd p = { .fd = fds[CAP], .events = POLLIN };

	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	assert_int_equal(read(fds[CAP], &c, 1), 0);
	close(fds[CAP]);
	/* A guest connect at the cap is refused too. */
	int lfd = host_listen(5005);

	tx_op(VSOCK_OP_REQUEST, 1005, 5005);
	rx_expect(VSOCK_OP_RST, 5005, 1005);
	/* Once one leaves, there is room again. */
	close(fds[0]);
	usleep(100 * 1000);
	int fd = guest_connect(lfd, 1006, 5005);

	close(fd);
	for (unsigned i = 1; i < CAP; i++)
		close(fds[i]);
	close(lfd);
}

static void test_many_concurrent_streams(void **state)
{
	enum { N = 20 };
	int fds[N];
	uint32_t hp[N];
	struct vsock_hdr h;
	char buf[64];

	(void)state;
	for (unsigned i = 0; i < N; i++)
		fds[i] = host_connect(7000 + i, &hp[i]);
	for (unsigned i = 0; i < N; i++)
		host_write(fds[i], &i, sizeof(i));
	for (unsigned i = 0; i < N; i++) {
		unsigned v;

		assert_true(rx(&h, &v, WAIT_MS));
		assert_int_equal(h.op, VSOCK_OP_RW);
		assert_int_equal(h.dst_port, 7000 + v);
		assert_int_equal(h.src_port, hp[v]);
		tx(hdr(VSOCK_OP_RW, 7000 + v, hp[v]), &v, sizeof(v));
	}
	for (unsigned i = 0; i < N; i++) {
		unsigned v;

		assert_int_equal(host_read(fds[i], &v, sizeof(v)), sizeof(v));
		assert_int_equal(v, i);
		close(fds[i]);
	}
	/* Each close becomes a SHUTDOWN asking the guest to close. */
	for (unsigned i = 0; i < N; i++) {
		assert_true(rx(&h, buf, WAIT_MS));
		assert_int_equal(h.op, VSOCK_OP_SHUTDOWN);
	}
}

static void test_stale_socket_and_bad_arguments(void **state)
{
	char err[256], path[160];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	(void)state;
	/* A socket file nobody listens on is replaced. */
	snprintf(path, sizeof(path), "%s/stale.sock", D.dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_non_null(virtio_vsock_create(&G.gm, 9, path, err, sizeof(err)));
	/* A live one, or a file that is not a socket, is refused. */
	assert_null(virtio_vsock_create(&G.gm, 9, path, err, sizeof(err)));
	assert_non_null(strstr(err, "listens"));
	assert_null(virtio_vsock_create(&G.gm, 9, "/etc/passwd", err, sizeof(err)));
	assert_non_null(strstr(err, "not a socket"));
	assert_null(virtio_vsock_create(&G.gm, 2, "/tmp/x", err, sizeof(err)));
	assert_null(virtio_vsock_create(&G.gm, UINT32_MAX, "/tmp/x", err, sizeof(err)));
	assert_null(virtio_vsock_create(&G.gm, 3, "", err, sizeof(err)));
	memset(path, 'a', 100);
	path[100] = 0;
	assert_null(virtio_vsock_create(&G.gm, 3, path, err, sizeof(err)));
}

#define T(fn) cmocka_unit_test_setup(fn, setup)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_config_space),
		T(test_guest_connect_nobody_listens),
		T(test_guest_connect_data_and_close),
		T(test_host_connect_data_and_half_close),
		T(test_host_ports_are_unique),
		T(test_connect_line_and_early_data),
		T(test_host_connect_refused),
		T(test_host_connect_guest_silent),
		T(test_garbage_connect_lines),
		T(test_hostile_packets),
		T(test_guest_overruns_credit),
		T(test_guest_to_host_credit_flow),
		T(test_host_to_guest_credit_flow),
		T(test_device_reset_drops_streams),
		T(test_transport_reset_event),
		T(test_pause_holds_the_rings),
		T(test_connection_cap),
		T(test_many_concurrent_streams),
		T(test_stale_socket_and_bad_arguments),
	};

	return cmocka_run_group_tests_name("vsock device", tests, group_setup, group_teardown);
}
