/*
 * vsock.c - virtio-vsock (virtio 1.2 section 5.10, device ID 19) with Firecracker's "hybrid vsock"
 * host side: the guest's AF_VSOCK streams become AF_UNIX streams on the host.
 *
 *   host -> guest  A client connects to PATH and sends "CONNECT <port>\n".  We open a stream to
 *                  the guest's port from a host port allocated from 2^30 upward and, once the
 *                  guest accepts, answer "OK <hostport>\n"; the rest is the stream.  A refusal
 *                  (RST), 2 s of silence or a malformed line closes the client.
 *   guest -> host  A guest connect to CID 2 port P becomes a connect to the unix socket PATH_P;
 *                  if nobody listens there the guest gets an RST.
 *
 * Threads and locking.  The device has its own I/O thread: an epoll loop over the listening
 * socket, every host socket and an eventfd (the "kick").  A vCPU notifying a queue (mmio.c calls
 * ops->notify with d->lock held) only writes the kick; all queue work is done by the I/O thread.
 * Two rules, nothing else:
 *   - the rings, d->status, d->interrupt_status, vs->epoch, vs->paused and vs->rx_held are
 *     touched only under d->lock.  The I/O thread takes it once per loop round for a bounded
 *     batch of TX and RX work, and raises interrupts through virtio_notify_used() while
 *     holding it;
 *   - connections and the rest of struct virtio_vsock belong to the I/O thread alone.
 * A device reset runs on a vCPU thread, so it cannot touch connections: it bumps vs->epoch, and
 * the I/O thread, which checks the epoch every time it takes the lock and before it touches a
 * ring, drops every connection the guest knew about.
 *
 * Pausing (snapshots).  vsock_pause() sets vs->paused under the lock, so once it returns the
 * I/O thread touches no ring and raises no interrupt until it is cleared.  A popped RX buffer
 * not yet used goes back to the ring (last_avail steps back), so a snapshot never holds a
 * buffer that only this process knows it took.  Host sockets keep being served on the host
 * side, and the 2 s guest deadlines stand still: a resumed guest gets its full 2 s again.
 *
 * Data and memory.  Host -> guest bytes are read from the socket straight into the guest's RX
 * buffers, never more than the guest's credit, so nothing is buffered on that side.  Guest ->
 * host bytes are written straight from the guest's TX buffers to the socket; what the socket
 * cannot take yet is kept in a per-connection buffer of VSOCK_BUF_SIZE, which is exactly the
 * credit (buf_alloc) we advertise, and fwd_cnt only advances as the socket takes bytes, so a
 * slow host reader stalls the guest through credit.  A guest that sends beyond its credit is
 * reset, never buffered for.  Connections, their timers and the resets owed for stray packets
 * are all capped.
 *
 * Closing.  Each direction ends on its own: a host EOF becomes SHUTDOWN(SEND) to the guest, a
 * guest SHUTDOWN(SEND) becomes shutdown(SHUT_WR) once its bytes are out.  When neither direction
 * can carry more, a guest that shut down both ways gets its confirming RST; otherwise we send
 * SHUTDOWN(RCV|SEND) and give the guest 2 s to answer with RST before sending our own.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../../common/log.h"
#include "../../common/unix_listen.h"
#include "devices.h"
#include "vsock_pkt.h"

#define VSOCK_RXQ		0
#define VSOCK_TXQ		1
#define VSOCK_EVQ		2
#define VSOCK_QUEUE_SIZE	256

#define VSOCK_BUF_SIZE		(64 * 1024)	/* guest -> host bytes held per connection */
#define VSOCK_MAX_CONNS		1024		/* host clients and guest streams together */
#define VSOCK_PORT_FIRST	(1u << 30)	/* host ports for host-initiated streams ... */
#define VSOCK_PORT_END		(1u << 31)	/* ... wrap around below this */
#define VSOCK_TIMEOUT_MS	2000		/* guest's answer to REQUEST or SHUTDOWN; RST delivery */
#define VSOCK_BATCH		256		/* packets per queue per round, under d->lock */
#define VSOCK_ACCEPT_BATCH	64
#define VSOCK_LISTEN_RETRY_MS	100		/* after accept() ran out of fds or memory */
#define VSOCK_HASH_SIZE		256
#define VSOCK_MAX_ORPHANS	64		/* RSTs owed for packets matching no connection */
#define VSOCK_EVENTS		64
#define VSOCK_FD_WANT		4096		/* RLIMIT_NOFILE we try to have */

/* PATH_P must fit sockaddr_un.sun_path with P up to 10 digits. */
#define VSOCK_PATH_MAX		(sizeof(((struct sockaddr_un *)0)->sun_path) - 12)

enum conn_state {
	CONN_CMD,	/* host client whose CONNECT line is incomplete; unknown to the guest */
	CONN_REQUEST,	/* host client; REQUEST owed or sent, waiting for the guest's answer */
	CONN_OPEN,	/* established */
	CONN_CLOSING,	/* host side done; SHUTDOWN(RCV|SEND) owed or sent, waiting for RST */
	CONN_RESET,	/* RST owed to the guest; freed once sent, or at the deadline */
};

/* Control packets a connection owes the guest, sent in this order (data goes before SHUTDOWN). */
#define OWE_REQUEST		0x01
#define OWE_RESPONSE		0x02
#define OWE_CREDIT_UPDATE	0x04
#define OWE_SHUTDOWN		0x08
#define OWE_RST			0x10

