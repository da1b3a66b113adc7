/*
 * test_snapshot.c - the snapshot state file: round trips through snap_encode/snap_decode, and a
 * reader that refuses every broken file a disk, an old kiln or a tamperer could hand it:
 * truncated, corrupted, wrong magic, wrong version, wrong length, absurd counts and sizes.
 *
 * The test has its own writer for the layout documented in state.h (build()), with knobs to
 * make each field lie.  With no knob turned it must produce exactly the bytes snap_encode()
 * does, which checks the documentation against the code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/vmm/snapshot/format.h"
#include "../../src/vmm/snapshot/state.h"

#define NR_MSRS		3
#define NR_CPUID	4
#define XSAVE_LEN	4096

/* ---- a valid machine state with recognisable contents ---- */

static void fill(void *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		((uint8_t *)p)[i] = (uint8_t)(seed + i * 7);
}

static const uint8_t serial_bytes[] = { 1, 3, 8, 0, 1, 0, 0xc1, 1, 0, 0 };
static const uint8_t kbd_bytes[] = { 0x45, 0, 0, 0 };
static const uint8_t dev_bytes[3][5] = { { 1, 2, 3, 4, 5 }, { 6 }, { 7, 8 } };

static void sample_vcpu(struct snap_vcpu *v, unsigned i)
{
	fill(&v->regs, sizeof(v->regs), 1 + i);
	fill(&v->sregs, sizeof(v->sregs), 2 + i);
	if (i == 0) {
		v->fpu_kind = SNAP_FPU_XSAVE;
		v->xsave_len = XSAVE_LEN;
		v->xsave = malloc(XSAVE_LEN);
		fill(v->xsave, XSAVE_LEN, 3);
	} else {
		v->fpu_kind = SNAP_FPU_LEGACY;
		fill(&v->fpu, sizeof(v->fpu), 4);
	}
	v->has_xcrs = i == 0;
	v->xcrs.nr_xcrs = 1;
	v->xcrs.xcrs[0].value = 7;
	fill(&v->lapic, sizeof(v->lapic), 5 + i);
	v->mp_state.mp_state = i ? KVM_MP_STATE_HALTED : KVM_MP_STATE_RUNNABLE;
	fill(&v->events, sizeof(v->events), 6);
	fill(&v->debugregs, sizeof(v->debugregs), 7);
	v->nr_msrs = NR_MSRS;
	v->msrs = calloc(NR_MSRS, sizeof(v->msrs[0]));
	for (unsigned k = 0; k < NR_MSRS; k++)
		v->msrs[k] = (struct kvm_msr_entry){ .index = 0x10 + k, .data = 1000 * k + i };
	v->nr_cpuid = NR_CPUID;
	v->cpuid = calloc(NR_CPUID, sizeof(v->cpuid[0]));
	fill(v->cpuid, NR_CPUID * sizeof(v->cpuid[0]), 8);
}

static struct snap_vm *sample(void)
{
	struct snap_vm *s = calloc(1, sizeof(*s));

	s->nr_vcpus = 2;
	s->memory_mib = 256;
	s->nr_devs = 3;
	s->dev[0] = (struct dev_ident){ .kind = SNAP_DEV_BLK, .path = "disk0", .read_only = false,
					.id = "root", .sectors = 32768 };
	s->dev[1] = (struct dev_ident){ .kind = SNAP_DEV_RNG };
	s->dev[2] = (struct dev_ident){ .kind = SNAP_DEV_VSOCK, .cid = 42, .path = "/run/v.sock" };
	for (unsigned i = 0; i < s->nr_vcpus; i++)
		sample_vcpu(&s->vcpu[i], i);
	fill(s->pic, sizeof(s->pic), 9);
	fill(&s->ioapic, sizeof(s->ioapic), 10);
	fill(&s->pit, sizeof(s->pit), 11);
	s->clock = 123456789;
	s->serial = (struct snap_blob){ serial_bytes, sizeof(serial_bytes) };
	s->i8042 = (struct snap_blob){ kbd_bytes, sizeof(kbd_bytes) };
	s->dev_state[0] = (struct snap_blob){ dev_bytes[0], 5 };
	s->dev_state[1] = (struct snap_blob){ dev_bytes[1], 0 };
	s->dev_state[2] = (struct snap_blob){ dev_bytes[2], 2 };
	return s;
}

