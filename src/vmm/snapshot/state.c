/*
 * state.c - encode and decode a snapshot's state file (see state.h for the layout).
 *
 * The decoder is written for hostile input: each count is checked against its limit before
 * anything is allocated for it, each fixed-size structure must have exactly its size, each
 * section must be consumed exactly, and nothing past the first error is believed.
 */
#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAG_CONF	SNAP_TAG('C', 'O', 'N', 'F')
#define TAG_VCPU	SNAP_TAG('V', 'C', 'P', 'U')
#define TAG_VMST	SNAP_TAG('V', 'M', 'S', 'T')
#define TAG_SERL	SNAP_TAG('S', 'E', 'R', 'L')
#define TAG_KBDC	SNAP_TAG('K', 'B', 'D', 'C')
#define TAG_VDEV	SNAP_TAG('V', 'D', 'E', 'V')

const char *snap_dev_name(uint32_t kind)
{
	switch (kind) {
	case SNAP_DEV_BLK: return "blk";
	case SNAP_DEV_RNG: return "rng";
	case SNAP_DEV_VSOCK: return "vsock";
	case SNAP_DEV_NET: return "net";
	default: return "unknown";
	}
}

/* ---- encoding ---- */

static void put_ident(struct sbuf *b, const struct dev_ident *d)
{
	sbuf_u32(b, d->kind);
	switch (d->kind) {
	case SNAP_DEV_BLK:
		sbuf_str(b, d->path);
		sbuf_u8(b, d->read_only);
		sbuf_str(b, d->id);
		sbuf_u64(b, d->sectors);
		break;
	case SNAP_DEV_VSOCK:
		sbuf_u32(b, d->cid);
		sbuf_str(b, d->path);
		break;
	case SNAP_DEV_NET:
		sbuf_str(b, d->path);
		sbuf_blob(b, d->mac, sizeof(d->mac));
		for (unsigned i = 0; i < 4; i++)
			sbuf_u64(b, d->rate[i]);
		break;
	}
}

static void put_config(struct sbuf *b, const struct snap_vm *s)
{
	size_t m = sbuf_begin(b, TAG_CONF);

	sbuf_u32(b, s->nr_vcpus);
	sbuf_u64(b, s->memory_mib);
	sbuf_u32(b, s->nr_devs);
	for (unsigned i = 0; i < s->nr_devs; i++)
		put_ident(b, &s->dev[i]);
	sbuf_end(b, m);
}

static void put_vcpu(struct sbuf *b, const struct snap_vcpu *v, unsigned index)
{
	size_t m = sbuf_begin(b, TAG_VCPU);

	sbuf_u32(b, index);
	sbuf_blob(b, &v->regs, sizeof(v->regs));
	sbuf_blob(b, &v->sregs, sizeof(v->sregs));
	sbuf_u32(b, v->fpu_kind);
	if (v->fpu_kind == SNAP_FPU_XSAVE)
		sbuf_blob(b, v->xsave, v->xsave_len);
	else
		sbuf_blob(b, &v->fpu, sizeof(v->fpu));
	sbuf_u8(b, v->has_xcrs);
	if (v->has_xcrs)
		sbuf_blob(b, &v->xcrs, sizeof(v->xcrs));
	sbuf_blob(b, &v->lapic, sizeof(v->lapic));
	sbuf_u32(b, v->mp_state.mp_state);
	sbuf_blob(b, &v->events, sizeof(v->events));
	sbuf_blob(b, &v->debugregs, sizeof(v->debugregs));
	sbuf_u32(b, v->nr_msrs);
	for (unsigned i = 0; i < v->nr_msrs; i++) {
		sbuf_u32(b, v->msrs[i].index);
		sbuf_u64(b, v->msrs[i].data);
	}
	sbuf_u32(b, v->nr_cpuid);
	sbuf_put(b, v->cpuid, (size_t)v->nr_cpuid * sizeof(v->cpuid[0]));
	sbuf_end(b, m);
}

static void put_vm(struct sbuf *b, const struct snap_vm *s)
{
	size_t m = sbuf_begin(b, TAG_VMST);

	sbuf_blob(b, &s->pic[0], sizeof(s->pic[0]));
	sbuf_blob(b, &s->pic[1], sizeof(s->pic[1]));
	sbuf_blob(b, &s->ioapic, sizeof(s->ioapic));
	sbuf_blob(b, &s->pit, sizeof(s->pit));
	sbuf_u64(b, s->clock);
	sbuf_end(b, m);
}

