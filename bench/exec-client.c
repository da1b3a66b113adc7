/*
 * exec-client.c - the measuring half of bench/exec: talks to a running guest's agent through
 * the client library and prints machine-readable results.
 *
 *   exec-client SOCK RUNS FILE_MIB GUEST_PATH
 *
 * Runs RUNS no-op commands (`true`), each on a fresh connection exactly as the CLI does, and
 * reports p50/p99 of connect-to-EXIT; then writes FILE_MIB MiB to GUEST_PATH and reports MB/s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../src/client/agent_client.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int one_noop(const char *sock)
{
	static char *const argv[] = { "true", NULL };
	struct agent_exec x = { .argv = argv };
	struct agent_error e;
	struct agent_event ev;
	uint8_t *buf = NULL;
	size_t cap = 0;
	uint32_t pid;
	int fd = agent_connect(sock, PROTO_AGENT_PORT, 10000, &e), r = -1;

	if (fd < 0 || agent_exec_start(fd, &x, &pid, &e))
		goto out;
	while (agent_next_event(fd, &ev, &buf, &cap) == 0)
		if (ev.type == EV_EXIT || ev.type == EV_ERROR) {
			r = ev.type == EV_EXIT && ev.exit_code == 0 ? 0 : -1;
			break;
		}
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return r;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: exec-client SOCK RUNS FILE_MIB GUEST_PATH\n");
		return 2;
	}
	const char *sock = argv[1];
	int runs = atoi(argv[2]);
	size_t mib = strtoul(argv[3], NULL, 10);
	double *lat = calloc(runs, sizeof(double));

	for (int i = 0; i < runs; i++) {
		double t = now();

		if (one_noop(sock)) {
			fprintf(stderr, "exec-client: no-op command failed\n");
			return 1;
		}
		lat[i] = now() - t;
	}
	qsort(lat, runs, sizeof(double), cmp);
	printf("noop_p50_ms %.3f\nnoop_p99_ms %.3f\n", lat[runs / 2] * 1e3,
	       lat[(runs * 99) / 100 < runs ? (runs * 99) / 100 : runs - 1] * 1e3);

	/* The file comes from a memfd so the host side reads at memory speed. */
	int src = memfd_create("bench", 0);
	char *chunk = malloc(1 << 20);
	struct agent_error e;
	uint64_t bytes;

	memset(chunk, 'k', 1 << 20);
	for (size_t i = 0; i < mib; i++)
		if (write(src, chunk, 1 << 20) != 1 << 20)
			return 1;
	lseek(src, 0, SEEK_SET);
	int fd = agent_connect(sock, PROTO_AGENT_PORT, 10000, &e);
	double t = now();

	if (fd < 0 || agent_write_file(fd, argv[4], 0644, src, &bytes, &e)) {
		fprintf(stderr, "exec-client: write failed: %s\n", e.message);
		return 1;
	}
	t = now() - t;
	printf("write_mb_s %.1f\nwrite_bytes %llu\n", bytes / t / 1e6, (unsigned long long)bytes);
	return 0;
}
