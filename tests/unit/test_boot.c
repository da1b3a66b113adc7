/*
 * test_boot.c - the loader side of the Linux 64-bit boot protocol: ELF checks (a hostile or
 * merely wrong kernel file must be refused with a reason, never loaded halfway outside RAM),
 * the e820 map, the zero page and initrd placement.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <asm/bootparam.h>
#include <elf.h>
#include <cmocka.h>

#include "../../src/vmm/guest_mem.h"
#include "../../src/vmm/x86/boot.h"
#include "../../src/vmm/x86/layout.h"
#include "fake_driver.h"

#define RAM_SIZE	(64ULL << 20)
#define KERNEL_PADDR	0x1000000ULL

static uint8_t *ram;
static struct guest_mem gm;
static char err[256];

static int setup(void **state)
{
	(void)state;
	ram = fake_ram(&gm, RAM_SIZE);
	err[0] = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(ram);
	return 0;
}

/* A minimal vmlinux-like image: ELF header, one PT_LOAD of 16 file bytes + 4080 bss bytes. */
struct image {
	Elf64_Ehdr eh;
	Elf64_Phdr ph;
	uint8_t payload[16];
};

static void make_image(struct image *im)
{
	memset(im, 0, sizeof(*im));
	memcpy(im->eh.e_ident, ELFMAG, SELFMAG);
	im->eh.e_ident[EI_CLASS] = ELFCLASS64;
	im->eh.e_ident[EI_DATA] = ELFDATA2LSB;
	im->eh.e_type = ET_EXEC;
	im->eh.e_machine = EM_X86_64;
	im->eh.e_entry = KERNEL_PADDR;
	im->eh.e_phoff = offsetof(struct image, ph);
	im->eh.e_phentsize = sizeof(Elf64_Phdr);
	im->eh.e_phnum = 1;
	im->ph.p_type = PT_LOAD;
	im->ph.p_offset = offsetof(struct image, payload);
	im->ph.p_paddr = KERNEL_PADDR;
	im->ph.p_filesz = sizeof(im->payload);
	im->ph.p_memsz = 4096;
	memcpy(im->payload, "KILN-TEST-KERNEL", 16);
}

static int load(struct image *im, size_t size)
{
	struct kernel_image k;

	return elf_load(&gm, (uint8_t *)im, size, &k, err, sizeof(err));
}

static void test_elf_loads_and_zeroes_bss(void **state)
{
	struct image im;
	struct kernel_image k;

	(void)state;
	make_image(&im);
	memset(ram + KERNEL_PADDR, 0xaa, 8192);
	assert_int_equal(elf_load(&gm, (uint8_t *)&im, sizeof(im), &k, err, sizeof(err)), 0);
	assert_int_equal(k.entry, KERNEL_PADDR);
	assert_int_equal(k.end, KERNEL_PADDR + 4096);
	assert_memory_equal(ram + KERNEL_PADDR, "KILN-TEST-KERNEL", 16);
	assert_int_equal(ram[KERNEL_PADDR + 16], 0);
	assert_int_equal(ram[KERNEL_PADDR + 4095], 0);
	assert_int_equal(ram[KERNEL_PADDR + 4096], 0xaa);	/* nothing beyond memsz */
}

static void expect_refused(struct image *im, size_t size, const char *why)
{
	err[0] = 0;
	assert_int_equal(load(im, size), -1);
	if (!strstr(err, why))
		fail_msg("reason '%s' does not mention '%s'", err, why);
}

static void test_elf_refusals(void **state)
{
	struct image im;

	(void)state;
	make_image(&im);
	memcpy(im.eh.e_ident, "MZ\0\0", 4);
	expect_refused(&im, sizeof(im), "not an ELF");

	make_image(&im);
	expect_refused(&im, 10, "not an ELF");			/* truncated header */

	make_image(&im);
	im.eh.e_ident[EI_CLASS] = ELFCLASS32;
	expect_refused(&im, sizeof(im), "64-bit x86");

	make_image(&im);
	im.eh.e_machine = EM_AARCH64;
	expect_refused(&im, sizeof(im), "64-bit x86");

	make_image(&im);
	im.eh.e_phoff = sizeof(im);				/* headers past the end */
	expect_refused(&im, sizeof(im), "outside the file");

	make_image(&im);
	im.eh.e_phnum = 0;
	expect_refused(&im, sizeof(im), "program header");

	make_image(&im);
	im.ph.p_offset = UINT64_MAX - 4;			/* offset + filesz wraps */
	expect_refused(&im, sizeof(im), "outside the file");

	make_image(&im);
	im.ph.p_filesz = 8192;
	expect_refused(&im, sizeof(im), "file size above memory size");

	make_image(&im);
	im.ph.p_paddr = RAM_SIZE - 1024;			/* bss runs off the end of RAM */
	im.eh.e_entry = im.ph.p_paddr;
	expect_refused(&im, sizeof(im), "does not fit in guest memory");

	make_image(&im);
	im.ph.p_paddr = UINT64_MAX - 100;
	im.eh.e_entry = im.ph.p_paddr;
	expect_refused(&im, sizeof(im), "does not fit in guest memory");

	make_image(&im);
	im.ph.p_paddr = BOOT_ZERO_PAGE_ADDR;			/* would overwrite boot tables */
	im.eh.e_entry = im.ph.p_paddr;
	expect_refused(&im, sizeof(im), "boot area");

	make_image(&im);
	im.eh.e_entry = KERNEL_PADDR + 8192;
	expect_refused(&im, sizeof(im), "entry point");

	make_image(&im);
	im.ph.p_type = PT_NOTE;
	expect_refused(&im, sizeof(im), "no loadable segments");
}

