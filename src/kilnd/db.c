/*
 * db.c - see db.h.
 *
 * The ledger is double-entry: every transaction's entries sum to zero.  Accounts are
 * "agent:ID" (a wallet), "external:CURRENCY" (where credits come from) and "revenue:usage"
 * (where debits go).  Usage debits are aggregated per sandbox per minute: one transaction per
 * (sandbox, minute) whose two entries grow as the meter ticks.
 */
#include "db.h"

#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/log.h"
#include "../host/netns.h"
#include "../host/vmctl.h"

static sqlite3 *db;
static pthread_mutex_t db_mu = PTHREAD_MUTEX_INITIALIZER;

#define ACTIVE_STATES	"'creating','running','pausing','paused','resuming','deleting'"

/* Each entry upgrades the schema by one version; never edit one that has shipped. */
static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE agents ("
	"  id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,"
	"  currency TEXT NOT NULL, max_sandboxes INTEGER NOT NULL, max_cpus INTEGER NOT NULL,"
	"  max_memory_mib INTEGER NOT NULL, created_at INTEGER NOT NULL);"
	"CREATE TABLE sandboxes ("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
	"  agent_id TEXT NOT NULL REFERENCES agents(id), state TEXT NOT NULL, reason TEXT,"
	"  template TEXT NOT NULL, cpus INTEGER NOT NULL, memory_mib INTEGER NOT NULL,"
	"  metadata TEXT, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL,"
	"  run_ms INTEGER NOT NULL DEFAULT 0, metered_at INTEGER,"
	"  debited_micro INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX sandboxes_agent ON sandboxes(agent_id, state);"
	"CREATE TABLE ledger_txns ("
	"  id INTEGER PRIMARY KEY, kind TEXT NOT NULL, agent_id TEXT NOT NULL,"
	"  sandbox_id TEXT, minute INTEGER, currency TEXT NOT NULL, created_at INTEGER NOT NULL,"
	"  UNIQUE (sandbox_id, minute));"
	"CREATE TABLE ledger_entries ("
	"  id INTEGER PRIMARY KEY, txn_id INTEGER NOT NULL REFERENCES ledger_txns(id),"
	"  account TEXT NOT NULL, amount_micro INTEGER NOT NULL);"
	"CREATE INDEX ledger_entries_account ON ledger_entries(account);"
	"CREATE INDEX ledger_entries_txn ON ledger_entries(txn_id);"
	"CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"INSERT INTO counters VALUES ('sandboxes_created_total', 0);",
	/* 2: total-memory quotas, on-timeout pause, disk metering */
	"ALTER TABLE agents ADD COLUMN max_total_memory_mib INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE sandboxes ADD COLUMN on_timeout TEXT NOT NULL DEFAULT 'kill';"
	"ALTER TABLE sandboxes ADD COLUMN timeout_s INTEGER;"
	"ALTER TABLE sandboxes ADD COLUMN disk_mib_ms INTEGER NOT NULL DEFAULT 0;",
	/* 3: snapshots of sandboxes */
	"CREATE TABLE snapshots ("
	"  id TEXT PRIMARY KEY, agent_id TEXT NOT NULL REFERENCES agents(id),"
	"  sandbox_id TEXT NOT NULL, template TEXT NOT NULL, cpus INTEGER NOT NULL,"
	"  memory_mib INTEGER NOT NULL, state TEXT NOT NULL, created_at INTEGER NOT NULL,"
	"  deleted_at INTEGER);"
	"CREATE INDEX snapshots_agent ON snapshots(agent_id, state);",
	/* 4: networks (the API's record, secret values left out) and their metered bytes;
	 * *_seen are the tap's counters at the last reading */
	"ALTER TABLE sandboxes ADD COLUMN network TEXT;"
	"ALTER TABLE sandboxes ADD COLUMN net_out_bytes INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE sandboxes ADD COLUMN net_in_bytes INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE sandboxes ADD COLUMN net_out_seen INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE sandboxes ADD COLUMN net_in_seen INTEGER NOT NULL DEFAULT 0;",
	/* 5: the secrets an agent registers for its sandboxes' egress proxy: record is the API's
	 * form without the value (the database lives in kilnd's 0700 data directory) */
	"CREATE TABLE agent_secrets ("
	"  agent_id TEXT NOT NULL REFERENCES agents(id), name TEXT NOT NULL,"
	"  record TEXT NOT NULL, value TEXT NOT NULL, created_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL, PRIMARY KEY (agent_id, name));",
	/* 6: snapshots of sandboxes with a network (their guest has a NIC) */
	"ALTER TABLE snapshots ADD COLUMN network INTEGER NOT NULL DEFAULT 0;",
};

/* States whose sandbox holds a VM in memory (a paused one is on disk only). */
#define MEMORY_STATES	"'creating','running','pausing','resuming'"

/*
 * Prepare sql and bind args by the letters of types: 's' a string (NULL binds NULL), 'i' an
 * int64_t, 'u' an unsigned.  Returns the statement or NULL (logged).
 */
static sqlite3_stmt *prep(const char *sql, const char *types, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int i = 1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		log_warn("sqlite: %s: %s", sql, sqlite3_errmsg(db));
		return NULL;
	}
	va_start(ap, types);
	for (const char *t = types; *t; t++, i++) {
		if (*t == 's') {
			const char *s = va_arg(ap, const char *);

			sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
		} else if (*t == 'i') {
			sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
		} else {
			sqlite3_bind_int64(st, i, va_arg(ap, unsigned));
		}
	}
	va_end(ap);
	return st;
}

