/*
 * vcpu.c - vCPU setup and the per-vCPU thread that runs KVM_RUN and dispatches its exits.
 *
 * Each vCPU is one thread.  Port I/O and MMIO exits are handed to the buses synchronously on
 * that thread; device code takes its own lock.  A vCPU is "kicked" with SIGUSR1: the handler
 * sets kvm_run.immediate_exit, so a kick that lands outside KVM_RUN is not lost, and the thread
 * answers the halt watch, or parks for a pause (vm.h), before it re-enters the guest.  Both
 * happen only where KVM_RUN returned EINTR, i.e. after KVM finished any I/O we had emulated.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "vm.h"

#define MSR_IA32_TSC		0x10
#define MSR_IA32_SYSENTER_CS	0x174
#define MSR_IA32_SYSENTER_ESP	0x175
#define MSR_IA32_SYSENTER_EIP	0x176
#define MSR_IA32_MISC_ENABLE	0x1a0
#define MSR_MTRR_DEF_TYPE	0x2ff
#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_CSTAR		0xc0000083
#define MSR_SYSCALL_MASK	0xc0000084
#define MSR_KERNEL_GS_BASE	0xc0000102

#define APIC_LVT0		0x350
#define APIC_LVT1		0x360
#define APIC_MODE_NMI		0x4
#define APIC_MODE_EXTINT	0x7

static __thread struct kvm_run *current_run;

static void kick_handler(int sig)
{
	(void)sig;
	if (current_run)
		current_run->immediate_exit = 1;
}

static int set_msrs(struct vcpu *v)
{
	static const struct { uint32_t index; uint64_t value; } boot_msrs[] = {
		{ MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 },
		{ MSR_IA32_SYSENTER_EIP, 0 }, { MSR_STAR, 0 }, { MSR_CSTAR, 0 },
		{ MSR_KERNEL_GS_BASE, 0 }, { MSR_SYSCALL_MASK, 0 }, { MSR_LSTAR, 0 },
		{ MSR_IA32_TSC, 0 },
		{ MSR_MTRR_DEF_TYPE, (1 << 11) | 6 },	/* MTRRs on, default write-back */
	};
	const unsigned n = sizeof(boot_msrs) / sizeof(boot_msrs[0]);
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[sizeof(boot_msrs) / sizeof(boot_msrs[0])];
	} m;

	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = n;
	for (unsigned i = 0; i < n; i++) {
		m.e[i].index = boot_msrs[i].index;
		m.e[i].data = boot_msrs[i].value;
	}
	return ioctl(v->fd, KVM_SET_MSRS, &m) == (int)n ? 0 : -1;
}

static int set_fpu(struct vcpu *v)
{
	struct kvm_fpu fpu;

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;	/* x87 reset state */
	fpu.mxcsr = 0x1f80;	/* SSE reset state */
	return ioctl(v->fd, KVM_SET_FPU, &fpu);
}

static void set_lvt_mode(struct kvm_lapic_state *l, unsigned reg, uint32_t mode)
{
	uint32_t val;

	memcpy(&val, &l->regs[reg], 4);
	val = (val & ~0x700u) | (mode << 8);
	memcpy(&l->regs[reg], &val, 4);
}

static int set_lint(struct vcpu *v)
{
	struct kvm_lapic_state l;

	if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0)
		return -1;
	set_lvt_mode(&l, APIC_LVT0, APIC_MODE_EXTINT);
	set_lvt_mode(&l, APIC_LVT1, APIC_MODE_NMI);
	return ioctl(v->fd, KVM_SET_LAPIC, &l);
}

int vcpu_create(struct vm *vm, unsigned i, const struct kvm_cpuid2 *cpuid, char *err, size_t errlen)
{
	struct vcpu *v = &vm->vcpu[i];
	const char *what;

	v->vm = vm;
	v->index = i;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
	what = "KVM_CREATE_VCPU";
	if (v->fd < 0)
		goto fail;
	v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	what = "mmap kvm_run";
	if (v->run == MAP_FAILED)
		goto fail;
	what = "KVM_SET_CPUID2";
	if (ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "vCPU %u: %s: %s", i, what, strerror(errno));
	return -1;
}

int vcpu_setup_boot(struct vcpu *v, char *err, size_t errlen)
{
	const char *what;

	what = "KVM_SET_MSRS";
	if (set_msrs(v))
		goto fail;
	what = "KVM_SET_FPU";
	if (set_fpu(v))
		goto fail;
	what = "LAPIC LINT setup";
	if (set_lint(v))
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "vCPU %u: %s: %s", v->index, what, strerror(errno));
	return -1;
}

