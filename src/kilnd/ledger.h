/*
 * ledger.h - the arithmetic of metering: prices, and what a sandbox's run time costs.
 * Pure, so unit tests pin it down; db.c posts the results as double-entry ledger rows.
 *
 * Usage is kept in milliseconds of run time per sandbox; a sandbox's cost is always computed
 * from its whole run time and the amount already debited is subtracted, so rounding never
 * accumulates however often the meter ticks.
 */
#ifndef KILND_LEDGER_H
#define KILND_LEDGER_H

#include <stddef.h>
#include <stdint.h>

struct prices {
	uint64_t vcpu_second;	/* micro-units per vCPU-second */
	uint64_t gib_second;	/* micro-units per GiB-second of memory */
	uint64_t disk_gib_second;	/* micro-units per GiB-second of scratch disk in use */
	uint64_t network_gib;	/* micro-units per GiB through the sandbox's NIC, either way */
};

#define DEFAULT_VCPU_SECOND	14	/* about $0.05 a vCPU-hour */
#define DEFAULT_GIB_SECOND	5	/* about $0.018 a GiB-hour */
#define DEFAULT_DISK_GIB_SECOND	0	/* disk is cheap: below one micro-unit a GiB-second */
#define DEFAULT_NETWORK_GIB	0	/* metered, free unless the operator prices it */

void prices_default(struct prices *p);

/* One "key = value" line of a prices file (blank lines and # comments allowed).  0 or -1
 * with a reason in err. */
int prices_parse_line(const char *line, struct prices *p, char *err, size_t errlen);

/* Cost in micro-units of run_ms milliseconds of a sandbox of cpus and memory_mib, rounded
 * down; saturates at INT64_MAX rather than wrap. */
int64_t ledger_cost_micro(uint64_t run_ms, unsigned cpus, unsigned memory_mib,
			  const struct prices *p);

/* Cost of disk_mib_ms MiB-milliseconds of scratch disk, rounded down; saturates. */
int64_t ledger_disk_cost_micro(int64_t disk_mib_ms, const struct prices *p);

/* Cost of bytes through a sandbox's NIC, rounded down; saturates. */
int64_t ledger_network_cost_micro(int64_t bytes, const struct prices *p);

/* a + b for non-negative costs, saturating at INT64_MAX. */
int64_t ledger_add(int64_t a, int64_t b);

/* What to debit now: the cost so far minus what was debited already (never negative). */
int64_t ledger_debit_due(int64_t cost_so_far, int64_t debited);

#endif