/* Run a statement that returns no rows; 0 or -1. */
static int run(sqlite3_stmt *st)
{
	int rc;

	if (!st)
		return -1;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		log_warn("sqlite: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* The first column of the first row as an integer, or def. */
static int64_t scalar(sqlite3_stmt *st, int64_t def)
{
	int64_t v = def;

	if (!st)
		return def;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void copy_col(sqlite3_stmt *st, int col, char *out, size_t len)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	snprintf(out, len, "%s", t ? (const char *)t : "");
}

static void lock(void)
{
	pthread_mutex_lock(&db_mu);
}

static void unlock(void)
{
	pthread_mutex_unlock(&db_mu);
}

static int migrate(char *err, size_t errlen)
{
	int64_t have;
	int n = sizeof(migrations) / sizeof(migrations[0]);
	char *msg = NULL;

	if (sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);",
			 NULL, NULL, &msg) != SQLITE_OK)
		goto fail;
	have = scalar(prep("SELECT max(version) FROM schema_version", ""), 0);
	if (have > n) {
		snprintf(err, errlen, "database schema version %lld is newer than this kilnd (%d)",
			 (long long)have, n);
		return -1;
	}
	for (int v = have + 1; v <= n; v++) {
		char sql[64];

		snprintf(sql, sizeof(sql), "INSERT INTO schema_version VALUES (%d);", v);
		if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_exec(db, migrations[v - 1], NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			goto fail;
		}
	}
	return 0;
fail:
	snprintf(err, errlen, "schema migration: %s", msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -1;
}

int db_open(const char *path, char *err, size_t errlen)
{
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			    SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
		return -1;
	}
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
			 "PRAGMA foreign_keys=ON;", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
		return -1;
	}
	return migrate(err, errlen);
}

void db_close(void)
{
	lock();
	sqlite3_close(db);
	db = NULL;
	unlock();
}

static void begin(void)
{
	sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
}

static void commit(void)
{
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		log_warn("sqlite: commit: %s", sqlite3_errmsg(db));
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	}
}

int db_agent_create(const struct agent_req *r, const char *id, const char *key_hash)
{
	int ret;

	lock();
	ret = run(prep("INSERT INTO agents (id, name, key_hash, currency, max_sandboxes, max_cpus, "
		       "max_memory_mib, created_at, max_total_memory_mib) "
		       "VALUES (?,?,?,?,?,?,?,?,?)", "ssssuuuiu", id, r->name,
		       key_hash, r->currency, r->max_sandboxes, r->max_cpus, r->max_memory_mib,
		       now_ms(), r->max_total_memory_mib));
	unlock();
	return ret;
}

static int agent_row(sqlite3_stmt *st, struct agent *a)
{
	int ret = -1;

	if (st && sqlite3_step(st) == SQLITE_ROW) {
		copy_col(st, 0, a->id, sizeof(a->id));
		copy_col(st, 1, a->name, sizeof(a->name));
		copy_col(st, 2, a->currency, sizeof(a->currency));
		a->max_sandboxes = sqlite3_column_int(st, 3);
		a->max_cpus = sqlite3_column_int(st, 4);
		a->max_memory_mib = sqlite3_column_int(st, 5);
		a->max_total_memory_mib = sqlite3_column_int(st, 6);
		ret = 0;
	}
	sqlite3_finalize(st);
	return ret;
}

#define AGENT_COLS "id, name, currency, max_sandboxes, max_cpus, max_memory_mib, " \
		   "max_total_memory_mib"

int db_agent_by_key_hash(const char *key_hash, struct agent *a)
{
	int ret;

	lock();
	ret = agent_row(prep("SELECT " AGENT_COLS " FROM agents WHERE key_hash = ?", "s",
			     key_hash), a);
	unlock();
	return ret;
}

int db_agent_get(const char *id, struct agent *a)
{
	int ret;

	lock();
	ret = agent_row(prep("SELECT " AGENT_COLS " FROM agents WHERE id = ?", "s", id), a);
	unlock();
	return ret;
}

json_t *db_agent_json(const char *id)
{
	struct agent a;

	if (db_agent_get(id, &a))
		return NULL;
	return json_pack("{s:s, s:s, s:s, s:{s:I, s:I, s:I, s:o}}", "id", a.id, "name", a.name,
			 "currency", a.currency, "quota", "max_sandboxes",
			 (json_int_t)a.max_sandboxes, "max_cpus", (json_int_t)a.max_cpus,
			 "max_memory_mib", (json_int_t)a.max_memory_mib, "max_total_memory_mib",
			 a.max_total_memory_mib ? json_integer(a.max_total_memory_mib) :
			 json_null());
}

