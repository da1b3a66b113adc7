/*
 * cpuid.h - the CPUID a kiln vCPU reports: what KVM supports on this host, with the topology
 * rewritten so that N vCPUs appear as N cores of one socket, one thread each, APIC ID = index.
 */
#ifndef KILN_X86_CPUID_H
#define KILN_X86_CPUID_H

#include <linux/kvm.h>

/* KVM_GET_SUPPORTED_CPUID; NULL on failure.  Free with free(). */
struct kvm_cpuid2 *cpuid_supported(int kvm_fd);

/* A copy of base patched for vCPU index of ncpus; NULL on allocation failure. */
struct kvm_cpuid2 *cpuid_for_vcpu(const struct kvm_cpuid2 *base, unsigned index, unsigned ncpus);

#endif
