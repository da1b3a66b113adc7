/*
 * ratelimit.h - a token bucket for virtio-net: one per direction and unit (bytes, packets).
 *
 * The bucket may go into debt: a frame is let through whenever the balance is positive and its
 * whole cost is taken, so a frame larger than the bucket still passes and the long-run rate is
 * exactly the refill rate.  Time is passed in (CLOCK_MONOTONIC ns), which keeps the arithmetic
 * pure and testable; a rate of 0 means unlimited.
 */
#ifndef KILN_RATELIMIT_H
#define KILN_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define TB_BURST_DIV	10	/* default bucket: a tenth of a second's worth */

struct tbucket {
	uint64_t rate;		/* units per second; 0 = unlimited */
	uint64_t cap;		/* bucket size in units */
	int64_t tokens;		/* may be negative: debt from the last frame */
	uint64_t last_ns;	/* refill time the balance is accounted up to */
};

/* A full bucket; cap 0 picks rate / TB_BURST_DIV (at least 1). */
void tb_init(struct tbucket *tb, uint64_t rate, uint64_t cap, uint64_t now_ns);

/* Refill up to now; true if a frame may pass (balance positive, or unlimited). */
bool tb_ready(struct tbucket *tb, uint64_t now_ns);

/* Take n units (after tb_ready said yes). */
void tb_consume(struct tbucket *tb, uint64_t n);

/* After tb_ready() said no: nanoseconds until the balance is positive again. */
uint64_t tb_wait_ns(const struct tbucket *tb, uint64_t now_ns);

#endif
