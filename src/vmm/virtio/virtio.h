/*
 * virtio.h - a virtio device as the transport sees it: an ops table plus the generic state
 * (status, features, queues, interrupt status) that every device shares.
 *
 * A device file (blk.c, rng.c, ...) holds its own state struct embedding struct virtio_dev and a
 * const struct virtio_dev_ops; it needs nothing from the rest of the VMM but this header and
 * queue.h.  The transport (mmio.c) owns register decoding and calls the ops.
 */
#ifndef KILN_VIRTIO_H
#define KILN_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../guest_mem.h"
#include "queue.h"

#define VIRTIO_MAX_QUEUES	8

#define VIRTIO_ID_NET		1
#define VIRTIO_ID_BLOCK		2
#define VIRTIO_ID_RNG		4
#define VIRTIO_ID_VSOCK		19

#define VIRTIO_F_VERSION_1	32

/* Device status bits (virtio 1.2 2.1) */
#define VIRTIO_STATUS_ACKNOWLEDGE	1
#define VIRTIO_STATUS_DRIVER		2
#define VIRTIO_STATUS_DRIVER_OK		4
#define VIRTIO_STATUS_FEATURES_OK	8
#define VIRTIO_STATUS_NEEDS_RESET	64
#define VIRTIO_STATUS_FAILED		128

/* Interrupt status bits (virtio 1.2 4.2.2) */
#define VIRTIO_INT_USED		1
#define VIRTIO_INT_CONFIG	2

struct virtio_dev;
struct sbuf;
struct sreader;

struct virtio_dev_ops {
	const char *name;
	uint32_t device_id;
	unsigned nr_queues;
	uint16_t queue_max;
	/* Copy len bytes of device configuration at offset into data (bounds already checked). */
	void (*read_config)(struct virtio_dev *d, uint64_t offset, void *data, unsigned len);
	unsigned config_size;
	/* The driver notified queue q; called with d->lock held, only once DRIVER_OK. */
	void (*notify)(struct virtio_dev *d, unsigned q);
	/* The driver reset the device; queues are already cleared.  Optional. */
	void (*reset)(struct virtio_dev *d);

	/*
	 * Snapshots, all optional and all called with d->lock held.  save appends the device's
	 * own state (beyond the transport's); restore reads exactly those bytes (sr_end) and checks
	 * every field before applying any, false with the reason in r; without restore, the saved
	 * state must be empty.
	 * pause(true) stops device threads from touching guest memory or raising interrupts until
	 * pause(false); a device without threads of its own needs none.
	 */
	void (*save)(struct virtio_dev *d, struct sbuf *b);
	bool (*restore)(struct virtio_dev *d, struct sreader *r);
	void (*pause)(struct virtio_dev *d, bool pause);
};

typedef void (*virtio_irq_fn)(void *ctx, unsigned irq);

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	const struct guest_mem *mem;
	uint64_t features;		/* device-specific feature bits offered, set at creation */
	pthread_mutex_t lock;
	unsigned irq;
	virtio_irq_fn raise_irq;	/* edge on the device's interrupt line */
	void *irq_ctx;

	/* transport registers */
	uint32_t status;
	uint32_t device_features_sel, driver_features_sel;
	uint64_t driver_features;
	uint32_t queue_sel;
	uint32_t interrupt_status;
	struct virtq vq[VIRTIO_MAX_QUEUES];
};

void virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops,
		     const struct guest_mem *mem, uint64_t features);

/* Tell the driver that queue q has used buffers (interrupt unless it asked for none). */
void virtio_notify_used(struct virtio_dev *d, unsigned q);

/* The guest broke a queue: stop using the device until the driver resets it. */
void virtio_set_needs_reset(struct virtio_dev *d);

/* Transport entry points (mmio.c). */
void virtio_mmio_read(void *dev, uint64_t offset, void *data, unsigned len);
void virtio_mmio_write(void *dev, uint64_t offset, const void *data, unsigned len);

/*
 * Snapshots (mmio.c): transport registers, every queue's layout and indices, then the device's
 * own bytes.  virtio_restore() validates like the transport validates a driver: rings must lie
 * in guest RAM, sizes within the device's maximum, features among those offered; false with
 * the reason in r, the device untouched in its transport registers if so.
 */
void virtio_save(struct virtio_dev *d, struct sbuf *b);
bool virtio_restore(struct virtio_dev *d, struct sreader *r);
void virtio_pause(struct virtio_dev *d, bool pause);

#endif
