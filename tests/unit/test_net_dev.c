/*
 * test_net_dev.c - the virtio-net device end to end without a VM: this file plays the guest
 * driver (fake_driver.c: rings in a fake guest RAM, registers through the real MMIO transport)
 * and the host side of the NIC (a real AF_UNIX SOCK_SEQPACKET socketpair, which like a tap
 * carries one frame per read and write).  It checks frames both ways with their virtio_net_hdr,
 * the config space, a hostile driver (descriptors outside RAM, oversize, undersize and
 * offload-flagged frames, buffers too small), the token bucket's arithmetic and its effect on
 * real traffic, the pcap file's format and cap, pausing, and snapshot save/restore of the
 * device's state.
 *
 * Each test creates its own device; the old one is reset (so its thread leaves the rings alone)
 * and kept, with its socket, until the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/vmm/snapshot/format.h"
#include "../../src/vmm/virtio/devices.h"
#include "../../src/vmm/virtio/pcap.h"
#include "../../src/vmm/virtio/ratelimit.h"
#include "fake_driver.h"

#define RAM_SIZE	(4 << 20)
#define QSIZE		64
#define RXBUF(i)	(0x100000 + (i) * 0x1000)
#define RXLEN		(NET_HDR_SIZE + NET_MAX_FRAME)
#define TXBUF(i)	(0x200000 + (i) * 0x1000)
#define WAIT_MS		3000
#define MAX_DEVS	32

#define ST_NEEDS_RESET		64
#define F_MTU			(1u << 3)
#define F_MAC			(1u << 5)
#define RX_NEXT			(VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT)
#define FEATURES		(F_MAC | F_MTU | F_VERSION_1)

static const uint8_t MAC[6] = { 0x02, 0x6b, 0x69, 0x6c, 0x6e, 0x01 };

static struct fake_driver G;		/* the guest's side */
static struct {
	int host;			/* our end of the socketpair: the "tap" */
	char dir[64];
} D;
static struct virtio_dev *all_devs[MAX_DEVS];
static unsigned nr_devs;

static void rx_post_len(uint16_t i, uint32_t len)
{
	drv_post_buf(&G, 0, i, RXBUF(i), len, VIRTQ_DESC_F_WRITE);
}

static void driver_init(unsigned nr_rx)
{
	drv_init(&G, FEATURES, 2, QSIZE);
	for (uint16_t i = 0; i < nr_rx; i++)
		rx_post_len(i, RXLEN);
}

/* A fresh device on a fresh socketpair, driver initialised with nr_rx receive buffers. */
static void new_dev(const struct net_params *tmpl, unsigned nr_rx)
{
	struct net_params p = { 0 };
	struct virtio_dev *d;
	char err[256];
	int sv[2];

	if (tmpl)
		p = *tmpl;
	memcpy(p.mac, MAC, 6);
	if (G.d)
		drv_write(&G, R_STATUS, 0);		/* the old device lets go of the rings */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	p.fd = sv[0];
	assert_true(nr_devs < MAX_DEVS);
	d = virtio_net_create(&G.gm, &p, err, sizeof(err));
	if (!d)
		fail_msg("virtio_net_create: %s", err);
	all_devs[nr_devs++] = d;
	drv_attach(&G, d);
	D.host = sv[1];
	driver_init(nr_rx);
}

/* Post one TX chain of a header (hdr, or zeros) and a frame, as one descriptor. */
static uint16_t tx_post(const void *hdr, const void *frame, uint32_t len)
{
	uint16_t slot = drv_next_slot(&G, 1, WAIT_MS);

	memset(G.ram + TXBUF(slot), 0, NET_HDR_SIZE);
	if (hdr)
		memcpy(G.ram + TXBUF(slot), hdr, NET_HDR_SIZE);
	memcpy(G.ram + TXBUF(slot) + NET_HDR_SIZE, frame, len);
	drv_post_buf(&G, 1, slot, TXBUF(slot), NET_HDR_SIZE + len, 0);
	return slot;
}

static void make_frame(uint8_t *f, uint32_t len, uint8_t seed)
{
	memset(f, 0xff, 6);			/* broadcast */
	memcpy(f + 6, MAC, 6);
	f[12] = 0x08, f[13] = 0x00;
	for (uint32_t i = NET_ETH_HLEN; i < len; i++)
		f[i] = (uint8_t)(seed + i);
}