/* A transaction of two entries: amount from one account to another.  Lock held. */
static int post(const char *kind, const char *agent_id, const char *currency,
		const char *from, const char *to, int64_t amount)
{
	int64_t txn;

	if (run(prep("INSERT INTO ledger_txns (kind, agent_id, currency, created_at) "
		     "VALUES (?,?,?,?)", "sssi", kind, agent_id, currency, now_ms())))
		return -1;
	txn = sqlite3_last_insert_rowid(db);
	if (run(prep("INSERT INTO ledger_entries (txn_id, account, amount_micro) VALUES (?,?,?)",
		     "isi", txn, from, -amount)) ||
	    run(prep("INSERT INTO ledger_entries (txn_id, account, amount_micro) VALUES (?,?,?)",
		     "isi", txn, to, amount)))
		return -1;
	return 0;
}

static void wallet_account(const char *agent_id, char *out, size_t len)
{
	snprintf(out, len, "agent:%s", agent_id);
}

int db_credit(const char *agent_id, int64_t amount, const char *currency)
{
	char wallet[80], external[32];
	int ret;

	wallet_account(agent_id, wallet, sizeof(wallet));
	snprintf(external, sizeof(external), "external:%s", currency);
	lock();
	begin();
	ret = post("credit", agent_id, currency, external, wallet, amount);
	commit();
	unlock();
	return ret;
}

static int64_t balance_locked(const char *agent_id)
{
	char wallet[80];

	wallet_account(agent_id, wallet, sizeof(wallet));
	return scalar(prep("SELECT total(amount_micro) FROM ledger_entries WHERE account = ?",
			   "s", wallet), 0);
}

int64_t db_balance(const char *agent_id)
{
	int64_t b;

	lock();
	b = balance_locked(agent_id);
	unlock();
	return b;
}

json_t *db_wallet_json(const char *agent_id, unsigned limit)
{
	char wallet[80];
	struct agent a;
	json_t *entries = json_array();
	sqlite3_stmt *st;

	if (db_agent_get(agent_id, &a))
		return NULL;
	wallet_account(agent_id, wallet, sizeof(wallet));
	lock();
	st = prep("SELECT e.id, t.kind, t.sandbox_id, t.minute, e.amount_micro, t.currency, "
		  "t.created_at FROM ledger_entries e JOIN ledger_txns t ON t.id = e.txn_id "
		  "WHERE e.account = ? ORDER BY e.id DESC LIMIT ?", "su", wallet, limit);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		json_t *e = json_pack("{s:I, s:s, s:I, s:s, s:I}",
				      "id", (json_int_t)sqlite3_column_int64(st, 0),
				      "kind", (const char *)sqlite3_column_text(st, 1),
				      "amount_micro", (json_int_t)sqlite3_column_int64(st, 4),
				      "currency", (const char *)sqlite3_column_text(st, 5),
				      "created_at", (json_int_t)sqlite3_column_int64(st, 6) / 1000);

		if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
			json_object_set_new(e, "sandbox_id",
					    json_string((const char *)sqlite3_column_text(st, 2)));
			json_object_set_new(e, "minute",
					    json_integer(sqlite3_column_int64(st, 3) * 60));
		}
		json_array_append_new(entries, e);
	}
	sqlite3_finalize(st);
	int64_t balance = balance_locked(agent_id);

	unlock();
	return json_pack("{s:s, s:I, s:o}", "currency", a.currency, "balance_micro",
			 (json_int_t)balance, "entries", entries);
}

json_t *db_usage_json(const char *agent_id)
{
	json_t *list = json_array();
	int64_t total_ms_cpu = 0, total_ms_mib = 0, total_disk = 0, total_cost = 0;
	int64_t total_out = 0, total_in = 0;
	sqlite3_stmt *st;

	lock();
	st = prep("SELECT id, state, cpus, memory_mib, run_ms, debited_micro, disk_mib_ms, "
		  "net_out_bytes, net_in_bytes FROM sandboxes WHERE agent_id = ? ORDER BY seq",
		  "s", agent_id);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		int64_t cpus = sqlite3_column_int64(st, 2), mib = sqlite3_column_int64(st, 3);
		int64_t ms = sqlite3_column_int64(st, 4), cost = sqlite3_column_int64(st, 5);
		int64_t disk = sqlite3_column_int64(st, 6), out = sqlite3_column_int64(st, 7);
		int64_t in = sqlite3_column_int64(st, 8);

		total_ms_cpu += cpus * ms;
		total_ms_mib += mib * ms;
		total_disk += disk;
		total_out += out;
		total_in += in;
		total_cost += cost;
		json_array_append_new(list, json_pack(
			"{s:s, s:s, s:f, s:f, s:f, s:f, s:I, s:I, s:I}",
			"id", (const char *)sqlite3_column_text(st, 0),
			"state", (const char *)sqlite3_column_text(st, 1),
			"run_seconds", ms / 1000.0, "vcpu_seconds", cpus * ms / 1000.0,
			"memory_gib_seconds", mib * ms / 1024000.0,
			"disk_gib_seconds", disk / 1024000.0, "network_out_bytes", (json_int_t)out,
			"network_in_bytes", (json_int_t)in, "cost_micro", (json_int_t)cost));
	}
	sqlite3_finalize(st);
	unlock();
	return json_pack("{s:f, s:f, s:f, s:I, s:I, s:I, s:o}", "vcpu_seconds",
			 total_ms_cpu / 1000.0, "memory_gib_seconds", total_ms_mib / 1024000.0,
			 "disk_gib_seconds", total_disk / 1024000.0, "network_out_bytes",
			 (json_int_t)total_out, "network_in_bytes", (json_int_t)total_in,
			 "cost_micro", (json_int_t)total_cost, "sandboxes", list);
}