static void free_sample(struct snap_vm *s)
{
	snap_vm_free(s);
	free(s);
}

/* ---- the test's own writer, with knobs ---- */

struct knobs {
	uint32_t nr_vcpus, nr_devs, dev_kind, vcpu_index, fpu_kind, xsave_len, mp_state;
	uint32_t nr_xcrs, nr_msrs, msrs_written, nr_cpuid, cid, blob_len, dev_state_kind;
	uint64_t memory_mib;
	uint8_t read_only;
	const char *path;
	size_t path_len;
	uint32_t regs_len;
	uint32_t conf_tag;
	bool extra_byte_in_vm_section;
};

static const struct knobs good = {
	.nr_vcpus = 2, .nr_devs = 3, .dev_kind = SNAP_DEV_BLK, .vcpu_index = 0,
	.fpu_kind = SNAP_FPU_XSAVE, .xsave_len = XSAVE_LEN, .mp_state = KVM_MP_STATE_RUNNABLE,
	.nr_xcrs = 1, .nr_msrs = NR_MSRS, .msrs_written = NR_MSRS, .nr_cpuid = NR_CPUID, .cid = 42,
	.blob_len = 5, .dev_state_kind = SNAP_DEV_BLK, .memory_mib = 256, .read_only = 0,
	.path = "disk0", .path_len = 5, .regs_len = sizeof(struct kvm_regs),
	.conf_tag = SNAP_TAG('C', 'O', 'N', 'F'),
};

static void w_blob_of(struct sbuf *b, const void *p, uint32_t declared, uint32_t actual)
{
	sbuf_u32(b, declared);
	sbuf_put(b, p, actual);
}

static void w_config(struct sbuf *b, const struct knobs *k)
{
	static char path[SNAP_PATH_MAX + 1];
	size_t m = sbuf_begin(b, k->conf_tag);

	memset(path, 'a', sizeof(path));
	memcpy(path, k->path, k->path_len < 6 ? k->path_len : 6);

	sbuf_u32(b, k->nr_vcpus);
	sbuf_u64(b, k->memory_mib);
	sbuf_u32(b, k->nr_devs);
	sbuf_u32(b, k->dev_kind);
	if (k->dev_kind == SNAP_DEV_BLK) {
		w_blob_of(b, path, k->path_len, k->path_len);
		sbuf_u8(b, k->read_only);
		sbuf_str(b, "root");
		sbuf_u64(b, 32768);
	}
	sbuf_u32(b, SNAP_DEV_RNG);
	sbuf_u32(b, SNAP_DEV_VSOCK);
	sbuf_u32(b, k->cid);
	sbuf_str(b, "/run/v.sock");
	sbuf_end(b, m);
}

