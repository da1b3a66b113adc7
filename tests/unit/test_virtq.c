/*
 * test_virtq.c - the split virtqueue walker against a hostile driver: every way a descriptor
 * table, an avail ring or a register value can lie must end in a refused chain and a broken
 * queue, never in a loop or an access outside guest RAM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/vmm/guest_mem.h"
#include "../../src/vmm/virtio/queue.h"
#include "fake_driver.h"

#define RAM_SIZE	(1 << 20)
#define QSIZE		8
#define DESC_GPA	0x1000
#define AVAIL_GPA	0x2000
#define USED_GPA	0x3000

struct fixture {
	uint8_t *ram;
	struct guest_mem gm;
	struct virtq vq;
	struct virtq_chain chain;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->ram = fake_ram(&f->gm, RAM_SIZE);
	f->vq.size = QSIZE;
	f->vq.desc_gpa = DESC_GPA;
	f->vq.avail_gpa = AVAIL_GPA;
	f->vq.used_gpa = USED_GPA;
	assert_int_equal(virtq_activate(&f->vq, &f->gm), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->ram);
	free(f);
	return 0;
}

static void set_desc(struct fixture *f, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { addr, len, flags, next };

	memcpy(f->ram + DESC_GPA + 16 * i, &d, sizeof(d));
}

/* Publish head in the next avail slot and bump avail->idx by one. */
static void offer(struct fixture *f, uint16_t head)
{
	uint16_t *avail = (uint16_t *)(f->ram + AVAIL_GPA);

	avail[2 + (avail[1] % QSIZE)] = head;
	avail[1]++;
}

static void test_good_chain(void **state)
{
	struct fixture *f = *state;

	set_desc(f, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, 0x20000, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(f, 2, 0x30000, 1, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain), 1);
	assert_int_equal(f->chain.head, 0);
	assert_int_equal(f->chain.nr_out, 1);
	assert_int_equal(f->chain.nr_in, 2);
	assert_ptr_equal(f->chain.out[0].addr, f->ram + 0x10000);
	assert_int_equal(f->chain.in_len, 513);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain), 0);	/* nothing more */

	virtq_push(&f->vq, 0, 513);
	uint16_t *used = (uint16_t *)(f->ram + USED_GPA);
	struct virtq_used_elem e;

	memcpy(&e, f->ram + USED_GPA + 4, sizeof(e));
	assert_int_equal(used[1], 1);
	assert_int_equal(e.id, 0);
	assert_int_equal(e.len, 513);
}

static void expect_broken(struct fixture *f)
{
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain), -1);
	assert_true(f->vq.broken);
	/* A broken queue stays broken: the next pop refuses without reading the rings again. */
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain), -1);
}

static void test_loop_two(void **state)
{
	struct fixture *f = *state;

	set_desc(f, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, 0x10000, 16, VIRTQ_DESC_F_NEXT, 0);
	offer(f, 0);
	expect_broken(f);
}

static void test_self_loop(void **state)
{
	struct fixture *f = *state;

	set_desc(f, 3, 0x10000, 16, VIRTQ_DESC_F_NEXT, 3);
	offer(f, 3);
	expect_broken(f);
}

static void test_full_length_chain_is_fine(void **state)
{
	struct fixture *f = *state;

	for (unsigned i = 0; i < QSIZE; i++)
		set_desc(f, i, 0x10000 + i * 0x100, 0x100,
			 i + 1 < QSIZE ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain), 1);
	assert_int_equal(f->chain.nr_out, QSIZE);
	assert_int_equal(f->chain.out_len, QSIZE * 0x100);
}

static void test_addr_out_of_ram(void **state)
{
	struct fixture *f = *state;

	set_desc(f, 0, RAM_SIZE, 1, 0, 0);
	offer(f, 0);
	expect_broken(f);
}

static void test_addr_straddles_end(void **state)
{
	struct fixture *f = *state;

	set_desc(f, 0, RAM_SIZE - 8, 16, 0, 0);
	offer(f, 0);
	expect_broken(f);
}

static void test_addr_wraps(void **state)
{
	struct fixture *f = *state;

	/* addr + len overflows 64 bits and would land at a small, valid-looking address. */
	set_desc(f, 0, UINT64_MAX - 15, 0x1000, 0, 0);
	offer(f, 0);
	expect_broken(f);
}

static void test_huge_length(void **state)
{
	struct fixture *f = *state;

	set_desc(f, 0, 0x10000, UINT32_MAX, 0, 0);
	offer(f, 0);
	expect_broken(f);
}

static void test_zero_length_is_harmless(void **state)
{
	struct fixture *f = *state;

	set_desc(f, 0, 0x10000, 0, 0, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain), 1);
	assert_int_equal(f->chain.out_len, 0);
	assert_int_equal(f->chain.in_len, 0);
}

static void test_bad_next(void **state)
{
	struct fixture *f = *state;

	set_desc(f, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT, QSIZE);
	offer(f, 0);
	expect_broken(f);
}

static void test_bad_head(void **state)
{
	struct fixture *f = *state;

	offer(f, QSIZE + 100);
	expect_broken(f);
}

static void test_avail_idx_runs_ahead(void **state)
{
	struct fixture *f = *state;
	uint16_t *avail = (uint16_t *)(f->ram + AVAIL_GPA);

	set_desc(f, 0, 0x10000, 16, 0, 0);
	avail[1] = QSIZE + 1;		/* more pending buffers than the ring holds */
	expect_broken(f);
}