/* Would mib more MiB of VMs take the agent past max_total_memory_mib?  Locked. */
static int memory_quota_locked(const struct agent *a, unsigned mib, struct api_error *e)
{
	int64_t used;

	if (!a->max_total_memory_mib)
		return 0;
	used = scalar(prep("SELECT total(memory_mib) FROM sandboxes WHERE agent_id = ? AND "
			   "state IN (" MEMORY_STATES ")", "s", a->id), 0);
	if (used + mib <= a->max_total_memory_mib)
		return 0;
	return api_fail(e, 429, "quota_exceeded", "max_total_memory_mib",
			"max_total_memory_mib: this agent's running sandboxes use %lld MiB of its "
			"%u; %u more do not fit", (long long)used, a->max_total_memory_mib, mib);
}

int db_memory_quota(const struct agent *a, unsigned mib, struct api_error *e)
{
	int ret;

	lock();
	ret = memory_quota_locked(a, mib, e);
	unlock();
	return ret;
}

int db_sandbox_insert(const struct agent *a, const struct sandbox *s, const char *metadata,
		      struct api_error *e)
{
	int64_t active, now = now_ms();
	int ret = -1;

	lock();
	begin();
	active = scalar(prep("SELECT count(*) FROM sandboxes WHERE agent_id = ? AND state IN ("
			     ACTIVE_STATES ")", "s", a->id), 0);
	if (active >= a->max_sandboxes) {
		api_fail(e, 429, "quota_exceeded", NULL,
			 "this agent may have at most %u sandboxes at once", a->max_sandboxes);
		goto out;
	}
	if (memory_quota_locked(a, s->memory_mib, e))
		goto out;
	if (run(prep("INSERT INTO sandboxes (id, agent_id, state, template, cpus, memory_mib, "
		     "metadata, created_at, expires_at, updated_at, on_timeout, timeout_s) "
		     "VALUES (?,?,'creating',?,?,?,?,?,?,?,?,?)", "sssuusiiisu", s->id, a->id,
		     s->template, s->cpus, s->memory_mib, metadata, s->created_at, s->expires_at,
		     now, s->pause_on_timeout ? "pause" : "kill", s->timeout_s))) {
		api_fail(e, 500, "internal", NULL, "cannot record the sandbox");
		goto out;
	}
	ret = 0;
out:
	commit();
	unlock();
	return ret;
}

#define SANDBOX_COLS "id, agent_id, state, template, cpus, memory_mib, created_at, expires_at, " \
		     "on_timeout, coalesce(timeout_s, (expires_at - created_at) / 1000), " \
		     "coalesce(reason, '')"

static void sandbox_of_row(sqlite3_stmt *st, struct sandbox *s)
{
	copy_col(st, 0, s->id, sizeof(s->id));
	copy_col(st, 1, s->agent_id, sizeof(s->agent_id));
	copy_col(st, 2, s->state, sizeof(s->state));
	copy_col(st, 3, s->template, sizeof(s->template));
	s->cpus = sqlite3_column_int(st, 4);
	s->memory_mib = sqlite3_column_int(st, 5);
	s->created_at = sqlite3_column_int64(st, 6);
	s->expires_at = sqlite3_column_int64(st, 7);
	s->pause_on_timeout = !strcmp((const char *)sqlite3_column_text(st, 8), "pause");
	s->timeout_s = sqlite3_column_int(st, 9);
	copy_col(st, 10, s->reason, sizeof(s->reason));
}

int db_sandbox_get(const char *id, const char *agent_id, struct sandbox *s)
{
	sqlite3_stmt *st;
	int ret = -1;

	lock();
	st = prep("SELECT " SANDBOX_COLS " FROM sandboxes WHERE id = ? AND "
		  "(?2 IS NULL OR agent_id = ?2)", "ss", id, agent_id);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		sandbox_of_row(st, s);
		ret = 0;
	}
	sqlite3_finalize(st);
	unlock();
	return ret;
}

#define SANDBOX_JSON_COLS "id, state, reason, template, cpus, memory_mib, metadata, " \
			  "created_at, expires_at, run_ms, debited_micro, on_timeout, " \
			  "coalesce(timeout_s, (expires_at - created_at) / 1000), network"

static json_t *sandbox_json_row(sqlite3_stmt *st)
{
	char created[32], expires[32];
	const char *md = (const char *)sqlite3_column_text(st, 6);
	json_t *metadata = md ? json_loads(md, 0, NULL) : NULL;
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:o, s:f, s:I}",
		"id", (const char *)sqlite3_column_text(st, 0),
		"state", (const char *)sqlite3_column_text(st, 1),
		"template", (const char *)sqlite3_column_text(st, 3),
		"cpus", (json_int_t)sqlite3_column_int64(st, 4),
		"memory_mib", (json_int_t)sqlite3_column_int64(st, 5),
		"created_at", iso_time(sqlite3_column_int64(st, 7), created, sizeof(created)),
		"expires_at", iso_time(sqlite3_column_int64(st, 8), expires, sizeof(expires)),
		"metadata", metadata ? metadata : json_object(),
		"run_seconds", sqlite3_column_int64(st, 9) / 1000.0,
		"cost_micro", (json_int_t)sqlite3_column_int64(st, 10));

	if (o) {
		json_object_set_new(o, "on_timeout",
				    json_string((const char *)sqlite3_column_text(st, 11)));
		json_object_set_new(o, "timeout_s", json_integer(sqlite3_column_int64(st, 12)));
	}
	if (o) {
		const char *net = (const char *)sqlite3_column_text(st, 13);

		json_object_set_new(o, "network", net ? json_loads(net, 0, NULL) : json_null());
	}
	if (o && sqlite3_column_type(st, 2) != SQLITE_NULL)
		json_object_set_new(o, "reason",
				    json_string((const char *)sqlite3_column_text(st, 2)));
	return o;
}

