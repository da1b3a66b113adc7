/*
 * relay.h - copy a TCP connection's bytes both ways until both sides are done (relay.c), for
 * kiln-proxy's allowed connections and kiln-ingress's forwarded ones.
 */
#ifndef KILN_RELAY_H
#define KILN_RELAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct relay_counts {
	uint64_t a_to_b, b_to_a;
};

/*
 * Relay between sockets a and b, half-closing each side as the other finishes.  When
 * *generation (if given) has changed, which is looked at every half second at least,
 * check(ctx) may end the relay by returning false.  NULL when both sides finished, else why
 * it ended.
 */
const char *relay(int a, int b, struct relay_counts *n, atomic_uint *generation,
		  bool (*check)(void *ctx), void *ctx);

/* Move what is ready (at most 1 MiB) from socket from to socket to through pipe, adding it to
 * *count: false at end of file or an error, true when there was nothing more for now. */
bool relay_pump(int from, int to, int pipe[2], uint64_t *count);

#endif
