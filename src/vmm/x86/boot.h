/*
 * boot.h - the Linux x86-64 64-bit boot protocol: load an ELF vmlinux, build boot_params with the
 * e820 map, page tables and a GDT, and put the boot vCPU in long mode at the kernel's entry.
 *
 * The pure parts (ELF checks, e820, zero page) work on a struct guest_mem only, so the unit tests
 * drive them with ordinary buffers; only boot_setup_vcpu() talks to KVM.
 */
#ifndef KILN_X86_BOOT_H
#define KILN_X86_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../guest_mem.h"

struct boot_e820 {
	uint64_t addr, size;
	uint32_t type;
};

#define E820_RAM	1
#define E820_RESERVED	2

struct kernel_image {
	uint64_t entry;		/* guest-physical entry point (startup_64) */
	uint64_t end;		/* first byte after the highest loaded segment */
};

/*
 * Load the PT_LOAD segments of an ELF64 x86-64 vmlinux held in [image, image+size) into guest
 * memory.  Returns 0, or -1 with a one-line reason in err.
 */
int elf_load(const struct guest_mem *gm, const uint8_t *image, size_t size,
	     struct kernel_image *k, char *err, size_t errlen);

/* The e820 map of this guest's RAM; returns the number of entries written (at most max). */
unsigned e820_build(const struct guest_mem *gm, struct boot_e820 *map, unsigned max);

struct boot_info {
	const char *cmdline;
	uint64_t initrd_addr, initrd_size;	/* 0, 0 when there is none */
};

/* Write the zero page, command line, page tables and GDT.  -1 with a reason in err. */
int boot_write_tables(const struct guest_mem *gm, const struct boot_info *bi,
		      char *err, size_t errlen);

/* Highest page-aligned place for an initrd of size bytes above kernel_end; 0 if none. */
uint64_t initrd_place(const struct guest_mem *gm, uint64_t kernel_end, uint64_t size);

/* Registers of the boot vCPU: long mode, flat segments, RIP at the entry, RSI at boot_params. */
int boot_setup_vcpu(int vcpu_fd, uint64_t entry);

#endif