struct conn {
	TAILQ_ENTRY(conn) link;		/* vs->conns; vs->dead once freed */
	TAILQ_ENTRY(conn) rx_link;	/* vs->rx_wait: has something for the guest */
	TAILQ_ENTRY(conn) timer_link;	/* vs->timed, while deadline is set */
	struct conn *hash_next;
	bool in_rx_wait, hashed, dead;
	enum conn_state state;
	int fd;				/* host socket, -1 once closed */
	uint32_t host_port, guest_port;
	uint64_t deadline;		/* CLOCK_MONOTONIC ms, 0 = none */

	bool readable, writable;	/* host socket readiness, from edge-triggered epoll */
	unsigned owe;			/* OWE_* */
	uint32_t shut_told;		/* SHUTDOWN flags told to the guest */
	uint32_t guest_shut;		/* SHUTDOWN flags heard from the guest */
	bool host_eof;			/* the host sends no more: read() returned 0 */
	bool host_gone;			/* the host takes no more: hung up, EPIPE */
	bool fd_shut_wr, fd_shut_rd;
	bool credit_asked;		/* CREDIT_REQUEST sent since the guest's credit last grew */

	/* host -> guest */
	uint32_t rx_cnt;		/* bytes sent to the guest */
	uint32_t peer_buf_alloc, peer_fwd_cnt;

	/* guest -> host: a ring of VSOCK_BUF_SIZE, allocated on first need */
	uint8_t *buf;
	uint32_t buf_head, buf_len;
	uint32_t fwd_cnt;		/* bytes the host socket took */
	uint32_t fwd_cnt_told;

	char line[VSOCK_CONNECT_MAX];
	unsigned line_len;
};

TAILQ_HEAD(conn_list, conn);

struct virtio_vsock {
	struct virtio_dev vdev;		/* first: the transport hands us this pointer */
	struct { uint64_t guest_cid; } __attribute__((packed)) config;
	uint64_t cid;
	char path[VSOCK_PATH_MAX];
	int listen_fd, kick_fd, ep;
	pthread_t thread;

	unsigned epoch;			/* under vdev.lock: bumped when the guest's state is gone */
	bool paused;			/* under vdev.lock: hands off the rings (snapshots) */

