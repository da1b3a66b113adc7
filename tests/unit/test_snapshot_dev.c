/*
 * test_snapshot_dev.c - the device half of snapshots and the bulky files: each device saves its
 * state and restores it into a fresh device, and refuses saved bytes it could never have
 * produced (the devices check their own blobs field by field); the memory file and disk copies
 * keep zero pages and holes as holes.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "../../src/vmm/devices/i8042.h"
#include "../../src/vmm/devices/serial.h"
#include "../../src/common/sparse_file.h"
#include "../../src/vmm/snapshot/files.h"
#include "../../src/vmm/snapshot/format.h"
#include "../../src/vmm/virtio/devices.h"
#include "fake_driver.h"

#define RAM_SIZE	(1 << 20)
#define QSIZE		16
#define QBASE		DRV_QBASE(0)

/* Offsets in a saved virtio transport with one queue (mmio.c, virtio_save). */
#define V_DRIVER_FEATURES	12
#define V_NR_QUEUES		28
#define V_Q_SIZE		32
#define V_Q_DESC		37
#define V_OWN_LEN		70

static char tmpdir[64];

/* Devices have no destructor (they live as long as kiln-vmm): keep them, and their RAM, here. */
static void *kept[64];
static unsigned nr_kept;

static void *keep(void *p)
{
	if (nr_kept < sizeof(kept) / sizeof(kept[0]))
		kept[nr_kept++] = p;
	return p;
}

/* ---- helpers ---- */

static void ram_init(struct fake_driver *g, uint64_t size)
{
	drv_ram(g, size);
	keep(g->ram);
}

static void no_line(void *ctx, int level)
{
	(void)ctx, (void)level;
}

static void no_reset(void *ctx)
{
	(void)ctx;
}

static struct virtio_dev *rng(struct fake_driver *g)
{
	struct virtio_dev *d = keep(virtio_rng_create(&g->gm));

	drv_attach(g, d);
	return d;
}

/* Drive the rng like Linux does, and have it serve two requests so the indices move. */
static void rng_drive(struct fake_driver *g)
{
	drv_init(g, F_VERSION_1, 1, QSIZE);
	for (uint16_t i = 0; i < 2; i++)
		drv_post_buf(g, 0, i, 0x40000 + i * 64, 64, VIRTQ_DESC_F_WRITE);
}

static struct sbuf save_virtio(struct virtio_dev *d)
{
	struct sbuf b = { 0 };

	virtio_save(d, &b);
	assert_false(b.failed);
	return b;
}

static void expect_virtio_refused(struct virtio_dev *d, const struct sbuf *b, const char *want)
{
	char msg[200];

	assert_false(restore_dev(d, b, msg, sizeof(msg)));
	if (!strstr(msg, want))
		fail_msg("expected '%s' in: %s", want, msg);
}

static void put32(struct sbuf *b, size_t off, uint32_t v)
{
	memcpy(b->data + off, &v, 4);
}

static void put64(struct sbuf *b, size_t off, uint64_t v)
{
	memcpy(b->data + off, &v, 8);
}

/* ---- virtio transport ---- */

static void test_virtio_round_trip(void **state)
{
	struct fake_driver r1, r2;
	struct virtio_dev *a, *b;
	struct sbuf saved;
	char msg[200];

	(void)state;
	ram_init(&r1, RAM_SIZE);
	a = rng(&r1);
	rng_drive(&r1);
	assert_int_equal(a->vq[0].last_avail, 2);
	assert_int_equal(a->vq[0].used_idx, 2);
	saved = save_virtio(a);

	ram_init(&r2, RAM_SIZE);
	memcpy(r2.ram, r1.ram, RAM_SIZE);		/* as the memory file brings RAM back */
	b = rng(&r2);
	assert_true(restore_dev(b, &saved, msg, sizeof(msg)));
	assert_int_equal(b->status, a->status);
	assert_int_equal(b->driver_features, a->driver_features);
	assert_true(b->vq[0].ready);
	assert_int_equal(b->vq[0].size, QSIZE);
	assert_int_equal(b->vq[0].desc_gpa, QBASE);
	assert_int_equal(b->vq[0].last_avail, 2);
	assert_int_equal(b->vq[0].used_idx, 2);
	/* Host pointers are this process's, recomputed from the addresses. */
	assert_ptr_equal(b->vq[0].desc, r2.ram + QBASE);
	sbuf_free(&saved);
}