json_t *db_sandbox_json(const char *id)
{
	sqlite3_stmt *st;
	json_t *o = NULL;

	lock();
	st = prep("SELECT " SANDBOX_JSON_COLS " FROM sandboxes WHERE id = ?", "s", id);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		o = sandbox_json_row(st);
	sqlite3_finalize(st);
	unlock();
	return o;
}

json_t *db_sandbox_list(const char *agent_id, const char *state, unsigned limit,
			const char *after, const struct list_filter *f, unsigned nf)
{
	json_t *list = json_array(), *last = NULL, *next;
	char *sql = NULL, *where = NULL;
	size_t wlen = 0;
	FILE *w = open_memstream(&where, &wlen);
	sqlite3_stmt *st = NULL;
	unsigned n = 0;

	if (!w)
		return NULL;
	/* Keys passed metadata_key_ok (no quotes): safe inside a quoted JSON path. */
	for (unsigned i = 0; i < nf; i++)
		fprintf(w, " AND json_extract(metadata, '$.\"%s\"') = ?%u", f[i].key, 5 + i);
	fclose(w);
	if (asprintf(&sql, "SELECT " SANDBOX_JSON_COLS " FROM sandboxes WHERE agent_id = ?1 "
		     "AND (?2 IS NULL OR state = ?2) "
		     "AND (?3 IS NULL OR seq > (SELECT seq FROM sandboxes WHERE id = ?3 AND "
		     "agent_id = ?1))%s ORDER BY seq LIMIT ?4", where) < 0)
		sql = NULL;
	free(where);
	lock();
	if (sql)
		st = prep(sql, "sssu", agent_id, state, after, limit + 1);
	for (unsigned i = 0; st && i < nf; i++)
		sqlite3_bind_text(st, 5 + i, f[i].value, -1, SQLITE_TRANSIENT);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		if (n++ == limit)
			break;
		last = sandbox_json_row(st);
		json_array_append_new(list, last);
	}
	sqlite3_finalize(st);
	unlock();
	free(sql);
	/* A cursor only when there is more. */
	next = n > limit && last ? json_incref(json_object_get(last, "id")) : json_null();
	return json_pack("{s:o, s:O, s:o}", "sandboxes", list, "next", next, "next_after", next);
}

/* MiB-milliseconds of the scratch disk's allocated size over ms milliseconds: its size now
 * stands for the whole interval (a second between readings). */
static int64_t disk_mib_ms_since(const char *id, int64_t ms)
{
	char path[PATH_MAX + 80];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s/scratch.ext4", cfg.sandboxes_dir, id);
	if (stat(path, &st) < 0)
		return 0;
	return (int64_t)((double)st.st_blocks * 512 / (1024.0 * 1024.0) * (double)ms);
}

/* The bytes through the tap of sandbox id's namespace so far, as the tap counts them (its
 * receive is the guest's sending), read where its VMM runs.  false without a running VMM. */
static bool tap_counters(const char *id, int64_t *out, int64_t *in)
{
	char dir[PATH_MAX], path[64], line[512];
	unsigned long long rx, tx;
	bool found = false;
	pid_t pid;
	FILE *f;

	sandbox_dir(id, dir, sizeof(dir));
	pid = vm_pid(dir);
	if (!pid)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/net/dev", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, " " NETNS_TAP ": %llu %*u %*u %*u %*u %*u %*u %*u %llu",
			       &rx, &tx) == 2;
	fclose(f);
	if (found) {
		*out = (int64_t)(rx & INT64_MAX);
		*in = (int64_t)(tx & INT64_MAX);
	}
	return found;
}

/* Add what went through sandbox id's NIC since the last reading to its totals (columns of
 * the row in st from col on: out, in, out_seen, in_seen); the new totals in out, in.  A
 * counter below its last reading started again (a new namespace): all of it is new. */
static void meter_network_locked(const char *id, sqlite3_stmt *st, int col, int64_t *out,
				 int64_t *in)
{
	int64_t now_out, now_in, seen_out = sqlite3_column_int64(st, col + 2);
	int64_t seen_in = sqlite3_column_int64(st, col + 3);

	*out = sqlite3_column_int64(st, col);
	*in = sqlite3_column_int64(st, col + 1);
	if (!tap_counters(id, &now_out, &now_in))
		return;
	*out += now_out >= seen_out ? now_out - seen_out : now_out;
	*in += now_in >= seen_in ? now_in - seen_in : now_in;
	run(prep("UPDATE sandboxes SET net_out_bytes = ?, net_in_bytes = ?, net_out_seen = ?, "
		 "net_in_seen = ? WHERE id = ?", "iiiis", *out, *in, now_out, now_in, id));
}

