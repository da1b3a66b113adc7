/*
 * kvm_state.c - save and restore what KVM holds for the VM and each vCPU (see kvm_state.h).
 *
 * MSRs: KVM_GET_MSR_INDEX_LIST names every MSR KVM can save, but not every one is readable on
 * every vCPU configuration; we keep those KVM_GET_MSRS actually returns.  On restore, an MSR KVM
 * refuses to set is accepted only if it already holds the saved value.
 *
 * TSC deadline: KVM reports a deadline of 0 once the timer fired, while the interrupt it owes
 * may still be pending in KVM only, which no ioctl saves.  Restoring 0 would disarm the timer
 * and leave a guest waiting for a tick that never comes, so a 0 deadline in TSC-deadline mode
 * is saved as "now" (the TSC): the restored timer fires at once; at worst one spurious tick.
 */
#include "kvm_state.h"

#include "../../common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../../common/log.h"

#define MSR_IA32_TSC		0x10
#define MSR_IA32_TSC_DEADLINE	0x6e0
#define APIC_LVTT		0x320
#define APIC_LVT_TIMER_TSCDEADLINE 2
#define MSR_CHUNK		128	/* below KVM's limit of 255 per KVM_GET/SET_MSRS */

struct msr_batch {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[MSR_CHUNK];
};

static int fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s: %s", what, strerror(errno));
	return -1;
}

static unsigned min_u(unsigned a, unsigned b)
{
	return a < b ? a : b;
}

/* ---- MSRs ---- */

/* KVM's list of MSRs to save; NULL (errno set) on failure.  free() it. */
static struct kvm_msr_list *msr_index_list(int kvm_fd)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	struct kvm_msr_list *l;

	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return NULL;
	if (probe.nmsrs > SNAP_MAX_MSRS) {
		errno = E2BIG;
		return NULL;
	}
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(l->indices[0]));
	if (!l)
		return NULL;
	l->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		free(l);
		return NULL;
	}
	return l;
}

/* KVM_GET_MSRS stops at the first MSR it cannot read: keep what it read, skip that one. */
static int read_msrs(struct vcpu *v, const struct kvm_msr_list *l, struct snap_vcpu *s)
{
	struct msr_batch m;
	unsigned pos = 0;

	s->msrs = calloc(l->nmsrs ? l->nmsrs : 1, sizeof(s->msrs[0]));
	if (!s->msrs)
		return -1;
	while (pos < l->nmsrs) {
		unsigned k = min_u(l->nmsrs - pos, MSR_CHUNK);

		memset(&m, 0, sizeof(m));
		m.hdr.nmsrs = k;
		for (unsigned i = 0; i < k; i++)
			m.e[i].index = l->indices[pos + i];
		int got = ioctl(v->fd, KVM_GET_MSRS, &m);

		if (got < 0)
			return -1;
		memcpy(&s->msrs[s->nr_msrs], m.e, got * sizeof(m.e[0]));
		s->nr_msrs += got;
		pos += got + ((unsigned)got < k);
	}
	return 0;
}

static struct kvm_msr_entry *find_msr(struct snap_vcpu *s, uint32_t index)
{
	for (unsigned i = 0; i < s->nr_msrs; i++)
		if (s->msrs[i].index == index)
			return &s->msrs[i];
	return NULL;
}

static void fix_zero_tsc_deadline(struct snap_vcpu *s)
{
	struct kvm_msr_entry *deadline = find_msr(s, MSR_IA32_TSC_DEADLINE);
	struct kvm_msr_entry *tsc = find_msr(s, MSR_IA32_TSC);
	uint32_t lvtt;

	memcpy(&lvtt, &s->lapic.regs[APIC_LVTT], 4);
	if (((lvtt >> 17) & 3) != APIC_LVT_TIMER_TSCDEADLINE || !deadline || !tsc)
		return;
	if (deadline->data == 0)
		deadline->data = tsc->data;
}

