/*
 * devices.h - constructors of the virtio devices kiln-vmm can attach.  Each returns the generic
 * struct virtio_dev that the transport drives; the device's own state stays private to its file.
 */
#ifndef KILN_VIRTIO_DEVICES_H
#define KILN_VIRTIO_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio.h"

/* A raw disk image; -1 with a reason in err if it cannot be opened or locked. */
struct virtio_dev *virtio_blk_create(const struct guest_mem *mem, const char *path, bool read_only,
				     const char *serial, char *err, size_t errlen);

/* Entropy from the host's getrandom(). */
struct virtio_dev *virtio_rng_create(const struct guest_mem *mem);

/*
 * Hybrid vsock (vsock.c): guest CID cid (3 to 2^32 - 2), host side on the unix socket path, which
 * is created (a stale socket there is removed first) and served by the device's own I/O thread.
 * NULL with a reason in err if the CID or path is unusable.
 */
struct virtio_dev *virtio_vsock_create(const struct guest_mem *mem, uint32_t cid, const char *path,
				       char *err, size_t errlen);

/*
 * Post VIRTIO_VSOCK_EVENT_TRANSPORT_RESET to the guest and drop every stream (the guest drops
 * its own on the event; its listening sockets survive).  For snapshots.  Any thread; 0, or -1 if
 * the driver had no event buffer ready (the streams are dropped all the same).
 */
int virtio_vsock_transport_reset(struct virtio_dev *d);

#endif
