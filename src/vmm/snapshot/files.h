/*
 * files.h - the bulky files of a snapshot: guest RAM and copies of writable disks, both sparse.
 *
 * The memory file is guest RAM region after region (the layout vm_create() maps back), with
 * every all-zero page left as a hole: an idle guest's snapshot costs disk space only for the
 * pages it uses.  Disk copies are reflinks (FICLONE) where the filesystem shares extents, or
 * copies of the data extents only (SEEK_DATA/SEEK_HOLE), holes left holes.
 */
#ifndef KILN_SNAPSHOT_FILES_H
#define KILN_SNAPSHOT_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "../guest_mem.h"

/* Create path (it must not exist) holding all of gm; -1 with a reason in err. */
int snap_write_memory(const struct guest_mem *gm, const char *path, char *err, size_t errlen);

/* Disk copies: sparse_copy_file() in src/common/sparse_file.h. */

#endif
