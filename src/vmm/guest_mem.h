/*
 * guest_mem.h - guest physical memory as the VMM sees it, and the one place that turns a
 * guest-physical address into a host pointer.
 *
 * Every address the guest hands us (virtqueue rings, descriptors, buffers) is hostile input.
 * Device code never does pointer arithmetic on guest addresses itself: it asks gm_ptr() for a
 * pointer to a whole [gpa, gpa+len) range, which succeeds only if the range lies entirely inside
 * one RAM region, with every addition checked for wrap-around.
 */
#ifndef KILN_GUEST_MEM_H
#define KILN_GUEST_MEM_H

#include <stddef.h>
#include <stdint.h>

#define GM_MAX_REGIONS 4

struct gm_region {
	uint64_t gpa;		/* guest-physical start */
	uint64_t size;		/* bytes */
	uint8_t *host;		/* where it is mapped in this process */
};

struct guest_mem {
	struct gm_region region[GM_MAX_REGIONS];
	unsigned nr;
	uint64_t total;		/* bytes of RAM over all regions */
};

/* Host pointer for [gpa, gpa+len), or NULL when any byte of it is not guest RAM. */
void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Copy to/from guest memory; -1 when the range is not entirely guest RAM. */
int gm_read(const struct guest_mem *gm, void *dst, uint64_t gpa, uint64_t len);
int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len);

#endif
