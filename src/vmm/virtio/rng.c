/*
 * rng.c - virtio-rng (virtio 1.2 section 5.4): fills each device-writable buffer the guest
 * offers with bytes from the host's getrandom().
 */
#include <stdlib.h>
#include <sys/random.h>

#include "devices.h"

#define RNG_QUEUE_SIZE		64
#define RNG_MAX_PER_REQUEST	(64 * 1024)

struct virtio_rng {
	struct virtio_dev vdev;
	struct virtq_chain chain;
};

static uint32_t fill(const struct virtq_chain *c)
{
	uint32_t done = 0;

	for (unsigned i = 0; i < c->nr_in && done < RNG_MAX_PER_REQUEST; i++) {
		uint32_t want = c->in[i].len;

		if (want > RNG_MAX_PER_REQUEST - done)
			want = RNG_MAX_PER_REQUEST - done;
		ssize_t n = getrandom(c->in[i].addr, want, 0);

		if (n <= 0)
			break;
		done += n;
		if ((uint32_t)n < want)
			break;
	}
	return done;
}

static void rng_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_rng *r = (struct virtio_rng *)d;
	struct virtq *vq = &d->vq[q];
	bool used = false;
	int got;

	while ((got = virtq_pop(vq, d->mem, &r->chain)) > 0) {
		virtq_push(vq, r->chain.head, fill(&r->chain));
		used = true;
	}
	if (got < 0)
		virtio_set_needs_reset(d);
	if (used)
		virtio_notify_used(d, q);
}

static void rng_read_config(struct virtio_dev *d, uint64_t off, void *data, unsigned len)
{
	(void)d, (void)off, (void)data, (void)len;
}

static const struct virtio_dev_ops rng_ops = {
	.name = "rng",
	.device_id = VIRTIO_ID_RNG,
	.nr_queues = 1,
	.queue_max = RNG_QUEUE_SIZE,
	.read_config = rng_read_config,
	.config_size = 0,
	.notify = rng_notify,
};

struct virtio_dev *virtio_rng_create(const struct guest_mem *mem)
{
	struct virtio_rng *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	virtio_dev_init(&r->vdev, &rng_ops, mem, 0);
	return &r->vdev;
}
