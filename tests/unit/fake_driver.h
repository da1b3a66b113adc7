/*
 * fake_driver.h - a minimal guest virtio driver for the device unit tests.  It plays the
 * guest's side against a real device in this process: guest RAM in a plain buffer, split
 * virtqueues laid out in it, and the virtio-mmio handshake (reset, features, FEATURES_OK,
 * queue setup, DRIVER_OK) through the real transport (src/vmm/virtio/mmio.c).  The tests then
 * post chains, kick, and read the used rings as a guest kernel would, and may break any rule
 * on purpose by writing the rings or registers themselves.
 *
 * Queue q's rings sit at DRV_QBASE(q): descriptors there, the avail ring DRV_AVAIL_OFF after
 * and the used ring DRV_USED_OFF after, room for queues of up to 1024 entries.  Buffers are
 * the tests' own business; they keep clear of the rings of the queues they set up, from
 * DRV_QBASE(0) to DRV_QBASE(nr).
 */
#ifndef KILN_TESTS_FAKE_DRIVER_H
#define KILN_TESTS_FAKE_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../../src/vmm/guest_mem.h"
#include "../../src/vmm/virtio/queue.h"
#include "../../src/vmm/virtio/virtio.h"

struct sbuf;

/* virtio-mmio registers (virtio 1.2 4.2.2) */
#define R_DEVICE_ID		0x008
#define R_DEVICE_FEATURES	0x010
#define R_DEVICE_FEATURES_SEL	0x014
#define R_DRIVER_FEATURES	0x020
#define R_DRIVER_FEATURES_SEL	0x024
#define R_QUEUE_SEL		0x030
#define R_QUEUE_NUM		0x038
#define R_QUEUE_READY		0x044
#define R_QUEUE_NOTIFY		0x050
#define R_STATUS		0x070
#define R_QUEUE_DESC_LOW	0x080
#define R_QUEUE_DRIVER_LOW	0x090
#define R_QUEUE_DEVICE_LOW	0x0a0
#define R_CONFIG		0x100

#define F_VERSION_1		(1ULL << VIRTIO_F_VERSION_1)

#define DRV_MAX_QUEUES		4
#define DRV_QBASE(q)		(0x10000 + (q) * 0x10000)
#define DRV_AVAIL_OFF		0x4000
#define DRV_USED_OFF		0x8000

struct fake_driver {
	uint8_t *ram;
	uint64_t ram_size;
	struct guest_mem gm;
	struct virtio_dev *d;		/* the device the registers go to */
	unsigned qsize;			/* of every queue, as last set up */
	uint16_t avail_idx[DRV_MAX_QUEUES];	/* next avail->idx this driver publishes */
	uint16_t used_seen[DRV_MAX_QUEUES];	/* used elements already taken */
	unsigned sent[DRV_MAX_QUEUES];	/* buffers posted through drv_next_slot() */
	unsigned irqs;			/* interrupts the device raised */
};

/* Zeroed, page-aligned RAM of size bytes at guest address 0, described in gm. */
uint8_t *fake_ram(struct guest_mem *gm, uint64_t size);

/* A driver with fresh RAM and no device yet. */
void drv_ram(struct fake_driver *g, uint64_t size);
/* Drive d from now on; its interrupts are counted in g->irqs (drv_irq, ctx g). */
void drv_attach(struct fake_driver *g, struct virtio_dev *d);
void drv_irq(void *ctx, unsigned line);

void drv_write(struct fake_driver *g, uint64_t off, uint32_t v);
uint32_t drv_read(struct fake_driver *g, uint64_t off);

struct virtq_desc *drv_desc(struct fake_driver *g, unsigned q);
uint16_t *drv_avail(struct fake_driver *g, unsigned q);
uint16_t *drv_used(struct fake_driver *g, unsigned q);

/* Reset the device, then clear RAM and the driver's ring indexes. */
void drv_reset(struct fake_driver *g);
/* ACKNOWLEDGE, DRIVER, the features and FEATURES_OK: whether the device kept FEATURES_OK. */
bool drv_features(struct fake_driver *g, uint64_t features);
/* Queues 0 to nr-1 with qsize entries each at DRV_QBASE, made ready. */
void drv_queues(struct fake_driver *g, unsigned nr, unsigned qsize);
/* From reset to DRIVER_OK; fails the test if the features are refused. */
void drv_start(struct fake_driver *g, uint64_t features, unsigned nr, unsigned qsize);
/* drv_reset(), then drv_start(). */
void drv_init(struct fake_driver *g, uint64_t features, unsigned nr, unsigned qsize);

/* Put head in the next avail slot without telling the device... */
void drv_offer(struct fake_driver *g, unsigned q, uint16_t head);
/* ...then publish avail->idx and notify. */
void drv_kick(struct fake_driver *g, unsigned q);
void drv_post(struct fake_driver *g, unsigned q, uint16_t head);
/* Descriptor i as one buffer of len bytes at gpa (flags VIRTQ_DESC_F_WRITE if the device
 * fills it), posted. */
void drv_post_buf(struct fake_driver *g, unsigned q, uint16_t i, uint64_t gpa, uint32_t len,
		  uint16_t flags);

uint16_t drv_used_idx(struct fake_driver *g, unsigned q);
/* Take the next used element of queue q; false if none came within ms. */
bool drv_next_used(struct fake_driver *g, unsigned q, struct virtq_used_elem *e, long ms);
/*
 * The slot for the next buffer of a queue filled in order (a TX queue): with every slot out,
 * waits up to ms for the device to give the oldest back.  Counts the buffer as sent.
 */
uint16_t drv_next_slot(struct fake_driver *g, unsigned q, long ms);

/*
 * Restore d (paused, or without threads) from the bytes virtio_save() wrote: false with the
 * reader's reason in msg if it refuses them.
 */
bool restore_dev(struct virtio_dev *d, const struct sbuf *b, char *msg, size_t n);

long ms_since(const struct timespec *t0);

#endif
