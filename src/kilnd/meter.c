/*
 * meter.c - see meter.h.  Metering itself is by elapsed time (db.c keeps when each sandbox was
 * last metered), so a slow tick, say while a VM is being paused, bills nothing twice and
 * loses nothing.
 */
#include "meter.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "../common/log.h"
#include "db.h"
#include "sandbox.h"

static pthread_t thread;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static bool stopping;

static void pause_if_broke_agent(const struct sandbox *s, void *ctx)
{
	struct api_error e;

	if (strcmp(s->agent_id, ctx))
		return;
	log_info("sandbox %s: the wallet of %s is empty, pausing", s->id, s->agent_id);
	if (sandbox_pause(s, "wallet empty", &e))
		log_warn("sandbox %s: %s", s->id, e.message);
}

static void pause_agent(const char *agent_id, void *ctx)
{
	(void)ctx;
	db_each_sandbox("running", pause_if_broke_agent, (void *)agent_id);
}

static void expire_or_check(const struct sandbox *s, void *ctx)
{
	int64_t now = *(int64_t *)ctx;

	if (s->expires_at <= now) {
		sandbox_expire(s);
		return;
	}
	if (!strcmp(s->state, "running"))
		sandbox_check_alive(s);
}

static void tick(void)
{
	int64_t now;

	db_meter_tick(&cfg.prices);
	db_each_broke_agent(pause_agent, NULL);
	now = now_ms();
	db_each_sandbox("running|paused", expire_or_check, &now);
}

/* After a tick that took longer than a second, start counting from now, not catch up. */
static void resync(struct timespec *next)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec > next->tv_sec)
		*next = now;
}

static void *run(void *arg)
{
	struct timespec next;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &next);
	pthread_mutex_lock(&mu);
	while (!stopping) {
		pthread_mutex_unlock(&mu);
		tick();
		pthread_mutex_lock(&mu);
		next.tv_sec++;
		resync(&next);
		while (!stopping && pthread_cond_timedwait(&wake, &mu, &next) == 0)
			;
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

int meter_start(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&wake, &attr);
	return pthread_create(&thread, NULL, run, NULL);
}

void meter_stop(void)
{
	pthread_mutex_lock(&mu);
	stopping = true;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&mu);
	pthread_join(thread, NULL);
}
