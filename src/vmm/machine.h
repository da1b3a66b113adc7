/*
 * machine.h - one microVM as a whole: the KVM VM, its legacy devices, its virtio devices in slot
 * order, and the command-line identity each virtio device was created from.
 *
 * main.c builds a machine from its options or from a snapshot (the same device constructors,
 * the same slots, so a restored guest finds every device where it left it); snapshot.c saves
 * and restores one; the control socket pauses and resumes it.  Everything here runs on the main
 * thread.
 */
#ifndef KILN_MACHINE_H
#define KILN_MACHINE_H

#include <stdbool.h>
#include <stddef.h>

#include "devices/i8042.h"
#include "devices/serial.h"
#include "snapshot/state.h"
#include "virtio/virtio.h"
#include "vm.h"

#define MACHINE_PAUSE_TIMEOUT_MS	5000

struct machine {
	struct vm vm;
	struct serial serial;
	struct i8042 kbd;
	uint64_t memory_mib;
	unsigned nr_devs;
	struct virtio_dev *dev[SNAP_MAX_DEVICES];
	struct dev_ident ident[SNAP_MAX_DEVICES];
	bool paused;
};

/* The UART (console to serial_fd, -1 for none) and the i8042 on the port bus. */
void machine_add_legacy(struct machine *m, int serial_fd, serial_line_fn on_line,
			i8042_reset_fn on_reset);

/* Create the device id describes in the next MMIO slot; -1 with a reason in err. */
int machine_add_virtio(struct machine *m, const struct dev_ident *id, char *err, size_t errlen);

/* Append each virtio device's virtio_mmio.device= announcement to cmdline. */
void machine_cmdline_devices(const struct machine *m, char *cmdline, size_t size);

/* Pause (vCPUs parked, device threads off guest memory) or resume; idempotent. */
int machine_pause(struct machine *m, char *err, size_t errlen);
void machine_resume(struct machine *m);

/* "state=running vcpus=2 memory_mib=512 devices=blk,rng,vsock" */
void machine_status(const struct machine *m, char *buf, size_t size);

#endif
