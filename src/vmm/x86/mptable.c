/*
 * mptable.c - build the MP table (MP spec 1.4, chapter 4): one processor entry per vCPU with
 * APIC ID = vCPU index, one ISA bus, one IOAPIC whose pins 0-23 carry ISA IRQs 0-23 one to one
 * (the same routing KVM's in-kernel irqchip uses by default), ExtINT on LINT0 and NMI on LINT1.
 */
#include "mptable.h"

#include <string.h>

#include "layout.h"

struct mpf_intel {			/* floating pointer structure */
	char signature[4];		/* "_MP_" */
	uint32_t physptr;
	uint8_t length;			/* in 16-byte units */
	uint8_t specification;
	uint8_t checksum;
	uint8_t feature[5];
} __attribute__((packed));

struct mpc_table {			/* configuration table header */
	char signature[4];		/* "PCMP" */
	uint16_t length;
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char product[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount;		/* number of entries */
	uint32_t lapic;
	uint16_t reserved;
	uint8_t ext_checksum;
	uint8_t reserved2;
} __attribute__((packed));

struct mpc_cpu {
	uint8_t type;			/* 0 */
	uint8_t apicid;
	uint8_t apicver;
	uint8_t cpuflag;
	uint32_t cpufeature;
	uint32_t featureflag;
	uint32_t reserved[2];
} __attribute__((packed));

struct mpc_bus {
	uint8_t type;			/* 1 */
	uint8_t busid;
	char bustype[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type;			/* 2 */
	uint8_t apicid;
	uint8_t apicver;
	uint8_t flags;
	uint32_t apicaddr;
} __attribute__((packed));

struct mpc_intsrc {			/* type 3 (I/O) and 4 (local) interrupt assignments */
	uint8_t type;
	uint8_t irqtype;
	uint16_t irqflag;
	uint8_t srcbus;
	uint8_t srcbusirq;
	uint8_t dstapic;
	uint8_t dstirq;
} __attribute__((packed));

#define MP_CPU_ENABLED	1
#define MP_CPU_BSP	2
#define MP_INT		0
#define MP_NMI		1
#define MP_EXTINT	3
#define APIC_VERSION	0x14
#define IOAPIC_VERSION	0x11

uint8_t mptable_sum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum += *b++;
	return sum;
}

static size_t table_size(unsigned ncpus)
{
	return sizeof(struct mpc_table) + ncpus * sizeof(struct mpc_cpu) +
	       sizeof(struct mpc_bus) + sizeof(struct mpc_ioapic) +
	       (IOAPIC_PINS + 2) * sizeof(struct mpc_intsrc);
}

int mptable_write(const struct guest_mem *gm, unsigned ncpus)
{
	if (ncpus == 0 || ncpus > MPTABLE_MAX_CPUS)
		return -1;

	size_t total = sizeof(struct mpf_intel) + table_size(ncpus);
	uint8_t *base = gm_ptr(gm, MPTABLE_ADDR, total);

	if (!base || MPTABLE_ADDR + total > EBDA_END)
		return -1;
	memset(base, 0, total);

	struct mpf_intel *mpf = (struct mpf_intel *)base;
	struct mpc_table *mpc = (struct mpc_table *)(mpf + 1);
	uint8_t *p = (uint8_t *)(mpc + 1);
	uint8_t ioapic_id = ncpus;	/* the first ID after the CPUs' */
	uint16_t entries = 0;

	for (unsigned i = 0; i < ncpus; i++, entries++) {
		struct mpc_cpu c = {
			.type = 0, .apicid = i, .apicver = APIC_VERSION,
			.cpuflag = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0),
			.cpufeature = 0x600, .featureflag = 0x201,	/* family 6; FPU, APIC */
		};
		memcpy(p, &c, sizeof(c));
		p += sizeof(c);
	}

	struct mpc_bus bus = { .type = 1, .busid = 0, .bustype = "ISA   " };
	memcpy(p, &bus, sizeof(bus));
	p += sizeof(bus);
	entries++;

	struct mpc_ioapic io = { .type = 2, .apicid = ioapic_id, .apicver = IOAPIC_VERSION,
				 .flags = 1, .apicaddr = IOAPIC_ADDR };
	memcpy(p, &io, sizeof(io));
	p += sizeof(io);
	entries++;

	for (unsigned irq = 0; irq < IOAPIC_PINS; irq++, entries++) {
		/* irqflag 0: polarity and trigger conform to the bus, i.e. ISA edge, active high. */
		struct mpc_intsrc s = { .type = 3, .irqtype = MP_INT, .srcbus = 0,
					.srcbusirq = irq, .dstapic = ioapic_id, .dstirq = irq };
		memcpy(p, &s, sizeof(s));
		p += sizeof(s);
	}

	/* LINT0 takes the 8259's ExtINT, LINT1 the NMI, on every local APIC (0xff). */
	struct mpc_intsrc lint[2] = {
		{ .type = 4, .irqtype = MP_EXTINT, .dstapic = 0xff, .dstirq = 0 },
		{ .type = 4, .irqtype = MP_NMI, .dstapic = 0xff, .dstirq = 1 },
	};
	memcpy(p, lint, sizeof(lint));
	p += sizeof(lint);
	entries += 2;

	memcpy(mpc->signature, "PCMP", 4);
	mpc->length = p - (uint8_t *)mpc;
	mpc->spec = 4;
	memcpy(mpc->oem, "KILN    ", 8);
	memcpy(mpc->product, "MICROVM     ", 12);
	mpc->oemcount = entries;
	mpc->lapic = LAPIC_ADDR;
	mpc->checksum = -mptable_sum(mpc, mpc->length);

	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = MPTABLE_ADDR + sizeof(*mpf);
	mpf->length = 1;
	mpf->specification = 4;
	mpf->checksum = -mptable_sum(mpf, sizeof(*mpf));
	return 0;
}
