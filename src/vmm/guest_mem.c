/*
 * guest_mem.c - bounds-checked guest-physical to host translation (see guest_mem.h).
 */
#include "guest_mem.h"

#include <string.h>

void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < gm->nr; i++) {
		const struct gm_region *r = &gm->region[i];

		if (gpa < r->gpa)
			continue;
		/* Written so that no expression can wrap: offset <= size, then len <= size - offset. */
		uint64_t off = gpa - r->gpa;

		if (off > r->size || len > r->size - off)
			continue;
		return r->host + off;
	}
	return NULL;
}

int gm_read(const struct guest_mem *gm, void *dst, uint64_t gpa, uint64_t len)
{
	void *src = gm_ptr(gm, gpa, len);

	if (!src)
		return -1;
	memcpy(dst, src, len);
	return 0;
}

int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = gm_ptr(gm, gpa, len);

	if (!dst)
		return -1;
	memcpy(dst, src, len);
	return 0;
}
