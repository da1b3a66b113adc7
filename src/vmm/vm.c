/*
 * vm.c - KVM VM creation, guest RAM, interrupt lines, and pausing (see vm.h).
 */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "x86/layout.h"

static int fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s: %s", what, strerror(errno));
	return -1;
}

/*
 * Map one RAM region: anonymous, or file bytes [off, off+size) of a snapshot's memory.  Private
 * either way: clones restored from one file share its page cache until they write a page.
 */
static void *map_ram(uint64_t size, int fd, uint64_t off)
{
	/* NORESERVE: untouched guest pages cost nothing; the guest faults them in as it uses them. */
	int flags = MAP_PRIVATE | MAP_NORESERVE | (fd < 0 ? MAP_ANONYMOUS : 0);

	return mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, fd < 0 ? 0 : (off_t)off);
}

static int add_ram(struct vm *vm, uint64_t gpa, uint64_t size, int fd, char *err, size_t errlen)
{
	struct guest_mem *gm = &vm->mem;
	unsigned slot = gm->nr;
	void *host = map_ram(size, fd, gm->total);

	if (host == MAP_FAILED)
		return fail(err, errlen, "cannot map guest memory");
	madvise(host, size, MADV_MERGEABLE);

	struct kvm_userspace_memory_region r = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uintptr_t)host,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return fail(err, errlen, "KVM_SET_USER_MEMORY_REGION");
	gm->region[slot] = (struct gm_region){ .gpa = gpa, .size = size, .host = host };
	gm->nr++;
	gm->total += size;
	return 0;
}

/* A memory file holds the regions back to back, in guest-physical order. */
static int setup_ram(struct vm *vm, uint64_t bytes, int fd, char *err, size_t errlen)
{
	uint64_t low = bytes < MMIO_GAP_START ? bytes : MMIO_GAP_START;

	if (add_ram(vm, 0, low, fd, err, errlen))
		return -1;
	if (bytes > low)
		return add_ram(vm, MMIO_GAP_END, bytes - low, fd, err, errlen);
	return 0;
}

int vm_create(struct vm *vm, uint64_t mem_bytes, int mem_fd, char *err, size_t errlen)
{
	memset(vm, 0, sizeof(*vm));
	pthread_mutex_init(&vm->exit_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	vm->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->exit_fd < 0)
		return fail(err, errlen, "eventfd");

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return fail(err, errlen, "cannot open /dev/kvm");
	int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);

	if (version != KVM_API_VERSION) {
		snprintf(err, errlen, "KVM API version %d, expected %d", version, KVM_API_VERSION);
		return -1;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return fail(err, errlen, "KVM_CREATE_VM");
	int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);

	if (run_size <= 0)
		return fail(err, errlen, "KVM_GET_VCPU_MMAP_SIZE");
	vm->run_size = run_size;

	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0)
		return fail(err, errlen, "KVM_SET_TSS_ADDR");
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;

	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		return fail(err, errlen, "KVM_SET_IDENTITY_MAP_ADDR");
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return fail(err, errlen, "KVM_CREATE_IRQCHIP");

	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return fail(err, errlen, "KVM_CREATE_PIT2");
	return setup_ram(vm, mem_bytes, mem_fd, err, errlen);
}

void vm_irq_line(struct vm *vm, unsigned irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		vm_request_exit(vm, VM_EXIT_GUEST, "KVM_IRQ_LINE %u: %s", irq, strerror(errno));
}

void vm_irq_pulse(struct vm *vm, unsigned irq)
{
	vm_irq_line(vm, irq, 1);
	vm_irq_line(vm, irq, 0);
}

void vm_request_exit(struct vm *vm, int status, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&vm->exit_lock);
	if (!vm->exit_requested) {
		vm->exit_requested = true;
		vm->exit_status = status;
		va_start(ap, fmt);
		vsnprintf(vm->exit_reason, sizeof(vm->exit_reason), fmt, ap);
		va_end(ap);
		uint64_t one = 1;
		/* Cannot fail: one increment of a fresh eventfd counter never overflows it. */
		ssize_t r = write(vm->exit_fd, &one, sizeof(one));

		(void)r;
	}
	pthread_mutex_unlock(&vm->exit_lock);
}

bool vm_guest_stopped(struct vm *vm)
{
	unsigned gen = __atomic_load_n(&vm->watch_gen, __ATOMIC_ACQUIRE);
	bool all = true;

	/* Judge the answers to the previous round, then start the next one. */
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpu[i];

		if (__atomic_load_n(&v->seen_gen, __ATOMIC_ACQUIRE) != gen ||
		    !__atomic_load_n(&v->stopped, __ATOMIC_ACQUIRE))
			all = false;
	}
	if (gen && all)
		return true;
	__atomic_store_n(&vm->watch_gen, gen + 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpu[i]);
	return false;
}

static void deadline_after(struct timespec *t, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, t);
	t->tv_sec += ms / 1000;
	t->tv_nsec += (ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

/* Written under exit_lock by whoever ends the VM; a vCPU that ends also leaves nr_running. */
static bool ending(struct vm *vm)
{
	return __atomic_load_n(&vm->exit_requested, __ATOMIC_ACQUIRE);
}

static void set_pause_requested(struct vm *vm, bool on)
{
	pthread_mutex_lock(&vm->pause_lock);
	__atomic_store_n(&vm->pause_requested, on, __ATOMIC_SEQ_CST);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

int vm_pause(struct vm *vm, unsigned timeout_ms, char *err, size_t errlen)
{
	struct timespec deadline;
	int r = 0;

	/* Raise the flag before the kicks: a vCPU checks it after clearing immediate_exit. */
	set_pause_requested(vm, true);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(&vm->vcpu[i]);
	deadline_after(&deadline, timeout_ms);
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->nr_parked < vm->nr_running && !ending(vm) && r == 0)
		r = pthread_cond_timedwait(&vm->pause_cond, &vm->pause_lock, &deadline);
	bool parked = vm->nr_parked == vm->nr_running && !ending(vm);

	pthread_mutex_unlock(&vm->pause_lock);
	if (parked)
		return 0;
	set_pause_requested(vm, false);
	snprintf(err, errlen, "%s", ending(vm) ? "the VM is ending" : "a vCPU did not stop in time");
	return -1;
}

void vm_resume(struct vm *vm)
{
	/* Best effort: fails (EINVAL) if the guest never enabled kvmclock. */
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		ioctl(vm->vcpu[i].fd, KVM_KVMCLOCK_CTRL, 0);
	set_pause_requested(vm, false);
}