static void w_vcpu(struct sbuf *b, const struct snap_vcpu *v, unsigned i, const struct knobs *k)
{
	size_t m = sbuf_begin(b, SNAP_TAG('V', 'C', 'P', 'U'));
	struct kvm_xcrs xcrs = v->xcrs;

	sbuf_u32(b, i == 0 ? k->vcpu_index : i);
	w_blob_of(b, &v->regs, k->regs_len, k->regs_len <= sizeof(v->regs) ? k->regs_len : 0);
	sbuf_blob(b, &v->sregs, sizeof(v->sregs));
	if (i == 0) {
		static uint8_t xsave[SNAP_XSAVE_MAX + 4];

		memcpy(xsave, v->xsave, XSAVE_LEN);
		sbuf_u32(b, k->fpu_kind);
		sbuf_blob(b, xsave, k->xsave_len <= sizeof(xsave) ? k->xsave_len : 0);
	} else {
		sbuf_u32(b, SNAP_FPU_LEGACY);
		sbuf_blob(b, &v->fpu, sizeof(v->fpu));
	}
	sbuf_u8(b, v->has_xcrs);
	xcrs.nr_xcrs = k->nr_xcrs;
	if (v->has_xcrs)
		sbuf_blob(b, &xcrs, sizeof(xcrs));
	sbuf_blob(b, &v->lapic, sizeof(v->lapic));
	sbuf_u32(b, i == 0 ? k->mp_state : v->mp_state.mp_state);
	sbuf_blob(b, &v->events, sizeof(v->events));
	sbuf_blob(b, &v->debugregs, sizeof(v->debugregs));
	sbuf_u32(b, i == 0 ? k->nr_msrs : v->nr_msrs);
	for (unsigned n = 0; n < (i == 0 ? k->msrs_written : v->nr_msrs); n++) {
		sbuf_u32(b, v->msrs[n % NR_MSRS].index);
		sbuf_u64(b, v->msrs[n % NR_MSRS].data);
	}
	sbuf_u32(b, i == 0 ? k->nr_cpuid : v->nr_cpuid);
	sbuf_put(b, v->cpuid, NR_CPUID * sizeof(v->cpuid[0]));
	sbuf_end(b, m);
}

static void w_rest(struct sbuf *b, const struct snap_vm *s, const struct knobs *k)
{
	size_t m = sbuf_begin(b, SNAP_TAG('V', 'M', 'S', 'T'));

	sbuf_blob(b, &s->pic[0], sizeof(s->pic[0]));
	sbuf_blob(b, &s->pic[1], sizeof(s->pic[1]));
	sbuf_blob(b, &s->ioapic, sizeof(s->ioapic));
	sbuf_blob(b, &s->pit, sizeof(s->pit));
	sbuf_u64(b, s->clock);
	if (k->extra_byte_in_vm_section)
		sbuf_u8(b, 0);
	sbuf_end(b, m);
	m = sbuf_begin(b, SNAP_TAG('S', 'E', 'R', 'L'));
	sbuf_blob(b, serial_bytes, sizeof(serial_bytes));
	sbuf_end(b, m);
	m = sbuf_begin(b, SNAP_TAG('K', 'B', 'D', 'C'));
	sbuf_blob(b, kbd_bytes, sizeof(kbd_bytes));
	sbuf_end(b, m);
	for (unsigned i = 0; i < 3; i++) {
		m = sbuf_begin(b, SNAP_TAG('V', 'D', 'E', 'V'));
		sbuf_u32(b, i == 0 ? k->dev_state_kind : s->dev[i].kind);
		w_blob_of(b, dev_bytes[i], i == 0 ? k->blob_len : s->dev_state[i].len,
			  s->dev_state[i].len);
		sbuf_end(b, m);
	}
}

static void build(struct sbuf *b, const struct knobs *k)
{
	struct snap_vm *s = sample();

	snap_file_begin(b);
	w_config(b, k);
	for (unsigned i = 0; i < 2; i++)
		w_vcpu(b, &s->vcpu[i], i, k);
	w_rest(b, s, k);
	snap_file_seal(b);
	free_sample(s);
}

/* Decode must fail, with a message containing want. */
static void expect_refused(const void *p, size_t len, const char *want)
{
	struct snap_vm *s = calloc(1, sizeof(*s));
	char err[256] = "";

	assert_int_equal(snap_decode(p, len, s, err, sizeof(err)), -1);
	if (!strstr(err, want))
		fail_msg("expected '%s' in: %s", want, err);
	snap_vm_free(s);
	free(s);
}

static void expect_knob_refused(const struct knobs *k, const char *want)
{
	struct sbuf b = { 0 };

	build(&b, k);
	assert_false(b.failed);
	expect_refused(b.data, b.len, want);
	sbuf_free(&b);
}

/* Recompute the checksum over the file as it is now, whatever its header says. */
static void reseal(struct sbuf *b)
{
	uint32_t crc;

	memset(b->data + 12, 0, 4);
	crc = snap_crc32(b->data, b->len);
	memcpy(b->data + 12, &crc, 4);
}