/* The usage since the last reading of sandbox id, added and debited: run time while it runs,
 * its scratch disk while it runs or is paused (the disk is kept either way), the bytes
 * through its NIC.  Locked. */
static void meter_locked(const char *id, const struct prices *p, int64_t now)
{
	sqlite3_stmt *st = prep("SELECT s.agent_id, s.cpus, s.memory_mib, s.run_ms, s.metered_at, "
				"s.debited_micro, a.currency, s.disk_mib_ms, s.state, "
				"s.network IS NOT NULL, s.net_out_bytes, s.net_in_bytes, "
				"s.net_out_seen, s.net_in_seen "
				"FROM sandboxes s JOIN agents a ON a.id = s.agent_id "
				"WHERE s.id = ? AND s.state IN ('running', 'paused')", "s", id);
	char agent[64], currency[8], wallet[80];
	int64_t run_ms, cost, due, txn, minute = now / 60000, disk_mib_ms, out = 0, in = 0;
	unsigned cpus, mib;
	bool running;

	if (!st || sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return;
	}
	copy_col(st, 0, agent, sizeof(agent));
	copy_col(st, 6, currency, sizeof(currency));
	cpus = sqlite3_column_int(st, 1);
	mib = sqlite3_column_int(st, 2);
	run_ms = sqlite3_column_int64(st, 3);
	running = !strcmp((const char *)sqlite3_column_text(st, 8), "running");
	if (sqlite3_column_type(st, 4) != SQLITE_NULL && now > sqlite3_column_int64(st, 4) &&
	    running)
		run_ms += now - sqlite3_column_int64(st, 4);
	disk_mib_ms = sqlite3_column_int64(st, 7);
	if (sqlite3_column_type(st, 4) != SQLITE_NULL && now > sqlite3_column_int64(st, 4))
		disk_mib_ms += disk_mib_ms_since(id, now - sqlite3_column_int64(st, 4));
	if (sqlite3_column_int(st, 9))
		meter_network_locked(id, st, 10, &out, &in);
	cost = ledger_cost_micro(run_ms, cpus, mib, p);
	cost = ledger_add(cost, ledger_disk_cost_micro(disk_mib_ms, p));
	cost = ledger_add(cost, ledger_network_cost_micro(ledger_add(out, in), p));
	due = ledger_debit_due(cost, sqlite3_column_int64(st, 5));
	sqlite3_finalize(st);
	run(prep("UPDATE sandboxes SET run_ms = ?, metered_at = ?, debited_micro = ?, "
		 "disk_mib_ms = ? WHERE id = ?", "iiiis", run_ms, now, cost > 0 ? cost : 0,
		 disk_mib_ms, id));
	if (due <= 0)
		return;
	wallet_account(agent, wallet, sizeof(wallet));
	run(prep("INSERT OR IGNORE INTO ledger_txns (kind, agent_id, sandbox_id, minute, currency, "
		 "created_at) VALUES ('usage', ?, ?, ?, ?, ?)", "ssisi", agent, id, minute, currency,
		 now));
	txn = scalar(prep("SELECT id FROM ledger_txns WHERE sandbox_id = ? AND minute = ?", "si",
			  id, minute), -1);
	if (scalar(prep("SELECT count(*) FROM ledger_entries WHERE txn_id = ?", "i", txn), 0) == 0) {
		run(prep("INSERT INTO ledger_entries (txn_id, account, amount_micro) VALUES (?,?,0)",
			 "is", txn, wallet));
		run(prep("INSERT INTO ledger_entries (txn_id, account, amount_micro) "
			 "VALUES (?,'revenue:usage',0)", "i", txn));
	}
	run(prep("UPDATE ledger_entries SET amount_micro = amount_micro - ? WHERE txn_id = ? AND "
		 "account = ?", "iis", due, txn, wallet));
	run(prep("UPDATE ledger_entries SET amount_micro = amount_micro + ? WHERE txn_id = ? AND "
		 "account = 'revenue:usage'", "ii", due, txn));
}

/* Is state one of "a|b|c"? */
static bool state_in(const char *state, const char *set)
{
	size_t n = strlen(state);

	for (const char *p = set; p; p = strchr(p, '|') ? strchr(p, '|') + 1 : NULL)
		if (!strncmp(p, state, n) && (p[n] == '|' || p[n] == 0))
			return true;
	return false;
}

bool db_transition(const char *id, const char *from, const char *to, const char *reason)
{
	char state[16];
	int64_t now = now_ms();
	sqlite3_stmt *st;
	bool ok = false;

	lock();
	begin();
	st = prep("SELECT state FROM sandboxes WHERE id = ?", "s", id);
	if (!st || sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		goto out;
	}
	copy_col(st, 0, state, sizeof(state));
	sqlite3_finalize(st);
	if (!state_in(state, from))
		goto out;
	if (!strcmp(state, "running") || !strcmp(state, "paused"))
		meter_locked(id, &cfg.prices, now);
	ok = run(prep("UPDATE sandboxes SET state = ?, reason = ?, updated_at = ?, "
		      "metered_at = CASE WHEN ?1 IN ('running', 'paused') THEN ? ELSE NULL END "
		      "WHERE id = ?",
		      "ssiis", to, reason, now, now, id)) == 0;
out:
	commit();
	unlock();
	return ok;
}

