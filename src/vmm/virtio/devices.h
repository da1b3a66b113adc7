/*
 * devices.h - constructors of the virtio devices kiln-vmm can attach.  Each returns the generic
 * struct virtio_dev that the transport drives; the device's own state stays private to its file.
 */
#ifndef KILN_VIRTIO_DEVICES_H
#define KILN_VIRTIO_DEVICES_H

#include <stdbool.h>
#include <stddef.h>

#include "virtio.h"

/* A raw disk image; -1 with a reason in err if it cannot be opened or locked. */
struct virtio_dev *virtio_blk_create(const struct guest_mem *mem, const char *path, bool read_only,
				     const char *serial, char *err, size_t errlen);

/* Entropy from the host's getrandom(). */
struct virtio_dev *virtio_rng_create(const struct guest_mem *mem);

#endif