static void test_readable_after_writable(void **state)
{
	struct fixture *f = *state;

	set_desc(f, 0, 0x10000, 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	set_desc(f, 1, 0x20000, 16, 0, 0);
	offer(f, 0);
	expect_broken(f);
}

static void test_indirect_not_offered(void **state)
{
	struct fixture *f = *state;

	set_desc(f, 0, 0x10000, 64, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f);
}

static void test_avail_idx_wraps_16_bits(void **state)
{
	struct fixture *f = *state;
	uint16_t *avail = (uint16_t *)(f->ram + AVAIL_GPA);

	/* Indices are free-running u16 counters; crossing 65535 -> 0 is normal operation. */
	f->vq.last_avail = 0xffff;
	avail[1] = 0xffff;
	set_desc(f, 0, 0x10000, 16, 0, 0);
	offer(f, 0);
	assert_int_equal(avail[1], 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain), 1);
	assert_int_equal(f->vq.last_avail, 0);
}

static void test_bad_queue_sizes(void **state)
{
	struct fixture *f = *state;
	const uint16_t sizes[] = { 0, 3, 100, VIRTQ_MAX_SIZE * 2 };

	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct virtq vq = f->vq;

		vq.ready = false;
		vq.size = sizes[i];
		assert_int_equal(virtq_activate(&vq, &f->gm), -1);
		assert_false(vq.ready);
	}
}

static void test_rings_outside_ram(void **state)
{
	struct fixture *f = *state;
	struct virtq vq = f->vq;

	vq.ready = false;
	vq.desc_gpa = RAM_SIZE - 16 * QSIZE + 16;	/* last descriptor past the end */
	assert_int_equal(virtq_activate(&vq, &f->gm), -1);
	vq.desc_gpa = DESC_GPA;
	vq.used_gpa = UINT64_MAX & ~3ULL;
	assert_int_equal(virtq_activate(&vq, &f->gm), -1);
}

static void test_rings_misaligned(void **state)
{
	struct fixture *f = *state;
	struct virtq vq = f->vq;

	vq.ready = false;
	vq.desc_gpa = DESC_GPA + 8;
	assert_int_equal(virtq_activate(&vq, &f->gm), -1);
	vq.desc_gpa = DESC_GPA;
	vq.avail_gpa = AVAIL_GPA + 1;
	assert_int_equal(virtq_activate(&vq, &f->gm), -1);
	vq.avail_gpa = AVAIL_GPA;
	vq.used_gpa = USED_GPA + 2;
	assert_int_equal(virtq_activate(&vq, &f->gm), -1);
}

static void test_buffer_across_region_gap(void **state)
{
	struct fixture *f = *state;
	uint8_t *high = calloc(1, 0x1000);

	/* A second RAM region right after a hole: a buffer spanning the hole is refused. */
	f->gm.region[1] = (struct gm_region){ .gpa = RAM_SIZE + 0x1000, .size = 0x1000, .host = high };
	f->gm.nr = 2;
	set_desc(f, 0, RAM_SIZE - 0x10, 0x2000, 0, 0);
	offer(f, 0);
	expect_broken(f);
	free(high);
}

static void test_chain_copy_helpers(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[8];

	memcpy(f->ram + 0x10000, "abcd", 4);
	memcpy(f->ram + 0x20000, "efgh", 4);
	set_desc(f, 0, 0x10000, 4, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, 0x20000, 4, VIRTQ_DESC_F_NEXT, 2);
	set_desc(f, 2, 0x30000, 3, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->gm, &f->chain), 1);
	assert_int_equal(virtq_chain_read(&f->chain, 2, buf, 8), 6);	/* short: only 6 left */
	assert_memory_equal(buf, "cdefgh", 6);
	assert_int_equal(virtq_chain_write(&f->chain, 1, "xyz", 3), 2);	/* only 2 bytes fit */
	assert_memory_equal(f->ram + 0x30001, "xy", 2);
}

static void test_gm_ptr_bounds(void **state)
{
	struct fixture *f = *state;

	assert_non_null(gm_ptr(&f->gm, 0, RAM_SIZE));
	assert_null(gm_ptr(&f->gm, 0, RAM_SIZE + 1));
	assert_non_null(gm_ptr(&f->gm, RAM_SIZE, 0));
	assert_null(gm_ptr(&f->gm, RAM_SIZE + 1, 0));
	assert_null(gm_ptr(&f->gm, 1, UINT64_MAX));
	assert_null(gm_ptr(&f->gm, UINT64_MAX, 2));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_good_chain), T(test_loop_two), T(test_self_loop),
		T(test_full_length_chain_is_fine), T(test_addr_out_of_ram),
		T(test_addr_straddles_end), T(test_addr_wraps), T(test_huge_length),
		T(test_zero_length_is_harmless), T(test_bad_next), T(test_bad_head),
		T(test_avail_idx_runs_ahead), T(test_readable_after_writable),
		T(test_indirect_not_offered), T(test_avail_idx_wraps_16_bits),
		T(test_bad_queue_sizes), T(test_rings_outside_ram), T(test_rings_misaligned),
		T(test_buffer_across_region_gap), T(test_chain_copy_helpers), T(test_gm_ptr_bounds),
	};

	return cmocka_run_group_tests_name("virtqueue", tests, NULL, NULL);
}