/* The next frame the host side receives; -1 if none within ms. */
static ssize_t host_recv(void *buf, size_t cap, int ms)
{
	struct pollfd p = { .fd = D.host, .events = POLLIN };

	if (poll(&p, 1, ms) != 1)
		return -1;
	return recv(D.host, buf, cap, 0);
}

static void host_send(const void *frame, size_t len)
{
	assert_int_equal(send(D.host, frame, len, 0), (ssize_t)len);
}

static struct net_stats stats(void)
{
	struct net_stats s;

	virtio_net_stats(G.d, &s);
	return s;
}

/* The guest's next received frame: checks the header and returns the frame's length. */
static uint32_t guest_recv(uint8_t *frame, long ms)
{
	struct virtq_used_elem e;
	uint16_t h[6];

	if (!drv_next_used(&G, 0, &e, ms))
		return 0;
	assert_true(e.id < QSIZE);
	assert_true(e.len > NET_HDR_SIZE && e.len <= RXLEN);
	memcpy(h, G.ram + RXBUF(e.id), NET_HDR_SIZE);
	assert_int_equal(h[0], 0);		/* flags, gso_type */
	assert_int_equal(h[5], 1);		/* num_buffers */
	memcpy(frame, G.ram + RXBUF(e.id) + NET_HDR_SIZE, e.len - NET_HDR_SIZE);
	rx_post_len(e.id, RXLEN);
	return e.len - NET_HDR_SIZE;
}

/* ---- tests ---- */

static void test_config_space(void **state)
{
	uint8_t mac[6];
	uint16_t mtu;

	(void)state;
	new_dev(NULL, 0);
	assert_int_equal(drv_read(&G, R_DEVICE_ID), 1);
	drv_write(&G, R_DEVICE_FEATURES_SEL, 0);
	assert_int_equal(drv_read(&G, R_DEVICE_FEATURES) & (F_MAC | F_MTU), F_MAC | F_MTU);
	/* No checksum, GSO or mergeable-buffer features: bits 0-2, 6-15, 22 clear. */
	assert_int_equal(drv_read(&G, R_DEVICE_FEATURES) & ~(F_MAC | F_MTU), 0);
	for (int i = 0; i < 6; i++)
		virtio_mmio_read(G.d, R_CONFIG + i, &mac[i], 1);
	assert_memory_equal(mac, MAC, 6);
	virtio_mmio_read(G.d, R_CONFIG + 10, &mtu, 2);
	assert_int_equal(mtu, 1500);
	/* A driver asking for an offload we never offered is refused. */
	drv_write(&G, R_STATUS, 0);
	assert_false(drv_features(&G, F_MAC | 1 /* CSUM */ | F_VERSION_1));
}

static void test_frames_both_ways(void **state)
{
	uint8_t f[NET_MAX_FRAME], got[NET_MAX_FRAME + 16];
	struct virtq_used_elem e;

	(void)state;
	new_dev(NULL, 8);
	for (unsigned i = 0; i < 100; i++) {
		uint32_t len = NET_ETH_HLEN + (i * 37) % (NET_MAX_FRAME - NET_ETH_HLEN + 1);

		make_frame(f, len, i);
		tx_post(NULL, f, len);
		assert_int_equal(host_recv(got, sizeof(got), WAIT_MS), len);
		assert_memory_equal(got, f, len);
		assert_true(drv_next_used(&G, 1, &e, WAIT_MS));
		assert_int_equal(e.len, 0);

		make_frame(f, len, i + 1);
		host_send(f, len);
		assert_int_equal(guest_recv(got, WAIT_MS), len);
		assert_memory_equal(got, f, len);
	}
	assert_int_equal(stats().tx_frames, 100);
	assert_int_equal(stats().rx_frames, 100);
	assert_int_equal(stats().tx_dropped + stats().rx_dropped, 0);
	/* The driver asked for every interrupt (avail flags 0): it got some. */
	assert_true(__atomic_load_n(&G.irqs, __ATOMIC_RELAXED) > 0);
}

