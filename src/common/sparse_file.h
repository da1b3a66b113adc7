/*
 * sparse_file.h - write and copy files leaving their all-zero pages as holes: snapshot memory
 * files (most of an idle guest's RAM is zeros) and disk images (mostly unused blocks).
 */
#ifndef KILN_SPARSE_FILE_H
#define KILN_SPARSE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Write len bytes at off, skipping whole zero pages (left as holes); -1 with errno set. */
int sparse_write(int fd, const uint8_t *p, uint64_t len, uint64_t off);

/*
 * Create dst (it must not exist, mode 0600) as a copy of src: a reflink (FICLONE) where the
 * filesystem shares extents (btrfs, XFS), else a copy of the data extents only
 * (SEEK_DATA/SEEK_HOLE) with zero pages left as holes.  durable: fdatasync before returning.
 * -1 with a reason in err, and dst may be left behind partly written.
 */
int sparse_copy_file(const char *src, const char *dst, bool durable, char *err, size_t errlen);

#endif