	/* I/O thread only */
	unsigned seen_epoch;
	bool io_paused;			/* what the I/O thread last saw of paused */
	struct conn_list conns, dead, rx_wait, timed;
	struct conn *hash[VSOCK_HASH_SIZE];
	unsigned nr_conns;
	uint32_t next_port;
	uint64_t listen_paused_until;	/* 0 = listening */
	bool more;			/* a batch hit its limit: poll again at once */
	struct vsock_hdr orphan[VSOCK_MAX_ORPHANS];
	unsigned orphan_head, orphans;
	struct virtq_chain tx, rx, ev;
	bool rx_held;			/* under vdev.lock: rx is popped but not yet used */
	struct iovec iov[VIRTQ_MAX_SIZE];
};

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static uint32_t min32(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static bool device_live(const struct virtio_dev *d)
{
	return (d->status & VIRTIO_STATUS_DRIVER_OK) && !(d->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* ---- connection bookkeeping ---- */

static unsigned hash_of(uint32_t host_port, uint32_t guest_port)
{
	return ((host_port * 31u + guest_port) * 2654435761u) >> 24;	/* 8 bits: 256 buckets */
}

static struct conn *conn_find(struct virtio_vsock *vs, uint32_t host_port, uint32_t guest_port)
{
	struct conn *c = vs->hash[hash_of(host_port, guest_port)];

	while (c && (c->host_port != host_port || c->guest_port != guest_port))
		c = c->hash_next;
	return c;
}

static void conn_hash(struct virtio_vsock *vs, struct conn *c)
{
	struct conn **head = &vs->hash[hash_of(c->host_port, c->guest_port)];

	c->hash_next = *head;
	*head = c;
	c->hashed = true;
}

static void conn_unhash(struct virtio_vsock *vs, struct conn *c)
{
	struct conn **p = &vs->hash[hash_of(c->host_port, c->guest_port)];

	while (*p != c)
		p = &(*p)->hash_next;
	*p = c->hash_next;
	c->hashed = false;
}

static void set_deadline(struct virtio_vsock *vs, struct conn *c)
{
	if (c->deadline)
		TAILQ_REMOVE(&vs->timed, c, timer_link);
	/* Every deadline is now + the same timeout, so appending keeps the list sorted. */
	c->deadline = now_ms() + VSOCK_TIMEOUT_MS;
	TAILQ_INSERT_TAIL(&vs->timed, c, timer_link);
}

static void clear_deadline(struct virtio_vsock *vs, struct conn *c)
{
	if (!c->deadline)
		return;
	TAILQ_REMOVE(&vs->timed, c, timer_link);
	c->deadline = 0;
}

static void listener_set(struct virtio_vsock *vs, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.ptr = &vs->listen_fd };

	epoll_ctl(vs->ep, EPOLL_CTL_MOD, vs->listen_fd, &ev);
	vs->listen_paused_until = on ? 0 : now_ms() + VSOCK_LISTEN_RETRY_MS;
}

static struct conn *conn_new(struct virtio_vsock *vs, int fd, enum conn_state state)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET };

	if (!c)
		return NULL;
	ev.data.ptr = c;
	if (epoll_ctl(vs->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(c);
		return NULL;
	}
	c->fd = fd;
	c->state = state;
	c->writable = true;
	TAILQ_INSERT_TAIL(&vs->conns, c, link);
	vs->nr_conns++;
	return c;
}

static void conn_close_fd(struct virtio_vsock *vs, struct conn *c)
{
	if (c->fd < 0)
		return;
	epoll_ctl(vs->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->readable = c->writable = false;
}

/*
 * Forget a connection at once, without telling the guest.  The memory is released at the end of
 * the loop round (reap), because this round's epoll events may still point at it.
 */
static void conn_free(struct virtio_vsock *vs, struct conn *c)
{
	conn_close_fd(vs, c);
	if (c->hashed)
		conn_unhash(vs, c);
	if (c->in_rx_wait)
		TAILQ_REMOVE(&vs->rx_wait, c, rx_link);
	clear_deadline(vs, c);
	TAILQ_REMOVE(&vs->conns, c, link);
	TAILQ_INSERT_TAIL(&vs->dead, c, link);
	c->in_rx_wait = false;
	c->dead = true;
	free(c->buf);
	c->buf = NULL;
	vs->nr_conns--;
	if (vs->listen_paused_until)
		listener_set(vs, true);
}

static void reap(struct virtio_vsock *vs)
{
	struct conn *c;

	while ((c = TAILQ_FIRST(&vs->dead))) {
		TAILQ_REMOVE(&vs->dead, c, link);
		free(c);
	}
}

static uint32_t peer_credit(const struct conn *c)
{
	return vsock_credit(c->peer_buf_alloc, c->peer_fwd_cnt, c->rx_cnt);
}

/* The host side has bytes for the guest and the guest still wants them. */
static bool host_data_pending(const struct conn *c)
{
	return c->state == CONN_OPEN && c->readable && !c->host_eof &&
	       !(c->guest_shut & VSOCK_SHUTDOWN_RCV);
}

static bool wants_rx(const struct conn *c)
{
	if (c->dead)
		return false;
	if (c->owe)
		return true;
	return host_data_pending(c) && (peer_credit(c) || !c->credit_asked);
}

/* Queue c for a turn on the guest's RX queue if it has anything to send. */
static void rx_schedule(struct virtio_vsock *vs, struct conn *c)
{
	if (c->in_rx_wait || !wants_rx(c))
		return;
	TAILQ_INSERT_TAIL(&vs->rx_wait, c, rx_link);
	c->in_rx_wait = true;
}

static void owe(struct virtio_vsock *vs, struct conn *c, unsigned what)
{
	c->owe |= what;
	rx_schedule(vs, c);
}

/* An RST for a packet that matches no connection; dropped if too many are owed already. */
static void orphan_reset(struct virtio_vsock *vs, const struct vsock_hdr *h)
{
	if (vs->orphans == VSOCK_MAX_ORPHANS)
		return;
	vsock_hdr_reset_reply(&vs->orphan[(vs->orphan_head + vs->orphans) % VSOCK_MAX_ORPHANS], h);
	vs->orphans++;
}

/* End a connection with an RST to the guest; the host socket is closed now. */
static void conn_reset(struct virtio_vsock *vs, struct conn *c)
{
	if (c->state == CONN_REQUEST && (c->owe & OWE_REQUEST)) {
		conn_free(vs, c);	/* the guest never heard of it */
		return;
	}
	conn_close_fd(vs, c);
	c->state = CONN_RESET;
	c->owe = OWE_RST;
	set_deadline(vs, c);
	rx_schedule(vs, c);
}

static void host_gone(struct conn *c)
{
	c->host_gone = true;
	c->buf_len = 0;		/* nobody left to read it */
}

/*
 * Settle an open connection after anything changed: pass half-closes on in both directions and,
 * once neither direction can carry more, close the host socket and end the stream.
 */
static void conn_update(struct virtio_vsock *vs, struct conn *c)
{
	uint32_t tell;

	if (c->state != CONN_OPEN)
		return;
	tell = (c->host_eof ? VSOCK_SHUTDOWN_SEND : 0) | (c->host_gone ? VSOCK_SHUTDOWN_RCV : 0);
	if (tell & ~c->shut_told) {
		c->shut_told |= tell;
		c->owe |= OWE_SHUTDOWN;
	}
	if ((c->guest_shut & VSOCK_SHUTDOWN_SEND) && !c->buf_len && !c->host_gone &&
	    !c->fd_shut_wr) {
		shutdown(c->fd, SHUT_WR);
		c->fd_shut_wr = true;
	}
	if ((c->guest_shut & VSOCK_SHUTDOWN_RCV) && !c->fd_shut_rd) {
		shutdown(c->fd, SHUT_RD);
		c->fd_shut_rd = true;
	}

	bool h2g_done = c->host_eof || (c->guest_shut & VSOCK_SHUTDOWN_RCV);
	bool g2h_done = c->host_gone || ((c->guest_shut & VSOCK_SHUTDOWN_SEND) && !c->buf_len);

	if (!h2g_done || !g2h_done) {
		rx_schedule(vs, c);
		return;
	}
	if (c->guest_shut == VSOCK_SHUTDOWN_BOTH) {
		conn_reset(vs, c);	/* the guest closed: confirm with RST (virtio 1.2 5.10.6.6) */
		return;
	}
	/* The host side closed: ask the guest to close as well and wait for its RST. */
	conn_close_fd(vs, c);
	c->state = CONN_CLOSING;
	c->shut_told = VSOCK_SHUTDOWN_BOTH;
	c->owe = (c->owe & OWE_RESPONSE) | OWE_SHUTDOWN;
	set_deadline(vs, c);
	rx_schedule(vs, c);
}

/* ---- guest -> host bytes ---- */

/* Bytes the host socket took; 0 and writable cleared if it is full, host_gone on errors. */
static uint32_t host_send(struct conn *c, struct iovec *iov, int n)
{
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = n };
	ssize_t r;

	do
		r = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		c->writable = false;
	else
		host_gone(c);
	return 0;
}

static void note_forwarded(struct virtio_vsock *vs, struct conn *c, uint32_t n)
{
	c->fwd_cnt += n;
	/* Half the window freed since the guest last heard: tell it before it stalls. */
	if (c->fwd_cnt - c->fwd_cnt_told >= VSOCK_BUF_SIZE / 2)
		owe(vs, c, OWE_CREDIT_UPDATE);
}

static void buf_flush(struct virtio_vsock *vs, struct conn *c)
{
	while (c->buf_len && c->writable && !c->host_gone) {
		uint32_t first = min32(c->buf_len, VSOCK_BUF_SIZE - c->buf_head);
		struct iovec iov[2] = {
			{ c->buf + c->buf_head, first },
			{ c->buf, c->buf_len - first },
		};
		uint32_t done = host_send(c, iov, first < c->buf_len ? 2 : 1);

		if (c->host_gone)
			return;
		c->buf_head = (c->buf_head + done) % VSOCK_BUF_SIZE;
		c->buf_len -= done;
		note_forwarded(vs, c, done);
	}
}

/* Keep bytes [off, off+len) of the chain; the caller checked they fit the window. */
static bool buf_put(struct conn *c, const struct virtq_chain *chain, uint64_t off, uint32_t len)
{
	if (!c->buf && !(c->buf = malloc(VSOCK_BUF_SIZE)))
		return false;

	uint32_t tail = (c->buf_head + c->buf_len) % VSOCK_BUF_SIZE;
	uint32_t first = min32(len, VSOCK_BUF_SIZE - tail);

	virtq_chain_read(chain, off, c->buf + tail, first);
	virtq_chain_read(chain, off + first, c->buf, len - first);
	c->buf_len += len;
	return true;
}

/* The len payload bytes of a guest RW packet: straight to the socket, the rest into the ring. */
static void to_host(struct virtio_vsock *vs, struct conn *c, const struct virtq_chain *chain,
		    uint32_t len)
{
	uint32_t done = 0;

	if (!len)
		return;
	if (c->host_gone) {
		c->fwd_cnt += len;	/* nobody to give it to; the guest was told RCV */
		return;
	}
	if (!c->buf_len && c->writable) {
		int n = virtq_bufs_iov(chain->out, chain->nr_out, VSOCK_HDR_SIZE, len, vs->iov);

		done = host_send(c, vs->iov, n);
		if (c->host_gone)
			return;
	}
	if (done < len && !buf_put(c, chain, VSOCK_HDR_SIZE + done, len - done)) {
		conn_reset(vs, c);
		return;
	}
	note_forwarded(vs, c, done);
	buf_flush(vs, c);
}

/* ---- host -> guest bytes ---- */

/* Read host bytes into the RX chain after the header room; their number, 0 if none came. */
static uint32_t read_host(struct virtio_vsock *vs, struct conn *c, const struct virtq_chain *rx)
{
	uint32_t want = min32(min32(peer_credit(c), rx->in_len - VSOCK_HDR_SIZE), VSOCK_MAX_PAYLOAD);
	int n = virtq_bufs_iov(rx->in, rx->nr_in, VSOCK_HDR_SIZE, want, vs->iov);
	ssize_t r;

	do
		r = readv(c->fd, vs->iov, n);
	while (r < 0 && errno == EINTR);
	if (r > 0) {
		c->rx_cnt += r;
		return r;
	}
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		c->readable = false;
		return 0;
	}
	c->host_eof = true;		/* end of stream, or an error that ends it */
	if (r < 0)
		host_gone(c);
	conn_update(vs, c);
	return 0;
}