static void test_e820_low_memory(void **state)
{
	struct boot_e820 map[8];
	unsigned n;

	(void)state;
	n = e820_build(&gm, map, 8);
	assert_int_equal(n, 3);
	assert_int_equal(map[0].addr, 0);
	assert_int_equal(map[0].size, MPTABLE_ADDR);
	assert_int_equal(map[0].type, E820_RAM);
	assert_int_equal(map[1].addr, MPTABLE_ADDR);
	assert_int_equal(map[1].type, E820_RESERVED);
	assert_int_equal(map[2].addr, HIMEM_START);
	assert_int_equal(map[2].addr + map[2].size, RAM_SIZE);
	assert_int_equal(map[2].type, E820_RAM);
}

static void test_e820_above_4g(void **state)
{
	struct guest_mem big = gm;
	struct boot_e820 map[8];

	(void)state;
	/* 4 GiB of guest RAM: the part past the MMIO gap resumes at 4 GiB (not mapped here). */
	big.region[0].size = MMIO_GAP_START;
	big.region[1] = (struct gm_region){ .gpa = MMIO_GAP_END, .size = 1ULL << 30, .host = NULL };
	big.nr = 2;
	unsigned n = e820_build(&big, map, 8);

	assert_int_equal(n, 4);
	assert_int_equal(map[2].addr + map[2].size, MMIO_GAP_START);
	assert_int_equal(map[3].addr, MMIO_GAP_END);
	assert_int_equal(map[3].size, 1ULL << 30);
	assert_int_equal(map[3].type, E820_RAM);
}

static void test_zero_page(void **state)
{
	struct boot_info bi = { .cmdline = "console=ttyS0 quiet", .initrd_addr = 0x3000000,
				.initrd_size = 12345 };
	struct boot_params bp;

	(void)state;
	assert_int_equal(boot_write_tables(&gm, &bi, err, sizeof(err)), 0);
	memcpy(&bp, ram + BOOT_ZERO_PAGE_ADDR, sizeof(bp));
	assert_int_equal(bp.hdr.boot_flag, 0xaa55);
	assert_int_equal(bp.hdr.header, 0x53726448);
	assert_int_equal(bp.hdr.type_of_loader, 0xff);
	assert_int_equal(bp.hdr.cmd_line_ptr, BOOT_CMDLINE_ADDR);
	assert_string_equal((char *)ram + bp.hdr.cmd_line_ptr, "console=ttyS0 quiet");
	assert_int_equal(bp.hdr.ramdisk_image, 0x3000000);
	assert_int_equal(bp.hdr.ramdisk_size, 12345);
	assert_int_equal(bp.e820_entries, 3);
	assert_int_equal(bp.e820_table[2].addr, HIMEM_START);
	assert_int_equal(bp.e820_table[2].type, E820_RAM);

	/* The identity map the kernel starts on: PML4 -> PDPT -> PD, 2 MiB pages over 1 GiB. */
	uint64_t pml4, pdpt, pd511;

	memcpy(&pml4, ram + BOOT_PML4_ADDR, 8);
	memcpy(&pdpt, ram + BOOT_PDPT_ADDR, 8);
	memcpy(&pd511, ram + BOOT_PD_ADDR + 511 * 8, 8);
	assert_int_equal(pml4 & ~0xfffULL, BOOT_PDPT_ADDR);
	assert_int_equal(pdpt & ~0xfffULL, BOOT_PD_ADDR);
	assert_int_equal(pd511, (511ULL << 21) | 0x83);
}

static void test_cmdline_too_long(void **state)
{
	char *line = malloc(BOOT_CMDLINE_MAX + 1);
	struct boot_info bi = { .cmdline = line };

	(void)state;
	memset(line, 'x', BOOT_CMDLINE_MAX);
	line[BOOT_CMDLINE_MAX] = 0;
	assert_int_equal(boot_write_tables(&gm, &bi, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "command line"));
	free(line);
}

static void test_initrd_place(void **state)
{
	uint64_t a;

	(void)state;
	a = initrd_place(&gm, KERNEL_PADDR + (8 << 20), 1000000);
	assert_int_not_equal(a, 0);
	assert_int_equal(a & 0xfff, 0);
	assert_true(a + 1000000 <= RAM_SIZE);
	assert_true(a >= KERNEL_PADDR + (8 << 20));
	/* Too big to fit between the kernel and the top of RAM. */
	assert_int_equal(initrd_place(&gm, KERNEL_PADDR + (8 << 20), RAM_SIZE - (20 << 20)), 0);
	assert_int_equal(initrd_place(&gm, 0, UINT64_MAX), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_elf_loads_and_zeroes_bss), T(test_elf_refusals), T(test_e820_low_memory),
		T(test_e820_above_4g), T(test_zero_page), T(test_cmdline_too_long),
		T(test_initrd_place),
	};

	return cmocka_run_group_tests_name("boot", tests, NULL, NULL);
}
