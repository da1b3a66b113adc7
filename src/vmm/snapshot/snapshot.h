/*
 * snapshot.h - take a snapshot of a running machine into a directory, and bring one back.
 *
 *   DIR/state     the state file (state.h), written last and renamed into place, so a
 *                 directory with a state file holds a complete snapshot
 *   DIR/memory    guest RAM, zero pages as holes (files.h)
 *   DIR/diskN     a copy of the N-th disk, for each writable disk; read-only disks are
 *                 referenced by their absolute path and must not change
 *
 * Restoring is done by main.c in the same steps as a boot, with the pieces from here:
 * snapshot_load() reads and checks the state file, snapshot_open_memory() checks the memory
 * file, then main.c creates the VM on that memory and the devices from the saved identities,
 * and snapshot_apply() puts KVM's and every device's state back before any vCPU runs.
 */
#ifndef KILN_SNAPSHOT_H
#define KILN_SNAPSHOT_H

#include <stddef.h>

#include "../machine.h"
#include "state.h"

/*
 * Pause m (it stays paused) and write a snapshot into dir, which must not exist or be an empty
 * directory.  -1 with a reason in err; then nothing is left in dir, and m runs again if it was
 * running before.
 */
int snapshot_take(struct machine *m, const char *dir, char *err, size_t errlen);

/*
 * Read and check dir/state into s.  Writable disks' relative names become paths inside dir.
 * Returns the file's bytes, which s points into (free() them after snap_vm_free()), or NULL
 * with a reason in err.
 */
void *snapshot_load(const char *dir, struct snap_vm *s, char *err, size_t errlen);

/* Open dir/memory if it is exactly the snapshot's RAM size; -1 with a reason in err. */
int snapshot_open_memory(const char *dir, const struct snap_vm *s, char *err, size_t errlen);

/* Restore KVM and device state into a machine built from s; -1 with a reason in err. */
int snapshot_apply(struct machine *m, const struct snap_vm *s, char *err, size_t errlen);

#endif