int db_set_expiry(const char *id, int64_t expires_at)
{
	int ret;

	lock();
	ret = run(prep("UPDATE sandboxes SET expires_at = ?, updated_at = ? WHERE id = ?", "iis",
		       expires_at, now_ms(), id));
	unlock();
	return ret;
}

int db_set_timeout(const char *id, unsigned timeout_s, int64_t expires_at)
{
	int ret;

	lock();
	ret = run(prep("UPDATE sandboxes SET expires_at = ?, timeout_s = ?, updated_at = ? "
		       "WHERE id = ?", "iuis", expires_at, timeout_s, now_ms(), id));
	unlock();
	return ret;
}

void db_count_create(void)
{
	lock();
	run(prep("UPDATE counters SET value = value + 1 WHERE name = 'sandboxes_created_total'",
		 ""));
	unlock();
}

void db_each_sandbox(const char *states, void (*fn)(const struct sandbox *, void *), void *ctx)
{
	struct sandbox *list = NULL, *grown;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st;

	/* Collect first: fn may take seconds (a VM stop) and must not hold the lock. */
	lock();
	st = prep("SELECT " SANDBOX_COLS " FROM sandboxes WHERE state IN ("
		  ACTIVE_STATES ") ORDER BY seq", "");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(list, cap * sizeof(*list));
			if (!grown)
				break;
			list = grown;
		}
		sandbox_of_row(st, &list[n]);
		if (state_in(list[n].state, states))
			n++;
	}
	sqlite3_finalize(st);
	unlock();
	for (size_t i = 0; i < n; i++)
		fn(&list[i], ctx);
	free(list);
}

static void meter_one(const struct sandbox *s, void *ctx)
{
	int64_t now = now_ms();

	lock();
	begin();
	meter_locked(s->id, ctx, now);
	commit();
	unlock();
}

void db_meter_tick(const struct prices *p)
{
	db_each_sandbox("running|paused", meter_one, (void *)p);
}

void db_each_broke_agent(void (*fn)(const char *agent_id, void *), void *ctx)
{
	char ids[64][64];
	int n = 0;
	sqlite3_stmt *st;

	lock();
	st = prep("SELECT DISTINCT s.agent_id FROM sandboxes s WHERE s.state = 'running' AND "
		  "(SELECT total(amount_micro) FROM ledger_entries WHERE account = "
		  "'agent:' || s.agent_id) <= 0 LIMIT 64", "");
	while (st && sqlite3_step(st) == SQLITE_ROW && n < 64)
		copy_col(st, 0, ids[n++], sizeof(ids[0]));
	sqlite3_finalize(st);
	unlock();
	for (int i = 0; i < n; i++)
		fn(ids[i], ctx);
}

char *db_metrics(void)
{
	static const char *const states[] = { "creating", "running", "pausing", "paused",
					      "resuming", "deleting", "deleted", "expired", "failed",
					      "lost", NULL };
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	if (!f)
		return NULL;
	lock();
	fprintf(f, "# HELP kilnd_sandboxes Sandboxes by state.\n# TYPE kilnd_sandboxes gauge\n");
	for (const char *const *s = states; *s; s++)
		fprintf(f, "kilnd_sandboxes{state=\"%s\"} %lld\n", *s, (long long)scalar(
			prep("SELECT count(*) FROM sandboxes WHERE state = ?", "s", *s), 0));
	fprintf(f, "# HELP kilnd_sandboxes_created_total Sandboxes created.\n"
		"# TYPE kilnd_sandboxes_created_total counter\nkilnd_sandboxes_created_total %lld\n",
		(long long)scalar(prep("SELECT value FROM counters WHERE name = "
				       "'sandboxes_created_total'", ""), 0));
	unlock();
	fclose(f);
	return out;
}

/* ---- snapshots ---- */

int db_snapshot_insert(const struct snapshot *sn)
{
	sqlite3_stmt *st;
	int ret = -1;

	lock();
	st = prep("INSERT INTO snapshots (id, agent_id, sandbox_id, template, cpus, memory_mib, "
		  "state, created_at, network) VALUES (?, ?, ?, ?, ?, ?, 'ready', ?, ?)", "ssssuuiu",
		  sn->id, sn->agent_id, sn->sandbox_id, sn->template, sn->cpus, sn->memory_mib,
		  sn->created_at, (unsigned)sn->network);
	if (st && sqlite3_step(st) == SQLITE_DONE)
		ret = 0;
	sqlite3_finalize(st);
	unlock();
	return ret;
}

#define SNAPSHOT_COLS "id, agent_id, sandbox_id, template, cpus, memory_mib, created_at, network"

static void snapshot_of_row(sqlite3_stmt *st, struct snapshot *sn)
{
	memset(sn, 0, sizeof(*sn));
	snprintf(sn->id, sizeof(sn->id), "%s", (const char *)sqlite3_column_text(st, 0));
	snprintf(sn->agent_id, sizeof(sn->agent_id), "%s", (const char *)sqlite3_column_text(st, 1));
	snprintf(sn->sandbox_id, sizeof(sn->sandbox_id), "%s",
		 (const char *)sqlite3_column_text(st, 2));
	snprintf(sn->template, sizeof(sn->template), "%s", (const char *)sqlite3_column_text(st, 3));
	sn->cpus = sqlite3_column_int(st, 4);
	sn->memory_mib = sqlite3_column_int(st, 5);
	sn->created_at = sqlite3_column_int64(st, 6);
	sn->network = sqlite3_column_int(st, 7) != 0;
}

