/*
 * mmio.c - the virtio-mmio transport, version 2 (virtio 1.2 section 4.2.2).
 *
 * Register writes are guest input: sizes, selectors and queue numbers are range-checked, queue
 * registers are frozen while a queue is live, FEATURES_OK is refused for features we never
 * offered, and a queue only goes live if its rings lie in guest RAM (virtq_activate).
 */
#include <string.h>

#include "../../common/log.h"
#include "virtio.h"

#define REG_MAGIC		0x000
#define REG_VERSION		0x004
#define REG_DEVICE_ID		0x008
#define REG_VENDOR_ID		0x00c
#define REG_DEVICE_FEATURES	0x010
#define REG_DEVICE_FEATURES_SEL	0x014
#define REG_DRIVER_FEATURES	0x020
#define REG_DRIVER_FEATURES_SEL	0x024
#define REG_QUEUE_SEL		0x030
#define REG_QUEUE_NUM_MAX	0x034
#define REG_QUEUE_NUM		0x038
#define REG_QUEUE_READY		0x044
#define REG_QUEUE_NOTIFY	0x050
#define REG_INTERRUPT_STATUS	0x060
#define REG_INTERRUPT_ACK	0x064
#define REG_STATUS		0x070
#define REG_QUEUE_DESC_LOW	0x080
#define REG_QUEUE_DESC_HIGH	0x084
#define REG_QUEUE_DRIVER_LOW	0x090
#define REG_QUEUE_DRIVER_HIGH	0x094
#define REG_QUEUE_DEVICE_LOW	0x0a0
#define REG_QUEUE_DEVICE_HIGH	0x0a4
#define REG_CONFIG_GENERATION	0x0fc
#define REG_CONFIG		0x100

#define MMIO_MAGIC		0x74726976	/* "virt" */
#define MMIO_VERSION		2
#define VENDOR_ID		0x4e4c494b	/* "KILN" */

void virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops,
		     const struct guest_mem *mem, uint64_t features)
{
	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	d->ops = ops;
	d->mem = mem;
	d->features = features;
}

static uint64_t offered_features(const struct virtio_dev *d)
{
	return d->features | (1ULL << VIRTIO_F_VERSION_1);
}

static struct virtq *selected_queue(struct virtio_dev *d)
{
	return d->queue_sel < d->ops->nr_queues ? &d->vq[d->queue_sel] : NULL;
}

static void device_reset(struct virtio_dev *d)
{
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		virtq_reset(&d->vq[i]);
	d->status = 0;
	d->driver_features = 0;
	d->device_features_sel = d->driver_features_sel = 0;
	d->queue_sel = 0;
	d->interrupt_status = 0;
	if (d->ops->reset)
		d->ops->reset(d);
}

void virtio_notify_used(struct virtio_dev *d, unsigned q)
{
	if (!virtq_should_notify(&d->vq[q]))
		return;
	d->interrupt_status |= VIRTIO_INT_USED;
	d->raise_irq(d->irq_ctx, d->irq);
}

void virtio_set_needs_reset(struct virtio_dev *d)
{
	if (d->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	log_warn("virtio-%s: guest driver broke a virtqueue; device needs reset", d->ops->name);
	d->status |= VIRTIO_STATUS_NEEDS_RESET;
	d->interrupt_status |= VIRTIO_INT_CONFIG;
	d->raise_irq(d->irq_ctx, d->irq);
}

static uint32_t read_reg(struct virtio_dev *d, uint64_t off)
{
	struct virtq *vq = selected_queue(d);

	switch (off) {
	case REG_MAGIC: return MMIO_MAGIC;
	case REG_VERSION: return MMIO_VERSION;
	case REG_DEVICE_ID: return d->ops->device_id;
	case REG_VENDOR_ID: return VENDOR_ID;
	case REG_DEVICE_FEATURES:
		if (d->device_features_sel > 1)
			return 0;
		return (uint32_t)(offered_features(d) >> (32 * d->device_features_sel));
	case REG_QUEUE_NUM_MAX: return vq ? d->ops->queue_max : 0;
	case REG_QUEUE_READY: return vq ? vq->ready : 0;
	case REG_INTERRUPT_STATUS: return d->interrupt_status;
	case REG_STATUS: return d->status;
	case REG_CONFIG_GENERATION: return 0;
	default: return 0;
	}
}

static void set_features_ok(struct virtio_dev *d, uint32_t status)
{
	uint64_t f = d->driver_features;

	/* Refuse (leave FEATURES_OK clear) for unknown bits or a legacy-only driver. */
	if ((f & ~offered_features(d)) || !(f & (1ULL << VIRTIO_F_VERSION_1)))
		status &= ~VIRTIO_STATUS_FEATURES_OK;
	d->status = status;
}

static void write_status(struct virtio_dev *d, uint32_t v)
{
	if (v == 0) {
		device_reset(d);
		return;
	}
	v &= 0xff;
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(d->status & VIRTIO_STATUS_FEATURES_OK)) {
		set_features_ok(d, v);
		return;
	}
	/* The driver may only add bits; NEEDS_RESET is ours to set. */
	d->status = (d->status & VIRTIO_STATUS_NEEDS_RESET) | (v & ~VIRTIO_STATUS_NEEDS_RESET) |
		    (d->status & VIRTIO_STATUS_FEATURES_OK);
}