static void test_virtio_refuses_lies(void **state)
{
	struct fake_driver r1, small;
	struct virtio_dev *a, *b, *tiny;
	struct sbuf saved, bad;

	(void)state;
	ram_init(&r1, RAM_SIZE);
	a = rng(&r1);
	rng_drive(&r1);
	saved = save_virtio(a);
	b = rng(&r1);
#define BAD(patch, want) do {							\
		bad = (struct sbuf){ 0 };					\
		sbuf_put(&bad, saved.data, saved.len);				\
		patch;								\
		expect_virtio_refused(b, &bad, want);				\
		sbuf_free(&bad);						\
	} while (0)
	BAD(put32(&bad, 0, 0x100), "status");
	BAD(put32(&bad, 24, 4), "interrupt status");
	BAD(put64(&bad, V_DRIVER_FEATURES, (1ULL << 32) | (1ULL << 40)), "never offered");
	BAD(put32(&bad, V_NR_QUEUES, 3), "queues saved");
	BAD(put32(&bad, V_Q_SIZE, 1024), "above");
	BAD(put32(&bad, V_Q_SIZE, 12), "power of two");
	BAD(put64(&bad, V_Q_DESC, RAM_SIZE - 16), "outside guest RAM");
	BAD(put64(&bad, V_Q_DESC, QBASE + 8), "misaligned");
	BAD(put32(&bad, V_Q_SIZE + 29, 0x10000), "ring index");
	BAD(put32(&bad, V_OWN_LEN, 1); sbuf_u8(&bad, 9), "unexpected bytes");
	BAD(sbuf_u8(&bad, 0), "");
	BAD(bad.len -= 3, "truncated");
#undef BAD
	/* The refused restores left the device as it was: reset. */
	assert_int_equal(b->status, 0);
	assert_false(b->vq[0].ready);

	/* The same bytes against a guest whose RAM does not hold the rings. */
	ram_init(&small, 0x8000);
	tiny = rng(&small);
	expect_virtio_refused(tiny, &saved, "outside guest RAM");
	sbuf_free(&saved);
}