static void test_full_size_frames_and_no_rx_buffer(void **state)
{
	uint8_t f[NET_MAX_FRAME], got[NET_MAX_FRAME];

	(void)state;
	new_dev(NULL, 0);
	/* Frames wait in the host socket until the guest posts buffers. */
	for (unsigned i = 0; i < 5; i++) {
		make_frame(f, NET_MAX_FRAME, i);
		host_send(f, NET_MAX_FRAME);
	}
	usleep(100 * 1000);
	assert_int_equal(stats().rx_frames, 0);
	for (uint16_t i = 0; i < 8; i++)
		rx_post_len(i, RXLEN);
	for (unsigned i = 0; i < 5; i++) {
		make_frame(f, NET_MAX_FRAME, i);
		assert_int_equal(guest_recv(got, WAIT_MS), NET_MAX_FRAME);
		assert_memory_equal(got, f, NET_MAX_FRAME);
	}
}

static void test_bad_tx_frames_dropped(void **state)
{
	static uint8_t big[NET_MAX_FRAME + 100];
	uint8_t f[64], got[NET_MAX_FRAME + 200];
	uint8_t gso_hdr[NET_HDR_SIZE] = { 0, 1 /* GSO_TCPV4 */ };
	uint8_t csum_hdr[NET_HDR_SIZE] = { 1 /* NEEDS_CSUM */ };
	struct virtq_used_elem e;

	(void)state;
	new_dev(NULL, 0);
	make_frame(big, sizeof(big), 1);
	tx_post(NULL, big, NET_MAX_FRAME + 1);		/* one byte over */
	tx_post(NULL, f, NET_ETH_HLEN - 1);		/* no room for an Ethernet header */
	make_frame(f, sizeof(f), 2);
	tx_post(gso_hdr, f, sizeof(f));			/* offloads never negotiated */
	tx_post(csum_hdr, f, sizeof(f));
	/* A header-only descriptor, as a chain of two with nothing after. */
	drv_post_buf(&G, 1, 60, TXBUF(60), 4, 0);
	G.sent[1]++;
	for (int i = 0; i < 5; i++) {
		assert_true(drv_next_used(&G, 1, &e, WAIT_MS));
		assert_int_equal(e.len, 0);
	}
	assert_int_equal(host_recv(got, sizeof(got), 200), -1);
	assert_int_equal(stats().tx_dropped, 5);
	assert_int_equal(stats().tx_frames, 0);
	/* The device still works. */
	tx_post(NULL, f, sizeof(f));
	assert_int_equal(host_recv(got, sizeof(got), WAIT_MS), sizeof(f));
	assert_false(drv_read(&G, R_STATUS) & ST_NEEDS_RESET);
}

static void test_bad_rx_frames_dropped(void **state)
{
	static uint8_t big[4000];
	uint8_t f[100], got[NET_MAX_FRAME];

	(void)state;
	new_dev(NULL, 0);
	make_frame(big, sizeof(big), 3);
	host_send(big, NET_MAX_FRAME + 1);
	host_send(big, sizeof(big));
	host_send(big, 10);				/* runt */
	make_frame(f, sizeof(f), 4);
	host_send(f, sizeof(f));
	/* A buffer too small for the frame: the frame is lost, the buffer returned empty. */
	rx_post_len(0, NET_HDR_SIZE + 50);
	rx_post_len(1, RXLEN);
	host_send(f, sizeof(f));
	{
		struct virtq_used_elem e;

		assert_true(drv_next_used(&G, 0, &e, WAIT_MS));
		assert_int_equal(e.id, 0);
		assert_int_equal(e.len, 0);
	}
	assert_int_equal(guest_recv(got, WAIT_MS), sizeof(f));
	assert_memory_equal(got, f, sizeof(f));
	assert_int_equal(stats().rx_dropped, 4);
	assert_int_equal(stats().rx_frames, 1);
}

