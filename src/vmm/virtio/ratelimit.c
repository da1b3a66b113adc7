/*
 * ratelimit.c - token bucket arithmetic (see ratelimit.h).  128-bit intermediates: rate times
 * elapsed nanoseconds overflows 64 bits at 10 GB/s after one second.
 */
#include "ratelimit.h"

#define NS_PER_SEC	1000000000ULL

void tb_init(struct tbucket *tb, uint64_t rate, uint64_t cap, uint64_t now_ns)
{
	tb->rate = rate;
	if (!cap)
		cap = rate / TB_BURST_DIV ? rate / TB_BURST_DIV : 1;
	if (cap > INT64_MAX / 2)
		cap = INT64_MAX / 2;
	tb->cap = cap;
	tb->tokens = cap;
	tb->last_ns = now_ns;
}

static void refill(struct tbucket *tb, uint64_t now_ns)
{
	unsigned __int128 add, room;

	if (now_ns <= tb->last_ns)
		return;
	add = (unsigned __int128)tb->rate * (now_ns - tb->last_ns) / NS_PER_SEC;
	room = (unsigned __int128)((__int128)tb->cap - tb->tokens);
	if (add >= room) {
		tb->tokens = tb->cap;
		tb->last_ns = now_ns;
		return;
	}
	if (!add)
		return;		/* keep last_ns: the fraction of a token carries over */
	tb->tokens += (int64_t)add;
	/* Advance only by the time those whole tokens took, so no fraction is lost. */
	tb->last_ns += (uint64_t)(add * NS_PER_SEC / tb->rate);
}

bool tb_ready(struct tbucket *tb, uint64_t now_ns)
{
	if (!tb->rate)
		return true;
	refill(tb, now_ns);
	return tb->tokens > 0;
}

void tb_consume(struct tbucket *tb, uint64_t n)
{
	if (!tb->rate)
		return;
	if (n > INT64_MAX / 2)
		n = INT64_MAX / 2;
	/* Debt is bounded by one frame's cost below zero; clamp against absurd n anyway. */
	if (tb->tokens < INT64_MIN / 2 + (int64_t)n)
		tb->tokens = INT64_MIN / 2;
	else
		tb->tokens -= (int64_t)n;
}

uint64_t tb_wait_ns(const struct tbucket *tb, uint64_t now_ns)
{
	unsigned __int128 due;
	uint64_t need;

	if (!tb->rate || tb->tokens > 0)
		return 0;
	need = (uint64_t)(1 - tb->tokens);
	/* Ceiling: the balance reaches +1 no earlier than this. */
	due = ((unsigned __int128)need * NS_PER_SEC + tb->rate - 1) / tb->rate + tb->last_ns;
	if (due <= now_ns)
		return 1;
	return (uint64_t)(due - now_ns);
}
