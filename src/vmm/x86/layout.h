/*
 * layout.h - where things live in a kiln guest's physical address space.
 *
 *   0x00000500  GDT (boot segments, 64-bit code and flat data)
 *   0x00007000  boot_params, the "zero page" of the Linux boot protocol
 *   0x00008ff0  initial stack pointer (the kernel switches to its own at once)
 *   0x00009000  PML4, PDPT, PD: identity map of the first 1 GiB with 2 MiB pages
 *   0x00020000  kernel command line
 *   0x0009fc00  MP table (last KiB of base memory, where Linux scans for it)
 *   0x01000000  the kernel, at the physical addresses its ELF headers ask for
 *   high in low RAM: the initrd
 *   0xd0000000  virtio-mmio devices, 4 KiB each (RAM stops here and resumes at 4 GiB)
 *   0xfec00000  IOAPIC, 0xfee00000 LAPIC (in-kernel, KVM)
 *   0xfffbc000  KVM's identity-map page and TSS (Intel VMX needs them outside RAM)
 */
#ifndef KILN_X86_LAYOUT_H
#define KILN_X86_LAYOUT_H

#define BOOT_GDT_ADDR		0x500ULL
#define BOOT_ZERO_PAGE_ADDR	0x7000ULL
#define BOOT_STACK_ADDR		0x8ff0ULL
#define BOOT_PML4_ADDR		0x9000ULL
#define BOOT_PDPT_ADDR		0xa000ULL
#define BOOT_PD_ADDR		0xb000ULL
#define BOOT_CMDLINE_ADDR	0x20000ULL
#define BOOT_CMDLINE_MAX	2048	/* x86 COMMAND_LINE_SIZE, NUL included */
#define MPTABLE_ADDR		0x9fc00ULL
#define EBDA_END		0xa0000ULL
#define HIMEM_START		0x100000ULL

#define MMIO_GAP_START		0xd0000000ULL
#define MMIO_GAP_END		0x100000000ULL
#define VIRTIO_MMIO_BASE	MMIO_GAP_START
#define VIRTIO_MMIO_SIZE	0x1000ULL
#define IOAPIC_ADDR		0xfec00000ULL
#define LAPIC_ADDR		0xfee00000ULL
#define KVM_IDENTITY_MAP_ADDR	0xfffbc000ULL
#define KVM_TSS_ADDR		0xfffbd000ULL

/* ISA interrupt lines of the legacy devices; virtio-mmio devices take lines from 5 upward. */
#define IRQ_SERIAL		4
#define IRQ_VIRTIO_FIRST	5
#define IOAPIC_PINS		24

#define GUEST_MEM_MIN_MIB	32

#endif