static int save_msrs(struct vcpu *v, struct snap_vcpu *s, char *err, size_t errlen)
{
	struct kvm_msr_list *l = msr_index_list(v->vm->kvm_fd);
	int r;

	if (!l)
		return fail(err, errlen, "KVM_GET_MSR_INDEX_LIST");
	r = read_msrs(v, l, s);
	free(l);
	if (r)
		return fail(err, errlen, "KVM_GET_MSRS");
	fix_zero_tsc_deadline(s);
	return 0;
}

/* An MSR KVM will not set is harmless if it already holds the value we want. */
static bool msr_holds(struct vcpu *v, const struct kvm_msr_entry *want)
{
	struct msr_batch m;

	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = 1;
	m.e[0].index = want->index;
	return ioctl(v->fd, KVM_GET_MSRS, &m) == 1 && m.e[0].data == want->data;
}

static int restore_msrs(struct vcpu *v, const struct snap_vcpu *s, char *err, size_t errlen)
{
	struct msr_batch m;
	unsigned pos = 0;

	while (pos < s->nr_msrs) {
		unsigned k = min_u(s->nr_msrs - pos, MSR_CHUNK);

		memset(&m, 0, sizeof(m));
		m.hdr.nmsrs = k;
		memcpy(m.e, &s->msrs[pos], k * sizeof(m.e[0]));
		int set = ioctl(v->fd, KVM_SET_MSRS, &m);

		if (set < 0)
			return fail(err, errlen, "KVM_SET_MSRS");
		pos += set;
		if ((unsigned)set == k)
			continue;
		if (!msr_holds(v, &s->msrs[pos])) {
			snprintf(err, errlen, "KVM refuses MSR %#x = %#llx", s->msrs[pos].index,
				 (unsigned long long)s->msrs[pos].data);
			return -1;
		}
		log_debug("vCPU %u: MSR %#x not settable, already %#llx", v->index,
			  s->msrs[pos].index, (unsigned long long)s->msrs[pos].data);
		pos++;
	}
	return 0;
}

/* ---- FPU and extended state ---- */

static int xsave_size(struct vm *vm)
{
	int size = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

	if (size > 0)
		return size < SNAP_XSAVE_MIN ? SNAP_XSAVE_MIN : size;
	return ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0 ? SNAP_XSAVE_MIN : 0;
}

static int save_fpu(struct vcpu *v, struct snap_vcpu *s, char *err, size_t errlen)
{
	int size = xsave_size(v->vm);
	bool xsave2 = ioctl(v->vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2) > 0;

	if (!size) {
		s->fpu_kind = SNAP_FPU_LEGACY;
		return ioctl(v->fd, KVM_GET_FPU, &s->fpu) < 0 ? fail(err, errlen, "KVM_GET_FPU") : 0;
	}
	if (size > SNAP_XSAVE_MAX) {
		snprintf(err, errlen, "XSAVE area of %d bytes, more than kiln saves", size);
		return -1;
	}
	s->fpu_kind = SNAP_FPU_XSAVE;
	s->xsave_len = size;
	s->xsave = calloc(1, size);
	if (!s->xsave)
		return fail(err, errlen, "XSAVE buffer");
	if (ioctl(v->fd, xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, s->xsave) < 0)
		return fail(err, errlen, "KVM_GET_XSAVE");
	return 0;
}

static int restore_fpu(struct vcpu *v, const struct snap_vcpu *s, char *err, size_t errlen)
{
	int size = xsave_size(v->vm);
	uint8_t *buf;
	int r;

	if (s->fpu_kind == SNAP_FPU_LEGACY)
		return ioctl(v->fd, KVM_SET_FPU, &s->fpu) < 0 ? fail(err, errlen, "KVM_SET_FPU") : 0;
	if (!size) {
		snprintf(err, errlen, "the snapshot has XSAVE state and this KVM has no XSAVE");
		return -1;
	}
	/* KVM reads as many bytes as it needs now; missing components are zero (not in use). */
	if ((unsigned)size < s->xsave_len)
		size = s->xsave_len;
	buf = calloc(1, size);
	if (!buf)
		return fail(err, errlen, "XSAVE buffer");
	memcpy(buf, s->xsave, s->xsave_len);
	r = ioctl(v->fd, KVM_SET_XSAVE, buf);
	free(buf);
	return r < 0 ? fail(err, errlen, "KVM_SET_XSAVE") : 0;
}

