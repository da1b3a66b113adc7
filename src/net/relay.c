/*
 * relay.c - the byte pump between two sockets (relay.h).
 *
 * Bytes go socket to socket through a pipe with splice(), never through our memory.  The
 * write side blocks when the reader stops reading: that stalls this connection's thread only,
 * which is the backpressure we want.
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#define SPLICE_MAX	(1 << 20)	/* the default pipe-max-size */

bool relay_pump(int from, int to, int pipe[2], uint64_t *count)
{
	ssize_t n = splice(from, NULL, pipe[1], NULL, SPLICE_MAX,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0)
		return false;
	*count += n;
	while (n > 0) {
		ssize_t w = splice(pipe[0], NULL, to, NULL, n, SPLICE_F_MOVE);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		n -= w;
	}
	return true;
}

static int open_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	fcntl(p[1], F_SETPIPE_SZ, SPLICE_MAX);
	return 0;
}

const char *relay(int a, int b, struct relay_counts *n, atomic_uint *generation,
		  bool (*check)(void *ctx), void *ctx)
{
	unsigned gen = generation ? atomic_load(generation) : 0;
	bool a_open = true, b_open = true;
	int ab[2], ba[2];
	const char *why = NULL;

	if (open_pipe(ab))
		return "out of pipes";
	if (open_pipe(ba)) {
		close(ab[0]);
		close(ab[1]);
		return "out of pipes";
	}
	while (a_open || b_open) {
		struct pollfd p[2] = { { a_open ? a : -1, POLLIN, 0 }, { b_open ? b : -1, POLLIN, 0 } };

		if (poll(p, 2, 500) < 0 && errno != EINTR)
			break;
		if (generation && atomic_load(generation) != gen) {
			gen = atomic_load(generation);
			if (check && !check(ctx)) {
				why = "cut: the new policy does not allow it";
				break;
			}
		}
		if (p[0].revents && !relay_pump(a, b, ab, &n->a_to_b)) {
			a_open = false;
			shutdown(b, SHUT_WR);
		}
		if (p[1].revents && !relay_pump(b, a, ba, &n->b_to_a)) {
			b_open = false;
			shutdown(a, SHUT_WR);
		}
	}
	close(ab[0]);
	close(ab[1]);
	close(ba[0]);
	close(ba[1]);
	return why;
}