static void test_hostile_descriptors(void **state)
{
	uint8_t f[64], got[128];
	struct virtq_used_elem e;

	(void)state;
	new_dev(NULL, 0);
	make_frame(f, sizeof(f), 5);
	/* TX buffer straddling the end of guest RAM. */
	drv_post_buf(&G, 1, 0, RAM_SIZE - 8, 64, 0);
	usleep(50 * 1000);
	assert_true(drv_read(&G, R_STATUS) & ST_NEEDS_RESET);
	assert_int_equal(host_recv(got, sizeof(got), 100), -1);

	/* After a reset: a descriptor loop on RX, and a length that wraps the address. */
	driver_init(0);
	drv_desc(&G, 0)[0] = (struct virtq_desc){ RXBUF(0), 100, RX_NEXT, 1 };
	drv_desc(&G, 0)[1] = (struct virtq_desc){ RXBUF(1), 100, RX_NEXT, 0 };
	drv_post(&G, 0, 0);
	host_send(f, sizeof(f));
	usleep(50 * 1000);
	assert_true(drv_read(&G, R_STATUS) & ST_NEEDS_RESET);

	driver_init(0);
	drv_post_buf(&G, 0, 0, UINT64_MAX - 16, 4096, VIRTQ_DESC_F_WRITE);
	host_send(f, sizeof(f));
	usleep(50 * 1000);
	assert_true(drv_read(&G, R_STATUS) & ST_NEEDS_RESET);
	assert_false(drv_next_used(&G, 0, &e, 10));

	/* A readable RX buffer: the device must not write to it (virtq splits it as out). */
	driver_init(0);
	memset(G.ram + RXBUF(0), 0xaa, 64);
	drv_post_buf(&G, 0, 0, RXBUF(0), RXLEN, 0);
	host_send(f, sizeof(f));
	assert_true(drv_next_used(&G, 0, &e, WAIT_MS));
	assert_int_equal(e.len, 0);
	assert_int_equal(G.ram[RXBUF(0)], 0xaa);

	/* And a clean driver after all that works. */
	driver_init(4);
	host_send(f, sizeof(f));
	assert_int_equal(guest_recv(got, WAIT_MS), sizeof(f));
}

static void test_token_bucket_arithmetic(void **state)
{
	const uint64_t S = 1000000000ULL;
	struct tbucket tb;

	(void)state;
	/* Unlimited. */
	tb_init(&tb, 0, 0, 0);
	for (int i = 0; i < 1000; i++) {
		assert_true(tb_ready(&tb, 0));
		tb_consume(&tb, 1 << 20);
	}
	/* 1000 units/s, default bucket a tenth of a second: 100. */
	tb_init(&tb, 1000, 0, 0);
	assert_int_equal(tb.cap, 100);
	assert_true(tb_ready(&tb, 0));
	tb_consume(&tb, 150);				/* debt of 50 */
	assert_false(tb_ready(&tb, 0));
	/* Back above zero after 51 units = 51 ms. */
	assert_int_equal(tb_wait_ns(&tb, 0), 51 * S / 1000);
	assert_false(tb_ready(&tb, 50 * S / 1000));
	assert_true(tb_ready(&tb, 51 * S / 1000));
	assert_int_equal(tb.tokens, 1);
	/* Fractions of a token carry over: 1000 steps of 0.5 ms give 500 units, capped at 100. */
	tb_init(&tb, 1000, 1000, 0);
	tb_consume(&tb, 1000);
	for (int i = 1; i <= 1000; i++)
		tb_ready(&tb, i * S / 2000);
	assert_int_equal(tb.tokens, 500);
	/* Never above the bucket. */
	assert_true(tb_ready(&tb, 100 * S));
	assert_int_equal(tb.tokens, 1000);
	/* Large rates and long idle times do not overflow. */
	tb_init(&tb, 40ULL * 1000 * 1000 * 1000, 0, 0);
	tb_consume(&tb, tb.cap + 1000);
	assert_false(tb_ready(&tb, 0));
	assert_true(tb_ready(&tb, 1000 * S));
	assert_int_equal(tb.tokens, (int64_t)tb.cap);
	/* Time going backwards changes nothing. */
	tb_init(&tb, 10, 10, 5 * S);
	tb_consume(&tb, 10);
	assert_false(tb_ready(&tb, 1 * S));
	/* Long-run rate: a sender that always waits gets the rate, whatever the frame size. */
	tb_init(&tb, 1000000, 0, 0);
	{
		uint64_t now = 0, sent = 0;

		while (now < 10 * S) {
			if (!tb_ready(&tb, now)) {
				now += tb_wait_ns(&tb, now);
				continue;
			}
			tb_consume(&tb, 1514);
			sent += 1514;
		}
		/* 10 s at 1 MB/s, plus the initial bucket and one frame of debt. */
		assert_true(sent >= 10000000 && sent <= 10000000 + 100000 + 2 * 1514);
	}
}