static void put_blob_section(struct sbuf *b, uint32_t tag, const struct snap_blob *blob)
{
	size_t m = sbuf_begin(b, tag);

	sbuf_blob(b, blob->p, blob->len);
	sbuf_end(b, m);
}

static void put_device(struct sbuf *b, const struct snap_vm *s, unsigned i)
{
	size_t m = sbuf_begin(b, TAG_VDEV);

	sbuf_u32(b, s->dev[i].kind);
	sbuf_blob(b, s->dev_state[i].p, s->dev_state[i].len);
	sbuf_end(b, m);
}

void snap_encode(const struct snap_vm *s, struct sbuf *b)
{
	snap_file_begin(b);
	put_config(b, s);
	for (unsigned i = 0; i < s->nr_vcpus; i++)
		put_vcpu(b, &s->vcpu[i], i);
	put_vm(b, s);
	put_blob_section(b, TAG_SERL, &s->serial);
	put_blob_section(b, TAG_KBDC, &s->i8042);
	for (unsigned i = 0; i < s->nr_devs; i++)
		put_device(b, s, i);
	snap_file_seal(b);
}

/* ---- decoding ---- */

static bool get_blk(struct sreader *r, struct dev_ident *d)
{
	sr_str(r, d->path, sizeof(d->path), "disk path");
	d->read_only = sr_bool(r, "disk read-only flag");
	sr_str(r, d->id, sizeof(d->id), "disk serial");
	d->sectors = sr_u64(r, "disk sectors");
	if (sr_ok(r) && !d->path[0])
		return sr_fail(r, "disk path is empty");
	return sr_ok(r);
}

static bool get_vsock(struct sreader *r, struct dev_ident *d)
{
	d->cid = sr_u32(r, "vsock CID");
	sr_str(r, d->path, SNAP_VSOCK_PATH_MAX, "vsock socket path");
	if (sr_ok(r) && (d->cid < 3 || d->cid == UINT32_MAX))
		return sr_fail(r, "vsock CID %u is reserved", d->cid);
	if (sr_ok(r) && !d->path[0])
		return sr_fail(r, "vsock socket path is empty");
	return sr_ok(r);
}

static bool get_net(struct sreader *r, struct dev_ident *d)
{
	sr_str(r, d->path, 16, "net tap name");
	sr_blob_exact(r, d->mac, sizeof(d->mac), "net MAC address");
	for (unsigned i = 0; i < 4; i++)
		d->rate[i] = sr_u64(r, "net rate limit");
	d->fd = -1;
	if (sr_ok(r) && (d->mac[0] & 1))
		return sr_fail(r, "net MAC address is a multicast address");
	return sr_ok(r);
}

/* Device identities; at most SNAP_MAX_DISKS disks, one entropy and one vsock device. */
static bool get_idents(struct sreader *r, struct snap_vm *s)
{
	unsigned count[5] = { 0 };

	for (unsigned i = 0; i < s->nr_devs && sr_ok(r); i++) {
		struct dev_ident *d = &s->dev[i];

		d->kind = sr_u32(r, "device kind");
		if (!sr_ok(r))
			break;
		if (d->kind < SNAP_DEV_BLK || d->kind > SNAP_DEV_NET)
			return sr_fail(r, "device %u: unknown kind %u", i, d->kind);
		count[d->kind]++;
		if (d->kind == SNAP_DEV_BLK)
			get_blk(r, d);
		else if (d->kind == SNAP_DEV_VSOCK)
			get_vsock(r, d);
		else if (d->kind == SNAP_DEV_NET)
			get_net(r, d);
	}
	if (count[SNAP_DEV_BLK] > SNAP_MAX_DISKS)
		return sr_fail(r, "%u disks, at most %u", count[SNAP_DEV_BLK], SNAP_MAX_DISKS);
	if (count[SNAP_DEV_RNG] > 1 || count[SNAP_DEV_VSOCK] > 1 || count[SNAP_DEV_NET] > 1)
		return sr_fail(r, "more than one entropy, vsock or net device");
	return sr_ok(r);
}