static void encode_sample(struct sbuf *b)
{
	struct snap_vm *s = sample();

	snap_encode(s, b);
	assert_false(b->failed);
	free_sample(s);
}

/* ---- tests ---- */

static void test_round_trip(void **state)
{
	struct snap_vm *in = sample(), *out = calloc(1, sizeof(*out));
	struct sbuf b = { 0 };
	char err[256];

	(void)state;
	snap_encode(in, &b);
	assert_int_equal(snap_decode(b.data, b.len, out, err, sizeof(err)), 0);
	assert_int_equal(out->nr_vcpus, 2);
	assert_int_equal(out->memory_mib, 256);
	assert_int_equal(out->nr_devs, 3);
	assert_memory_equal(out->dev, in->dev, 3 * sizeof(in->dev[0]));
	for (unsigned i = 0; i < 2; i++) {
		struct snap_vcpu *a = &in->vcpu[i], *z = &out->vcpu[i];

		assert_memory_equal(&a->regs, &z->regs, sizeof(a->regs));
		assert_memory_equal(&a->sregs, &z->sregs, sizeof(a->sregs));
		assert_int_equal(a->fpu_kind, z->fpu_kind);
		if (a->fpu_kind == SNAP_FPU_XSAVE)
			assert_memory_equal(a->xsave, z->xsave, XSAVE_LEN);
		else
			assert_memory_equal(&a->fpu, &z->fpu, sizeof(a->fpu));
		assert_int_equal(a->has_xcrs, z->has_xcrs);
		assert_memory_equal(&a->lapic, &z->lapic, sizeof(a->lapic));
		assert_int_equal(a->mp_state.mp_state, z->mp_state.mp_state);
		assert_memory_equal(&a->events, &z->events, sizeof(a->events));
		assert_memory_equal(&a->debugregs, &z->debugregs, sizeof(a->debugregs));
		assert_int_equal(z->nr_msrs, NR_MSRS);
		assert_memory_equal(a->msrs, z->msrs, NR_MSRS * sizeof(a->msrs[0]));
		assert_int_equal(z->nr_cpuid, NR_CPUID);
		assert_memory_equal(a->cpuid, z->cpuid, NR_CPUID * sizeof(a->cpuid[0]));
	}
	assert_memory_equal(out->pic, in->pic, sizeof(in->pic));
	assert_memory_equal(&out->ioapic, &in->ioapic, sizeof(in->ioapic));
	assert_memory_equal(&out->pit, &in->pit, sizeof(in->pit));
	assert_int_equal(out->clock, 123456789);
	assert_int_equal(out->serial.len, sizeof(serial_bytes));
	assert_memory_equal(out->serial.p, serial_bytes, sizeof(serial_bytes));
	assert_memory_equal(out->i8042.p, kbd_bytes, sizeof(kbd_bytes));
	assert_int_equal(out->dev_state[0].len, 5);
	assert_memory_equal(out->dev_state[0].p, dev_bytes[0], 5);
	assert_int_equal(out->dev_state[1].len, 0);
	assert_int_equal(out->dev_state[2].len, 2);
	sbuf_free(&b);
	free_sample(in);
	snap_vm_free(out);
	free(out);
}

/* The documented layout (the test's writer) and the encoder agree byte for byte. */
static void test_layout_matches_documentation(void **state)
{
	struct sbuf mine = { 0 }, theirs = { 0 };

	(void)state;
	build(&mine, &good);
	encode_sample(&theirs);
	assert_int_equal(mine.len, theirs.len);
	assert_memory_equal(mine.data, theirs.data, mine.len);
	sbuf_free(&mine);
	sbuf_free(&theirs);
}

static void test_crc32_known_value(void **state)
{
	(void)state;
	assert_int_equal(snap_crc32("123456789", 9), 0xcbf43926);	/* the CRC-32 check value */
	assert_int_equal(snap_crc32("", 0), 0);
}

