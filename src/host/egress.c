/*
 * egress.c - start, reconfigure and stop a sandbox's kiln-dns and kiln-proxy (egress.h).
 *
 * Both are started detached (their own session, like kiln-vmm), so they outlive the kiln or
 * kilnd process that started the sandbox, and are found again through their pid files.  A pid
 * from a file is signalled only if /proc says it is still the program we started: pids are
 * reused.  The policy is copied into the VM directory so the sandbox does not depend on the
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

#define READY_TIMEOUT_MS	10000

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
	pid_t pid;

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
	pid = fork();
	if (pid != 0)
		return pid;
	int null = open("/dev/null", O_RDWR), err = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	service_child_signals();
	setsid();
	dup2(null, 0);
	dup2(null, 1);
	dup2(err >= 0 ? err : null, 2);
	execv(prog, (char *const *)argv);
	fprintf(stderr, "%s: %s\n", prog, strerror(errno));
	_exit(127);
}

/* Wait until the service says it serves (it has bound its sockets), or it failed. */
static int wait_ready(const char *dir, const struct service *sv, pid_t pid, char *err,
		      size_t errlen)
{
	char errf[PATH_MAX], buf[512];

	file_in(dir, sv->name, "err", errf, sizeof(errf));
	for (int waited = 0; waited < READY_TIMEOUT_MS; waited += 20) {
		FILE *f = fopen(errf, "re");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

		if (f)
			fclose(f);
		buf[n] = 0;
		if (strstr(buf, "serving"))
			return 0;
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			buf[strcspn(buf, "\n")] = 0;
			snprintf(err, errlen, "%s did not start: %s", sv->name, buf);
			return -1;
		}
		usleep(20000);
	}
	snprintf(err, errlen, "%s did not start in time", sv->name);
	return -1;
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
	char path[PATH_MAX], cmd[256];
	int pid = 0, fd;
	ssize_t n;
	FILE *f;

	file_in(dir, sv->name, "pid", path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%d", &pid) != 1)
		pid = 0;
	fclose(f);
	if (pid <= 1)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	cmd[n > 0 ? n : 0] = 0;
	/* argv[0] is the program's path: its last component must be ours. */
	const char *base = strrchr(cmd, '/');

	return !strcmp(base ? base + 1 : cmd, sv->name) ? pid : 0;
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

		if (pid < 0 || wait_ready(dir, &services[i], pid, err, errlen) ||
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
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		pid_t pid = running(dir, &services[i]);

		if (!pid || kill(pid, SIGTERM) < 0)
			continue;
		/* Gone before the namespace goes; reaped if it was our child. */
		for (int waited = 0; waited < 2000 && kill(pid, 0) == 0; waited += 20) {
			if (waitpid(pid, NULL, WNOHANG) == pid)
				break;
			usleep(20000);
		}
	}
}