static int make_disk(const char *name, size_t size, char *path, size_t n)
{
	int fd;

	snprintf(path, n, "%s/%s", tmpdir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
	return 0;
}

static void test_blk_checks_its_capacity(void **state)
{
	struct fake_driver r;
	char p1[128], p2[128], p3[128], err[200];
	struct virtio_dev *a, *bigger, *ro;
	struct sbuf saved;

	(void)state;
	ram_init(&r, RAM_SIZE);
	make_disk("a.img", 1 << 20, p1, sizeof(p1));
	make_disk("b.img", 2 << 20, p2, sizeof(p2));
	make_disk("c.img", 1 << 20, p3, sizeof(p3));
	a = keep(virtio_blk_create(&r.gm, p1, false, "a", err, sizeof(err)));
	assert_non_null(a);
	drv_attach(&r, a);
	saved = save_virtio(a);
	/* The guest's driver knows the capacity and the read-only flag: both must match. */
	bigger = keep(virtio_blk_create(&r.gm, p2, false, "b", err, sizeof(err)));
	assert_non_null(bigger);
	expect_virtio_refused(bigger, &saved, "sectors");
	ro = keep(virtio_blk_create(&r.gm, p3, true, "c", err, sizeof(err)));
	assert_non_null(ro);
	expect_virtio_refused(ro, &saved, "read-only");
	sbuf_free(&saved);
}

/* A device without state of its own must have saved none. */
static void test_rng_has_no_state_of_its_own(void **state)
{
	struct fake_driver r;
	struct virtio_dev *a;
	struct sbuf saved;

	(void)state;
	ram_init(&r, RAM_SIZE);
	a = rng(&r);
	saved = save_virtio(a);
	saved.len -= 4;
	sbuf_u32(&saved, 2);
	sbuf_u8(&saved, 1);
	sbuf_u8(&saved, 2);
	expect_virtio_refused(a, &saved, "unexpected bytes");
	sbuf_free(&saved);
}

/* ---- legacy devices ---- */

static void serial_reg(struct serial *s, unsigned reg, uint8_t v)
{
	serial_write(s, reg, &v, 1);
}

static bool restore_serial(struct serial *s, const void *p, size_t len, char *msg, size_t n)
{
	struct sr_error e = { 0 };
	struct sreader r;
	bool ok;

	sr_init(&r, p, len, &e);
	ok = serial_restore(s, &r);
	snprintf(msg, n, "%s", e.msg);
	return ok;
}

static void test_serial_round_trip(void **state)
{
	struct serial a, b;
	struct sbuf saved = { 0 };
	char msg[200];
	uint8_t c;

	(void)state;
	serial_init(&a, -1, no_line, NULL, NULL);
	serial_init(&b, -1, no_line, NULL, NULL);
	serial_reg(&a, 3, 0x83);			/* DLAB */
	serial_reg(&a, 0, 0x01);			/* divisor 1 */
	serial_reg(&a, 3, 0x03);			/* 8N1 */
	serial_reg(&a, 1, 0x05);			/* IER */
	serial_reg(&a, 7, 0x5a);			/* scratch */
	assert_int_equal(serial_input(&a, (const uint8_t *)"hello", 5), 5);
	serial_read(&a, 0, &c, 1);			/* 'h' leaves, "ello" stays */
	serial_save(&a, &saved);
	assert_true(restore_serial(&b, saved.data, saved.len, msg, sizeof(msg)));
	assert_int_equal(b.ier, 0x05);
	assert_int_equal(b.lcr, 0x03);
	assert_int_equal(b.dll, 0x01);
	assert_int_equal(b.scr, 0x5a);
	assert_int_equal(b.rx_count, 4);
	serial_read(&b, 0, &c, 1);
	assert_int_equal(c, 'e');
	sbuf_free(&saved);
}

static void test_serial_refuses_lies(void **state)
{
	struct serial s;
	uint8_t good[10] = { 0x05, 0x03, 0x08, 0, 1, 0, 0xc1, 0, 0, 0 };
	uint8_t bad[10 + 70];
	char msg[200];

	(void)state;
	serial_init(&s, -1, no_line, NULL, NULL);
	assert_true(restore_serial(&s, good, 10, msg, sizeof(msg)));
#define BAD(at, v, len, want) do {						\
		memcpy(bad, good, 10);						\
		bad[at] = v;							\
		assert_false(restore_serial(&s, bad, len, msg, sizeof(msg)));	\
		if (!strstr(msg, want))						\
			fail_msg("expected '%s' in: %s", want, msg);		\
	} while (0)
	BAD(0, 0x10, 10, "IER");
	BAD(2, 0x20, 10, "MCR");
	BAD(6, 0x02, 10, "FCR");
	BAD(7, 2, 10, "booleans");
	BAD(9, 65, 10 + 65, "FIFO");
	BAD(9, 3, 10 + 2, "truncated");
	BAD(9, 0, 11, "unexpected bytes");
	BAD(9, 0, 5, "truncated");
#undef BAD
	/* Nothing of the refused states leaked in. */
	assert_int_equal(s.ier, 0x05);
}

