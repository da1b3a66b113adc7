/*
 * egress.c - start, reconfigure and stop a sandbox's kiln-dns and kiln-proxy (egress.h).
 *
 * Both are services (service.h): detached, found again through their pid files, signalled
 * only while /proc says the pid is still theirs.  The policy is copied into the VM directory so the sandbox does not depend on the
 * file it was created from, and so a later replacement is one rename plus a SIGHUP.
 */
#include "egress.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/sparse_file.h"
#include "netns.h"
#include "service.h"
#include "vmctl.h"

struct service {
	const char *name;	/* program, and the stem of its files */
	const char *env;	/* overrides where the program is */
};

static const struct service services[] = {
	{ "kiln-dns", "KILN_DNS" },
	{ "kiln-proxy", "KILN_PROXY" },
};

static void file_in(const char *dir, const char *name, const char *ext, char *buf, size_t len)
{
	/* "kiln-dns" -> dir/dns.EXT */
	snprintf(buf, len, "%s/%s.%s", dir, name + 5, ext);
}

static int copy_policy(const char *dir, const char *policy, char *err, size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];

	snprintf(path, sizeof(path), "%s/egress.policy", dir);
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	unlink(tmp);
	if (sparse_copy_file(policy, tmp, true, err, errlen))
		return -1;
	if (rename(tmp, path) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

static pid_t spawn(const char *dir, const char *ns, const struct service *sv)
{
	char prog[PATH_MAX], policy[PATH_MAX], log[PATH_MAX], errf[PATH_MAX];
	char secrets[PATH_MAX], ca[PATH_MAX], upstream_ca[PATH_MAX];
	char dns[32], http[32], tls[32];
	const char *argv[20];
	int n = 0;

	artefact(sv->env, sv->name, prog, sizeof(prog));
	snprintf(policy, sizeof(policy), "%s/egress.policy", dir);
	snprintf(secrets, sizeof(secrets), "%s/" EGRESS_SECRETS_FILE, dir);
	snprintf(ca, sizeof(ca), "%s/" EGRESS_CA_DIR, dir);
	snprintf(upstream_ca, sizeof(upstream_ca), "%s/" EGRESS_UPSTREAM_CA, dir);
	file_in(dir, sv->name, "log", log, sizeof(log));
	file_in(dir, sv->name, "err", errf, sizeof(errf));
	snprintf(dns, sizeof(dns), NETNS_GATEWAY ":%d", NETNS_DNS_PORT);
	snprintf(http, sizeof(http), NETNS_GATEWAY ":%d", NETNS_HTTP_PORT);
	snprintf(tls, sizeof(tls), NETNS_GATEWAY ":%d", NETNS_TLS_PORT);
	argv[n++] = prog;
	if (!strcmp(sv->name, "kiln-dns")) {
		argv[n++] = "--listen";
		argv[n++] = dns;
	} else {
		argv[n++] = "--http";
		argv[n++] = http;
		argv[n++] = "--tls";
		argv[n++] = tls;
		if (egress_has_secrets(dir)) {
			argv[n++] = "--secrets";
			argv[n++] = secrets;
			argv[n++] = "--ca";
			argv[n++] = ca;
			if (access(upstream_ca, F_OK) == 0) {
				argv[n++] = "--upstream-ca";
				argv[n++] = upstream_ca;
			}
		}
	}
	argv[n++] = "--netns";
	argv[n++] = ns;
	argv[n++] = "--policy";
	argv[n++] = policy;
	argv[n++] = "--log";
	argv[n++] = log;
	argv[n] = NULL;
	return service_spawn((char *const *)argv, errf, -1);
}

static int write_pid(const char *dir, const struct service *sv, pid_t pid)
{
	char path[PATH_MAX];
	FILE *f;

	file_in(dir, sv->name, "pid", path, sizeof(path));
	f = fopen(path, "we");
	if (!f)
		return -1;
	fprintf(f, "%d\n", (int)pid);
	return fclose(f);
}

/* The pid of dir's running sv, or 0. */
static pid_t running(const char *dir, const struct service *sv)
{
	char path[PATH_MAX];

	file_in(dir, sv->name, "pid", path, sizeof(path));
	return service_running(path, sv->name);
}

int egress_start(const char *dir, const char *ns, const char *policy, const char *secrets,
		 const char *upstream_ca, char *err, size_t errlen)
{
	if (secrets && egress_prepare_secrets(dir, secrets, upstream_ca, err, errlen))
		return -1;
	if (copy_policy(dir, policy, err, errlen))
		return -1;
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		pid_t pid = spawn(dir, ns, &services[i]);
		char errf[PATH_MAX];

		file_in(dir, services[i].name, "err", errf, sizeof(errf));
		if (pid < 0 || service_wait_ready(services[i].name, pid, errf, err, errlen) ||
		    write_pid(dir, &services[i], pid)) {
			if (pid > 0) {
				kill(pid, SIGKILL);
				waitpid(pid, NULL, 0);
			}
			if (pid < 0)
				snprintf(err, errlen, "cannot start %s", services[i].name);
			egress_stop(dir);
			return -1;
		}
	}
	return 0;
}

int egress_set_policy(const char *dir, const char *policy, char *err, size_t errlen)
{
	if (!egress_enabled(dir)) {
		snprintf(err, errlen, "%s has no egress services (started without --net-policy)",
			 dir);
		return -1;
	}
	if (copy_policy(dir, policy, err, errlen))
		return -1;
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		pid_t pid = running(dir, &services[i]);

		if (pid)
			kill(pid, SIGHUP);
	}
	return 0;
}

bool egress_enabled(const char *dir)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/egress.policy", dir);
	return access(path, F_OK) == 0;
}

void egress_stop(const char *dir)
{
	/* Gone before the namespace goes; reaped if it was our child. */
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		service_stop(running(dir, &services[i]));
}