static double seconds_since(const struct timespec *t0)
{
	return ms_since(t0) / 1000.0;
}

static void test_tx_rate_limit(void **state)
{
	struct net_params p = { .tx = { .bytes = 100000 } };
	uint8_t f[1000], got[2000];
	struct timespec t0;
	double t;

	(void)state;
	new_dev(&p, 0);
	make_frame(f, sizeof(f), 6);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* 40 kB at 100 kB/s with a 10 kB bucket: about 0.3 s. */
	for (int i = 0; i < 40; i++)
		tx_post(NULL, f, sizeof(f));
	for (int i = 0; i < 40; i++)
		assert_int_equal(host_recv(got, sizeof(got), WAIT_MS), sizeof(f));
	t = seconds_since(&t0);
	if (t < 0.25 || t > 1.5)
		fail_msg("40 kB at 100 kB/s took %.3f s", t);

	/* Packets: 60 frames at 100/s with a bucket of 10 take about 0.5 s. */
	p = (struct net_params){ .tx = { .pkts = 100 } };
	new_dev(&p, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 60; i++)
		tx_post(NULL, f, 100);
	for (int i = 0; i < 60; i++)
		assert_int_equal(host_recv(got, sizeof(got), WAIT_MS), 100);
	t = seconds_since(&t0);
	if (t < 0.4 || t > 2)
		fail_msg("60 frames at 100/s took %.3f s", t);
}

static void test_rx_rate_limit(void **state)
{
	struct net_params p = { .rx = { .bytes = 100000 } };
	uint8_t f[1000], got[2000];
	struct timespec t0;
	double t;

	(void)state;
	new_dev(&p, QSIZE);
	make_frame(f, sizeof(f), 7);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 40; i++)
		host_send(f, sizeof(f));
	for (int i = 0; i < 40; i++)
		assert_int_equal(guest_recv(got, WAIT_MS), sizeof(f));
	t = seconds_since(&t0);
	if (t < 0.25 || t > 1.5)
		fail_msg("40 kB at 100 kB/s took %.3f s", t);
}

struct pcap_rec {
	uint32_t sec, usec, incl, orig;
};

static void test_pcap_format_and_cap(void **state)
{
	char path[128];
	struct net_params p = { .pcap = path };
	uint8_t f[200], got[300], file[4096];
	uint32_t hdr[6];
	struct pcap_rec r;
	struct stat st;
	time_t now = time(NULL);
	int fd;
	ssize_t n;

	(void)state;
	snprintf(path, sizeof(path), "%s/cap.pcap", D.dir);
	/* Room for the header and exactly two records of 100-byte frames, plus a little. */
	p.pcap_max = PCAP_HDR_SIZE + 2 * (PCAP_REC_HDR_SIZE + 100) + 50;
	new_dev(&p, 4);
	make_frame(f, 100, 8);
	tx_post(NULL, f, 100);				/* guest -> host */
	assert_int_equal(host_recv(got, sizeof(got), WAIT_MS), 100);
	make_frame(f, 100, 9);
	host_send(f, 100);				/* host -> guest */
	assert_int_equal(guest_recv(got, WAIT_MS), 100);
	tx_post(NULL, f, 100);				/* over the cap: not recorded */
	assert_int_equal(host_recv(got, sizeof(got), WAIT_MS), 100);

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, PCAP_HDR_SIZE + 2 * (PCAP_REC_HDR_SIZE + 100));
	assert_int_equal(st.st_mode & 0777, 0600);
	fd = open(path, O_RDONLY);
	n = read(fd, file, sizeof(file));
	close(fd);
	assert_int_equal(n, st.st_size);
	memcpy(hdr, file, sizeof(hdr));
	assert_int_equal(hdr[0], 0xa1b2c3d4);
	assert_int_equal(hdr[1], 2 | (4 << 16));	/* version 2.4 */
	assert_int_equal(hdr[4], 65535);		/* snaplen */
	assert_int_equal(hdr[5], 1);			/* LINKTYPE_ETHERNET */
	for (int i = 0; i < 2; i++) {
		uint8_t *rec = file + PCAP_HDR_SIZE + i * (PCAP_REC_HDR_SIZE + 100);

		memcpy(&r, rec, sizeof(r));
		assert_int_equal(r.incl, 100);
		assert_int_equal(r.orig, 100);
		assert_true(r.usec < 1000000);
		assert_true(r.sec >= now - 5 && r.sec <= now + 5);
		make_frame(f, 100, 8 + i);
		assert_memory_equal(rec + PCAP_REC_HDR_SIZE, f, 100);
	}
	unlink(path);

	/* A cap below the file header is refused at creation. */
	{
		struct pcap_writer w;
		char err[128];

		assert_int_equal(pcap_open(&w, path, 10, false, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "header"));
	}
}

