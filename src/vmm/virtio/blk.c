/*
 * blk.c - virtio-blk (virtio 1.2 section 5.2) over a raw image file.
 *
 * Requests are served synchronously on the vCPU thread that notified the queue.  A request's
 * sector range is checked against the capacity before any I/O; a malformed request (no room for
 * the header or the status byte) is completed with an error, never trusted.  The image is locked
 * (shared when read-only, exclusive otherwise) so two VMs cannot corrupt one disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../snapshot/format.h"
#include "devices.h"

#define BLK_F_SEG_MAX		2
#define BLK_F_RO		5
#define BLK_F_BLK_SIZE		6
#define BLK_F_FLUSH		9

#define BLK_T_IN		0
#define BLK_T_OUT		1
#define BLK_T_FLUSH		4
#define BLK_T_GET_ID		8

#define BLK_S_OK		0
#define BLK_S_IOERR		1
#define BLK_S_UNSUPP		2

#define SECTOR_SIZE		512
#define BLK_QUEUE_SIZE		256
#define BLK_ID_BYTES		20

struct blk_req_header {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_config {
	uint64_t capacity;		/* in 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;
} __attribute__((packed));

struct virtio_blk {
	struct virtio_dev vdev;		/* first: the transport hands us this pointer */
	int fd;
	bool read_only;
	uint64_t sectors;
	char id[BLK_ID_BYTES];
	struct blk_config config;
	struct virtq_chain chain;
	struct iovec iov[VIRTQ_MAX_SIZE];
};

static void blk_read_config(struct virtio_dev *d, uint64_t off, void *data, unsigned len)
{
	struct virtio_blk *b = (struct virtio_blk *)d;

	memcpy(data, (uint8_t *)&b->config + off, len);
}

/* preadv/pwritev until done; false on error or end of file. */
static bool full_io(int fd, struct iovec *iov, int n, off_t pos, bool write)
{
	while (n > 0) {
		ssize_t r = write ? pwritev(fd, iov, n, pos) : preadv(fd, iov, n, pos);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		pos += r;
		while (n > 0 && (size_t)r >= iov->iov_len) {
			r -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= r;
		}
	}
	return true;
}

static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	if (bytes % SECTOR_SIZE || sector > b->sectors)
		return false;
	return bytes / SECTOR_SIZE <= b->sectors - sector;
}

static uint8_t do_request(struct virtio_blk *b, const struct blk_req_header *h,
			  uint64_t *written)
{
	const struct virtq_chain *c = &b->chain;
	uint64_t in_data = c->in_len - 1;		/* the last writable byte is the status */
	uint64_t out_data = c->out_len - sizeof(*h);
	int n;

	switch (h->type) {
	case BLK_T_IN:
		if (!in_range(b, h->sector, in_data))
			return BLK_S_IOERR;
		n = virtq_bufs_iov(c->in, c->nr_in, 0, in_data, b->iov);
		if (!full_io(b->fd, b->iov, n, h->sector * SECTOR_SIZE, false))
			return BLK_S_IOERR;
		*written = in_data;
		return BLK_S_OK;
	case BLK_T_OUT:
		if (b->read_only || !in_range(b, h->sector, out_data))
			return BLK_S_IOERR;
		n = virtq_bufs_iov(c->out, c->nr_out, sizeof(*h), out_data, b->iov);
		return full_io(b->fd, b->iov, n, h->sector * SECTOR_SIZE, true) ?
		       BLK_S_OK : BLK_S_IOERR;
	case BLK_T_FLUSH:
		if (b->read_only)
			return BLK_S_OK;
		return fdatasync(b->fd) ? BLK_S_IOERR : BLK_S_OK;
	case BLK_T_GET_ID:
		*written = virtq_chain_write(c, 0, b->id, in_data < BLK_ID_BYTES ? in_data : BLK_ID_BYTES);
		return BLK_S_OK;
	default:
		return BLK_S_UNSUPP;
	}
}