static const struct { unsigned owe; uint16_t op; } owe_order[] = {
	{ OWE_REQUEST, VSOCK_OP_REQUEST },
	{ OWE_RESPONSE, VSOCK_OP_RESPONSE },
	{ OWE_CREDIT_UPDATE, VSOCK_OP_CREDIT_UPDATE },
};

/* Choose c's next packet; VSOCK_OP_INVALID if it has nothing, or nothing that needs a buffer. */
static uint16_t next_op(struct conn *c)
{
	for (unsigned i = 0; i < sizeof(owe_order) / sizeof(owe_order[0]); i++)
		if (c->owe & owe_order[i].owe) {
			c->owe &= ~owe_order[i].owe;
			return owe_order[i].op;
		}
	if (host_data_pending(c) && (peer_credit(c) || !c->credit_asked))
		return VSOCK_OP_RW;
	if (c->owe & OWE_SHUTDOWN) {
		c->owe &= ~OWE_SHUTDOWN;
		return VSOCK_OP_SHUTDOWN;
	}
	if (c->owe & OWE_RST) {
		c->owe &= ~OWE_RST;
		return VSOCK_OP_RST;
	}
	return VSOCK_OP_INVALID;
}

/* Write c's next packet into the RX chain; its length, or 0 if c produced none this time. */
static uint32_t conn_emit(struct virtio_vsock *vs, struct conn *c, const struct virtq_chain *rx)
{
	uint16_t op = next_op(c);
	struct vsock_hdr h;
	uint32_t len = 0;

	if (op == VSOCK_OP_INVALID)
		return 0;
	if (op == VSOCK_OP_RW && !peer_credit(c)) {
		op = VSOCK_OP_CREDIT_REQUEST;	/* the guest's window is full: ask once */
		c->credit_asked = true;
	} else if (op == VSOCK_OP_RW && !(len = read_host(vs, c, rx))) {
		return 0;
	}
	vsock_hdr_init(&h, VSOCK_HOST_CID, c->host_port, vs->cid, c->guest_port, op);
	h.len = len;
	h.flags = op == VSOCK_OP_SHUTDOWN ? c->shut_told : 0;
	h.buf_alloc = VSOCK_BUF_SIZE;
	h.fwd_cnt = c->fwd_cnt;
	c->fwd_cnt_told = c->fwd_cnt;
	virtq_chain_write(rx, 0, &h, sizeof(h));
	if (op == VSOCK_OP_RST)
		conn_free(vs, c);
	return VSOCK_HDR_SIZE + len;
}

