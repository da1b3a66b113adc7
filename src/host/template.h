/*
 * template.h - warm snapshots: a VM booted once from an image, warmed up and frozen, that new
 * sandboxes of the same shape are cloned from instead of booting.
 *
 * A warm snapshot lives in $KILN_CACHE/warm/<key> (default /var/cache/kiln), where the key is
 * a hash of everything the frozen guest depends on: the root image, kernel, initramfs and
 * kiln-vmm (each by path, size and modification time), vCPUs, memory and scratch size, and the
 * host kernel (a snapshot holds KVM state of this host's kind).  Rebuild any of them and the
 * key changes, so a stale snapshot is never used; `kiln warm` builds the new one.  The
 * directory is named "IMAGE-CPUSxMEM-HASH" (IMAGE: the vm_spec's name, the image file's name for
 * `kiln warm`, the template's for kilnd) but found by shape and key alone, so a snapshot made
 * by either serves both whatever the image file is called.
 *
 * Warming: boot, wait for the agent, run /etc/kiln/warmup from the image if it has one (a shell
 * script: what it leaves in memory and on the scratch disk every clone has), then, if the image
 * has /etc/kiln/warm-context.py, start a Python code context and run that file in it (the
 * python image's imports numpy, pandas and matplotlib), and snapshot.  The context's id is
 * kept in the snapshot directory as `context`; each clone writes it to its own directory,
 * where `kiln code --dir` finds it, and reseeds that interpreter's random generators (they
 * would otherwise repeat the template's sequence in every clone).
 */
#ifndef KILN_TEMPLATE_H
#define KILN_TEMPLATE_H

#include <stddef.h>

#include "vmctl.h"

/* The warm snapshot directory for spec; 0 if a complete one exists there, -1 if not. */
int template_find(const struct vm_spec *spec, char *dir, size_t len);

/* vm_clone() from the warm snapshot snap_dir, then make its warm context (if any) the clone's
 * own.  0 or -1 with e set (the VM may be running: vm_down() it). */
int template_clone(const char *dir, const char *snap_dir, const struct vm_spec *spec,
		   struct agent_error *e);

/* Call fn for each complete and current warm snapshot of spec's image, whatever its shape
 * (spec's cpus, memory_mib and net are ignored; its scratch size counts), with the shape
 * (cpus, memory_mib, net) it was made for. */
void template_each(const struct vm_spec *spec,
		   void (*fn)(const char *dir, const struct vm_spec *shape, void *ctx), void *ctx);

/* Build spec's warm snapshot (replacing a stale one of the same image).  0 or -1 with e. */
int template_warm(const struct vm_spec *spec, char *dir, size_t len, struct agent_error *e);

#endif
