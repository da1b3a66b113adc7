/*
 * vmctl.h - start and stop a sandbox VM for the CLI: a state directory holding the scratch disk,
 * the vsock socket, the console log and the VMM's pid; kiln-vmm runs detached from the caller.
 */
#ifndef KILN_VMCTL_H
#define KILN_VMCTL_H

#include <stdbool.h>
#include <sys/types.h>

#include "../client/agent_client.h"

struct vm_spec {
	const char *rootfs;		/* read-only ext4 root image */
	unsigned cpus, memory_mib;
	unsigned scratch_mib;		/* sparse writable layer */
	const char *hostname;
};

/* Boot a VM into dir (created) and wait until its agent answers.  0 or -1 with e set. */
int vm_up(const char *dir, const struct vm_spec *spec, struct agent_error *e);

/* Stop the VM of dir and remove dir. */
void vm_down(const char *dir);

/* The agent socket of a VM directory, for agent_connect(). */
void vm_sock_path(const char *dir, char *buf, size_t len);

/* Where an image NAME lives: build/images/NAME.ext4 next to this program. */
int image_path(const char *name, char *buf, size_t len);

#endif
