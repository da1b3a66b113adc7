/*
 * net.c - virtio-net (virtio 1.2 section 5.1, device ID 1) on a host file descriptor that
 * carries one Ethernet frame per read() and write(): a tap device (IFF_TAP | IFF_NO_PI), or, in
 * the unit tests, a datagram socket.  In kiln the tap lives in the sandbox's own network
 * namespace (src/host/netns.c), where nftables decides what may leave; this file only moves
 * frames, meters them and records them.
 *
 * Features.  VERSION_1, MAC (the same address in every sandbox, so a snapshot restores into any
 * slot) and MTU (1500: the guest driver then never sends more).  No checksum or segmentation
 * offloads are offered, so every frame is a plain Ethernet frame of at most NET_MAX_FRAME bytes
 * behind a 12-byte virtio_net_hdr_v1 whose fields must be zero (TX) or are zero (RX).  Without
 * VIRTIO_NET_F_MRG_RXBUF each RX chain holds one whole frame.  Offloads would multiply
 * throughput and are left for later: they bring guest-supplied checksum offsets and GSO sizes,
 * i.e. more hostile input to check.
 *
 * Guest input.  Ring walking is queue.c's (every descriptor address and length checked against
 * guest RAM before use).  Here: a TX chain shorter than the header plus an Ethernet header,
 * longer than the header plus NET_MAX_FRAME, or with offload fields set, is dropped and counted,
 * and the chain returned; so is an RX frame from the host that does not fit the guest's chain.
 * TX frames are copied out of guest memory once, then checked, written and captured from that
 * copy, so the guest cannot change a frame between the pcap and the wire.
 *
 * Rate limits.  A token bucket per direction for bytes and one for packets (ratelimit.h).  An
 * exhausted TX bucket leaves the guest's buffers in its ring; an exhausted RX bucket leaves
 * frames in the tap's queue, where the kernel drops what overflows: both throttle TCP the way a
 * slow link does.
 *
 * Threads and locking.  An I/O thread does all the work: an epoll loop over the tap, an eventfd
 * the vCPUs kick on QueueNotify, and a timeout for the rate limiter.  The rings,
 * d->status, d->interrupt_status, nd->epoch and nd->paused are touched only under d->lock,
 * which the I/O thread takes once per round for a bounded batch.  A device reset (vCPU thread)
 * bumps nd->epoch; the I/O thread then drops the frame it held for the guest.  Pausing sets
 * nd->paused under the lock, so once virtio_pause() returns no ring is touched and no interrupt
 * raised.  No chain is ever held across rounds, so a snapshot never misses a buffer; a frame
 * read from the tap but not yet delivered is simply lost across a snapshot, as on a wire.
 * Capture records are written by the I/O thread in the same critical section as the frame
 * (small appends to a local file), so the pcap's order is the wire's.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "../../common/log.h"
#include "../snapshot/format.h"
#include "devices.h"
#include "pcap.h"
#include "ratelimit.h"

#define NET_RXQ			0
#define NET_TXQ			1
#define NET_QUEUE_SIZE		256
#define NET_BATCH		64		/* frames per direction per round */

#define VIRTIO_NET_F_MTU	3
#define VIRTIO_NET_F_MAC	5

enum { DIR_RX, DIR_TX };
enum { UNIT_BYTES, UNIT_PKTS };

struct virtio_net_hdr_v1 {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
} __attribute__((packed));

_Static_assert(sizeof(struct virtio_net_hdr_v1) == NET_HDR_SIZE, "virtio_net_hdr_v1");

struct net_config_space {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
	uint16_t mtu;
} __attribute__((packed));

struct virtio_net {
	struct virtio_dev vdev;		/* first: the transport hands us this pointer */
	struct net_config_space config;
	int fd, kick_fd, ep;
	bool own_fd;
	pthread_t thread;

	unsigned epoch;			/* under vdev.lock: bumped by a driver reset */
	bool paused;			/* under vdev.lock */
	struct net_stats stats;		/* under vdev.lock */

