/*
 * mmio.c - the virtio-mmio transport, version 2 (virtio 1.2 section 4.2.2).
 *
 * Register writes are guest input: sizes, selectors and queue numbers are range-checked, queue
 * registers are frozen while a queue is live, FEATURES_OK is refused for features we never
 * offered, and a queue only goes live if its rings lie in guest RAM (virtq_activate).
 */
#include <string.h>

#include "../../common/log.h"
#include "../snapshot/format.h"
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

/* ---- snapshots ---- */

static void save_queue(struct sbuf *b, const struct virtq *vq)
{
	sbuf_u32(b, vq->size);
	sbuf_u8(b, vq->ready);
	sbuf_u64(b, vq->desc_gpa);
	sbuf_u64(b, vq->avail_gpa);
	sbuf_u64(b, vq->used_gpa);
	sbuf_u32(b, vq->last_avail);
	sbuf_u32(b, vq->used_idx);
	sbuf_u8(b, vq->broken);
}

void virtio_save(struct virtio_dev *d, struct sbuf *b)
{
	struct sbuf own = { 0 };

	pthread_mutex_lock(&d->lock);
	sbuf_u32(b, d->status);
	sbuf_u32(b, d->device_features_sel);
	sbuf_u32(b, d->driver_features_sel);
	sbuf_u64(b, d->driver_features);
	sbuf_u32(b, d->queue_sel);
	sbuf_u32(b, d->interrupt_status);
	sbuf_u32(b, d->ops->nr_queues);
	for (unsigned i = 0; i < d->ops->nr_queues; i++)
		save_queue(b, &d->vq[i]);
	if (d->ops->save)
		d->ops->save(d, &own);
	pthread_mutex_unlock(&d->lock);
	b->failed |= own.failed;
	sbuf_blob(b, own.data, own.len);
	sbuf_free(&own);
}

/* One queue into vq, checked as virtq_activate checks a driver's QueueReady. */
static bool restore_queue(struct virtio_dev *d, struct sreader *r, unsigned q, struct virtq *vq)
{
	uint32_t size = sr_u32(r, "queue size");
	bool ready = sr_bool(r, "queue ready");
	uint32_t last_avail, used_idx;

	memset(vq, 0, sizeof(*vq));
	vq->desc_gpa = sr_u64(r, "descriptor table address");
	vq->avail_gpa = sr_u64(r, "available ring address");
	vq->used_gpa = sr_u64(r, "used ring address");
	last_avail = sr_u32(r, "queue last_avail");
	used_idx = sr_u32(r, "queue used_idx");
	vq->broken = sr_bool(r, "queue broken flag");
	if (!sr_ok(r))
		return false;
	if (size > d->ops->queue_max)
		return sr_fail(r, "virtio-%s queue %u: size %u above %u", d->ops->name, q, size,
			       d->ops->queue_max);
	if (last_avail > UINT16_MAX || used_idx > UINT16_MAX)
		return sr_fail(r, "virtio-%s queue %u: ring index out of range", d->ops->name, q);
	vq->size = size;
	if (!ready)
		return true;

	bool broken = vq->broken;

	if (virtq_activate(vq, d->mem))
		return sr_fail(r, "virtio-%s queue %u: rings outside guest RAM, misaligned or "
			       "size %u not a power of two", d->ops->name, q, size);
	vq->last_avail = last_avail;
	vq->used_idx = used_idx;
	vq->broken = broken;
	return true;
}

struct transport_regs {
	uint32_t status, device_features_sel, driver_features_sel, queue_sel, interrupt_status;
	uint64_t driver_features;
};

static bool restore_regs(struct virtio_dev *d, struct sreader *r, struct transport_regs *t)
{
	t->status = sr_u32(r, "device status");
	t->device_features_sel = sr_u32(r, "device features select");
	t->driver_features_sel = sr_u32(r, "driver features select");
	t->driver_features = sr_u64(r, "driver features");
	t->queue_sel = sr_u32(r, "queue select");
	t->interrupt_status = sr_u32(r, "interrupt status");
	if (!sr_ok(r))
		return false;
	if (t->status & ~0xffu)
		return sr_fail(r, "virtio-%s: status %#x out of range", d->ops->name, t->status);
	if (t->interrupt_status & ~(uint32_t)(VIRTIO_INT_USED | VIRTIO_INT_CONFIG))
		return sr_fail(r, "virtio-%s: interrupt status %#x", d->ops->name,
			       t->interrupt_status);
	/* The same rule as set_features_ok(): never a feature we did not offer. */
	if ((t->status & VIRTIO_STATUS_FEATURES_OK) &&
	    ((t->driver_features & ~offered_features(d)) ||
	     !(t->driver_features & (1ULL << VIRTIO_F_VERSION_1))))
		return sr_fail(r, "virtio-%s: driver features %#llx were never offered",
			       d->ops->name, (unsigned long long)t->driver_features);
	return true;
}

/* The device's own bytes, the last field of its state; with d->lock held. */
static bool restore_own(struct virtio_dev *d, struct sreader *r)
{
	struct sreader own;
	uint32_t len;
	const void *p = sr_blob(r, 0, UINT32_MAX, &len, "device state");

	if (!sr_end(r, d->ops->name))
		return false;
	sr_init(&own, p, len, r->e);
	if (d->ops->restore && !d->ops->restore(d, &own))
		return false;
	return sr_end(&own, d->ops->name);
}

bool virtio_restore(struct virtio_dev *d, struct sreader *r)
{
	struct virtq vq[VIRTIO_MAX_QUEUES];
	struct transport_regs t;
	uint32_t nq;
	bool ok = false;

	pthread_mutex_lock(&d->lock);
	if (!restore_regs(d, r, &t))
		goto out;
	nq = sr_u32(r, "queue count");
	if (sr_ok(r) && nq != d->ops->nr_queues) {
		sr_fail(r, "virtio-%s: %u queues saved, the device has %u", d->ops->name, nq,
			d->ops->nr_queues);
		goto out;
	}
	for (unsigned i = 0; i < nq && sr_ok(r); i++)
		restore_queue(d, r, i, &vq[i]);
	if (!sr_ok(r) || !restore_own(d, r))
		goto out;
	d->status = t.status;
	d->device_features_sel = t.device_features_sel;
	d->driver_features_sel = t.driver_features_sel;
	d->driver_features = t.driver_features;
	d->queue_sel = t.queue_sel;
	d->interrupt_status = t.interrupt_status;
	memcpy(d->vq, vq, nq * sizeof(vq[0]));
	ok = true;
out:
	pthread_mutex_unlock(&d->lock);
	return ok;
}

void virtio_pause(struct virtio_dev *d, bool pause)
{
	if (!d->ops->pause)
		return;
	pthread_mutex_lock(&d->lock);
	d->ops->pause(d, pause);
	pthread_mutex_unlock(&d->lock);
}
