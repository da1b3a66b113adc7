/*
 * netns_pool.c - sandbox network namespaces made ahead of time, so creating a networked
 * sandbox waits for one nft transaction instead of a dozen ip and nft runs (netns_pool.h says
 * how kilnd uses it; docs/network.md).
 *
 * The pool directory is the whole state; nothing in memory says which namespaces are ready, so
 * a crashed process leaves nothing that the next one cannot read back from file names:
 *
 *	.tmp-PID-SEQ	a builder's lock file before it has a slot (flock'ed, empty)
 *	N.building	the same file once slot N is claimed: namespace kiln-N is being built
 *	N		namespace kiln-N is ready, with the deny-everything policy, never handed out
 *
 * A builder holds an flock on its file from before it claims a slot until the file is renamed
 * to N, so a lock anyone else can take belongs to a dead builder.  Taking a member is
 * unlink(N): the kernel lets exactly one caller succeed, so a namespace is never handed out
 * twice, even to two processes sharing the directory.  Members are never reused: a namespace
 * comes back only to be destroyed (vm_down, netns_pool_put), and the refill thread makes a
 * fresh one.
 */
#include "netns_pool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "netns.h"

#define REFILL_CHECK_MS	2000	/* notice members gone without a take (netns deleted by hand) */
#define BACKOFF_MS	5000	/* after a failed build: do not spin on a broken host */
#define TMP_PREFIX	".tmp-"
#define BUILDING	".building"

struct netns_pool {
	char dir[PATH_MAX];
	unsigned size;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t wake;	/* to the refill thread: a take, or stop */
	pthread_cond_t built;	/* from it: a member is ready */
	bool stop;
	uint64_t hits, misses, nbuilt, nfailed, seq;
	char last_error[256];
};

enum netns_pool_entry netns_pool_classify(const char *fname, unsigned *slot)
{
	char ns[NETNS_NAME_MAX];
	size_t n;

	if (!strncmp(fname, TMP_PREFIX, strlen(TMP_PREFIX)))
		return POOL_TMP;
	n = strlen(fname);
	if (n > strlen(BUILDING) && !strcmp(fname + n - strlen(BUILDING), BUILDING)) {
		n -= strlen(BUILDING);
		if (n >= sizeof(ns) - strlen(NETNS_PREFIX))
			return POOL_OTHER;
		snprintf(ns, sizeof(ns), NETNS_PREFIX "%.*s", (int)n, fname);
		return netns_slot(ns, slot) ? POOL_OTHER : POOL_BUILDING;
	}
	if (n >= sizeof(ns) - strlen(NETNS_PREFIX))
		return POOL_OTHER;
	snprintf(ns, sizeof(ns), NETNS_PREFIX "%s", fname);
	return netns_slot(ns, slot) ? POOL_OTHER : POOL_READY;
}

static void ns_name(unsigned slot, char *buf, size_t len)
{
	snprintf(buf, len, NETNS_PREFIX "%u", slot);
}

static void entry_path(struct netns_pool *p, const char *fname, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", p->dir, fname);
}

static bool ns_exists(const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "/run/netns/%s", name);
	return stat(path, &st) == 0;
}

static void set_error(struct netns_pool *p, const char *why)
{
	pthread_mutex_lock(&p->mu);
	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	pthread_mutex_unlock(&p->mu);
}

/* Ready members now.  Reads the directory: other processes may share it. */
static unsigned count_ready(struct netns_pool *p)
{
	DIR *d = opendir(p->dir);
	struct dirent *de;
	unsigned n = 0, slot;

	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (netns_pool_classify(de->d_name, &slot) == POOL_READY)
			n++;
	closedir(d);
	return n;
}

/*
 * Take the builder's lock of path if its builder is gone: the lock is free and the file is
 * still the one we locked (a live builder renames before it unlocks).  The fd, or -1.
 */
static int lock_if_abandoned(const char *path)
{
	struct stat a, b;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) || fstat(fd, &a) || stat(path, &b) ||
	    a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Claim a ready member: unlink wins for one caller only. */
static bool claim(struct netns_pool *p, const char *fname)
{
	char path[PATH_MAX];

	entry_path(p, fname, path, sizeof(path));
	return unlink(path) == 0;
}

