/*
 * queue.h - the split virtqueue (virtio 1.2 section 2.7), device side.
 *
 * The rings live in guest memory and the guest may scribble on them at any moment, from another
 * vCPU, while we read.  So: ring addresses are validated once when the driver sets QueueReady and
 * kept as host pointers; every descriptor is copied out of guest memory before it is checked and
 * used (no double fetch); a chain is rejected if it is longer than the queue (a loop), names an
 * index outside the table, points outside guest RAM, puts a device-readable buffer after a
 * device-writable one, or uses an indirect table we never offered.  A rejected chain marks the
 * queue broken: the device stops touching it and the transport reports DEVICE_NEEDS_RESET.
 */
#ifndef KILN_VIRTIO_QUEUE_H
#define KILN_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../guest_mem.h"

#define VIRTQ_MAX_SIZE 256

/* In-memory layout of the rings, little-endian as on x86. */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

#define VIRTQ_DESC_F_NEXT	1
#define VIRTQ_DESC_F_WRITE	2
#define VIRTQ_DESC_F_INDIRECT	4

#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq {
	/* set by the driver through the transport */
	uint16_t size;
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;

	/* device state, valid once ready */
	struct virtq_desc *desc;
	uint16_t *avail;	/* flags, idx, ring[size], used_event */
	uint16_t *used;		/* flags, idx, then size used elements, avail_event */
	uint16_t last_avail;	/* next avail slot to consume */
	uint16_t used_idx;	/* next used slot to fill */
	bool broken;
};

struct virtq_buf {
	uint8_t *addr;		/* host pointer, checked for len bytes */
	uint32_t len;
};

/* One descriptor chain, split into its device-readable and device-writable parts. */
struct virtq_chain {
	uint16_t head;
	unsigned nr_out, nr_in;
	uint64_t out_len, in_len;
	struct virtq_buf out[VIRTQ_MAX_SIZE];
	struct virtq_buf in[VIRTQ_MAX_SIZE];
};

/* Validate size and ring addresses and make the queue live.  -1 (queue untouched) if invalid. */
int virtq_activate(struct virtq *vq, const struct guest_mem *gm);
void virtq_reset(struct virtq *vq);

/* 1: a chain was taken into c; 0: nothing available; -1: the guest broke the queue. */
int virtq_pop(struct virtq *vq, const struct guest_mem *gm, struct virtq_chain *c);

/* Return a chain to the driver, with the number of bytes written into its writable part. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t written);

/* Whether the driver wants an interrupt for used buffers (VIRTQ_AVAIL_F_NO_INTERRUPT unset). */
bool virtq_should_notify(const struct virtq *vq);

/* iovecs covering len bytes of a buffer list from byte off; returns how many were filled
 * (at most nr, so an iov array of VIRTQ_MAX_SIZE always suffices). */
int virtq_bufs_iov(const struct virtq_buf *bufs, unsigned nr, uint64_t off, uint64_t len,
		   struct iovec *iov);

/* Copy helpers across a chain's buffers; return bytes copied. */
uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len);
uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src, uint64_t len);

#endif
