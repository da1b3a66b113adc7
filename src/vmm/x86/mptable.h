/*
 * mptable.h - the Intel MultiProcessor Specification 1.4 table that tells a guest without ACPI
 * how many CPUs it has and how ISA interrupt lines reach the IOAPIC.
 */
#ifndef KILN_X86_MPTABLE_H
#define KILN_X86_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "../guest_mem.h"

/* The table must fit in the last KiB of base memory, which bounds the CPU count. */
#define MPTABLE_MAX_CPUS 32

/* Write the floating pointer and configuration table at MPTABLE_ADDR.  -1 if it cannot. */
int mptable_write(const struct guest_mem *gm, unsigned ncpus);

/* Byte sum used by both MP checksums; a valid structure sums to zero. */
uint8_t mptable_sum(const void *p, size_t len);

#endif