/* What a previous run left: dead builders' namespaces destroyed, ready ones adopted unless
 * their namespace has gone (then the slot is freed). */
static void sweep(struct netns_pool *p)
{
	DIR *d = opendir(p->dir);
	struct dirent *de;
	char path[PATH_MAX], ns[NETNS_NAME_MAX];
	unsigned slot;
	int fd;

	if (!d)
		return;
	while ((de = readdir(d))) {
		enum netns_pool_entry k = netns_pool_classify(de->d_name, &slot);

		entry_path(p, de->d_name, path, sizeof(path));
		if (k == POOL_TMP || k == POOL_BUILDING) {
			fd = lock_if_abandoned(path);
			if (fd < 0)
				continue;
			if (k == POOL_BUILDING) {
				ns_name(slot, ns, sizeof(ns));
				netns_destroy(ns);
			}
			unlink(path);
			close(fd);
		} else if (k == POOL_READY) {
			ns_name(slot, ns, sizeof(ns));
			if (!ns_exists(ns) && claim(p, de->d_name))
				netns_destroy(ns);
		}
	}
	closedir(d);
}

/* Build one member: lock file first, then the slot, then the namespace; ready last. */
static int build_one(struct netns_pool *p)
{
	char tmp[PATH_MAX], building[PATH_MAX], ready[PATH_MAX], ns[NETNS_NAME_MAX];
	char err[256], fname[32];
	unsigned slot;
	uint64_t seq;
	int fd;

	pthread_mutex_lock(&p->mu);
	seq = p->seq++;
	pthread_mutex_unlock(&p->mu);
	snprintf(fname, sizeof(fname), TMP_PREFIX "%d-%llu", (int)getpid(),
		 (unsigned long long)seq);
	entry_path(p, fname, tmp, sizeof(tmp));
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX)) {
		snprintf(err, sizeof(err), "cannot create %s: %s", tmp, strerror(errno));
		goto fail;
	}
	/* A crash between claiming the slot and the rename leaks the slot file only. */
	if (netns_claim(ns, sizeof(ns), err, sizeof(err)))
		goto fail;
	netns_slot(ns, &slot);
	snprintf(fname, sizeof(fname), "%u" BUILDING, slot);
	entry_path(p, fname, building, sizeof(building));
	if (rename(tmp, building)) {
		snprintf(err, sizeof(err), "cannot rename %s: %s", tmp, strerror(errno));
		netns_destroy(ns);
		goto fail;
	}
	snprintf(tmp, sizeof(tmp), "%s", building);
	if (netns_build(ns, NULL, false, err, sizeof(err)))
		goto fail;
	snprintf(fname, sizeof(fname), "%u", slot);
	entry_path(p, fname, ready, sizeof(ready));
	if (rename(building, ready)) {
		snprintf(err, sizeof(err), "cannot rename %s: %s", building, strerror(errno));
		netns_destroy(ns);
		goto fail;
	}
	close(fd);
	return 0;
fail:
	set_error(p, err);
	if (fd >= 0) {
		unlink(tmp);
		close(fd);
	}
	return -1;
}

static struct timespec deadline(unsigned ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	return t;
}

