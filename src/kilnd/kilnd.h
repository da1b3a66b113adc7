/*
 * kilnd.h - what kilnd's parts share: the daemon's configuration, an agent and a sandbox as
 * the API layer sees them, and the state names a sandbox goes through.
 *
 * Sandbox states:  creating -> running <-> paused (via pausing / resuming)
 *                  -> deleting -> deleted;  expired (its timeout ran out);
 *                  failed (never started);  lost (its VMM went away behind kilnd's back).
 * Rows are never removed: a deleted sandbox keeps its record, usage and ledger entries.
 */
#ifndef KILND_H
#define KILND_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "ledger.h"

#define MAX_TEMPLATES	64

struct template_def {
	char name[64];
	char path[PATH_MAX];
};

struct kilnd_config {
	char data_dir[PATH_MAX];
	char sandboxes_dir[PATH_MAX];
	char admin_hash[65];		/* SHA-256 of the admin key, hex */
	struct prices prices;
	struct template_def templates[MAX_TEMPLATES];
	int ntemplates;
	char recipes_dir[PATH_MAX];	/* images/: NAME/recipe and the build script */
	char images_dir[PATH_MAX];	/* DATA/images: NAME.ext4 built through the API */
	char ingress_addr[64];		/* where guest ports are exposed (api_network.c) */
	unsigned net_pool_size;		/* namespaces kept ready (sandbox.c); 0: none */
	char upstream_ca[PATH_MAX];	/* roots kiln-proxy checks upstreams against when it
					 * injects secrets; "": the host's */
};

extern struct kilnd_config cfg;

struct agent {
	char id[64];
	char name[64];
	char currency[8];
	unsigned max_sandboxes, max_cpus, max_memory_mib;
	unsigned max_total_memory_mib;	/* over sandboxes holding a VM; 0: no limit */
};

struct sandbox {
	char id[64];
	char agent_id[64];
	char state[16];
	char reason[32];		/* why it entered its state ("timeout", ...) or "" */
	char template[64];
	unsigned cpus, memory_mib;
	int64_t created_at, expires_at;
	bool pause_on_timeout;		/* on_timeout "pause": keep it on disk */
	unsigned timeout_s;		/* restarted on resume after a timeout pause */
};

/* A snapshot of a sandbox, which new sandboxes can be created from (api_snapshots.c). */
struct snapshot {
	char id[64];
	char agent_id[64];
	char sandbox_id[64];
	char template[64];
	unsigned cpus, memory_mib;
	int64_t created_at;
	bool network;		/* taken with a NIC: sandboxes made from it need a network */
};

/* The directory of a snapshot: DATA/snapshots/ID. */
void snapshot_dir(const char *id, char *buf, size_t len);

/* Milliseconds of wall-clock time (the ledger's and the meter's clock). */
int64_t now_ms(void);

/* A random identifier: prefix and 16 hex digits. */
void random_id(const char *prefix, char *out, size_t len);

/* The VM directory of a sandbox: DATA/sandboxes/ID. */
void sandbox_dir(const char *id, char *buf, size_t len);

#endif
