/*
 * sandbox.h - a sandbox's life: start its VM (clone of the warm snapshot or a boot, exactly
 * as `kiln up` does), pause, resume, stop, and adopt the VMs of a previous kilnd.  The API,
 * the meter and startup all go through these, so each state change is recorded the same way.
 */
#ifndef KILND_SANDBOX_H
#define KILND_SANDBOX_H

#include "json.h"
#include "kilnd.h"

#define SANDBOX_SCRATCH_MIB	4096	/* sparse, as `kiln up` makes it; warm snapshots match */
#define SANDBOX_PCAP		"net.pcap"	/* a network's capture, in the VM directory */

/* Write text into a new file of mode 0600 in the data directory (DATA/.WHAT-XXXXXX), its path
 * in path: what kilnd hands the host side (policies, secrets).  0 or -1 with errno. */
int write_private_file(const char *text, const char *what, char *path, size_t len);

/* Create a sandbox for agent a; its JSON record in *out.  0, or -1 with e set. */
int sandbox_create(const struct agent *a, const struct create_req *r, json_t **out,
		   struct api_error *e);

int sandbox_pause(const struct sandbox *s, const char *reason, struct api_error *e);
int sandbox_resume(const struct sandbox *s, struct api_error *e);
int sandbox_delete(const struct sandbox *s, struct api_error *e);

/* Snapshot a running sandbox (it keeps running); the snapshot's JSON in *out. */
int sandbox_snapshot(const struct sandbox *s, json_t **out, struct api_error *e);

/* Delete a snapshot: its record stays, marked deleted; its files go. */
int sandbox_snapshot_delete(const struct snapshot *sn, struct api_error *e);

/* Stop a sandbox whose timeout ran out: its VM goes, its record stays as expired. */
void sandbox_expire(const struct sandbox *s);

/* At startup: adopt sandboxes whose VMM still runs, mark the rest lost with the reason. */
void sandbox_adopt_all(void);

/* A running sandbox whose VMM is gone becomes lost; returns true if it was. */
bool sandbox_check_alive(const struct sandbox *s);

/* Prometheus text for /metrics: db_metrics() and the namespace pool's (malloc'd). */
char *sandbox_metrics(void);

/* Stop the network namespace pool (at shutdown): idle namespaces are removed, those of
 * sandboxes stay with them. */
void sandbox_stop_pool(void);

/* Root image of a template name: a --template registration, else one built through the API
 * (DATA/images/NAME.ext4, api_templates.c), else build/images/NAME.ext4. */
int template_rootfs(const char *name, char *path, size_t len);

#endif
