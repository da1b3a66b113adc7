/*
 * boot.c - Linux x86-64 64-bit boot protocol (Documentation/x86/boot.rst, "64-bit Boot
 * Protocol"): no firmware and no real-mode setup code run; we do the loader's part ourselves.
 */
#include "boot.h"

#include <asm/bootparam.h>
#include <elf.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "layout.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int check_elf_header(const uint8_t *image, size_t size, const Elf64_Ehdr *eh,
			    char *err, size_t errlen)
{
	if (size < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG))
		return fail(err, errlen, "not an ELF file (expected an uncompressed vmlinux)");
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_machine != EM_X86_64)
		return fail(err, errlen, "not a 64-bit x86 ELF kernel");
	if (eh->e_type != ET_EXEC)
		return fail(err, errlen, "ELF kernel is not an executable (e_type %u)", eh->e_type);
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum > 64)
		return fail(err, errlen, "ELF kernel has a bad program header table");
	if (eh->e_phoff > size || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > size - eh->e_phoff)
		return fail(err, errlen, "ELF program headers lie outside the file");
	(void)image;
	return 0;
}

static int load_segment(const struct guest_mem *gm, const uint8_t *image, size_t size,
			const Elf64_Phdr *ph, char *err, size_t errlen)
{
	if (ph->p_filesz > ph->p_memsz)
		return fail(err, errlen, "ELF segment has file size above memory size");
	if (ph->p_offset > size || ph->p_filesz > size - ph->p_offset)
		return fail(err, errlen, "ELF segment lies outside the file");
	/* Below 1 MiB are our boot tables; a kernel asking for that range is not one we boot. */
	if (ph->p_paddr < HIMEM_START)
		return fail(err, errlen, "ELF segment at %#llx overlaps the boot area",
			    (unsigned long long)ph->p_paddr);

	uint8_t *dst = gm_ptr(gm, ph->p_paddr, ph->p_memsz);

	if (!dst)
		return fail(err, errlen, "kernel segment %#llx+%#llx does not fit in guest memory",
			    (unsigned long long)ph->p_paddr, (unsigned long long)ph->p_memsz);
	memcpy(dst, image + ph->p_offset, ph->p_filesz);
	memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
	return 0;
}

int elf_load(const struct guest_mem *gm, const uint8_t *image, size_t size,
	     struct kernel_image *k, char *err, size_t errlen)
{
	Elf64_Ehdr eh;
	bool entry_loaded = false;
	unsigned loaded = 0;

	if (size >= sizeof(eh))
		memcpy(&eh, image, sizeof(eh));
	if (check_elf_header(image, size, &eh, err, errlen))
		return -1;

	k->end = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;

		memcpy(&ph, image + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (load_segment(gm, image, size, &ph, err, errlen))
			return -1;
		loaded++;
		if (ph.p_paddr + ph.p_memsz > k->end)
			k->end = ph.p_paddr + ph.p_memsz;
		if (eh.e_entry >= ph.p_paddr && eh.e_entry - ph.p_paddr < ph.p_memsz)
			entry_loaded = true;
	}
	if (!loaded)
		return fail(err, errlen, "ELF kernel has no loadable segments");
	if (!entry_loaded)
		return fail(err, errlen, "ELF entry point %#llx is not inside a loaded segment",
			    (unsigned long long)eh.e_entry);
	k->entry = eh.e_entry;
	return 0;
}

static unsigned e820_add(struct boot_e820 *map, unsigned n, unsigned max,
			 uint64_t addr, uint64_t size, uint32_t type)
{
	if (n < max && size)
		map[n++] = (struct boot_e820){ .addr = addr, .size = size, .type = type };
	return n;
}

unsigned e820_build(const struct guest_mem *gm, struct boot_e820 *map, unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < gm->nr; i++) {
		const struct gm_region *r = &gm->region[i];
		uint64_t start = r->gpa, end = r->gpa + r->size;

		if (start < HIMEM_START) {
			/* Base memory stops where the MP table starts; the rest of 1 MiB is legacy. */
			uint64_t base_end = end < MPTABLE_ADDR ? end : MPTABLE_ADDR;

			n = e820_add(map, n, max, start, base_end - start, E820_RAM);
			if (end > MPTABLE_ADDR)
				n = e820_add(map, n, max, MPTABLE_ADDR, EBDA_END - MPTABLE_ADDR,
					     E820_RESERVED);
			start = HIMEM_START;
		}
		if (end > start)
			n = e820_add(map, n, max, start, end - start, E820_RAM);
	}
	return n;
}

uint64_t initrd_place(const struct guest_mem *gm, uint64_t kernel_end, uint64_t size)
{
	/* The initrd must stay below 4 GiB and below initrd_addr_max (2 GiB - 1 in old kernels). */
	const uint64_t limit = 0x80000000ULL;

	for (unsigned i = 0; i < gm->nr; i++) {
		const struct gm_region *r = &gm->region[i];
		uint64_t top = r->gpa + r->size;

		if (r->gpa >= limit)
			continue;
		if (top > limit)
			top = limit;
		if (size > top)
			continue;
		uint64_t addr = (top - size) & ~0xfffULL;

		if (addr >= kernel_end && addr >= r->gpa)
			return addr;
	}
	return 0;
}