static void set_addr_half(uint64_t *addr, uint32_t v, bool high)
{
	if (high)
		*addr = (*addr & 0xffffffffULL) | ((uint64_t)v << 32);
	else
		*addr = (*addr & ~0xffffffffULL) | v;
}

static void write_queue_reg(struct virtio_dev *d, struct virtq *vq, uint64_t off, uint32_t v)
{
	if (off == REG_QUEUE_READY) {
		if (!v) {
			vq->ready = false;
			return;
		}
		if (!vq->ready && virtq_activate(vq, d->mem)) {
			log_warn("virtio-%s: queue %u rejected (size %u, rings outside guest RAM "
				 "or misaligned)", d->ops->name, d->queue_sel, vq->size);
			virtio_set_needs_reset(d);
		}
		return;
	}
	if (vq->ready)
		return;			/* a live queue's layout is frozen */
	switch (off) {
	case REG_QUEUE_NUM: vq->size = v <= d->ops->queue_max ? v : 0; break;
	case REG_QUEUE_DESC_LOW: set_addr_half(&vq->desc_gpa, v, false); break;
	case REG_QUEUE_DESC_HIGH: set_addr_half(&vq->desc_gpa, v, true); break;
	case REG_QUEUE_DRIVER_LOW: set_addr_half(&vq->avail_gpa, v, false); break;
	case REG_QUEUE_DRIVER_HIGH: set_addr_half(&vq->avail_gpa, v, true); break;
	case REG_QUEUE_DEVICE_LOW: set_addr_half(&vq->used_gpa, v, false); break;
	case REG_QUEUE_DEVICE_HIGH: set_addr_half(&vq->used_gpa, v, true); break;
	}
}

static void queue_notify(struct virtio_dev *d, uint32_t q)
{
	if (q >= d->ops->nr_queues || !d->vq[q].ready ||
	    !(d->status & VIRTIO_STATUS_DRIVER_OK) || (d->status & VIRTIO_STATUS_NEEDS_RESET))
		return;
	d->ops->notify(d, q);
}

static void write_reg(struct virtio_dev *d, uint64_t off, uint32_t v)
{
	struct virtq *vq = selected_queue(d);

	switch (off) {
	case REG_DEVICE_FEATURES_SEL: d->device_features_sel = v; return;
	case REG_DRIVER_FEATURES_SEL: d->driver_features_sel = v; return;
	case REG_DRIVER_FEATURES:
		if (d->driver_features_sel <= 1 && !(d->status & VIRTIO_STATUS_FEATURES_OK))
			set_addr_half(&d->driver_features, v, d->driver_features_sel == 1);
		return;
	case REG_QUEUE_SEL: d->queue_sel = v; return;
	case REG_QUEUE_NOTIFY: queue_notify(d, v); return;
	case REG_INTERRUPT_ACK: d->interrupt_status &= ~v; return;
	case REG_STATUS: write_status(d, v); return;
	case REG_QUEUE_NUM:
	case REG_QUEUE_READY:
	case REG_QUEUE_DESC_LOW:
	case REG_QUEUE_DESC_HIGH:
	case REG_QUEUE_DRIVER_LOW:
	case REG_QUEUE_DRIVER_HIGH:
	case REG_QUEUE_DEVICE_LOW:
	case REG_QUEUE_DEVICE_HIGH:
		if (vq)
			write_queue_reg(d, vq, off, v);
		return;
	}
}

void virtio_mmio_read(void *dev, uint64_t off, void *data, unsigned len)
{
	struct virtio_dev *d = dev;

	pthread_mutex_lock(&d->lock);
	if (off >= REG_CONFIG) {
		uint64_t coff = off - REG_CONFIG;

		memset(data, 0, len);
		if (coff < d->ops->config_size && len <= d->ops->config_size - coff)
			d->ops->read_config(d, coff, data, len);
	} else if (len == 4 && !(off & 3)) {
		uint32_t v = read_reg(d, off);

		memcpy(data, &v, 4);
	} else {
		memset(data, 0, len);	/* registers are 32-bit only (4.2.2.2) */
	}
	pthread_mutex_unlock(&d->lock);
}

void virtio_mmio_write(void *dev, uint64_t off, const void *data, unsigned len)
{
	struct virtio_dev *d = dev;
	uint32_t v;

	/* Device configuration is read-only for every device we have. */
	if (off >= REG_CONFIG || len != 4 || (off & 3))
		return;
	memcpy(&v, data, 4);
	pthread_mutex_lock(&d->lock);
	write_reg(d, off, v);
	pthread_mutex_unlock(&d->lock);
}