/* A vCPU is done for good if it halted with interrupts off, or never left wait-for-SIPI. */
static bool vcpu_is_stopped(struct vcpu *v)
{
	struct kvm_mp_state mp;
	struct kvm_regs regs;

	if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0)
		return false;
	if (mp.mp_state == KVM_MP_STATE_UNINITIALIZED || mp.mp_state == KVM_MP_STATE_INIT_RECEIVED)
		return true;
	if (mp.mp_state != KVM_MP_STATE_HALTED || ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
		return false;
	return !(regs.rflags & (1 << 9));	/* IF */
}

static void answer_halt_watch(struct vcpu *v)
{
	unsigned gen = __atomic_load_n(&v->vm->watch_gen, __ATOMIC_ACQUIRE);

	if (gen == v->seen_gen)
		return;
	__atomic_store_n(&v->stopped, vcpu_is_stopped(v), __ATOMIC_RELEASE);
	__atomic_store_n(&v->seen_gen, gen, __ATOMIC_RELEASE);
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (run->io.direction == KVM_EXIT_IO_OUT)
			bus_write(&v->vm->pio, run->io.port, data, run->io.size);
		else
			bus_read(&v->vm->pio, run->io.port, data, run->io.size);
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned len = run->mmio.len <= 8 ? run->mmio.len : 8;

	if (run->mmio.is_write)
		bus_write(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
	else
		bus_read(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
}

static const char *system_event_name(uint32_t type)
{
	switch (type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN: return "shutdown";
	case KVM_SYSTEM_EVENT_RESET: return "reset";
	case KVM_SYSTEM_EVENT_CRASH: return "crash";
	default: return "unknown";
	}
}

/* Returns false when this vCPU must stop running. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct vm *vm = v->vm;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(v);
		return true;
	case KVM_EXIT_HLT:
		vm_request_exit(vm, VM_EXIT_OK, "guest halted");
		return false;
	case KVM_EXIT_SHUTDOWN: {
		struct kvm_regs regs = { 0 };

		ioctl(v->fd, KVM_GET_REGS, &regs);
		vm_request_exit(vm, VM_EXIT_GUEST, "guest triple fault on vCPU %u (rip %#llx)",
				v->index, (unsigned long long)regs.rip);
		return false;
	}
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_CRASH)
			vm_request_exit(vm, VM_EXIT_GUEST, "guest crashed (system event)");
		else
			vm_request_exit(vm, VM_EXIT_OK, "guest %s",
					system_event_name(run->system_event.type));
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vm_request_exit(vm, VM_EXIT_GUEST, "KVM entry failed on vCPU %u, hardware reason %#llx",
				v->index,
				(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		vm_request_exit(vm, VM_EXIT_GUEST, "KVM internal error on vCPU %u, suberror %u",
				v->index, run->internal.suberror);
		return false;
	default:
		vm_request_exit(vm, VM_EXIT_GUEST, "unhandled KVM exit %u on vCPU %u",
				run->exit_reason, v->index);
		return false;
	}
}

/* Wait out a pause; called where KVM_RUN returned EINTR, so the vCPU's state is final. */
static void park(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->pause_lock);
	vm->nr_parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (__atomic_load_n(&vm->pause_requested, __ATOMIC_SEQ_CST))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->nr_parked--;
	pthread_mutex_unlock(&vm->pause_lock);
}

static void running(struct vm *vm, int delta)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->nr_running += delta;
	pthread_cond_broadcast(&vm->pause_cond);	/* a pause need not wait for a thread gone */
	pthread_mutex_unlock(&vm->pause_lock);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;

	current_run = v->run;
	for (;;) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->run->immediate_exit = 0;
				answer_halt_watch(v);
				if (__atomic_load_n(&v->vm->pause_requested, __ATOMIC_SEQ_CST))
					park(v);
				continue;
			}
			vm_request_exit(v->vm, VM_EXIT_GUEST, "KVM_RUN on vCPU %u: %s",
					v->index, strerror(errno));
			break;
		}
		if (!handle_exit(v))
			break;
	}
	running(v->vm, -1);
	return NULL;
}

static void install_kick_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;	/* no SA_RESTART: KVM_RUN must return EINTR */
	sigaction(SIGUSR1, &sa, NULL);
}

int vcpu_start(struct vcpu *v)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	int r;

	pthread_once(&once, install_kick_handler);
	running(v->vm, +1);
	r = pthread_create(&v->thread, NULL, vcpu_thread, v);
	if (r)
		running(v->vm, -1);
	return r;
}

void vcpu_kick(struct vcpu *v)
{
	if (v->thread)
		pthread_kill(v->thread, SIGUSR1);
}