static bool has_xcrs(struct vm *vm)
{
	return ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
}

/* ---- CPUID ---- */

static int save_cpuid(struct vcpu *v, struct snap_vcpu *s, char *err, size_t errlen)
{
	size_t sz = sizeof(struct kvm_cpuid2) + SNAP_MAX_CPUID * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, sz);

	if (!c)
		return fail(err, errlen, "CPUID buffer");
	c->nent = SNAP_MAX_CPUID;
	if (ioctl(v->fd, KVM_GET_CPUID2, c) < 0) {
		free(c);
		return fail(err, errlen, "KVM_GET_CPUID2");
	}
	s->nr_cpuid = c->nent;
	s->cpuid = malloc(c->nent * sizeof(c->entries[0]));
	if (s->cpuid)
		memcpy(s->cpuid, c->entries, c->nent * sizeof(c->entries[0]));
	free(c);
	return s->cpuid ? 0 : fail(err, errlen, "CPUID buffer");
}

struct kvm_cpuid2 *kvm_saved_cpuid(const struct snap_vcpu *s)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + s->nr_cpuid * sizeof(c->entries[0]));

	if (!c)
		return NULL;
	c->nent = s->nr_cpuid;
	memcpy(c->entries, s->cpuid, s->nr_cpuid * sizeof(c->entries[0]));
	return c;
}

/* ---- a whole vCPU ---- */

/*
 * MP state first: KVM_GET_MP_STATE makes KVM accept pending INIT/SIPI events, which can change
 * the registers and LAPIC read after it.  Events next: on kernels before 6.2, reading them is
 * what delivers a pending #PF's or #DB's payload into CR2 or DR6, which the special and debug
 * registers read after them must include (QEMU reads them first for the same reason).
 */
int kvm_save_vcpu(struct vcpu *v, struct snap_vcpu *s, char *err, size_t errlen)
{
	int fd = v->fd;

	if (ioctl(fd, KVM_GET_MP_STATE, &s->mp_state) < 0)
		return fail(err, errlen, "KVM_GET_MP_STATE");
	if (ioctl(fd, KVM_GET_VCPU_EVENTS, &s->events) < 0)
		return fail(err, errlen, "KVM_GET_VCPU_EVENTS");
	if (ioctl(fd, KVM_GET_REGS, &s->regs) < 0)
		return fail(err, errlen, "KVM_GET_REGS");
	if (ioctl(fd, KVM_GET_SREGS, &s->sregs) < 0)
		return fail(err, errlen, "KVM_GET_SREGS");
	if (save_fpu(v, s, err, errlen))
		return -1;
	s->has_xcrs = has_xcrs(v->vm);
	if (s->has_xcrs && ioctl(fd, KVM_GET_XCRS, &s->xcrs) < 0)
		return fail(err, errlen, "KVM_GET_XCRS");
	if (ioctl(fd, KVM_GET_DEBUGREGS, &s->debugregs) < 0)
		return fail(err, errlen, "KVM_GET_DEBUGREGS");
	if (ioctl(fd, KVM_GET_LAPIC, &s->lapic) < 0)
		return fail(err, errlen, "KVM_GET_LAPIC");
	if (save_msrs(v, s, err, errlen) || save_cpuid(v, s, err, errlen))
		return -1;
	return 0;
}

/*
 * CPUID was set when the vCPU was created.  Registers before events: KVM_SET_REGS drops a
 * pending exception that KVM_SET_VCPU_EVENTS brings back.  Special registers before the LAPIC:
 * they carry the APIC base.  LAPIC before MSRs: KVM ignores a TSC deadline unless the LAPIC
 * timer is already in TSC-deadline mode.
 */