static uint32_t emit_orphan(struct virtio_vsock *vs, const struct virtq_chain *rx)
{
	virtq_chain_write(rx, 0, &vs->orphan[vs->orphan_head], VSOCK_HDR_SIZE);
	vs->orphan_head = (vs->orphan_head + 1) % VSOCK_MAX_ORPHANS;
	vs->orphans--;
	return VSOCK_HDR_SIZE;
}

static uint32_t emit_next(struct virtio_vsock *vs, const struct virtq_chain *rx)
{
	struct conn *c = TAILQ_FIRST(&vs->rx_wait);
	uint32_t n;

	TAILQ_REMOVE(&vs->rx_wait, c, rx_link);
	c->in_rx_wait = false;
	n = conn_emit(vs, c, rx);
	rx_schedule(vs, c);	/* round robin: back of the line if it has more */
	return n;
}

/* Fill the guest's RX buffers, one packet each, round robin over waiting connections. */
static bool fill_rx(struct virtio_vsock *vs)
{
	struct virtio_dev *d = &vs->vdev;
	struct virtq *vq = &d->vq[VSOCK_RXQ];
	bool used = false;

	for (unsigned budget = VSOCK_BATCH; budget; budget--) {
		if (!vs->orphans && TAILQ_EMPTY(&vs->rx_wait))
			return used;
		if (!vs->rx_held) {
			int r = virtq_pop(vq, d->mem, &vs->rx);

			if (r < 0)
				virtio_set_needs_reset(d);
			if (r <= 0)
				return used;
			/* Too small for a header and a byte: hand it back unused. */
			if (vs->rx.in_len <= VSOCK_HDR_SIZE) {
				virtq_push(vq, vs->rx.head, 0);
				used = true;
				continue;
			}
			vs->rx_held = true;
		}
		uint32_t n = vs->orphans ? emit_orphan(vs, &vs->rx) : emit_next(vs, &vs->rx);

		if (n) {
			virtq_push(vq, vs->rx.head, n);
			vs->rx_held = false;
			used = true;
		}
	}
	vs->more = true;
	return used;
}

/* ---- packets from the guest ---- */

/* The guest's credit for us rides on every packet it sends. */
static void take_credit(struct virtio_vsock *vs, struct conn *c, const struct vsock_hdr *h)
{
	uint32_t before = peer_credit(c);

	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	if (peer_credit(c) > before) {
		c->credit_asked = false;
		rx_schedule(vs, c);
	}
}

static void guest_connect(struct virtio_vsock *vs, const struct vsock_hdr *h)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct conn *c = NULL;
	int fd = -1;

	if (vs->nr_conns < VSOCK_MAX_CONNS)
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", vs->path, h->dst_port);
	/* A unix stream connect completes at once or fails (EAGAIN: the backlog is full). */
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		c = conn_new(vs, fd, CONN_OPEN);
	if (!c) {
		log_debug("vsock: guest port %u -> %s: refused (%s)", h->src_port, sa.sun_path,
			  fd < 0 ? "no socket" : strerror(errno));
		if (fd >= 0)
			close(fd);
		orphan_reset(vs, h);
		return;
	}
	c->host_port = h->dst_port;
	c->guest_port = h->src_port;
	conn_hash(vs, c);
	take_credit(vs, c, h);
	owe(vs, c, OWE_RESPONSE);
}

static bool send_ok(struct conn *c)
{
	char line[24];
	int n = snprintf(line, sizeof(line), "OK %u\n", c->host_port);

	return send(c->fd, line, n, MSG_NOSIGNAL | MSG_DONTWAIT) == n;
}

/* The guest's answer to a REQUEST we sent for a host client. */
static void on_answer(struct virtio_vsock *vs, struct conn *c, const struct vsock_hdr *h)
{
	if (h->op == VSOCK_OP_RST) {
		log_debug("vsock: guest refused port %u", c->guest_port);
		conn_free(vs, c);
	} else if (h->op != VSOCK_OP_RESPONSE || (c->owe & OWE_REQUEST) || !send_ok(c)) {
		conn_reset(vs, c);
	} else {
		c->state = CONN_OPEN;
		clear_deadline(vs, c);
		conn_update(vs, c);
	}
}

