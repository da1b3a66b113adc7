/*
 * netns_pool_tool.c - drives the namespace pool (src/host/netns_pool.c) for the host test
 * tests/host/test_netns_pool.py and the benchmark bench/netns.  Root only: it makes real
 * namespaces.
 *
 *   netns-pool DIR SIZE            then one command a line on stdin, one answer a line:
 *	wait N MS		"ok" once N namespaces are ready, "timeout" after MS
 *	take ALLOW|- [services]	"ok NAME USEC hit|miss" or "err WHY"
 *	put NAME		"ok": destroyed, the pool refills
 *	stats			"ok size ready hits misses built failed"
 *	stop [drain]		stops the pool, answers "ok" and exits
 *	up DIR ROOTFS NAME	boots a networked VM into DIR in namespace NAME (vm_spec.net_ns,
 *				as kilnd will): "ok", or "err WHY" (then DIR is taken down)
 *
 *   netns-pool --bench DIR SIZE N  time N takes from a full pool against N netns_create, and
 *				    print p50/p95 of each (each namespace destroyed untimed)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/host/netns.h"
#include "../../src/host/netns_pool.h"
#include "../../src/host/vmctl.h"

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, double *us, unsigned n)
{
	qsort(us, n, sizeof(*us), cmp_double);
	printf("| %s | %u | %.1f | %.1f |\n", what, n, us[n / 2] / 1000,
	       us[(n * 95 + 99) / 100 - 1] / 1000);
}

static int bench(const char *dir, unsigned size, unsigned n)
{
	const char *allow = "0.0.0.0/0";
	char name[NETNS_NAME_MAX], err[256];
	double *pool_us = calloc(n, sizeof(double)), *create_us = calloc(n, sizeof(double));
	struct netns_pool *p = netns_pool_start(dir, size, err, sizeof(err));

	if (!p || !pool_us || !create_us) {
		fprintf(stderr, "netns-pool: %s\n", p ? "out of memory" : err);
		return 1;
	}
	for (unsigned i = 0; i < n; i++) {
		double t0;

		/* A full pool, as between bursts of creates in kilnd. */
		if (netns_pool_wait_ready(p, size, 120000)) {
			fprintf(stderr, "netns-pool: the pool did not fill\n");
			return 1;
		}
		t0 = now_us();
		if (netns_pool_take(p, allow, true, name, sizeof(name), err, sizeof(err))) {
			fprintf(stderr, "netns-pool: take: %s\n", err);
			return 1;
		}
		pool_us[i] = now_us() - t0;
		netns_pool_put(p, name);
	}
	netns_pool_stop(p, true);
	for (unsigned i = 0; i < n; i++) {
		double t0 = now_us();

		if (netns_create(allow, true, name, sizeof(name), err, sizeof(err))) {
			fprintf(stderr, "netns-pool: create: %s\n", err);
			return 1;
		}
		create_us[i] = now_us() - t0;
		netns_destroy(name);
	}
	printf("| how | n | p50 ms | p95 ms |\n|---|---|---|---|\n");
	report("netns_pool_take from a ready pool", pool_us, n);
	report("netns_create", create_us, n);
	free(pool_us);
	free(create_us);
	return 0;
}

static void cmd_take(struct netns_pool *p, char *args)
{
	char name[NETNS_NAME_MAX], err[256], *allow = strtok(args, " "), *svc = strtok(NULL, " ");
	struct netns_pool_stats before, after;
	double t0;

	if (allow && !strcmp(allow, "-"))
		allow = NULL;
	netns_pool_stats(p, &before);
	t0 = now_us();
	if (netns_pool_take(p, allow, svc && !strcmp(svc, "services"), name, sizeof(name), err,
			    sizeof(err))) {
		printf("err %s\n", err);
		return;
	}
	netns_pool_stats(p, &after);
	printf("ok %s %.0f %s\n", name, now_us() - t0, after.hits > before.hits ? "hit" : "miss");
}

static void cmd_up(char *args)
{
	char *dir = strtok(args, " "), *rootfs = strtok(NULL, " "), *ns = strtok(NULL, " ");
	struct agent_error e = { 0 };
	struct vm_spec spec;

	if (!dir || !rootfs || !ns) {
		printf("err up DIR ROOTFS NAME\n");
		return;
	}
	spec = (struct vm_spec){ .rootfs = rootfs, .cpus = 1, .memory_mib = 512,
				 .scratch_mib = 4096, .hostname = "pooled", .net = true,
				 .net_ns = ns };
	snprintf(spec.name, sizeof(spec.name), "pooled");
	if (vm_up(dir, &spec, &e)) {
		vm_down(dir);
		printf("err %s\n", e.message);
		return;
	}
	printf("ok\n");
}

int main(int argc, char **argv)
{
	struct netns_pool *p;
	char line[8192], err[256];

	if (argc == 5 && !strcmp(argv[1], "--bench"))
		return bench(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc != 3) {
		fprintf(stderr, "usage: netns-pool DIR SIZE | --bench DIR SIZE N\n");
		return 2;
	}
	p = netns_pool_start(argv[1], atoi(argv[2]), err, sizeof(err));
	if (!p) {
		fprintf(stderr, "netns-pool: %s\n", err);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		char *cmd = strtok(line, " \n"), *rest = strtok(NULL, "\n");

		if (!cmd)
			continue;
		if (!strcmp(cmd, "wait")) {
			unsigned n = 0, ms = 0;

			sscanf(rest ? rest : "", "%u %u", &n, &ms);
			printf("%s\n", netns_pool_wait_ready(p, n, ms) ? "timeout" : "ok");
		} else if (!strcmp(cmd, "take")) {
			cmd_take(p, rest ? rest : "-");
		} else if (!strcmp(cmd, "put") && rest) {
			netns_pool_put(p, rest);
			printf("ok\n");
		} else if (!strcmp(cmd, "stats")) {
			struct netns_pool_stats s;

			netns_pool_stats(p, &s);
			printf("ok %u %u %llu %llu %llu %llu %s\n", s.size, s.ready,
			       (unsigned long long)s.hits, (unsigned long long)s.misses,
			       (unsigned long long)s.built, (unsigned long long)s.failed,
			       s.last_error);
		} else if (!strcmp(cmd, "up")) {
			cmd_up(rest ? rest : "");
		} else if (!strcmp(cmd, "stop")) {
			netns_pool_stop(p, rest && !strcmp(rest, "drain"));
			printf("ok\n");
			return 0;
		} else {
			printf("err unknown command %s\n", cmd);
		}
	}
	netns_pool_stop(p, false);
	return 0;
}