	/* I/O thread only */
	unsigned seen_epoch;
	bool tap_watched;
	bool tap_gone;			/* hung up or failed: out of the epoll set for good */
	struct tbucket rl[2][2];	/* [DIR_*][UNIT_*] */
	struct pcap_writer pcap;
	uint8_t rx_frame[NET_MAX_FRAME + 1];	/* one more: a longer frame shows as too long */
	uint32_t rx_len;		/* a frame read from the tap, not yet delivered */
	bool rx_pending;
	uint8_t tx_frame[NET_HDR_SIZE + NET_MAX_FRAME];
	struct virtq_chain chain;
};

static uint64_t clock_ns(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + t.tv_nsec;
}

/* DRIVER_OK counts only after FEATURES_OK: a driver whose features were refused gets no
 * traffic, whatever it writes next. */
static bool device_live(const struct virtio_dev *d)
{
	return (d->status & VIRTIO_STATUS_DRIVER_OK) && (d->status & VIRTIO_STATUS_FEATURES_OK) &&
	       !(d->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* ---- rate limiting ---- */

static bool rl_ready(struct virtio_net *nd, int dir, uint64_t now)
{
	bool bytes = tb_ready(&nd->rl[dir][UNIT_BYTES], now);
	bool pkts = tb_ready(&nd->rl[dir][UNIT_PKTS], now);

	return bytes && pkts;
}

static void rl_consume(struct virtio_net *nd, int dir, uint32_t len)
{
	tb_consume(&nd->rl[dir][UNIT_BYTES], len);
	tb_consume(&nd->rl[dir][UNIT_PKTS], 1);
}

static uint64_t rl_wait(struct virtio_net *nd, int dir, uint64_t now)
{
	uint64_t a = tb_wait_ns(&nd->rl[dir][UNIT_BYTES], now);
	uint64_t b = tb_wait_ns(&nd->rl[dir][UNIT_PKTS], now);

	return a > b ? a : b;
}

static void capture(struct virtio_net *nd, const void *frame, uint32_t len)
{
	pcap_frame(&nd->pcap, clock_ns(CLOCK_REALTIME), frame, len);
}

/* ---- guest -> host ---- */

/* A frame the guest may send: header all zero (nothing negotiated), Ethernet-sized body. */
static bool tx_valid(const struct virtio_net_hdr_v1 *h, uint64_t len)
{
	if (len < NET_HDR_SIZE + NET_ETH_HLEN || len > NET_HDR_SIZE + NET_MAX_FRAME)
		return false;
	return !h->flags && !h->gso_type;
}

/* Send the popped chain's frame.  false if it was dropped as invalid. */
static bool tx_one(struct virtio_net *nd)
{
	struct virtio_net_hdr_v1 h;
	uint64_t len = nd->chain.out_len;
	uint32_t flen;

	if (len > sizeof(nd->tx_frame)) {
		nd->stats.tx_dropped++;
		return false;
	}
	virtq_chain_read(&nd->chain, 0, nd->tx_frame, len);
	memcpy(&h, nd->tx_frame, sizeof(h));
	if (!tx_valid(&h, len)) {
		nd->stats.tx_dropped++;
		return false;
	}
	flen = len - NET_HDR_SIZE;
	rl_consume(nd, DIR_TX, flen);
	capture(nd, nd->tx_frame + NET_HDR_SIZE, flen);
	/* A tap takes every frame (or drops it itself); a full socket buffer is a lost frame. */
	if (write(nd->fd, nd->tx_frame + NET_HDR_SIZE, flen) != (ssize_t)flen) {
		nd->stats.tx_errors++;
		return true;
	}
	nd->stats.tx_frames++;
	nd->stats.tx_bytes += flen;
	return true;
}

/* d->lock held.  Returns the ns to wait for the TX bucket, 0 if not limited. */
static uint64_t process_tx(struct virtio_net *nd, uint64_t now, bool *used, bool *more)
{
	struct virtio_dev *d = &nd->vdev;
	struct virtq *vq = &d->vq[NET_TXQ];

	for (unsigned i = 0; i < NET_BATCH; i++) {
		int got;

		if (!rl_ready(nd, DIR_TX, now))
			return rl_wait(nd, DIR_TX, now);
		got = virtq_pop(vq, d->mem, &nd->chain);
		if (got < 0)
			virtio_set_needs_reset(d);
		if (got <= 0)
			return 0;
		/* Every chain costs a packet token, valid or not: dropping is work too. */
		if (!tx_one(nd))
			tb_consume(&nd->rl[DIR_TX][UNIT_PKTS], 1);
		virtq_push(vq, nd->chain.head, 0);
		*used = true;
	}
	*more = true;
	return 0;
}

/* ---- host -> guest ---- */

/* The host side is gone for good: out of the epoll set, never read again. */
static void host_gone(struct virtio_net *nd)
{
	if (nd->tap_gone)
		return;
	log_warn("virtio-net: the host side of the NIC hung up");
	epoll_ctl(nd->ep, EPOLL_CTL_DEL, nd->fd, NULL);
	nd->tap_gone = true;
}

/* Read the next frame from the host into nd->rx_frame; false if there is none now. */
static bool rx_read(struct virtio_net *nd)
{
	/* Bounded: d->lock is held, and the host may send nothing but runts. */
	for (unsigned tries = 0; tries < NET_BATCH && !nd->tap_gone; tries++) {
		ssize_t n = read(nd->fd, nd->rx_frame, sizeof(nd->rx_frame));

		if (n < 0)
			return false;	/* EAGAIN, or an error epoll will report again */
		if (n == 0) {
			/* A tap never reads 0; a socket (--net fd=) does at end of file, for
			 * ever: it would spin here with the lock held. */
			host_gone(nd);
			return false;
		}
		if (n < NET_ETH_HLEN || n > NET_MAX_FRAME) {
			nd->stats.rx_dropped++;
			continue;
		}
		nd->rx_len = n;
		nd->rx_pending = true;
		return true;
	}
	return false;
}

/* Deliver the pending frame into the popped chain. */
static void rx_deliver(struct virtio_net *nd)
{
	struct virtio_net_hdr_v1 h = { .num_buffers = 1 };
	struct virtq_chain *c = &nd->chain;
	uint32_t written = 0;

	nd->rx_pending = false;
	if (c->in_len < NET_HDR_SIZE + (uint64_t)nd->rx_len) {
		/* The driver posted a buffer too small for an MTU-sized frame: its loss. */
		nd->stats.rx_dropped++;
		virtq_push(&nd->vdev.vq[NET_RXQ], c->head, 0);
		return;
	}
	written = virtq_chain_write(c, 0, &h, sizeof(h));
	written += virtq_chain_write(c, NET_HDR_SIZE, nd->rx_frame, nd->rx_len);
	virtq_push(&nd->vdev.vq[NET_RXQ], c->head, written);
	nd->stats.rx_frames++;
	nd->stats.rx_bytes += nd->rx_len;
}

/*
 * d->lock held.  Returns the ns to wait for the RX bucket (0 if not limited); *want_tap says
 * whether the tap's readability matters now (not while the guest has no buffer for a frame).
 */
static uint64_t process_rx(struct virtio_net *nd, uint64_t now, bool *used, bool *want_tap,
			   bool *more)
{
	struct virtio_dev *d = &nd->vdev;
	struct virtq *vq = &d->vq[NET_RXQ];

	*want_tap = false;
	for (unsigned i = 0; i < NET_BATCH; i++) {
		int got;

		if (!nd->rx_pending) {
			if (!rl_ready(nd, DIR_RX, now))
				return rl_wait(nd, DIR_RX, now);
			if (!rx_read(nd)) {
				*want_tap = true;
				return 0;
			}
			rl_consume(nd, DIR_RX, nd->rx_len);
			capture(nd, nd->rx_frame, nd->rx_len);
		}
		got = virtq_pop(vq, d->mem, &nd->chain);
		if (got < 0)
			virtio_set_needs_reset(d);
		if (got <= 0)
			return 0;	/* wait for the guest's next buffer (a kick) */
		rx_deliver(nd);
		*used = true;
	}
	*want_tap = true;
	*more = true;
	return 0;
}

/* ---- the I/O thread ---- */

static void watch_tap(struct virtio_net *nd, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.u32 = 1 };

	if (nd->tap_watched == on || nd->tap_gone)
		return;
	if (!epoll_ctl(nd->ep, EPOLL_CTL_MOD, nd->fd, &ev))
		nd->tap_watched = on;
}

static int ms_of(uint64_t ns)
{
	uint64_t ms = (ns + 999999) / 1000000;

	return ms > 1000 ? 1000 : (int)ms;
}

static uint64_t min_wait(uint64_t a, uint64_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

/* One round under the lock; returns the epoll timeout for the next. */
static int service(struct virtio_net *nd)
{
	struct virtio_dev *d = &nd->vdev;
	uint64_t now = clock_ns(CLOCK_MONOTONIC), wait = 0;
	bool used_rx = false, used_tx = false, want_tap = false, more = false;

	pthread_mutex_lock(&d->lock);
	if (nd->seen_epoch != nd->epoch) {
		nd->seen_epoch = nd->epoch;
		nd->rx_pending = false;
	}
	if (!nd->paused && device_live(d)) {
		wait = process_tx(nd, now, &used_tx, &more);
		wait = min_wait(wait, process_rx(nd, now, &used_rx, &want_tap, &more));
		if (used_tx)
			virtio_notify_used(d, NET_TXQ);
		if (used_rx)
			virtio_notify_used(d, NET_RXQ);
	}
	pthread_mutex_unlock(&d->lock);
	/* Level-triggered: a readable tap we cannot serve now would spin the loop. */
	watch_tap(nd, want_tap);
	if (more)
		return 0;
	return wait ? ms_of(wait) : -1;
}

static void *io_thread(void *arg)
{
	struct virtio_net *nd = arg;
	struct epoll_event ev[4];
	int timeout = -1;

	for (;;) {
		int n = epoll_wait(nd->ep, ev, 4, timeout);

		for (int i = 0; i < n; i++) {
			uint64_t v;

			if (ev[i].data.u32 == 0 && read(nd->kick_fd, &v, sizeof(v)) < 0)
				continue;
			/* Reported whatever we ask for: left in the set it would spin the loop. */
			if (ev[i].data.u32 == 1 && (ev[i].events & (EPOLLERR | EPOLLHUP)))
				host_gone(nd);
		}
		timeout = service(nd);
	}
	return NULL;
}

/* ---- the device ---- */

static void kick(struct virtio_net *nd)
{
	uint64_t one = 1;

	if (write(nd->kick_fd, &one, sizeof(one)) < 0)
		return;		/* only if 2^64 - 1 kicks are pending: the thread will look */
}

static void net_read_config(struct virtio_dev *d, uint64_t off, void *data, unsigned len)
{
	struct virtio_net *nd = (struct virtio_net *)d;

	memcpy(data, (uint8_t *)&nd->config + off, len);
}

static void net_notify(struct virtio_dev *d, unsigned q)
{
	(void)q;
	kick((struct virtio_net *)d);
}

static void net_reset(struct virtio_dev *d)
{
	struct virtio_net *nd = (struct virtio_net *)d;

	nd->epoch++;
	kick(nd);
}

static void net_pause(struct virtio_dev *d, bool pause)
{
	struct virtio_net *nd = (struct virtio_net *)d;

	nd->paused = pause;
	kick(nd);
}

/* The guest's driver has the MAC and MTU cached: a restore must offer the same. */
static void net_save(struct virtio_dev *d, struct sbuf *b)
{
	struct virtio_net *nd = (struct virtio_net *)d;

	sbuf_blob(b, nd->config.mac, sizeof(nd->config.mac));
	sbuf_u32(b, nd->config.mtu);
}

static bool net_restore(struct virtio_dev *d, struct sreader *r)
{
	struct virtio_net *nd = (struct virtio_net *)d;
	uint8_t mac[6];
	uint32_t mtu;

	sr_blob_exact(r, mac, sizeof(mac), "net MAC address");
	mtu = sr_u32(r, "net MTU");
	if (!sr_end(r, "net"))
		return false;
	if (memcmp(mac, nd->config.mac, sizeof(mac)))
		return sr_fail(r, "net: the guest knows MAC %02x:%02x:%02x:%02x:%02x:%02x, the "
			       "device has another", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	if (mtu != nd->config.mtu)
		return sr_fail(r, "net: MTU %u saved, the device has %u", mtu, nd->config.mtu);
	return true;
}

static const struct virtio_dev_ops net_ops = {
	.name = "net",
	.device_id = VIRTIO_ID_NET,
	.nr_queues = 2,
	.queue_max = NET_QUEUE_SIZE,
	.read_config = net_read_config,
	.config_size = sizeof(struct net_config_space),
	.notify = net_notify,
	.reset = net_reset,
	.pause = net_pause,
	.save = net_save,
	.restore = net_restore,
};

void virtio_net_stats(struct virtio_dev *d, struct net_stats *s)
{
	struct virtio_net *nd = (struct virtio_net *)d;

	pthread_mutex_lock(&d->lock);
	*s = nd->stats;
	pthread_mutex_unlock(&d->lock);
}

int net_tap_open(const char *name, char *err, size_t errlen)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int fd;

	if (!*name || strlen(name) >= IFNAMSIZ) {
		snprintf(err, errlen, "--net: tap name must be 1 to %d characters", IFNAMSIZ - 1);
		return -1;
	}
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "--net: /dev/net/tun: %s", strerror(errno));
		return -1;
	}
	memcpy(ifr.ifr_name, name, strlen(name));
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		snprintf(err, errlen, "--net: tap %s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int start_io_thread(struct virtio_net *nd, char *err, size_t errlen)
{
	struct epoll_event kev = { .events = EPOLLIN, .data.u32 = 0 };
	struct epoll_event tev = { .events = EPOLLIN, .data.u32 = 1 };
	sigset_t all, old;
	int r;

	nd->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	nd->ep = epoll_create1(EPOLL_CLOEXEC);
	if (nd->kick_fd < 0 || nd->ep < 0 ||
	    epoll_ctl(nd->ep, EPOLL_CTL_ADD, nd->kick_fd, &kev) ||
	    epoll_ctl(nd->ep, EPOLL_CTL_ADD, nd->fd, &tev)) {
		snprintf(err, errlen, "net: event loop set-up: %s", strerror(errno));
		return -1;
	}
	nd->tap_watched = true;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&nd->thread, NULL, io_thread, nd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		snprintf(err, errlen, "net: cannot start the I/O thread: %s", strerror(r));
		return -1;
	}
	return 0;
}

static void close_if_open(int fd)
{
	if (fd >= 0)
		close(fd);
}

struct virtio_dev *virtio_net_create(const struct guest_mem *mem, const struct net_params *p,
				     char *err, size_t errlen)
{
	struct virtio_net *nd;
	uint64_t now = clock_ns(CLOCK_MONOTONIC);
	int fd = p->fd;

	if (fd < 0 && (fd = net_tap_open(p->tap, err, errlen)) < 0)
		return NULL;
	nd = calloc(1, sizeof(*nd));
	if (!nd) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	virtio_dev_init(&nd->vdev, &net_ops, mem,
			(1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_MTU));
	memcpy(nd->config.mac, p->mac, sizeof(nd->config.mac));
	nd->config.max_virtqueue_pairs = 1;
	nd->config.mtu = NET_MTU;
	nd->fd = fd;
	nd->own_fd = p->fd < 0;
	nd->kick_fd = nd->ep = -1;
	nd->pcap.fd = -1;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)) {
		snprintf(err, errlen, "--net: fd %d: %s", fd, strerror(errno));
		goto fail;
	}
	tb_init(&nd->rl[DIR_RX][UNIT_BYTES], p->rx.bytes, 0, now);
	tb_init(&nd->rl[DIR_RX][UNIT_PKTS], p->rx.pkts, 0, now);
	tb_init(&nd->rl[DIR_TX][UNIT_BYTES], p->tx.bytes, 0, now);
	tb_init(&nd->rl[DIR_TX][UNIT_PKTS], p->tx.pkts, 0, now);
	if (p->pcap && pcap_open(&nd->pcap, p->pcap, p->pcap_max, p->pcap_resume, err, errlen))
		goto fail;
	if (start_io_thread(nd, err, errlen))
		goto fail;
	return &nd->vdev;
fail:
	if (nd) {
		pcap_close(&nd->pcap);
		close_if_open(nd->kick_fd);
		close_if_open(nd->ep);
		free(nd);
	}
	if (p->fd < 0)
		close(fd);
	return NULL;
}
