/*
 * vm.h - one microVM: the KVM VM and its vCPUs, guest RAM, the I/O buses, and how the VM ends.
 *
 * Ending is centralised: whoever learns that the VM is over (a vCPU seeing a reset or a triple
 * fault, the console watcher seeing a panic, the halt watch seeing every vCPU stopped) calls
 * vm_request_exit() with a status and a one-line reason.  The first caller wins; the main thread
 * wakes on exit_fd, prints the reason and leaves.
 *
 * Pausing: vm_pause() raises pause_requested and kicks every vCPU.  A kicked vCPU re-enters
 * KVM_RUN with immediate_exit set, which completes any port I/O or MMIO it had handed to us
 * (so its registers are final) and returns at once; it then parks on pause_cond.  vm_pause()
 * returns once every running vCPU thread is parked: from then on nothing runs guest code.
 */
#ifndef KILN_VM_H
#define KILN_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "guest_mem.h"
#include "x86/mptable.h"

#define VM_MAX_VCPUS MPTABLE_MAX_CPUS

/* Exit statuses of kiln-vmm. */
#define VM_EXIT_OK	0	/* guest powered off, halted or rebooted */
#define VM_EXIT_GUEST	1	/* guest crashed: panic, triple fault, KVM refused to run it */
#define VM_EXIT_USAGE	2	/* bad arguments or unusable inputs; nothing was started */

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	/* halt watch: last generation this vCPU answered, and what it saw */
	unsigned seen_gen;
	bool stopped;
};

struct vm {
	int kvm_fd, vm_fd;
	struct guest_mem mem;
	struct bus pio, mmio;
	unsigned nr_vcpus;
	struct vcpu vcpu[VM_MAX_VCPUS];
	size_t run_size;

	int exit_fd;			/* eventfd, readable once an exit was requested */
	pthread_mutex_t exit_lock;
	bool exit_requested;
	int exit_status;
	char exit_reason[256];

	unsigned watch_gen;		/* halt watch generation, advanced by the main thread */

	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;	/* parked vCPUs wait here; vm_pause() waits for them */
	bool pause_requested;
	unsigned nr_running;		/* vCPU threads inside their run loop */
	unsigned nr_parked;
};

/*
 * Open KVM, create the VM, irqchip, PIT and guest RAM.  With mem_fd >= 0, RAM is that file
 * (a snapshot's memory) mapped private: read lazily, written copy-on-write, never changed.
 * -1 with a reason in err.
 */
int vm_create(struct vm *vm, uint64_t mem_bytes, int mem_fd, char *err, size_t errlen);

/* Create vCPU i with its CPUID.  -1 with a reason in err. */
int vcpu_create(struct vm *vm, unsigned i, const struct kvm_cpuid2 *cpuid, char *err, size_t errlen);
/* Reset-time MSRs, FPU and LAPIC LINT wiring for a freshly booted vCPU.  -1 with err. */
int vcpu_setup_boot(struct vcpu *v, char *err, size_t errlen);
int vcpu_start(struct vcpu *v);
void vcpu_kick(struct vcpu *v);

/*
 * Stop every vCPU outside KVM_RUN (see above); -1 with a reason in err if a vCPU did not stop
 * within timeout_ms or the VM is ending, and then nothing stays paused.  vm_resume() tells the
 * guest's kvmclock it was stopped (so its watchdogs do not count the pause) and lets them go.
 */
int vm_pause(struct vm *vm, unsigned timeout_ms, char *err, size_t errlen);
void vm_resume(struct vm *vm);

/* Drive an ISA/IOAPIC interrupt line; vm_irq_pulse gives the edge a virtio device needs. */
void vm_irq_line(struct vm *vm, unsigned irq, int level);
void vm_irq_pulse(struct vm *vm, unsigned irq);

void vm_request_exit(struct vm *vm, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Halt watch, called by the main thread a few times a second: true once the guest stopped. */
bool vm_guest_stopped(struct vm *vm);

#endif