static void blk_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_blk *b = (struct virtio_blk *)d;
	struct virtq *vq = &d->vq[q];
	struct virtq_chain *c = &b->chain;
	bool used = false;
	int r;

	while ((r = virtq_pop(vq, d->mem, c)) > 0) {
		struct blk_req_header h;
		uint64_t written = 0;
		uint8_t status;

		if (c->in_len < 1) {
			virtq_push(vq, c->head, 0);	/* nowhere to report: drop it */
			used = true;
			continue;
		}
		if (virtq_chain_read(c, 0, &h, sizeof(h)) != sizeof(h))
			status = BLK_S_IOERR;
		else
			status = do_request(b, &h, &written);
		virtq_chain_write(c, c->in_len - 1, &status, 1);
		virtq_push(vq, c->head, written + 1);
		used = true;
	}
	if (r < 0)
		virtio_set_needs_reset(d);
	if (used)
		virtio_notify_used(d, q);
}

/* The guest's driver has the capacity and read-only flag cached: a restore must match them. */
static void blk_save(struct virtio_dev *d, struct sbuf *out)
{
	struct virtio_blk *b = (struct virtio_blk *)d;

	sbuf_u64(out, b->sectors);
	sbuf_u8(out, b->read_only);
}

static bool blk_restore(struct virtio_dev *d, struct sreader *r)
{
	struct virtio_blk *b = (struct virtio_blk *)d;
	uint64_t sectors = sr_u64(r, "disk sectors");
	bool read_only = sr_bool(r, "disk read-only flag");

	if (!sr_end(r, "blk"))
		return false;
	if (sectors != b->sectors)
		return sr_fail(r, "disk %.20s has %llu sectors, the guest knows %llu", b->id,
			       (unsigned long long)b->sectors, (unsigned long long)sectors);
	if (read_only != b->read_only)
		return sr_fail(r, "disk %.20s: read-only flag differs from the snapshot's", b->id);
	return true;
}

static const struct virtio_dev_ops blk_ops = {
	.name = "blk",
	.device_id = VIRTIO_ID_BLOCK,
	.nr_queues = 1,
	.queue_max = BLK_QUEUE_SIZE,
	.read_config = blk_read_config,
	.config_size = sizeof(struct blk_config),
	.notify = blk_notify,
	.save = blk_save,
	.restore = blk_restore,
};

struct virtio_dev *virtio_blk_create(const struct guest_mem *mem, const char *path, bool read_only,
				     const char *serial, char *err, size_t errlen)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	struct stat st;

	if (!b) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* A writable path has been resolved already (options, snapshot restore): a symlink
	 * appearing there since is refused rather than followed. */
	b->fd = open(path, (read_only ? O_RDONLY : O_RDWR | O_NOFOLLOW) | O_CLOEXEC);
	if (b->fd < 0 || fstat(b->fd, &st) < 0) {
		snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "disk %s: not a regular file or block device", path);
		goto fail;
	}
	if (flock(b->fd, (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		snprintf(err, errlen, "disk %s: in use by another VM (%s)", path, strerror(errno));
		goto fail;
	}
	if (S_ISBLK(st.st_mode))
		st.st_size = lseek(b->fd, 0, SEEK_END);
	b->read_only = read_only;
	b->sectors = st.st_size / SECTOR_SIZE;
	/* The ID is what the guest sees in /sys/block/vdX/serial: not NUL-terminated if 20 long. */
	memcpy(b->id, serial, strnlen(serial, BLK_ID_BYTES));
	b->config.capacity = b->sectors;
	b->config.seg_max = BLK_QUEUE_SIZE - 2;
	b->config.blk_size = SECTOR_SIZE;
	virtio_dev_init(&b->vdev, &blk_ops, mem,
			(1ULL << BLK_F_SEG_MAX) | (1ULL << BLK_F_BLK_SIZE) | (1ULL << BLK_F_FLUSH) |
			(read_only ? 1ULL << BLK_F_RO : 0));
	return &b->vdev;
fail:
	if (b->fd >= 0)
		close(b->fd);
	free(b);
	return NULL;
}