static void *refill(void *arg)
{
	struct netns_pool *p = arg;

	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		struct timespec t;
		int r;

		if (count_ready(p) >= p->size) {
			t = deadline(REFILL_CHECK_MS);
			pthread_cond_timedwait(&p->wake, &p->mu, &t);
			continue;
		}
		pthread_mutex_unlock(&p->mu);
		r = build_one(p);
		pthread_mutex_lock(&p->mu);
		if (r == 0) {
			p->nbuilt++;
			pthread_cond_broadcast(&p->built);
			continue;
		}
		p->nfailed++;
		t = deadline(BACKOFF_MS);
		while (!p->stop && pthread_cond_timedwait(&p->wake, &p->mu, &t) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int make_dir(const char *dir, char *err, size_t errlen)
{
	if (!strcmp(dir, NETNS_POOL_DIR)) {
		mkdir("/run/kiln", 0755);
		mkdir("/run/kiln/net", 0700);
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

struct netns_pool *netns_pool_start(const char *dir, unsigned size, char *err, size_t errlen)
{
	struct netns_pool *p;
	pthread_condattr_t ca;

	if (size < 1 || size > NETNS_POOL_MAX) {
		snprintf(err, errlen, "pool size %u: must be 1 to %d", size, NETNS_POOL_MAX);
		return NULL;
	}
	if (!dir)
		dir = NETNS_POOL_DIR;
	if (strlen(dir) >= PATH_MAX - 64) {
		snprintf(err, errlen, "pool directory path too long");
		return NULL;
	}
	if (make_dir(dir, err, errlen))
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(p->dir, sizeof(p->dir), "%s", dir);
	p->size = size;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->wake, &ca);
	pthread_cond_init(&p->built, &ca);
	pthread_condattr_destroy(&ca);
	sweep(p);
	if (pthread_create(&p->thread, NULL, refill, p)) {
		snprintf(err, errlen, "cannot start the refill thread");
		free(p);
		return NULL;
	}
	return p;
}

/* A ready member with the policy loaded, or -1 when none could be had. */
static int take_ready(struct netns_pool *p, const char *allow, bool services, char *name,
		      size_t namelen)
{
	DIR *d = opendir(p->dir);
	struct dirent *de;
	char ns[NETNS_NAME_MAX], why[256];
	unsigned slot;
	int r = -1;

	if (!d)
		return -1;
	while (r && (de = readdir(d))) {
		if (netns_pool_classify(de->d_name, &slot) != POOL_READY || !claim(p, de->d_name))
			continue;
		ns_name(slot, ns, sizeof(ns));
		/* A member whose policy does not load is broken (deleted by hand?): never hand
		 * it out without the caller's policy. */
		if (!ns_exists(ns) || netns_set_policy(ns, allow, services, why, sizeof(why))) {
			set_error(p, ns_exists(ns) ? why : "a ready namespace had gone");
			netns_destroy(ns);
			continue;
		}
		snprintf(name, namelen, "%s", ns);
		r = 0;
	}
	closedir(d);
	return r;
}

int netns_pool_take(struct netns_pool *p, const char *allow, bool services, char *name,
		    size_t namelen, char *err, size_t errlen)
{
	int hit;

	if (netns_check_policy(allow, services, err, errlen))
		return -1;
	if (!p)
		return netns_create(allow, services, name, namelen, err, errlen);
	hit = take_ready(p, allow, services, name, namelen) == 0;
	pthread_mutex_lock(&p->mu);
	if (hit)
		p->hits++;
	else
		p->misses++;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->mu);
	if (hit)
		return 0;
	return netns_create(allow, services, name, namelen, err, errlen);
}

void netns_pool_put(struct netns_pool *p, const char *name)
{
	netns_destroy(name);
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->mu);
}

void netns_pool_stats(struct netns_pool *p, struct netns_pool_stats *s)
{
	unsigned ready = count_ready(p);

	pthread_mutex_lock(&p->mu);
	*s = (struct netns_pool_stats){ .size = p->size, .ready = ready, .hits = p->hits,
					.misses = p->misses, .built = p->nbuilt,
					.failed = p->nfailed };
	snprintf(s->last_error, sizeof(s->last_error), "%s", p->last_error);
	pthread_mutex_unlock(&p->mu);
}

int netns_pool_wait_ready(struct netns_pool *p, unsigned n, unsigned timeout_ms)
{
	struct timespec t = deadline(timeout_ms);
	int r = 0;

	pthread_mutex_lock(&p->mu);
	while (count_ready(p) < n && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&p->built, &p->mu, &t);
	r = count_ready(p) >= n ? 0 : -1;
	pthread_mutex_unlock(&p->mu);
	return r;
}

void netns_pool_stop(struct netns_pool *p, bool drain)
{
	DIR *d;
	struct dirent *de;
	char ns[NETNS_NAME_MAX];
	unsigned slot;

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	d = drain ? opendir(p->dir) : NULL;
	while (d && (de = readdir(d))) {
		if (netns_pool_classify(de->d_name, &slot) != POOL_READY || !claim(p, de->d_name))
			continue;
		ns_name(slot, ns, sizeof(ns));
		netns_destroy(ns);
	}
	if (d)
		closedir(d);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->built);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