int kvm_restore_vcpu(struct vcpu *v, const struct snap_vcpu *s, char *err, size_t errlen)
{
	int fd = v->fd;

	if (ioctl(fd, KVM_SET_MP_STATE, &s->mp_state) < 0)
		return fail(err, errlen, "KVM_SET_MP_STATE");
	if (ioctl(fd, KVM_SET_REGS, &s->regs) < 0)
		return fail(err, errlen, "KVM_SET_REGS");
	if (ioctl(fd, KVM_SET_SREGS, &s->sregs) < 0)
		return fail(err, errlen, "KVM_SET_SREGS");
	if (restore_fpu(v, s, err, errlen))
		return -1;
	if (s->has_xcrs && ioctl(fd, KVM_SET_XCRS, &s->xcrs) < 0)
		return fail(err, errlen, "KVM_SET_XCRS");
	if (ioctl(fd, KVM_SET_DEBUGREGS, &s->debugregs) < 0)
		return fail(err, errlen, "KVM_SET_DEBUGREGS");
	if (ioctl(fd, KVM_SET_LAPIC, &s->lapic) < 0)
		return fail(err, errlen, "KVM_SET_LAPIC");
	if (restore_msrs(v, s, err, errlen))
		return -1;
	if (ioctl(fd, KVM_SET_VCPU_EVENTS, &s->events) < 0)
		return fail(err, errlen, "KVM_SET_VCPU_EVENTS");
	return 0;
}

/* ---- the VM: interrupt controllers, PIT, kvmclock ---- */

static int get_chip(struct vm *vm, unsigned id, void *dst, size_t len, char *err, size_t errlen)
{
	struct kvm_irqchip chip = { .chip_id = id };

	if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
		return fail(err, errlen, "KVM_GET_IRQCHIP");
	memcpy(dst, &chip.chip, len);
	return 0;
}

static int set_chip(struct vm *vm, unsigned id, const void *src, size_t len, char *err,
		    size_t errlen)
{
	struct kvm_irqchip chip = { .chip_id = id };

	memcpy(&chip.chip, src, len);
	if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
		return fail(err, errlen, "KVM_SET_IRQCHIP");
	return 0;
}

int kvm_save_vm(struct vm *vm, struct snap_vm *s, char *err, size_t errlen)
{
	struct kvm_clock_data clock = { 0 };

	if (get_chip(vm, KVM_IRQCHIP_PIC_MASTER, &s->pic[0], sizeof(s->pic[0]), err, errlen) ||
	    get_chip(vm, KVM_IRQCHIP_PIC_SLAVE, &s->pic[1], sizeof(s->pic[1]), err, errlen) ||
	    get_chip(vm, KVM_IRQCHIP_IOAPIC, &s->ioapic, sizeof(s->ioapic), err, errlen))
		return -1;
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &s->pit) < 0)
		return fail(err, errlen, "KVM_GET_PIT2");
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return fail(err, errlen, "KVM_GET_CLOCK");
	s->clock = clock.clock;
	return 0;
}

/* Before any vCPU state: the clock first, so vCPUs come back to a kvmclock that is right. */
int kvm_restore_vm(struct vm *vm, const struct snap_vm *s, char *err, size_t errlen)
{
	struct kvm_clock_data clock = { .clock = s->clock };

	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return fail(err, errlen, "KVM_SET_CLOCK");
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &s->pit) < 0)
		return fail(err, errlen, "KVM_SET_PIT2");
	if (set_chip(vm, KVM_IRQCHIP_PIC_MASTER, &s->pic[0], sizeof(s->pic[0]), err, errlen) ||
	    set_chip(vm, KVM_IRQCHIP_PIC_SLAVE, &s->pic[1], sizeof(s->pic[1]), err, errlen) ||
	    set_chip(vm, KVM_IRQCHIP_IOAPIC, &s->ioapic, sizeof(s->ioapic), err, errlen))
		return -1;
	return 0;
}