static int write_page_tables(const struct guest_mem *gm)
{
	uint64_t *pml4 = gm_ptr(gm, BOOT_PML4_ADDR, 4096);
	uint64_t *pdpt = gm_ptr(gm, BOOT_PDPT_ADDR, 4096);
	uint64_t *pd = gm_ptr(gm, BOOT_PD_ADDR, 4096);

	if (!pml4 || !pdpt || !pd)
		return -1;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = BOOT_PDPT_ADDR | 0x3;		/* present, writable */
	pdpt[0] = BOOT_PD_ADDR | 0x3;
	for (uint64_t i = 0; i < 512; i++)
		pd[i] = (i << 21) | 0x83;	/* present, writable, 2 MiB page */
	return 0;
}

/* GDT selectors the boot protocol requires: __BOOT_CS = 0x10, __BOOT_DS = 0x18. */
static const uint64_t boot_gdt[] = {
	0,
	0,
	0x00af9b000000ffffULL,	/* 0x10: code, 64-bit, present, DPL 0 */
	0x00cf93000000ffffULL,	/* 0x18: data, flat 4 GiB, writable */
	0x008f8b000000ffffULL,	/* 0x20: TSS, busy (KVM requires a valid TR) */
};

int boot_write_tables(const struct guest_mem *gm, const struct boot_info *bi,
		      char *err, size_t errlen)
{
	struct boot_params bp;
	struct boot_e820 map[E820_MAX_ENTRIES_ZEROPAGE];
	size_t cmdlen = strlen(bi->cmdline) + 1;

	if (cmdlen > BOOT_CMDLINE_MAX)
		return fail(err, errlen, "kernel command line is %zu bytes; the limit is %d",
			    cmdlen - 1, BOOT_CMDLINE_MAX - 1);
	if (gm_write(gm, BOOT_CMDLINE_ADDR, bi->cmdline, cmdlen) ||
	    gm_write(gm, BOOT_GDT_ADDR, boot_gdt, sizeof(boot_gdt)) || write_page_tables(gm))
		return fail(err, errlen, "guest memory too small for the boot tables");

	memset(&bp, 0, sizeof(bp));
	bp.hdr.boot_flag = 0xaa55;
	bp.hdr.header = 0x53726448;		/* "HdrS" */
	bp.hdr.version = 0x020f;
	bp.hdr.type_of_loader = 0xff;		/* undefined loader */
	bp.hdr.loadflags = LOADED_HIGH | KEEP_SEGMENTS;
	bp.hdr.cmd_line_ptr = BOOT_CMDLINE_ADDR;
	bp.hdr.cmdline_size = BOOT_CMDLINE_MAX - 1;
	bp.hdr.kernel_alignment = 0x1000000;
	bp.hdr.ramdisk_image = (uint32_t)bi->initrd_addr;
	bp.hdr.ramdisk_size = (uint32_t)bi->initrd_size;

	unsigned n = e820_build(gm, map, E820_MAX_ENTRIES_ZEROPAGE);

	for (unsigned i = 0; i < n; i++) {
		bp.e820_table[i].addr = map[i].addr;
		bp.e820_table[i].size = map[i].size;
		bp.e820_table[i].type = map[i].type;
	}
	bp.e820_entries = n;
	if (gm_write(gm, BOOT_ZERO_PAGE_ADDR, &bp, sizeof(bp)))
		return fail(err, errlen, "guest memory too small for the zero page");
	return 0;
}

static void set_segment(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->l = code;		/* 64-bit code segment */
	s->db = !code;
}

int boot_setup_vcpu(int vcpu_fd, uint64_t entry)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -1;
	set_segment(&sregs.cs, 0x10, 0xb, true);
	set_segment(&sregs.ds, 0x18, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	set_segment(&sregs.tr, 0x20, 0xb, false);
	sregs.tr.s = 0;
	sregs.tr.g = 0;
	sregs.tr.limit = 0xffff;
	sregs.gdt.base = BOOT_GDT_ADDR;
	sregs.gdt.limit = sizeof(boot_gdt) - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;

	sregs.cr3 = BOOT_PML4_ADDR;
	sregs.cr4 |= 1 << 5;				/* PAE */
	sregs.cr0 |= (1u << 0) | (1u << 4) | (1u << 31);	/* PE, ET, PG */
	sregs.efer |= (1 << 8) | (1 << 10);		/* LME, LMA */
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -1;

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 2;				/* reserved bit; interrupts off */
	regs.rip = entry;
	regs.rsi = BOOT_ZERO_PAGE_ADDR;
	regs.rsp = regs.rbp = BOOT_STACK_ADDR;
	return ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0 ? -1 : 0;
}
