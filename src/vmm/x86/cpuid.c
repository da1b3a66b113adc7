/*
 * cpuid.c - see cpuid.h.  Leaves rewritten: 1 (APIC ID, logical count, HTT, hypervisor bit),
 * 4 (Intel cores per package), 0xb and 0x1f (x2APIC topology), 0x80000008 and 0x8000001e (AMD
 * core count and extended APIC ID).  Everything else is KVM's supported set, unchanged.
 */
#include "cpuid.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MAX_ENTRIES 256

struct kvm_cpuid2 *cpuid_supported(int kvm_fd)
{
	size_t sz = sizeof(struct kvm_cpuid2) + MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, sz);

	if (!c)
		return NULL;
	c->nent = MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		free(c);
		return NULL;
	}
	return c;
}

static unsigned bits_for(unsigned n)
{
	unsigned b = 0;

	while ((1u << b) < n)
		b++;
	return b;
}

static bool is_intel(const struct kvm_cpuid2 *c)
{
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function == 0)
			return c->entries[i].ebx == 0x756e6547;	/* "Genu" */
	return false;
}

/* Topology leaves 0xb/0x1f: subleaf 0 is the thread level, 1 the core level, 2 ends the list. */
static void set_topology_leaf(struct kvm_cpuid_entry2 *e, unsigned index, unsigned ncpus)
{
	unsigned sub = e->index;

	e->edx = index;
	if (sub == 0) {
		e->eax = 0;
		e->ebx = 1;
		e->ecx = (1 << 8) | sub;
	} else if (sub == 1) {
		e->eax = bits_for(ncpus);
		e->ebx = ncpus;
		e->ecx = (2 << 8) | sub;
	} else {
		e->eax = e->ebx = 0;
		e->ecx = sub;
	}
}

static void patch_entry(struct kvm_cpuid_entry2 *e, unsigned index, unsigned ncpus, bool intel)
{
	switch (e->function) {
	case 1:
		e->ebx = (e->ebx & 0x0000ffff) | (ncpus << 16) | (index << 24);
		if (ncpus > 1)
			e->edx |= 1u << 28;	/* HTT: the logical count above is valid */
		e->ecx |= 1u << 31;		/* running under a hypervisor */
		break;
	case 4:
		if (intel && (e->eax & 0x1f)) {
			e->eax &= 0x3fff;
			e->eax |= (ncpus - 1) << 26;
		}
		break;
	case 0xb:
	case 0x1f:
		set_topology_leaf(e, index, ncpus);
		break;
	case 0x80000008:
		e->ecx = (bits_for(ncpus) << 12) | (ncpus - 1);
		break;
	case 0x8000001e:
		e->eax = index;
		e->ebx = index;		/* one thread per core, core ID = APIC ID */
		e->ecx = 0;		/* node 0, one node */
		break;
	}
}

struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *base, unsigned index, unsigned ncpus)
{
	size_t sz = sizeof(*base) + base->nent * sizeof(base->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	bool intel = is_intel(base);

	if (!c)
		return NULL;
	memcpy(c, base, sz);
	for (unsigned i = 0; i < c->nent; i++)
		patch_entry(&c->entries[i], index, ncpus, intel);
	return c;
}
