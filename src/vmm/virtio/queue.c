/*
 * queue.c - split virtqueue walking with every guest-controlled value checked (see queue.h).
 */
#include "queue.h"

#include <string.h>

static bool is_power_of_2(unsigned n)
{
	return n && !(n & (n - 1));
}

int virtq_activate(struct virtq *vq, const struct guest_mem *gm)
{
	uint64_t n = vq->size;

	if (!is_power_of_2(n) || n > VIRTQ_MAX_SIZE)
		return -1;
	/* Alignment from virtio 1.2 table 2.3: descriptors 16, avail 2, used 4. */
	if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3))
		return -1;
	void *desc = gm_ptr(gm, vq->desc_gpa, 16 * n);
	void *avail = gm_ptr(gm, vq->avail_gpa, 6 + 2 * n);
	void *used = gm_ptr(gm, vq->used_gpa, 6 + 8 * n);

	if (!desc || !avail || !used)
		return -1;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->broken = false;
	vq->ready = true;
	return 0;
}

void virtq_reset(struct virtq *vq)
{
	memset(vq, 0, sizeof(*vq));
}

static uint16_t load_acquire16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static int broken(struct virtq *vq)
{
	vq->broken = true;
	return -1;
}

static int add_buf(struct virtq *vq, struct virtq_chain *c, const struct virtq_desc *d, uint8_t *p)
{
	struct virtq_buf b = { .addr = p, .len = d->len };

	if (d->flags & VIRTQ_DESC_F_WRITE) {
		c->in[c->nr_in++] = b;
		c->in_len += d->len;
		return 0;
	}
	/* virtio 1.2 2.7.4.2: readable descriptors come before all writable ones. */
	if (c->nr_in)
		return broken(vq);
	c->out[c->nr_out++] = b;
	c->out_len += d->len;
	return 0;
}

int virtq_pop(struct virtq *vq, const struct guest_mem *gm, struct virtq_chain *c)
{
	if (!vq->ready || vq->broken)
		return vq->broken ? -1 : 0;

	uint16_t avail_idx = load_acquire16(&vq->avail[1]);
	uint16_t pending = avail_idx - vq->last_avail;

	if (pending == 0)
		return 0;
	if (pending > vq->size)
		return broken(vq);

	uint16_t head = vq->avail[2 + (vq->last_avail & (vq->size - 1))];

	if (head >= vq->size)
		return broken(vq);

	c->head = head;
	c->nr_out = c->nr_in = 0;
	c->out_len = c->in_len = 0;

	uint16_t idx = head;

	/* A chain can name each descriptor at most once, so more than size links is a loop. */
	for (unsigned count = 0;; count++) {
		struct virtq_desc d;

		if (count >= vq->size)
			return broken(vq);
		/* One copy: the guest may rewrite the descriptor while we look at it. */
		memcpy(&d, &vq->desc[idx], sizeof(d));
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return broken(vq);

		uint8_t *p = gm_ptr(gm, d.addr, d.len);

		if (!p)
			return broken(vq);
		if (add_buf(vq, c, &d, p))
			return -1;
		/* virtio 1.2 2.7.5: a chain never exceeds 2^32 bytes. */
		if (c->out_len + c->in_len > UINT32_MAX)
			return broken(vq);
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= vq->size)
			return broken(vq);
		idx = d.next;
	}
	vq->last_avail++;
	return 1;
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t written)
{
	struct virtq_used_elem *ring = (struct virtq_used_elem *)&vq->used[2];
	struct virtq_used_elem e = { .id = head, .len = written };

	memcpy(&ring[vq->used_idx & (vq->size - 1)], &e, sizeof(e));
	vq->used_idx++;
	/* The element must be visible before the index that publishes it. */
	__atomic_store_n(&vq->used[1], vq->used_idx, __ATOMIC_RELEASE);
}

bool virtq_should_notify(const struct virtq *vq)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !(__atomic_load_n(&vq->avail[0], __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

int virtq_bufs_iov(const struct virtq_buf *bufs, unsigned nr, uint64_t off, uint64_t len,
		   struct iovec *iov)
{
	int n = 0;

	for (unsigned i = 0; i < nr && len; i++) {
		if (off >= bufs[i].len) {
			off -= bufs[i].len;
			continue;
		}
		uint64_t take = bufs[i].len - off;

		if (take > len)
			take = len;
		iov[n].iov_base = bufs[i].addr + off;
		iov[n].iov_len = take;
		n++;
		len -= take;
		off = 0;
	}
	return n;
}

static uint64_t chain_copy(const struct virtq_buf *bufs, unsigned nr, uint64_t off,
			   uint8_t *mem, uint64_t len, bool to_chain)
{
	uint64_t done = 0;

	for (unsigned i = 0; i < nr && done < len; i++) {
		if (off >= bufs[i].len) {
			off -= bufs[i].len;
			continue;
		}
		uint64_t n = bufs[i].len - off;

		if (n > len - done)
			n = len - done;
		if (to_chain)
			memcpy(bufs[i].addr + off, mem + done, n);
		else
			memcpy(mem + done, bufs[i].addr + off, n);
		done += n;
		off = 0;
	}
	return done;
}

uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len)
{
	return chain_copy(c->out, c->nr_out, off, dst, len, false);
}

uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src, uint64_t len)
{
	return chain_copy(c->in, c->nr_in, off, (uint8_t *)src, len, true);
}
