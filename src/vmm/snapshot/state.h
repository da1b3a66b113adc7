/*
 * state.h - what a snapshot's state file holds, as plain C structures, and its encoding.
 *
 * This is the pure half of snapshots: no KVM, no files.  kvm_state.c fills and applies the vCPU
 * and VM parts through KVM; each device saves and restores its own bytes (serial_save,
 * virtio_save, ...) which this file carries as opaque blobs, so a device's format lives next to
 * the device.  snap_decode() checks everything it can know without a VM: header, checksum,
 * section order, every length and count; the devices check their own blobs field by field
 * before applying any of it.
 *
 * Sections, in this order (format.h has the header and section framing):
 *
 *   CONF   u32 vcpus, u64 memory MiB, u32 device count, then per device its identity:
 *          u32 kind, then blk: str path, u8 read-only, str serial, u64 sectors;
 *          rng: nothing; vsock: u32 guest CID, str socket path; net: str tap name (empty:
 *          a descriptor, which --net must give again), 6-byte MAC blob, u64 rx bytes/s,
 *          rx packets/s, tx bytes/s, tx packets/s (the limits follow the sandbox)
 *   VCPU   once per vCPU, in index order: u32 index, regs, sregs, u32 FPU kind and XSAVE area
 *          (or legacy FPU), u8 has-XCRs and XCRs, LAPIC, u32 MP state, vCPU events, debug
 *          registers, u32 MSR count and (u32 index, u64 value) pairs, u32 CPUID entry count
 *          and the entries.  Fixed-size KVM structures are blobs whose length must match.
 *   VMST   PIC master, PIC slave, IOAPIC, PIT (kvm_pit_state2), u64 kvmclock
 *   SERL   the UART's bytes (serial.c)
 *   KBDC   the i8042's bytes (i8042.c)
 *   VDEV   once per virtio device, in slot order: u32 kind, then the transport's and the
 *          device's bytes (mmio.c)
 */
#ifndef KILN_SNAPSHOT_STATE_H
#define KILN_SNAPSHOT_STATE_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "../vm.h"
#include "../x86/layout.h"
#include "format.h"

#define SNAP_MAX_DEVICES	(IOAPIC_PINS - IRQ_VIRTIO_FIRST)
#define SNAP_MAX_DISKS		16
#define SNAP_MAX_MSRS		1024
#define SNAP_MAX_CPUID		256
#define SNAP_XSAVE_MIN		4096		/* struct kvm_xsave */
#define SNAP_XSAVE_MAX		65536
#define SNAP_MAX_DEV_STATE	65536		/* one device's saved bytes */
#define SNAP_MAX_FILE		(64u << 20)
#define SNAP_MAX_MEMORY_MIB	(1u << 22)	/* 4 TiB: bounds the arithmetic, not the host */
#define SNAP_PATH_MAX		4096
#define SNAP_DISK_ID_MAX	20
#define SNAP_VSOCK_PATH_MAX	96		/* PATH_P must still fit a sockaddr_un */

enum snap_dev_kind {
	SNAP_DEV_BLK = 1,
	SNAP_DEV_RNG = 2,
	SNAP_DEV_VSOCK = 3,
	SNAP_DEV_NET = 4,
};

enum snap_fpu_kind {
	SNAP_FPU_XSAVE = 1,
	SNAP_FPU_LEGACY = 2,	/* KVM without XSAVE: struct kvm_fpu */
};

/* A device as the command line created it; enough to create it again. */
struct dev_ident {
	uint32_t kind;
	char path[SNAP_PATH_MAX];	/* blk: disk image; vsock: socket */
	bool read_only;			/* blk */
	char id[SNAP_DISK_ID_MAX + 1];	/* blk: serial the guest sees */
	uint64_t sectors;		/* blk: capacity the guest driver knows */
	uint32_t cid;			/* vsock: guest CID */
	/* net: path is the tap name (empty with an fd) */
	int fd;				/* net: >= 0 an inherited descriptor, not saved */
	uint8_t mac[6];
	uint64_t rate[4];		/* net: rx bytes, rx pkts, tx bytes, tx pkts per s */
	char pcap[SNAP_PATH_MAX];	/* net: capture file, not saved */
	uint64_t pcap_max;
	bool pcap_resume;		/* net: go on with pcap's capture (a restore), not saved */
};

/* Bytes owned by someone else: a device's saved state, pointing into a file or an sbuf. */
struct snap_blob {
	const uint8_t *p;
	uint32_t len;
};

struct snap_vcpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint32_t fpu_kind;
	uint8_t *xsave;			/* SNAP_FPU_XSAVE: xsave_len bytes, malloc'ed */
	uint32_t xsave_len;
	struct kvm_fpu fpu;		/* SNAP_FPU_LEGACY */
	bool has_xcrs;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp_state;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	uint32_t nr_msrs;
	struct kvm_msr_entry *msrs;	/* malloc'ed */
	uint32_t nr_cpuid;
	struct kvm_cpuid_entry2 *cpuid;	/* malloc'ed */
};

struct snap_vm {
	uint32_t nr_vcpus;
	uint64_t memory_mib;
	uint32_t nr_devs;
	struct dev_ident dev[SNAP_MAX_DEVICES];

	struct snap_vcpu vcpu[VM_MAX_VCPUS];
	struct kvm_pic_state pic[2];	/* master, slave */
	struct kvm_ioapic_state ioapic;
	struct kvm_pit_state2 pit;
	uint64_t clock;			/* kvmclock, ns */

	struct snap_blob serial, i8042;
	struct snap_blob dev_state[SNAP_MAX_DEVICES];
};

const char *snap_dev_name(uint32_t kind);

/* The whole state file into b (header, sections, seal).  b->failed on out of memory. */
void snap_encode(const struct snap_vm *s, struct sbuf *b);

/*
 * Parse and check a state file.  On success s describes it (blobs point into p, which must
 * outlive s) and 0 is returned; otherwise -1 with a one-line reason in err.  Free with
 * snap_vm_free() either way.
 */
int snap_decode(const void *p, size_t len, struct snap_vm *s, char *err, size_t errlen);
void snap_vm_free(struct snap_vm *s);

#endif