static void on_open(struct virtio_vsock *vs, struct conn *c, const struct vsock_hdr *h,
		    const struct virtq_chain *chain)
{
	switch (h->op) {
	case VSOCK_OP_RW:
		if ((c->guest_shut & VSOCK_SHUTDOWN_SEND) || h->len > VSOCK_BUF_SIZE - c->buf_len) {
			log_debug("vsock: guest port %u overran its credit or sent after SHUTDOWN",
				  c->guest_port);
			conn_reset(vs, c);
			return;
		}
		to_host(vs, c, chain, h->len);
		break;
	case VSOCK_OP_CREDIT_UPDATE:
		break;			/* take_credit() has used it */
	case VSOCK_OP_CREDIT_REQUEST:
		owe(vs, c, OWE_CREDIT_UPDATE);
		break;
	case VSOCK_OP_SHUTDOWN:
		c->guest_shut |= h->flags & VSOCK_SHUTDOWN_BOTH;
		break;
	case VSOCK_OP_RST:
		conn_free(vs, c);
		return;
	default:			/* REQUEST or RESPONSE on an open stream */
		conn_reset(vs, c);
		return;
	}
	if (!c->dead && c->state == CONN_OPEN)
		conn_update(vs, c);
}

static void on_guest_packet(struct virtio_vsock *vs, const struct virtq_chain *chain)
{
	struct vsock_hdr h;
	struct conn *c;

	switch (vsock_pkt_parse(chain, vs->cid, &h)) {
	case VSOCK_PKT_DROP:
		return;
	case VSOCK_PKT_RESET:
		c = h.dst_cid == VSOCK_HOST_CID ? conn_find(vs, h.dst_port, h.src_port) : NULL;
		if (c)
			conn_reset(vs, c);
		else
			orphan_reset(vs, &h);
		return;
	case VSOCK_PKT_OK:
		break;
	}
	c = conn_find(vs, h.dst_port, h.src_port);
	if (!c) {
		if (h.op == VSOCK_OP_REQUEST)
			guest_connect(vs, &h);
		else if (h.op != VSOCK_OP_RST)
			orphan_reset(vs, &h);
		return;
	}
	take_credit(vs, c, &h);
	switch (c->state) {
	case CONN_REQUEST:
		on_answer(vs, c, &h);
		break;
	case CONN_OPEN:
		on_open(vs, c, &h, chain);
		break;
	case CONN_CLOSING:
		/* Data or credit sent before the guest saw our SHUTDOWN has nowhere to go. */
		if (h.op == VSOCK_OP_RST)
			conn_free(vs, c);
		else if (h.op != VSOCK_OP_RW && h.op != VSOCK_OP_CREDIT_UPDATE &&
			 h.op != VSOCK_OP_CREDIT_REQUEST)
			conn_reset(vs, c);
		break;
	case CONN_RESET:
		if (h.op == VSOCK_OP_RST)
			conn_free(vs, c);	/* no need to send ours */
		break;
	case CONN_CMD:
		break;			/* never hashed */
	}
}

static bool process_tx(struct virtio_vsock *vs)
{
	struct virtio_dev *d = &vs->vdev;
	struct virtq *vq = &d->vq[VSOCK_TXQ];
	bool used = false;

	for (unsigned budget = VSOCK_BATCH; budget; budget--) {
		int r = virtq_pop(vq, d->mem, &vs->tx);

		if (r < 0)
			virtio_set_needs_reset(d);
		if (r <= 0)
			return used;
		on_guest_packet(vs, &vs->tx);
		virtq_push(vq, vs->tx.head, 0);
		used = true;
	}
	vs->more = true;
	return used;
}

/* The guest's side of every stream is gone (device or transport reset): drop ours. */
static void forget_guest(struct virtio_vsock *vs)
{
	struct conn *c, *next;

	for (c = TAILQ_FIRST(&vs->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->state != CONN_CMD)
			conn_free(vs, c);
	}
	vs->orphans = 0;
	vs->rx_held = false;
}

/* After a pause the guest gets a whole timeout again; equal timeouts keep the list sorted. */
static void restart_timers(struct virtio_vsock *vs)
{
	uint64_t deadline = now_ms() + VSOCK_TIMEOUT_MS;
	struct conn *c;

	TAILQ_FOREACH(c, &vs->timed, timer_link)
		c->deadline = deadline;
}

static void service_guest(struct virtio_vsock *vs)
{
	struct virtio_dev *d = &vs->vdev;

	pthread_mutex_lock(&d->lock);
	if (vs->epoch != vs->seen_epoch) {
		forget_guest(vs);
		vs->seen_epoch = vs->epoch;
	}
	if (vs->io_paused && !vs->paused)
		restart_timers(vs);
	vs->io_paused = vs->paused;
	if (!vs->paused && device_live(d) && process_tx(vs))
		virtio_notify_used(d, VSOCK_TXQ);
	if (!vs->paused && device_live(d) && fill_rx(vs))
		virtio_notify_used(d, VSOCK_RXQ);
	pthread_mutex_unlock(&d->lock);
}

/* ---- host sockets ---- */

static bool port_in_use(struct virtio_vsock *vs, uint32_t port)
{
	struct conn *c;

	TAILQ_FOREACH(c, &vs->conns, link)
		if (c->host_port == port)
			return true;
	return false;
}

static bool alloc_port(struct virtio_vsock *vs, uint32_t *port)
{
	/* At most VSOCK_MAX_CONNS ports are taken, so one of this many candidates is free. */
	for (unsigned tries = 0; tries <= VSOCK_MAX_CONNS; tries++) {
		uint32_t p = vs->next_port;

		vs->next_port = p + 1 == VSOCK_PORT_END ? VSOCK_PORT_FIRST : p + 1;
		if (!port_in_use(vs, p)) {
			*port = p;
			return true;
		}
	}
	return false;
}

/*
 * Read the CONNECT line one byte at a time: whatever follows it is stream data for the guest and
 * must stay in the socket until the stream is open.
 */
