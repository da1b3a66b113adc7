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

/*
 * virtio-net (net.c) on a tap or any descriptor carrying one Ethernet frame per read/write.
 * No offloads: frames are at most NET_MAX_FRAME bytes (MTU 1500, Ethernet header, one VLAN tag).
 */
#define NET_HDR_SIZE	12		/* struct virtio_net_hdr_v1 */
#define NET_ETH_HLEN	14
#define NET_MTU		1500
#define NET_MAX_FRAME	(NET_MTU + NET_ETH_HLEN + 4)

struct net_rate {
	uint64_t bytes, pkts;		/* per second; 0 = unlimited */
};

struct net_params {
	int fd;				/* >= 0: use this descriptor (not closed by us) ... */
	const char *tap;		/* ... else open this tap device */
	uint8_t mac[6];
	struct net_rate rx, tx;		/* rx: host -> guest; tx: guest -> host */
	const char *pcap;		/* NULL: no capture */
	uint64_t pcap_max;
	bool pcap_resume;		/* go on with the capture in pcap (a restore) */
};

/* Counters since creation; dropped = malformed or oversize, errors = host write failed. */
struct net_stats {
	uint64_t rx_frames, rx_bytes, rx_dropped;
	uint64_t tx_frames, tx_bytes, tx_dropped, tx_errors;
};

struct virtio_dev *virtio_net_create(const struct guest_mem *mem, const struct net_params *p,
				     char *err, size_t errlen);
void virtio_net_stats(struct virtio_dev *d, struct net_stats *s);

/* Attach to the existing tap device name (IFF_TAP | IFF_NO_PI); -1 with a reason in err. */
int net_tap_open(const char *name, char *err, size_t errlen);

#endif
