/*
 * template.h - warm snapshots: a VM booted once from an image, warmed up and frozen, that new
 * sandboxes of the same shape are cloned from instead of booting.
 *
 * A warm snapshot lives in $KILN_CACHE/warm/<key> (default /var/cache/kiln), where the key is
 * a hash of everything the frozen guest depends on: the root image, kernel, initramfs and
 * kiln-vmm (each by path, size and modification time), vCPUs, memory and scratch size, and the
 * host kernel (a snapshot holds KVM state of this host's kind).  Rebuild any of them and the
 * key changes, so a stale snapshot is never used; `kiln warm` builds the new one.
 *
 * Warming: boot, wait for the agent, then run /etc/kiln/warmup from the image if it has one
 * (the python image's imports numpy, pandas and matplotlib, so their files are in the guest's
 * page cache in every clone), then drop the sandbox's traces and snapshot.
 */
#ifndef KILN_TEMPLATE_H
#define KILN_TEMPLATE_H

#include <stddef.h>

#include "vmctl.h"

/* The warm snapshot directory for spec; 0 if a complete one exists there, -1 if not. */
int template_find(const struct vm_spec *spec, char *dir, size_t len);

/* Build spec's warm snapshot (replacing a stale one of the same image).  0 or -1 with e. */
int template_warm(const struct vm_spec *spec, char *dir, size_t len, struct agent_error *e);

#endif
