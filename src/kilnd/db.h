/*
 * db.h - kilnd's durable state in SQLite: agents, sandboxes, usage and the wallet ledger.
 *
 * One connection in WAL mode, serialised by a mutex: kilnd's writes are tiny and few, and a
 * single writer keeps every multi-statement change (a state change plus its final meter
 * reading and debit) atomic.  The schema is versioned; db_open applies missing migrations.
 */
#ifndef KILND_DB_H
#define KILND_DB_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "json.h"
#include "kilnd.h"

int db_open(const char *path, char *err, size_t errlen);
void db_close(void);

/* Agents. */
int db_agent_create(const struct agent_req *r, const char *id, const char *key_hash);
int db_agent_by_key_hash(const char *key_hash, struct agent *a);
int db_agent_get(const char *id, struct agent *a);
json_t *db_agent_json(const char *id);

/* Wallet: credits are posted from the external account; balance of the agent's account. */
int db_credit(const char *agent_id, int64_t amount, const char *currency);
int64_t db_balance(const char *agent_id);
json_t *db_wallet_json(const char *agent_id, unsigned limit);
json_t *db_usage_json(const char *agent_id);

/*
 * Insert a sandbox in state creating if the agent's quota allows: 0, or -1 with e set
 * (429 quota_exceeded: too many sandboxes).
 */
int db_sandbox_insert(const struct agent *a, const struct sandbox *s, const char *metadata,
		      struct api_error *e);

/* The sandbox id; agent_id NULL for any agent.  0, or -1 if there is none. */
int db_sandbox_get(const char *id, const char *agent_id, struct sandbox *s);
json_t *db_sandbox_json(const char *id);
/* metadata.KEY=VALUE filters of a list; keys pass metadata_key_ok. */
struct list_filter {
	const char *key, *value;
};

#define MAX_LIST_FILTERS	8

/* A page in creation order after the sandbox `after`; "next" names the last when there is
 * more. */
json_t *db_sandbox_list(const char *agent_id, const char *state, unsigned limit,
			const char *after, const struct list_filter *f, unsigned nf);

/* Would mib more MiB of running VMs exceed the agent's max_total_memory_mib?  0, or -1 with
 * e set (429 quota_exceeded). */
int db_memory_quota(const struct agent *a, unsigned mib, struct api_error *e);

/*
 * Move a sandbox from one of the states in from ("running|paused") to state `to`, with a
 * reason (may be NULL).  Leaving running or paused takes a last meter reading and debits it;
 * entering either starts the meter (paused: the disk only).  true if the sandbox was in one
 * of from.
 */
bool db_transition(const char *id, const char *from, const char *to, const char *reason);

int db_set_expiry(const char *id, int64_t expires_at);
/* A new timeout: it also becomes the one a resume after a timeout pause restarts. */
int db_set_timeout(const char *id, unsigned timeout_s, int64_t expires_at);
void db_count_create(void);

/* Sandboxes in one of the states (same "a|b" form), with their agents; calls fn for each. */
void db_each_sandbox(const char *states, void (*fn)(const struct sandbox *, void *), void *ctx);

/* Meter every running or paused sandbox up to now and debit its agent.  Once a second. */
void db_meter_tick(const struct prices *p);

/* Agents with a running sandbox and a balance <= 0. */
void db_each_broke_agent(void (*fn)(const char *agent_id, void *), void *ctx);

/* Prometheus text for /metrics (malloc'd). */
char *db_metrics(void);

/* A sandbox's network: its record as the API shows it (network.h), set at create and by a
 * policy change; db_network_json adds the bytes metered so far (out_bytes, in_bytes), NULL
 * for a sandbox without a network. */
int db_set_network(const char *id, json_t *record);
json_t *db_network_json(const char *id);

/* An agent's secrets (api_secrets.c).  put: record is the checked secret without its value
 * (network.h); 1 added, 0 replaced, 2 refused because the agent has max already, -1 failed.
 * json: an array by name, each with "value" if values (for a create's egress proxy only),
 * else with "updated_at"; name NULL for all.  delete: 0, 1 if there was none, -1 failed. */
int db_secret_put(const char *agent_id, json_t *record, const char *value, unsigned max);
json_t *db_secrets_json(const char *agent_id, const char *name, bool values);
int db_secret_delete(const char *agent_id, const char *name);

/* Snapshots: records of DATA/snapshots/ID (api_snapshots.c).  A deleted one keeps its row. */
int db_snapshot_insert(const struct snapshot *sn);
int db_snapshot_get(const char *id, const char *agent_id, struct snapshot *sn);
json_t *db_snapshot_json(const struct snapshot *sn);
json_t *db_snapshot_list(const char *agent_id);
int db_snapshot_delete(const char *id);

#endif
