/*
 * kvm_state.h - KVM's half of a snapshot: everything KVM keeps about the guest, read into and
 * written back from the plain structures of state.h.
 *
 * Saving runs on the main thread while every vCPU is parked (vm_pause), so no vCPU ioctl races
 * a KVM_RUN.  Restoring runs before any vCPU thread starts.  The order of the ioctls matters
 * and is explained where they are made.
 */
#ifndef KILN_SNAPSHOT_KVM_STATE_H
#define KILN_SNAPSHOT_KVM_STATE_H

#include <stddef.h>

#include "../vm.h"
#include "state.h"

/* -1 with a reason in err; s may then hold partial allocations (snap_vm_free releases them). */
int kvm_save_vcpu(struct vcpu *v, struct snap_vcpu *s, char *err, size_t errlen);
int kvm_save_vm(struct vm *vm, struct snap_vm *s, char *err, size_t errlen);

/* The saved CPUID as vcpu_create() takes it; NULL if out of memory.  free() it. */
struct kvm_cpuid2 *kvm_saved_cpuid(const struct snap_vcpu *s);

/* Apply saved state to a vCPU created with kvm_saved_cpuid(), or to the VM; -1 with err. */
int kvm_restore_vcpu(struct vcpu *v, const struct snap_vcpu *s, char *err, size_t errlen);
int kvm_restore_vm(struct vm *vm, const struct snap_vm *s, char *err, size_t errlen);

#endif
