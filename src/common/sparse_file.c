/*
 * sparse_file.c - writing and copying files without storing their zeros (see sparse_file.h).
 */
#include "sparse_file.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE		4096
#define COPY_CHUNK	(1 << 20)

static int fail(char *err, size_t errlen, const char *what, const char *path)
{
	snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
	return -1;
}

static bool page_is_zero(const uint8_t *p, uint64_t len)
{
	static const uint8_t zero[PAGE];

	return !memcmp(p, zero, len);
}

static int pwrite_all(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len < COPY_CHUNK ? len : COPY_CHUNK, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int sparse_write(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	uint64_t run = 0;	/* bytes of non-zero pages waiting to be written, ending at i */

	for (uint64_t i = 0; i < len; i += PAGE) {
		uint64_t n = len - i < PAGE ? len - i : PAGE;

		if (!page_is_zero(p + i, n)) {
			run += n;
			continue;
		}
		if (run && pwrite_all(fd, p + i - run, run, off + i - run))
			return -1;
		run = 0;
	}
	return run ? pwrite_all(fd, p + len - run, run, off + len - run) : 0;
}

/* [off, end) of in, which holds data, to the same place in out, zero pages left as holes. */
static int copy_range(int in, int out, uint64_t off, uint64_t end, uint8_t *buf)
{
	while (off < end) {
		size_t want = end - off < COPY_CHUNK ? end - off : COPY_CHUNK;
		ssize_t n = pread(in, buf, want, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -1 : 0;	/* the file shrank: the rest reads as zeros */
		if (sparse_write(out, buf, n, off))
			return -1;
		off += n;
	}
	return 0;
}

/* Walk the data extents of in; a file without SEEK_DATA support is one extent. */
static int copy_extents(int in, int out, uint64_t size)
{
	uint8_t *buf = malloc(COPY_CHUNK);
	uint64_t off = 0;
	int r = 0;

	if (!buf)
		return -1;
	while (off < size && r == 0) {
		off_t data = lseek(in, off, SEEK_DATA);
		off_t hole;

		if (data < 0 && errno == ENXIO)
			break;			/* only a hole is left */
		if (data < 0) {
			r = copy_range(in, out, off, size, buf);
			break;
		}
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > size)
			hole = size;
		r = copy_range(in, out, data, hole, buf);
		off = hole;
	}
	free(buf);
	return r;
}

static int file_size(int fd, uint64_t *size)
{
	struct stat st;
	off_t end;

	if (fstat(fd, &st) < 0)
		return -1;
	if (S_ISREG(st.st_mode)) {
		*size = st.st_size;
		return 0;
	}
	end = lseek(fd, 0, SEEK_END);	/* a block device */
	if (end < 0)
		return -1;
	*size = end;
	return 0;
}

int sparse_copy_file(const char *src, const char *dst, bool durable, char *err, size_t errlen)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	int out = -1;
	uint64_t size;

	if (in < 0 || file_size(in, &size) < 0)
		goto fail_src;
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		goto fail_dst;
	/* A reflink shares the extents (btrfs, XFS): instant, no space used until written. */
	if (ioctl(out, FICLONE, in) < 0 && copy_extents(in, out, size) < 0)
		goto fail_dst;
	close(in);
	if (ftruncate(out, size) < 0 || (durable && fdatasync(out) < 0)) {
		fail(err, errlen, "copying disk to", dst);
		close(out);
		return -1;
	}
	if (close(out) < 0)
		return fail(err, errlen, "copying disk to", dst);
	return 0;
fail_src:
	if (in >= 0)
		close(in);
	return fail(err, errlen, "copying disk", src);
fail_dst:
	fail(err, errlen, "copying disk to", dst);
	close(in);
	if (out >= 0)
		close(out);
	return -1;
}
