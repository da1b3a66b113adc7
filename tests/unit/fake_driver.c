/*
 * fake_driver.c - the guest's virtio driver the device unit tests share (fake_driver.h): it
 * keeps guest RAM and the split rings in a buffer and speaks to a real device through the real
 * virtio-mmio transport, so what a test checks is what a guest kernel would see.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/vmm/snapshot/format.h"
#include "fake_driver.h"

uint8_t *fake_ram(struct guest_mem *gm, uint64_t size)
{
	uint8_t *ram = aligned_alloc(4096, size);

	assert_non_null(ram);
	memset(ram, 0, size);
	memset(gm, 0, sizeof(*gm));
	gm->region[0] = (struct gm_region){ .gpa = 0, .size = size, .host = ram };
	gm->nr = 1;
	gm->total = size;
	return ram;
}

void drv_ram(struct fake_driver *g, uint64_t size)
{
	memset(g, 0, sizeof(*g));
	g->ram = fake_ram(&g->gm, size);
	g->ram_size = size;
}

void drv_irq(void *ctx, unsigned line)
{
	struct fake_driver *g = ctx;

	(void)line;
	__atomic_add_fetch(&g->irqs, 1, __ATOMIC_RELAXED);
}

void drv_attach(struct fake_driver *g, struct virtio_dev *d)
{
	g->d = d;
	d->raise_irq = drv_irq;
	d->irq_ctx = g;
	d->irq = 5;
}

void drv_write(struct fake_driver *g, uint64_t off, uint32_t v)
{
	virtio_mmio_write(g->d, off, &v, 4);
}

uint32_t drv_read(struct fake_driver *g, uint64_t off)
{
	uint32_t v;

	virtio_mmio_read(g->d, off, &v, 4);
	return v;
}

struct virtq_desc *drv_desc(struct fake_driver *g, unsigned q)
{
	return (struct virtq_desc *)(g->ram + DRV_QBASE(q));
}

uint16_t *drv_avail(struct fake_driver *g, unsigned q)
{
	return (uint16_t *)(g->ram + DRV_QBASE(q) + DRV_AVAIL_OFF);
}

uint16_t *drv_used(struct fake_driver *g, unsigned q)
{
	return (uint16_t *)(g->ram + DRV_QBASE(q) + DRV_USED_OFF);
}

void drv_reset(struct fake_driver *g)
{
	/* The device lets go of the rings before we wipe them under its I/O thread. */
	drv_write(g, R_STATUS, 0);
	memset(g->ram, 0, g->ram_size);
	memset(g->avail_idx, 0, sizeof(g->avail_idx));
	memset(g->used_seen, 0, sizeof(g->used_seen));
	memset(g->sent, 0, sizeof(g->sent));
}

bool drv_features(struct fake_driver *g, uint64_t features)
{
	const uint32_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	drv_write(g, R_STATUS, st);
	drv_write(g, R_DRIVER_FEATURES_SEL, 0);
	drv_write(g, R_DRIVER_FEATURES, (uint32_t)features);
	drv_write(g, R_DRIVER_FEATURES_SEL, 1);
	drv_write(g, R_DRIVER_FEATURES, (uint32_t)(features >> 32));
	drv_write(g, R_STATUS, st | VIRTIO_STATUS_FEATURES_OK);
	return drv_read(g, R_STATUS) & VIRTIO_STATUS_FEATURES_OK;
}

void drv_queues(struct fake_driver *g, unsigned nr, unsigned qsize)
{
	assert_true(nr <= DRV_MAX_QUEUES);
	g->qsize = qsize;
	for (unsigned q = 0; q < nr; q++) {
		drv_write(g, R_QUEUE_SEL, q);
		drv_write(g, R_QUEUE_NUM, qsize);
		drv_write(g, R_QUEUE_DESC_LOW, DRV_QBASE(q));
		drv_write(g, R_QUEUE_DRIVER_LOW, DRV_QBASE(q) + DRV_AVAIL_OFF);
		drv_write(g, R_QUEUE_DEVICE_LOW, DRV_QBASE(q) + DRV_USED_OFF);
		drv_write(g, R_QUEUE_READY, 1);
	}
}

void drv_start(struct fake_driver *g, uint64_t features, unsigned nr, unsigned qsize)
{
	assert_true(drv_features(g, features));
	drv_queues(g, nr, qsize);
	drv_write(g, R_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		  VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

void drv_init(struct fake_driver *g, uint64_t features, unsigned nr, unsigned qsize)
{
	drv_reset(g);
	drv_start(g, features, nr, qsize);
}

void drv_offer(struct fake_driver *g, unsigned q, uint16_t head)
{
	drv_avail(g, q)[2 + g->avail_idx[q] % g->qsize] = head;
	g->avail_idx[q]++;
}

void drv_kick(struct fake_driver *g, unsigned q)
{
	/* Release: the device must see the slots before the index that covers them. */
	__atomic_store_n(&drv_avail(g, q)[1], g->avail_idx[q], __ATOMIC_RELEASE);
	drv_write(g, R_QUEUE_NOTIFY, q);
}

void drv_post(struct fake_driver *g, unsigned q, uint16_t head)
{
	drv_offer(g, q, head);
	drv_kick(g, q);
}

void drv_post_buf(struct fake_driver *g, unsigned q, uint16_t i, uint64_t gpa, uint32_t len,
		  uint16_t flags)
{
	drv_desc(g, q)[i] = (struct virtq_desc){ gpa, len, flags, 0 };
	drv_post(g, q, i);
}

uint16_t drv_used_idx(struct fake_driver *g, unsigned q)
{
	return __atomic_load_n(&drv_used(g, q)[1], __ATOMIC_ACQUIRE);
}

bool restore_dev(struct virtio_dev *d, const struct sbuf *b, char *msg, size_t n)
{
	struct sr_error e = { 0 };
	struct sreader r;
	bool ok;

	sr_init(&r, b->data, b->len, &e);
	ok = virtio_restore(d, &r);
	snprintf(msg, n, "%s", e.msg);
	return ok;
}

long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

bool drv_next_used(struct fake_driver *g, unsigned q, struct virtq_used_elem *e, long ms)
{
	uint8_t *ring = (uint8_t *)drv_used(g, q);
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (drv_used_idx(g, q) == g->used_seen[q]) {
		if (ms_since(&t0) > ms)
			return false;
		usleep(200);
	}
	memcpy(e, ring + 4 + sizeof(*e) * (g->used_seen[q] % g->qsize), sizeof(*e));
	g->used_seen[q]++;
	return true;
}

uint16_t drv_next_slot(struct fake_driver *g, unsigned q, long ms)
{
	struct virtq_used_elem e;

	while ((uint16_t)(g->sent[q] - g->used_seen[q]) >= g->qsize)
		assert_true(drv_next_used(g, q, &e, ms));
	return g->sent[q]++ % g->qsize;
}
