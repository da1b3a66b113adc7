/*
 * netns_pool.h - sandbox network namespaces made ahead of time (netns_pool.c, docs/network.md).
 *
 * Making a namespace (netns_create) runs a dozen `ip` and `nft` processes; a pool keeps a few
 * ready, built with the deny-everything policy, so creating a networked sandbox only loads its
 * policy (one nft transaction) into one of them.  A background thread refills the pool.
 *
 * Use from kilnd (any thread; every call is thread-safe):
 *
 *	pool = netns_pool_start(NULL, 4, err, sizeof(err));	// at startup; NULL: no pool
 *	...
 *	// creating a sandbox with a network:
 *	if (netns_pool_take(pool, allow, policy_file != NULL, ns, sizeof(ns), err, sizeof(err)))
 *		fail(err);					// bad policy, or no namespace
 *	spec.net = true;
 *	spec.net_ns = ns;	// vm_up/vm_clone own it from here: they destroy it on failure,
 *	vm_up(dir, &spec, &e);	// vm_down destroys it at the end
 *	...
 *	netns_pool_stop(pool, true);			// at shutdown: idle namespaces removed
 *
 * A namespace taken but never given to vm_up goes back with netns_pool_put (destroyed, never
 * reused: its conntrack state and whatever ran in it go with it).  The refill thread notices
 * taken and failed members by itself; nothing needs a timer.
 *
 * The pool's state is its directory (default /run/kiln/net/pool), so it is reconstructible
 * after a crash and safe to share between processes: a file N is the ready namespace kiln-N;
 * taking it is unlink(N), which exactly one taker wins, so no namespace is handed out twice.
 * N.building is a namespace being built, flock'ed by its builder for the whole build; one
 * whose lock is free at start-up belonged to a process that died, and is destroyed.  Ready
 * members of a previous run are adopted.
 */
#ifndef KILN_NETNS_POOL_H
#define KILN_NETNS_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NETNS_POOL_DIR		"/run/kiln/net/pool"
#define NETNS_POOL_MAX		256

struct netns_pool;

/*
 * Clean up and adopt what a previous run left in dir (NULL: NETNS_POOL_DIR), then start the
 * thread keeping size namespaces ready (1..NETNS_POOL_MAX).  Returns at once; the first
 * namespaces are ready a few seconds later.  NULL with err on failure.
 */
struct netns_pool *netns_pool_start(const char *dir, unsigned size, char *err, size_t errlen);

/*
 * A namespace with the policy allow/services loaded (as netns_create's arguments), its name in
 * name.  From the pool when one is ready (one nft run), else made on the spot (netns_create).
 * The caller owns it.  A bad policy fails before anything is taken.  0, or -1 with err.
 * p may be NULL: then this is netns_create.
 */
int netns_pool_take(struct netns_pool *p, const char *allow, bool services, char *name,
		    size_t namelen, char *err, size_t errlen);

/* Destroy a namespace taken and not used, and have the pool make another. */
void netns_pool_put(struct netns_pool *p, const char *name);

struct netns_pool_stats {
	unsigned size, ready;		/* wanted, and ready now */
	uint64_t hits, misses;		/* takes served from the pool, and made on the spot */
	uint64_t built, failed;		/* builds by the refill thread */
	char last_error[256];		/* why the last build or take of a member failed */
};

void netns_pool_stats(struct netns_pool *p, struct netns_pool_stats *s);

/* Wait until at least n namespaces are ready or timeout_ms passes; 0 when ready. */
int netns_pool_wait_ready(struct netns_pool *p, unsigned n, unsigned timeout_ms);

/* Stop the refill thread (waiting for a build in progress) and free p; drain: destroy the
 * ready namespaces too, else they stay for the next run to adopt. */
void netns_pool_stop(struct netns_pool *p, bool drain);

/* What a file name in the pool directory is (pure): its slot in *slot for READY and
 * BUILDING. */
enum netns_pool_entry {
	POOL_OTHER,		/* not ours: left alone */
	POOL_READY,		/* N */
	POOL_BUILDING,		/* N.building */
	POOL_TMP,		/* .tmp-*: a builder's lock before it has a slot */
};
enum netns_pool_entry netns_pool_classify(const char *fname, unsigned *slot);

#endif