static void read_connect_line(struct virtio_vsock *vs, struct conn *c)
{
	uint32_t port;

	while (c->line_len < VSOCK_CONNECT_MAX) {
		ssize_t r = read(c->fd, &c->line[c->line_len], 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			c->readable = false;
			return;
		}
		if (r <= 0) {
			conn_free(vs, c);
			return;
		}
		if (c->line[c->line_len++] == '\n')
			break;
	}
	if (vsock_parse_connect(c->line, c->line_len, &port) || !alloc_port(vs, &c->host_port)) {
		log_debug("vsock: closing a host client: malformed CONNECT line");
		conn_free(vs, c);
		return;
	}
	c->guest_port = port;
	c->state = CONN_REQUEST;
	conn_hash(vs, c);
	set_deadline(vs, c);
	owe(vs, c, OWE_REQUEST);
}

static void accept_clients(struct virtio_vsock *vs)
{
	for (unsigned i = 0; i < VSOCK_ACCEPT_BATCH; i++) {
		int fd = accept4(vs->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
			continue;
		if (fd < 0) {
			/* Out of fds or memory: stop listening until a stream ends or a while passes. */
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				listener_set(vs, false);
			return;
		}
		/* At the cap, close at once: the client learns now rather than from a full backlog. */
		if (vs->nr_conns >= VSOCK_MAX_CONNS || !conn_new(vs, fd, CONN_CMD))
			close(fd);
	}
}

static void on_host_event(struct virtio_vsock *vs, struct conn *c, uint32_t events)
{
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->readable = true;
	if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		c->writable = true;
	switch (c->state) {
	case CONN_CMD:
		if (c->readable)
			read_connect_line(vs, c);
		break;
	case CONN_REQUEST:
		if (events & (EPOLLHUP | EPOLLERR))
			conn_reset(vs, c);	/* the client left before the guest answered */
		break;
	case CONN_OPEN:
		/* Both halves shut: the peer closed, or it and the guest both half-closed. */
		if (events & (EPOLLHUP | EPOLLERR))
			host_gone(c);
		buf_flush(vs, c);
		conn_update(vs, c);
		break;
	default:
		break;
	}
}

static void on_event(struct virtio_vsock *vs, const struct epoll_event *ev)
{
	uint64_t v;

	if (ev->data.ptr == &vs->kick_fd) {
		if (read(vs->kick_fd, &v, sizeof(v)) < 0)
			return;		/* EAGAIN: another round already drained it */
	} else if (ev->data.ptr == &vs->listen_fd) {
		accept_clients(vs);
	} else {
		struct conn *c = ev->data.ptr;

		if (!c->dead)
			on_host_event(vs, c, ev->events);
	}
}

static void expire_timers(struct virtio_vsock *vs)
{
	uint64_t now = now_ms();
	struct conn *c;

	/* A paused guest cannot answer: its deadlines wait (restart_timers). */
	while (!vs->io_paused && (c = TAILQ_FIRST(&vs->timed)) && c->deadline <= now) {
		clear_deadline(vs, c);
		if (c->state == CONN_REQUEST) {
			log_debug("vsock: guest did not answer a connect to port %u", c->guest_port);
			conn_reset(vs, c);
		} else if (c->state == CONN_CLOSING) {
			conn_reset(vs, c);
		} else {
			conn_free(vs, c);	/* the guest never took its RST */
		}
	}
	if (vs->listen_paused_until && now >= vs->listen_paused_until)
		listener_set(vs, true);
}

static int next_timeout(struct virtio_vsock *vs)
{
	uint64_t when = 0, now;
	struct conn *c = TAILQ_FIRST(&vs->timed);

	if (vs->more)
		return 0;
	if (c && !vs->io_paused)
		when = c->deadline;
	if (vs->listen_paused_until && (!when || vs->listen_paused_until < when))
		when = vs->listen_paused_until;
	if (!when)
		return -1;
	now = now_ms();
	return when > now ? (int)(when - now) : 0;
}

static void *io_thread(void *arg)
{
	struct virtio_vsock *vs = arg;
	struct epoll_event ev[VSOCK_EVENTS];

	for (;;) {
		int n = epoll_wait(vs->ep, ev, VSOCK_EVENTS, next_timeout(vs));

		vs->more = false;
		for (int i = 0; i < n; i++)
			on_event(vs, &ev[i]);
		expire_timers(vs);
		service_guest(vs);
		reap(vs);
	}
	return NULL;
}

/* ---- the device ---- */

static void vsock_read_config(struct virtio_dev *d, uint64_t off, void *data, unsigned len)
{
	struct virtio_vsock *vs = (struct virtio_vsock *)d;

	memcpy(data, (uint8_t *)&vs->config + off, len);
}

static void kick(struct virtio_vsock *vs)
{
	uint64_t one = 1;

	/* Cannot fail short of 2^64 - 1 pending kicks; the I/O thread drains them every round. */
	if (write(vs->kick_fd, &one, sizeof(one)) < 0)
		return;
}

/* vCPU thread, d->lock held: hand the work to the I/O thread. */
static void vsock_notify(struct virtio_dev *d, unsigned q)
{
	(void)q;
	kick((struct virtio_vsock *)d);
}

/* vCPU thread, d->lock held: the driver reset the device, so its streams are gone. */
static void vsock_reset(struct virtio_dev *d)
{
	struct virtio_vsock *vs = (struct virtio_vsock *)d;

	vs->epoch++;
	kick(vs);
}

/* Any thread, d->lock held (virtio_pause). */
static void vsock_pause(struct virtio_dev *d, bool pause)
{
	struct virtio_vsock *vs = (struct virtio_vsock *)d;
	struct virtq *rxq = &d->vq[VSOCK_RXQ];

	vs->paused = pause;
	/* Give back a held RX buffer, unless a pending reset has made it meaningless anyway. */
	if (pause && vs->rx_held && vs->epoch == vs->seen_epoch && rxq->ready) {
		rxq->last_avail--;
		vs->rx_held = false;
	}
	kick(vs);	/* the I/O thread notices at its next round; on resume, catches up */
}

static const struct virtio_dev_ops vsock_ops = {
	.name = "vsock",
	.device_id = VIRTIO_ID_VSOCK,
	.nr_queues = 3,
	.queue_max = VSOCK_QUEUE_SIZE,
	.read_config = vsock_read_config,
	.config_size = 8,
	.notify = vsock_notify,
	.reset = vsock_reset,
	.pause = vsock_pause,
};

int virtio_vsock_transport_reset(struct virtio_dev *d)
{
	struct virtio_vsock *vs = (struct virtio_vsock *)d;
	struct virtq *vq = &d->vq[VSOCK_EVQ];
	uint32_t id = VSOCK_EVENT_TRANSPORT_RESET;
	int ret = -1;

	pthread_mutex_lock(&d->lock);
	if (device_live(d)) {
		int r = virtq_pop(vq, d->mem, &vs->ev);

		if (r < 0)
			virtio_set_needs_reset(d);
		if (r > 0) {
			uint32_t n = vs->ev.in_len >= sizeof(id) ?
				     virtq_chain_write(&vs->ev, 0, &id, sizeof(id)) : 0;

			virtq_push(vq, vs->ev.head, n);
			virtio_notify_used(d, VSOCK_EVQ);
			ret = n ? 0 : -1;
		}
	}
	/* Whether or not the guest heard, its streams are to be considered gone. */
	vs->epoch++;
	kick(vs);
	pthread_mutex_unlock(&d->lock);
	return ret;
}

static int listen_on(struct virtio_vsock *vs, char *err, size_t errlen)
{
	char why[256];

	vs->listen_fd = unix_listen(vs->path, 128, why, sizeof(why));
	if (vs->listen_fd < 0) {
		snprintf(err, errlen, "--vsock %s", why);
		return -1;
	}
	return 0;
}

static void close_if_open(int fd)
{
	if (fd >= 0)
		close(fd);
}

static int add_fd(struct virtio_vsock *vs, int *fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = fd };

	return epoll_ctl(vs->ep, EPOLL_CTL_ADD, *fd, &ev);
}

