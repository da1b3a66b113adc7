/*
 * vmctl.h - start, stop, pause and resume a sandbox VM for the CLI and kilnd.  A VM lives in a state
 * directory (scratch disk, vsock and control sockets, console log, the VMM's pid); kiln-vmm
 * runs detached from the caller.  A VM starts by a cold boot or as a clone of a warm snapshot
 * (template.h), and can be paused to disk (its VMM exits) and resumed later.
 */
#ifndef KILN_VMCTL_H
#define KILN_VMCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../client/agent_client.h"

struct vm_spec {
	const char *rootfs;		/* read-only ext4 root image, absolute */
	char name[64];			/* names its warm snapshots: the image file or template */
	unsigned cpus, memory_mib;
	unsigned scratch_mib;		/* sparse writable layer */
	const char *hostname;
	bool net;			/* a NIC in its own network namespace (netns.h) */
	const char *net_allow;		/* comma-separated IPv4 CIDRs TCP may reach; NULL: none */
	uint64_t net_rate;		/* bytes per second each way; 0: unlimited */
	const char *net_pcap;		/* capture every frame here (absolute); NULL: none */
	const char *net_policy;		/* egress policy file: run kiln-dns and kiln-proxy
					 * for this sandbox (egress.h); NULL: none */
	const char *net_ns;		/* with net: this namespace (from netns_pool_take, its
					 * policy loaded) instead of a new one; the VM owns it
					 * from the call and destroys it on failure and in
					 * vm_down.  net_allow is not loaded again. */
	const char *net_secrets;	/* with net_policy: credentials kiln-proxy injects,
					 * "secret NAME ENV HEADER HOSTS VALUE" lines; the guest
					 * gets placeholders and the sandbox's CA (egress.h) */
	const char *net_upstream_ca;	/* with net_secrets: the roots kiln-proxy verifies
					 * upstreams with instead of the host's (tests) */
};

/* Boot a VM into dir (created) and wait until its agent answers; with net_secrets the guest
 * has the CA and the placeholders' environment by then.  0 or -1 with e set. */
int vm_up(const char *dir, const struct vm_spec *spec, struct agent_error *e);

/*
 * Start a VM in dir (created) as a clone of the snapshot in snap_dir: its own copy of the
 * snapshot's scratch disk, memory shared copy-on-write.  Waits for the agent, then gives the
 * guest fresh entropy, the host's clock, spec->hostname and a new sandbox id (and, if dir has
 * egress secrets, their environment and CA: egress.h).  On failure the
 * VMM's reason is in e and dir holds no running VM.
 */
int vm_clone(const char *dir, const char *snap_dir, const struct vm_spec *spec,
	     struct agent_error *e);

/* Pause to disk: snapshot the running VM of dir into dir/paused, then stop its VMM. */
int vm_pause(const char *dir, struct agent_error *e);

/* Resume a VM paused by vm_pause: processes, memory and files as they were; clock and
 * entropy refreshed.  The snapshot is removed once the guest answers. */
int vm_resume(const char *dir, struct agent_error *e);

/* Send one command line to the VMM's control socket; its answer line (without "ok ") in reply.
 * 0 when it answered ok, -1 with e set otherwise. */
int vm_control(const char *dir, const char *command, char *reply, size_t len,
	       struct agent_error *e);

/* The pid of the VMM running in dir (from dir/vmm.pid), or 0 if none runs. */
pid_t vm_pid(const char *dir);

/* Replace the egress policy of dir's network (comma-separated CIDRs, NULL: nothing). */
int vm_set_net_policy(const char *dir, const char *allow, struct agent_error *e);

/* The name of dir's network namespace, if it has one: 0, or -1 without a network. */
int vm_netns(const char *dir, char *name, size_t len);

/* Stop the VM of dir (running or paused), its egress and ingress services and its
 * namespace, and remove dir. */
void vm_down(const char *dir);

/* The agent socket of a VM directory, for agent_connect(). */
void vm_sock_path(const char *dir, char *buf, size_t len);

/* Where an image NAME lives: build/images/NAME.ext4 next to this program. */
int image_path(const char *name, char *buf, size_t len);

/* Where kiln-vmm, vmlinux and kiln-initrd.cpio are: next to this program unless the
 * environment variable env (KILN_VMM, KILN_KERNEL, KILN_INITRD) says otherwise. */
void artefact(const char *env, const char *name, char *buf, size_t len);

/* Run argv quietly (output to /dev/null); 0 if it exited with status 0. */
int run_quiet(char *const argv[]);

/* Remove a directory tree (a VM or snapshot directory); 0 or -1. */
int remove_tree(const char *path);

#endif
