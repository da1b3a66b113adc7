/*
 * options.h - kiln-vmm's command line.
 *
 * Two modes: boot a kernel (--kernel and the machine's shape), or restore a snapshot
 * (--restore DIR, which fixes the shape; only host-side attachments may change: --serial,
 * --control, --vsock CID,PATH, --net (the same MAC) and --disk N=PATH to give the N-th disk
 * another image).
 * Bad arguments end the process with status 2 and one line on stderr.
 */
#ifndef KILN_OPTIONS_H
#define KILN_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "snapshot/state.h"

struct disk_arg {
	const char *path;
	bool read_only;
	char id[SNAP_DISK_ID_MAX + 1];
};

/* --disk N=PATH with --restore: the N-th disk (0-based, boot order) is PATH instead. */
struct disk_override {
	unsigned index;
	const char *path;
};

enum serial_mode { SERIAL_STDIO, SERIAL_FILE, SERIAL_NONE };

struct options {
	const char *kernel, *initrd, *cmdline;
	unsigned cpus;
	uint64_t memory_mib;
	struct disk_arg disk[SNAP_MAX_DISKS];
	unsigned nr_disks;
	struct disk_override disk_override[SNAP_MAX_DISKS];
	unsigned nr_overrides;
	enum serial_mode serial;
	const char *serial_path;
	uint32_t vsock_cid;
	const char *vsock_path;		/* NULL: no vsock device (or, restoring, the saved one) */
	bool net;			/* --net given; net_arg holds it */
	struct dev_ident net_arg;
	const char *restore_dir;	/* NULL: boot */
	const char *control_path;	/* NULL: no control socket */
};

void options_parse(struct options *o, int argc, char **argv);

/* The host's RAM in MiB: the most a guest (booted or restored) may be given. */
uint64_t host_memory_mib(void);

#endif