/* Up to VSOCK_MAX_CONNS sockets on top of disks and vCPUs: a soft limit of 1024 is too few. */
static void raise_fd_limit(void)
{
	struct rlimit r;

	if (getrlimit(RLIMIT_NOFILE, &r) || r.rlim_cur >= VSOCK_FD_WANT)
		return;
	r.rlim_cur = r.rlim_max < VSOCK_FD_WANT ? r.rlim_max : VSOCK_FD_WANT;
	setrlimit(RLIMIT_NOFILE, &r);
}

static int start_io_thread(struct virtio_vsock *vs, char *err, size_t errlen)
{
	sigset_t all, old;
	int r;

	vs->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	vs->ep = epoll_create1(EPOLL_CLOEXEC);
	if (vs->kick_fd < 0 || vs->ep < 0 || add_fd(vs, &vs->kick_fd) ||
	    add_fd(vs, &vs->listen_fd)) {
		snprintf(err, errlen, "vsock: event loop set-up: %s", strerror(errno));
		return -1;
	}
	/* Signals are for the main thread (signalfd) and the vCPUs (kicks), never for this one. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&vs->thread, NULL, io_thread, vs);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		snprintf(err, errlen, "vsock: cannot start the I/O thread: %s", strerror(r));
		return -1;
	}
	return 0;
}

struct virtio_dev *virtio_vsock_create(const struct guest_mem *mem, uint32_t cid, const char *path,
				       char *err, size_t errlen)
{
	struct virtio_vsock *vs;

	if (cid < 3 || cid == UINT32_MAX) {
		snprintf(err, errlen, "--vsock: guest CID %u is reserved (use 3 to %u)", cid,
			 UINT32_MAX - 1);
		return NULL;
	}
	if (!*path || strlen(path) >= VSOCK_PATH_MAX) {
		snprintf(err, errlen, "--vsock: socket path must be 1 to %zu characters",
			 VSOCK_PATH_MAX - 1);
		return NULL;
	}
	vs = calloc(1, sizeof(*vs));
	if (!vs) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	virtio_dev_init(&vs->vdev, &vsock_ops, mem, 0);
	vs->cid = vs->config.guest_cid = cid;
	snprintf(vs->path, sizeof(vs->path), "%s", path);
	vs->listen_fd = vs->kick_fd = vs->ep = -1;
	vs->next_port = VSOCK_PORT_FIRST;
	TAILQ_INIT(&vs->conns);
	TAILQ_INIT(&vs->dead);
	TAILQ_INIT(&vs->rx_wait);
	TAILQ_INIT(&vs->timed);
	raise_fd_limit();
	if (listen_on(vs, err, errlen))
		goto fail;
	if (start_io_thread(vs, err, errlen)) {
		unlink(vs->path);
		goto fail;
	}
	return &vs->vdev;
fail:
	close_if_open(vs->listen_fd);
	close_if_open(vs->kick_fd);
	close_if_open(vs->ep);
	free(vs);
	return NULL;
}