static void test_i8042(void **state)
{
	struct i8042 a, b;
	struct sbuf saved = { 0 };
	struct sr_error e = { 0 };
	struct sreader r;
	uint8_t v = 0x60, cfg = 0x47;
	const uint8_t bad[4] = { 0, 0x42, 0, 0 };

	(void)state;
	i8042_init(&a, no_reset, NULL);
	i8042_init(&b, no_reset, NULL);
	i8042_write(&a, 4, &v, 1);
	i8042_write(&a, 0, &cfg, 1);
	v = 0xd1;
	i8042_write(&a, 4, &v, 1);		/* pending: waits for its data byte */
	i8042_save(&a, &saved);
	sr_init(&r, saved.data, saved.len, &e);
	assert_true(i8042_restore(&b, &r));
	assert_int_equal(b.cmd_byte, 0x47);
	assert_int_equal(b.pending_cmd, 0xd1);
	sr_init(&r, bad, sizeof(bad), &e);
	assert_false(i8042_restore(&b, &r));
	assert_non_null(strstr(e.msg, "waits for data"));
	sbuf_free(&saved);
}

/* ---- files ---- */

static uint64_t allocated(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

static void test_memory_file_is_sparse(void **state)
{
	struct fake_driver r;
	char path[128], err[200];
	uint8_t *back = malloc(RAM_SIZE);
	int fd;

	(void)state;
	ram_init(&r, RAM_SIZE);
	memset(r.ram + 0x3000, 0xaa, 0x2000);		/* two pages of data */
	r.ram[RAM_SIZE - 1] = 1;				/* and the last byte */
	snprintf(path, sizeof(path), "%s/memory", tmpdir);
	assert_int_equal(snap_write_memory(&r.gm, path, err, sizeof(err)), 0);
	fd = open(path, O_RDONLY);
	assert_int_equal(pread(fd, back, RAM_SIZE, 0), RAM_SIZE);
	assert_memory_equal(back, r.ram, RAM_SIZE);
	/* Holes before, between and after; the filesystem may round up to its block size. */
	assert_int_equal(lseek(fd, 0, SEEK_DATA), 0x3000);
	assert_int_equal(lseek(fd, 0x3000, SEEK_HOLE), 0x5000);
	assert_true(allocated(path) <= 64 * 1024);
	close(fd);
	/* It never replaces an existing file. */
	assert_int_equal(snap_write_memory(&r.gm, path, err, sizeof(err)), -1);
	free(back);
}

static void test_disk_copy_keeps_holes(void **state)
{
	char src[128], dst[128], err[200];
	static uint8_t buf[1 << 20];
	int fd;

	(void)state;
	make_disk("sparse.img", 8 << 20, src, sizeof(src));
	fd = open(src, O_WRONLY);
	memset(buf, 0x11, 4096);
	assert_int_equal(pwrite(fd, buf, 4096, 4 << 20), 4096);
	close(fd);
	snprintf(dst, sizeof(dst), "%s/copy.img", tmpdir);
	assert_int_equal(sparse_copy_file(src, dst, true, err, sizeof(err)), 0);
	fd = open(dst, O_RDONLY);
	assert_int_equal(lseek(fd, 0, SEEK_END), 8 << 20);
	assert_int_equal(pread(fd, buf, 4096, 4 << 20), 4096);
	assert_int_equal(buf[0], 0x11);
	assert_int_equal(buf[4095], 0x11);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), sizeof(buf));
	assert_int_equal(buf[0] | buf[sizeof(buf) - 1], 0);
	close(fd);
	assert_true(allocated(dst) <= 1 << 20);
	assert_int_equal(sparse_copy_file(src, dst, true, err, sizeof(err)), -1);	/* exists */
	snprintf(dst, sizeof(dst), "%s/nope/copy.img", tmpdir);
	assert_int_equal(sparse_copy_file(src, dst, true, err, sizeof(err)), -1);
}

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kiln-snapdev-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_virtio_round_trip),
		cmocka_unit_test(test_virtio_refuses_lies),
		cmocka_unit_test(test_blk_checks_its_capacity),
		cmocka_unit_test(test_rng_has_no_state_of_its_own),
		cmocka_unit_test(test_serial_round_trip),
		cmocka_unit_test(test_serial_refuses_lies),
		cmocka_unit_test(test_i8042),
		cmocka_unit_test(test_memory_file_is_sparse),
		cmocka_unit_test(test_disk_copy_keeps_holes),
	};

	return cmocka_run_group_tests_name("snapshot devices and files", tests, setup_dir,
					   remove_dir);
}