static void test_truncated(void **state)
{
	struct sbuf b = { 0 };
	size_t cuts[] = { 0, 1, 8, 23, 24, 25, 100 };

	(void)state;
	encode_sample(&b);
	for (unsigned i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
		expect_refused(b.data, cuts[i], "truncated");
	expect_refused(b.data, b.len / 2, "truncated");
	expect_refused(b.data, b.len - 1, "truncated");
	sbuf_free(&b);
}

static void test_trailing_data(void **state)
{
	struct sbuf b = { 0 };

	(void)state;
	encode_sample(&b);
	sbuf_u8(&b, 0);
	expect_refused(b.data, b.len, "trailing data");
	sbuf_free(&b);
}

/* One flipped bit anywhere after the header, or in the checksum itself, is caught. */
static void test_corrupted(void **state)
{
	struct sbuf b = { 0 };

	(void)state;
	encode_sample(&b);
	for (size_t at = 12; at < b.len; at += (at < 64 ? 1 : 97)) {
		if (at >= 16 && at < 24)
			continue;		/* the length field: "truncated"/"trailing" instead */
		b.data[at] ^= 0x10;
		expect_refused(b.data, b.len, "checksum");
		b.data[at] ^= 0x10;
	}
	sbuf_free(&b);
}

static void test_wrong_magic_and_version(void **state)
{
	struct sbuf b = { 0 };
	uint32_t v = SNAP_VERSION + 1;

	(void)state;
	encode_sample(&b);
	b.data[0] = 'X';
	expect_refused(b.data, b.len, "magic");
	b.data[0] = 'K';
	memcpy(b.data + 8, &v, 4);
	expect_refused(b.data, b.len, "format version 2");
	/* Even with a checksum that matches, a version we do not know is refused. */
	reseal(&b);
	expect_refused(b.data, b.len, "format version 2");
	sbuf_free(&b);
}

/* The header's length must be the file's length, even when the checksum is right. */
static void test_wrong_length(void **state)
{
	struct sbuf b = { 0 };
	uint64_t len;

	(void)state;
	encode_sample(&b);
	len = b.len + 4;
	memcpy(b.data + 16, &len, 8);
	reseal(&b);
	expect_refused(b.data, b.len, "truncated: header says");
	len = b.len - 4;
	memcpy(b.data + 16, &len, 8);
	reseal(&b);
	expect_refused(b.data, b.len, "trailing data: header says");
	sbuf_free(&b);
}

static void test_absurd_counts(void **state)
{
	struct knobs k;

	(void)state;
#define TRY(field, value, want) do { k = good; k.field = value; expect_knob_refused(&k, want); } while (0)
	TRY(nr_vcpus, 0, "vCPUs");
	TRY(nr_vcpus, VM_MAX_VCPUS + 1, "vCPUs");
	TRY(nr_vcpus, UINT32_MAX, "vCPUs");
	TRY(nr_devs, SNAP_MAX_DEVICES + 1, "devices");
	TRY(nr_devs, UINT32_MAX, "devices");
	TRY(memory_mib, 1, "memory size");
	TRY(memory_mib, UINT64_MAX, "memory size");
	TRY(dev_kind, 99, "unknown kind");
	TRY(vcpu_index, 1, "holds vCPU 1");
	TRY(fpu_kind, 7, "FPU kind");
	TRY(xsave_len, 100, "XSAVE area");
	TRY(xsave_len, SNAP_XSAVE_MAX + 4, "XSAVE area");
	TRY(xsave_len, 4098, "whole words");
	TRY(mp_state, KVM_MP_STATE_STOPPED, "MP state");
	TRY(nr_xcrs, KVM_MAX_XCRS + 1, "XCRs");
	TRY(nr_msrs, SNAP_MAX_MSRS + 1, "MSRs");
	TRY(nr_msrs, UINT32_MAX, "MSRs");
	TRY(nr_msrs, NR_MSRS + 1, "");		/* more MSRs claimed than present: misparsed */
	TRY(nr_cpuid, 0, "CPUID");
	TRY(nr_cpuid, SNAP_MAX_CPUID + 1, "CPUID");
	TRY(nr_cpuid, UINT32_MAX, "CPUID");
	TRY(cid, 2, "CID");
	TRY(blob_len, UINT32_MAX, "device 0");
	TRY(blob_len, 6, "device 0");
	TRY(dev_state_kind, SNAP_DEV_RNG, "configured as blk");
	TRY(read_only, 2, "boolean");
	TRY(path_len, 0, "empty");
	TRY(path_len, SNAP_PATH_MAX, "disk path");
	TRY(regs_len, sizeof(struct kvm_regs) - 8, "registers");
	TRY(regs_len, UINT32_MAX, "registers");
	TRY(conf_tag, SNAP_TAG('V', 'C', 'P', 'U'), "expected section 'CONF'");
	TRY(extra_byte_in_vm_section, true, "unexpected bytes");
#undef TRY
}

static void test_nul_inside_a_string(void **state)
{
	struct knobs k = good;

	(void)state;
	k.path = "dis\0k0";
	k.path_len = 6;
	expect_knob_refused(&k, "NUL");
}

static void test_huge_file(void **state)
{
	static const char hdr[SNAP_HEADER_SIZE] = SNAP_MAGIC;

	(void)state;
	/* The size check comes before any byte past the header is looked at. */
	expect_refused(hdr, (size_t)SNAP_MAX_FILE + 1, "more than any state file");
}

/* A NIC's identity: tap name, MAC and limits round-trip; a multicast MAC or two NICs do not. */
static void test_net_identity(void **state)
{
	struct snap_vm *in = sample(), *out = calloc(1, sizeof(*out));
	struct dev_ident *n = &in->dev[3];
	struct sbuf b = { 0 };
	char err[256];

	(void)state;
	in->nr_devs = 4;
	*n = (struct dev_ident){ .kind = SNAP_DEV_NET, .path = "tap0", .fd = 7,
				 .mac = { 2, 0x6b, 0x69, 0x6c, 0x6e, 1 },
				 .rate = { 1000, 2000, 3000, 4000 }, .pcap = "/tmp/x.pcap" };
	in->dev_state[3] = (struct snap_blob){ dev_bytes[0], 5 };
	snap_encode(in, &b);
	assert_int_equal(snap_decode(b.data, b.len, out, err, sizeof(err)), 0);
	assert_int_equal(out->dev[3].kind, SNAP_DEV_NET);
	assert_string_equal(out->dev[3].path, "tap0");
	assert_memory_equal(out->dev[3].mac, n->mac, 6);
	assert_memory_equal(out->dev[3].rate, n->rate, sizeof(n->rate));
	assert_int_equal(out->dev[3].fd, -1);		/* a descriptor does not survive */
	assert_string_equal(out->dev[3].pcap, "");	/* nor does the capture file */
	snap_vm_free(out);
	sbuf_free(&b);

	n->mac[0] = 3;					/* multicast bit */
	b = (struct sbuf){ 0 };
	snap_encode(in, &b);
	memset(out, 0, sizeof(*out));
	assert_int_equal(snap_decode(b.data, b.len, out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "multicast"));
	snap_vm_free(out);
	sbuf_free(&b);

	n->mac[0] = 2;
	in->nr_devs = 5;
	in->dev[4] = *n;
	in->dev_state[4] = (struct snap_blob){ dev_bytes[0], 5 };
	b = (struct sbuf){ 0 };
	snap_encode(in, &b);
	memset(out, 0, sizeof(*out));
	assert_int_equal(snap_decode(b.data, b.len, out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "more than one"));
	snap_vm_free(out);
	sbuf_free(&b);
	free(out);
	free_sample(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_layout_matches_documentation),
		cmocka_unit_test(test_crc32_known_value),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_trailing_data),
		cmocka_unit_test(test_corrupted),
		cmocka_unit_test(test_wrong_magic_and_version),
		cmocka_unit_test(test_wrong_length),
		cmocka_unit_test(test_absurd_counts),
		cmocka_unit_test(test_nul_inside_a_string),
		cmocka_unit_test(test_huge_file),
		cmocka_unit_test(test_net_identity),
	};

	return cmocka_run_group_tests_name("snapshot state file", tests, NULL, NULL);
}