int db_snapshot_get(const char *id, const char *agent_id, struct snapshot *sn)
{
	sqlite3_stmt *st;
	int ret = -1;

	lock();
	st = prep("SELECT " SNAPSHOT_COLS " FROM snapshots WHERE id = ? AND agent_id = ? AND "
		  "state = 'ready'", "ss", id, agent_id);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		snapshot_of_row(st, sn);
		ret = 0;
	}
	sqlite3_finalize(st);
	unlock();
	return ret;
}

json_t *db_snapshot_json(const struct snapshot *sn)
{
	char created[32];

	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:b, s:s}", "id", sn->id, "sandbox_id",
			 sn->sandbox_id, "template", sn->template, "cpus", (json_int_t)sn->cpus,
			 "memory_mib", (json_int_t)sn->memory_mib, "network", sn->network,
			 "created_at", iso_time(sn->created_at, created, sizeof(created)));
}

json_t *db_snapshot_list(const char *agent_id)
{
	json_t *list = json_array();
	sqlite3_stmt *st;
	struct snapshot sn;

	lock();
	st = prep("SELECT " SNAPSHOT_COLS " FROM snapshots WHERE agent_id = ? AND "
		  "state = 'ready' ORDER BY created_at, id", "s", agent_id);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		snapshot_of_row(st, &sn);
		json_array_append_new(list, db_snapshot_json(&sn));
	}
	sqlite3_finalize(st);
	unlock();
	return json_pack("{s:o}", "snapshots", list);
}

int db_snapshot_delete(const char *id)
{
	sqlite3_stmt *st;
	int ret = -1;

	lock();
	st = prep("UPDATE snapshots SET state = 'deleted', deleted_at = ? WHERE id = ? AND "
		  "state = 'ready'", "is", now_ms(), id);
	if (st && sqlite3_step(st) == SQLITE_DONE && sqlite3_changes(db) == 1)
		ret = 0;
	sqlite3_finalize(st);
	unlock();
	return ret;
}

int db_set_network(const char *id, json_t *record)
{
	char *text = json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS);
	int ret;

	if (!text)
		return -1;
	lock();
	ret = run(prep("UPDATE sandboxes SET network = ? WHERE id = ?", "ss", text, id));
	unlock();
	free(text);
	return ret;
}

json_t *db_network_json(const char *id)
{
	sqlite3_stmt *st;
	json_t *o = NULL;

	lock();
	st = prep("SELECT network, net_out_bytes, net_in_bytes FROM sandboxes WHERE id = ? AND "
		  "network IS NOT NULL", "s", id);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		o = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
		if (o) {
			json_object_set_new(o, "out_bytes", json_integer(sqlite3_column_int64(st, 1)));
			json_object_set_new(o, "in_bytes", json_integer(sqlite3_column_int64(st, 2)));
		}
	}
	sqlite3_finalize(st);
	unlock();
	return o;
}

int db_secret_put(const char *agent_id, json_t *record, const char *value, unsigned max)
{
	const char *name = json_string_value(json_object_get(record, "name"));
	char *text = json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS);
	int64_t now = now_ms(), exists, count;
	int ret = -1;

	if (!text || !name)
		goto out;
	lock();
	begin();
	exists = scalar(prep("SELECT count(*) FROM agent_secrets WHERE agent_id = ? AND name = ?",
			     "ss", agent_id, name), 0);
	count = scalar(prep("SELECT count(*) FROM agent_secrets WHERE agent_id = ?", "s",
			    agent_id), 0);
	if (!exists && count >= max)
		ret = 2;
	else if (run(prep("INSERT INTO agent_secrets VALUES (?, ?, ?, ?, ?, ?) "
			  "ON CONFLICT (agent_id, name) DO UPDATE SET record = excluded.record, "
			  "value = excluded.value, updated_at = excluded.updated_at",
			  "ssssii", agent_id, name, text, value, now, now)) == 0)
		ret = exists ? 0 : 1;
	commit();
	unlock();
out:
	free(text);
	return ret;
}

json_t *db_secrets_json(const char *agent_id, const char *name, bool values)
{
	sqlite3_stmt *st;
	json_t *list = json_array(), *o;

	lock();
	st = prep("SELECT record, value, created_at, updated_at FROM agent_secrets "
		  "WHERE agent_id = ? AND (?2 IS NULL OR name = ?2) ORDER BY name", "ss",
		  agent_id, name);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		o = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
		if (!o)
			continue;
		if (values)
			json_object_set_new(o, "value",
					    json_string((const char *)sqlite3_column_text(st, 1)));
		else
			json_object_set_new(o, "updated_at",
					    json_integer(sqlite3_column_int64(st, 3) / 1000));
		json_array_append_new(list, o);
	}
	sqlite3_finalize(st);
	unlock();
	return list;
}

int db_secret_delete(const char *agent_id, const char *name)
{
	int ret;

	lock();
	ret = run(prep("DELETE FROM agent_secrets WHERE agent_id = ? AND name = ?", "ss", agent_id,
		       name));
	if (ret == 0 && sqlite3_changes(db) == 0)
		ret = 1;
	unlock();
	return ret;
}