static bool get_config(struct sreader *file, struct snap_vm *s)
{
	struct sreader r;

	if (!sr_section(file, TAG_CONF, &r, "configuration"))
		return false;
	s->nr_vcpus = sr_u32(&r, "vCPU count");
	s->memory_mib = sr_u64(&r, "memory size");
	s->nr_devs = sr_u32(&r, "device count");
	if (!sr_ok(&r))
		return false;
	if (s->nr_vcpus < 1 || s->nr_vcpus > VM_MAX_VCPUS)
		return sr_fail(&r, "%u vCPUs (1 to %u)", s->nr_vcpus, VM_MAX_VCPUS);
	if (s->memory_mib < GUEST_MEM_MIN_MIB || s->memory_mib > SNAP_MAX_MEMORY_MIB)
		return sr_fail(&r, "memory size %llu MiB out of range",
			       (unsigned long long)s->memory_mib);
	if (s->nr_devs > SNAP_MAX_DEVICES)
		return sr_fail(&r, "%u devices, at most %u", s->nr_devs, SNAP_MAX_DEVICES);
	get_idents(&r, s);
	return sr_end(&r, "configuration");
}

static bool get_fpu(struct sreader *r, struct snap_vcpu *v)
{
	const void *p;

	v->fpu_kind = sr_u32(r, "FPU kind");
	if (!sr_ok(r))
		return false;
	if (v->fpu_kind == SNAP_FPU_LEGACY)
		return sr_blob_exact(r, &v->fpu, sizeof(v->fpu), "FPU");
	if (v->fpu_kind != SNAP_FPU_XSAVE)
		return sr_fail(r, "unknown FPU kind %u", v->fpu_kind);
	p = sr_blob(r, SNAP_XSAVE_MIN, SNAP_XSAVE_MAX, &v->xsave_len, "XSAVE area");
	if (!sr_ok(r))
		return false;
	if (v->xsave_len % 4)
		return sr_fail(r, "XSAVE area of %u bytes is not whole words", v->xsave_len);
	v->xsave = malloc(v->xsave_len);
	if (!v->xsave)
		return sr_fail(r, "out of memory");
	memcpy(v->xsave, p, v->xsave_len);
	return true;
}

static bool get_xcrs(struct sreader *r, struct snap_vcpu *v)
{
	v->has_xcrs = sr_bool(r, "XCRs flag");
	if (!v->has_xcrs)
		return sr_ok(r);
	if (!sr_blob_exact(r, &v->xcrs, sizeof(v->xcrs), "XCRs"))
		return false;
	if (v->xcrs.nr_xcrs > KVM_MAX_XCRS)
		return sr_fail(r, "%u XCRs, at most %u", v->xcrs.nr_xcrs, KVM_MAX_XCRS);
	return true;
}

static bool get_msrs(struct sreader *r, struct snap_vcpu *v)
{
	v->nr_msrs = sr_u32(r, "MSR count");
	if (!sr_ok(r))
		return false;
	if (v->nr_msrs > SNAP_MAX_MSRS)
		return sr_fail(r, "%u MSRs, at most %u", v->nr_msrs, SNAP_MAX_MSRS);
	/* Check the bytes are there before allocating for them. */
	if ((size_t)v->nr_msrs * 12 > r->len - r->off)
		return sr_fail(r, "MSRs: truncated");
	v->msrs = calloc(v->nr_msrs ? v->nr_msrs : 1, sizeof(v->msrs[0]));
	if (!v->msrs)
		return sr_fail(r, "out of memory");
	for (unsigned i = 0; i < v->nr_msrs; i++) {
		v->msrs[i].index = sr_u32(r, "MSR index");
		v->msrs[i].data = sr_u64(r, "MSR value");
	}
	return sr_ok(r);
}

static bool get_cpuid(struct sreader *r, struct snap_vcpu *v)
{
	size_t size;
	const void *p;

	v->nr_cpuid = sr_u32(r, "CPUID entry count");
	if (!sr_ok(r))
		return false;
	if (v->nr_cpuid < 1 || v->nr_cpuid > SNAP_MAX_CPUID)
		return sr_fail(r, "%u CPUID entries (1 to %u)", v->nr_cpuid, SNAP_MAX_CPUID);
	size = (size_t)v->nr_cpuid * sizeof(v->cpuid[0]);
	p = sr_bytes(r, size, "CPUID entries");
	if (!p)
		return false;
	v->cpuid = malloc(size);
	if (!v->cpuid)
		return sr_fail(r, "out of memory");
	memcpy(v->cpuid, p, size);
	return true;
}