/* A restored VM goes on with its capture: the records before stay, a torn last one goes, and
 * a file that is not a capture is refused rather than overwritten. */
static void test_pcap_resume(void **state)
{
	char path[128], err[128];
	struct pcap_writer w;
	uint8_t f[100], file[4096];
	struct pcap_rec r;
	struct stat st;
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/resume.pcap", D.dir);
	make_frame(f, 100, 1);
	assert_int_equal(pcap_open(&w, path, 1 << 20, false, err, sizeof(err)), 0);
	pcap_frame(&w, 1000000000ULL, f, 100);
	pcap_close(&w);
	/* The VMM killed in the middle of its second record: a header and half the bytes. */
	fd = open(path, O_WRONLY | O_APPEND);
	r = (struct pcap_rec){ 2, 0, 100, 100 };
	assert_int_equal(write(fd, &r, sizeof(r)), sizeof(r));
	assert_int_equal(write(fd, f, 50), 50);
	close(fd);

	assert_int_equal(pcap_open(&w, path, 1 << 20, true, err, sizeof(err)), 0);
	assert_int_equal(w.size, PCAP_HDR_SIZE + PCAP_REC_HDR_SIZE + 100);
	make_frame(f, 100, 2);
	pcap_frame(&w, 3000000000ULL, f, 100);
	pcap_close(&w);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, PCAP_HDR_SIZE + 2 * (PCAP_REC_HDR_SIZE + 100));
	fd = open(path, O_RDONLY);
	assert_int_equal(read(fd, file, sizeof(file)), st.st_size);
	close(fd);
	memcpy(&r, file + PCAP_HDR_SIZE, sizeof(r));
	assert_int_equal(r.sec, 1);
	memcpy(&r, file + PCAP_HDR_SIZE + PCAP_REC_HDR_SIZE + 100, sizeof(r));
	assert_int_equal(r.sec, 3);
	assert_memory_equal(file + PCAP_HDR_SIZE + 2 * PCAP_REC_HDR_SIZE + 100, f, 100);

	/* Nothing there yet: a new capture. */
	unlink(path);
	assert_int_equal(pcap_open(&w, path, 1 << 20, true, err, sizeof(err)), 0);
	assert_int_equal(w.size, PCAP_HDR_SIZE);
	pcap_close(&w);
	/* Not a capture: refused, left as it was. */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "not a pcap file at all, no", 26), 26);
	close(fd);
	assert_int_equal(pcap_open(&w, path, 1 << 20, true, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a capture"));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 26);
	unlink(path);
}

static void test_pause_holds_the_rings(void **state)
{
	uint8_t f[64], got[128];

	(void)state;
	new_dev(NULL, 4);
	make_frame(f, sizeof(f), 10);
	virtio_pause(G.d, true);
	tx_post(NULL, f, sizeof(f));
	host_send(f, sizeof(f));
	usleep(100 * 1000);
	assert_int_equal(host_recv(got, sizeof(got), 0), -1);
	assert_int_equal(drv_used(&G, 0)[1], 0);
	assert_int_equal(drv_used(&G, 1)[1], 0);
	virtio_pause(G.d, false);
	assert_int_equal(host_recv(got, sizeof(got), WAIT_MS), sizeof(f));
	assert_int_equal(guest_recv(got, WAIT_MS), sizeof(f));
}

static void test_snapshot_state(void **state)
{
	struct net_params other = { 0 };
	struct virtio_dev *saved_dev, *fresh;
	struct fake_driver before;
	uint8_t *saved_ram;
	uint8_t f[64], got[128];
	struct sbuf b = { 0 };
	char msg[256], err[256];
	int sv[2];

	(void)state;
	new_dev(NULL, 4);
	make_frame(f, sizeof(f), 11);
	tx_post(NULL, f, sizeof(f));
	assert_int_equal(host_recv(got, sizeof(got), WAIT_MS), sizeof(f));
	virtio_pause(G.d, true);
	virtio_save(G.d, &b);
	assert_false(b.failed);
	saved_dev = G.d;
	saved_ram = malloc(RAM_SIZE);
	memcpy(saved_ram, G.ram, RAM_SIZE);
	before = G;

	/* The same MAC restores into a new device: the rings carry on where they were. */
	new_dev(NULL, 0);
	drv_write(&G, R_STATUS, 0);
	memcpy(G.ram, saved_ram, RAM_SIZE);
	memcpy(G.avail_idx, before.avail_idx, sizeof(G.avail_idx));
	memcpy(G.used_seen, before.used_seen, sizeof(G.used_seen));
	memcpy(G.sent, before.sent, sizeof(G.sent));
	free(saved_ram);
	virtio_pause(G.d, true);
	assert_true(restore_dev(G.d, &b, msg, sizeof(msg)));
	virtio_pause(G.d, false);
	assert_int_equal(drv_read(&G, R_STATUS), 1 | 2 | 4 | 8);
	tx_post(NULL, f, sizeof(f));
	assert_int_equal(host_recv(got, sizeof(got), WAIT_MS), sizeof(f));
	host_send(f, sizeof(f));
	assert_int_equal(guest_recv(got, WAIT_MS), sizeof(f));

	/* Another MAC does not: the guest's driver has the old one. */
	memcpy(other.mac, MAC, 6);
	other.mac[5] ^= 1;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	other.fd = sv[0];
	fresh = virtio_net_create(&G.gm, &other, err, sizeof(err));
	assert_non_null(fresh);
	all_devs[nr_devs++] = fresh;
	fresh->raise_irq = drv_irq;
	fresh->irq_ctx = &G;
	assert_false(restore_dev(fresh, &b, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "MAC"));
	assert_int_equal(fresh->status, 0);

	/* Truncated and padded device state is refused too. */
	for (size_t cut = 1; cut <= 12; cut += 11) {
		struct sbuf t = { 0 };

		sbuf_put(&t, b.data, b.len - cut);
		assert_false(restore_dev(fresh, &t, msg, sizeof(msg)));
		sbuf_free(&t);
	}
	(void)saved_dev;
	sbuf_free(&b);
}

static void test_bad_arguments(void **state)
{
	struct net_params p = { .fd = -1, .tap = "" };
	char err[256];

	(void)state;
	assert_null(virtio_net_create(&G.gm, &p, err, sizeof(err)));
	assert_non_null(strstr(err, "tap name"));
	p.tap = "a-name-far-too-long-for-ifnamsiz";
	assert_null(virtio_net_create(&G.gm, &p, err, sizeof(err)));
	p = (struct net_params){ .fd = 1000000 };
	assert_null(virtio_net_create(&G.gm, &p, err, sizeof(err)));
	p = (struct net_params){ .fd = D.host, .pcap = "/nonexistent-dir/x.pcap", .pcap_max = 1 << 20 };
	assert_null(virtio_net_create(&G.gm, &p, err, sizeof(err)));
	assert_non_null(strstr(err, "pcap"));
}

static int group_setup(void **state)
{
	(void)state;
	drv_ram(&G, RAM_SIZE);
	snprintf(D.dir, sizeof(D.dir), "/tmp/kiln-net-XXXXXX");
	return mkdtemp(D.dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	if (G.d)
		drv_write(&G, R_STATUS, 0);
	rmdir(D.dir);
	return 0;
}

#define T(f) cmocka_unit_test(f)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_config_space),
		T(test_frames_both_ways),
		T(test_full_size_frames_and_no_rx_buffer),
		T(test_bad_tx_frames_dropped),
		T(test_bad_rx_frames_dropped),
		T(test_hostile_descriptors),
		T(test_token_bucket_arithmetic),
		T(test_tx_rate_limit),
		T(test_rx_rate_limit),
		T(test_pcap_format_and_cap),
		T(test_pcap_resume),
		T(test_pause_holds_the_rings),
		T(test_snapshot_state),
		T(test_bad_arguments),
	};

	return cmocka_run_group_tests_name("net device", tests, group_setup, group_teardown);
}