static bool get_vcpu(struct sreader *file, struct snap_vcpu *v, unsigned index)
{
	struct sreader r;
	char what[32];
	uint32_t n;

	snprintf(what, sizeof(what), "vCPU %u", index);
	if (!sr_section(file, TAG_VCPU, &r, what))
		return false;
	n = sr_u32(&r, "vCPU index");
	if (sr_ok(&r) && n != index)
		return sr_fail(&r, "%s: section holds vCPU %u", what, n);
	sr_blob_exact(&r, &v->regs, sizeof(v->regs), "registers");
	sr_blob_exact(&r, &v->sregs, sizeof(v->sregs), "special registers");
	get_fpu(&r, v);
	get_xcrs(&r, v);
	sr_blob_exact(&r, &v->lapic, sizeof(v->lapic), "LAPIC");
	v->mp_state.mp_state = sr_u32(&r, "MP state");
	if (sr_ok(&r) && v->mp_state.mp_state > KVM_MP_STATE_SIPI_RECEIVED)
		return sr_fail(&r, "%s: MP state %u is not an x86 one", what, v->mp_state.mp_state);
	sr_blob_exact(&r, &v->events, sizeof(v->events), "vCPU events");
	sr_blob_exact(&r, &v->debugregs, sizeof(v->debugregs), "debug registers");
	get_msrs(&r, v);
	get_cpuid(&r, v);
	return sr_end(&r, what);
}

static bool get_vm(struct sreader *file, struct snap_vm *s)
{
	struct sreader r;

	if (!sr_section(file, TAG_VMST, &r, "VM state"))
		return false;
	sr_blob_exact(&r, &s->pic[0], sizeof(s->pic[0]), "PIC master");
	sr_blob_exact(&r, &s->pic[1], sizeof(s->pic[1]), "PIC slave");
	sr_blob_exact(&r, &s->ioapic, sizeof(s->ioapic), "IOAPIC");
	sr_blob_exact(&r, &s->pit, sizeof(s->pit), "PIT");
	s->clock = sr_u64(&r, "kvmclock");
	return sr_end(&r, "VM state");
}

static bool get_blob(struct sreader *r, struct snap_blob *b, const char *what)
{
	b->p = sr_blob(r, 0, SNAP_MAX_DEV_STATE, &b->len, what);
	return sr_ok(r);
}

static bool get_blob_section(struct sreader *file, uint32_t tag, struct snap_blob *b,
			     const char *what)
{
	struct sreader r;

	if (!sr_section(file, tag, &r, what))
		return false;
	get_blob(&r, b, what);
	return sr_end(&r, what);
}

static bool get_device(struct sreader *file, struct snap_vm *s, unsigned i)
{
	struct sreader r;
	char what[32];
	uint32_t kind;

	snprintf(what, sizeof(what), "device %u", i);
	if (!sr_section(file, TAG_VDEV, &r, what))
		return false;
	kind = sr_u32(&r, "device kind");
	if (sr_ok(&r) && kind != s->dev[i].kind)
		return sr_fail(&r, "%s: state of a %s device, configured as %s", what,
			       snap_dev_name(kind), snap_dev_name(s->dev[i].kind));
	get_blob(&r, &s->dev_state[i], what);
	return sr_end(&r, what);
}

static bool decode(struct sreader *r, struct snap_vm *s)
{
	if (!get_config(r, s))
		return false;
	for (unsigned i = 0; i < s->nr_vcpus; i++)
		if (!get_vcpu(r, &s->vcpu[i], i))
			return false;
	if (!get_vm(r, s) ||
	    !get_blob_section(r, TAG_SERL, &s->serial, "serial port") ||
	    !get_blob_section(r, TAG_KBDC, &s->i8042, "i8042"))
		return false;
	for (unsigned i = 0; i < s->nr_devs; i++)
		if (!get_device(r, s, i))
			return false;
	return sr_end(r, "state file");
}

int snap_decode(const void *p, size_t len, struct snap_vm *s, char *err, size_t errlen)
{
	struct sr_error e;
	struct sreader r;

	memset(s, 0, sizeof(*s));
	if (len > SNAP_MAX_FILE) {
		snprintf(err, errlen, "%zu bytes, more than any state file (%u)", len, SNAP_MAX_FILE);
		return -1;
	}
	if (snap_file_open(p, len, &r, &e) && decode(&r, s))
		return 0;
	snprintf(err, errlen, "%s", e.msg);
	return -1;
}

void snap_vm_free(struct snap_vm *s)
{
	for (unsigned i = 0; i < VM_MAX_VCPUS; i++) {
		free(s->vcpu[i].xsave);
		free(s->vcpu[i].msrs);
		free(s->vcpu[i].cpuid);
		s->vcpu[i].xsave = NULL;
		s->vcpu[i].msrs = NULL;
		s->vcpu[i].cpuid = NULL;
	}
}
