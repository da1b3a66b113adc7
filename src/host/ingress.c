/*
 * ingress.c - see ingress.h.
 */
#include "ingress.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netns.h"
#include "service.h"
#include "vmctl.h"

#define PROG	"kiln-ingress"

static void file_of(const char *dir, unsigned port, const char *ext, char *buf, size_t len)
{
	snprintf(buf, len, "%s/ingress-%u%s", dir, port, ext);
}

/* The record of guest port in dir, if its kiln-ingress runs. */
static int read_one(const char *dir, unsigned port, struct ingress *in)
{
	char path[PATH_MAX];
	FILE *f;
	int pid, ok;

	file_of(dir, port, "", path, sizeof(path));
	pid = service_running(path, PROG);
	if (!pid || !(f = fopen(path, "re")))
		return -1;
	ok = fscanf(f, "%d %63s %u", &pid, in->host_addr, &in->host_port) == 3;
	fclose(f);
	in->guest_port = port;
	in->pid = pid;
	return ok ? 0 : -1;
}

static int by_port(const void *a, const void *b)
{
	const struct ingress *x = a, *y = b;

	return (x->guest_port > y->guest_port) - (x->guest_port < y->guest_port);
}

unsigned ingress_list(const char *dir, struct ingress *list)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned n = 0, port;
	char end;

	if (!d)
		return 0;
	while (n < INGRESS_MAX && (de = readdir(d)))
		if (sscanf(de->d_name, "ingress-%u%c", &port, &end) == 1 && port &&
		    port <= 65535 && read_one(dir, port, &list[n]) == 0)
			n++;
	closedir(d);
	qsort(list, n, sizeof(*list), by_port);
	return n;
}

/* A TCP socket listening on addr, port chosen by the kernel; its port in *port. */
static int listen_any_port(const char *addr, unsigned *port, char *err, size_t errlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd;

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		snprintf(err, errlen, "%s is not an IPv4 address", addr);
		return -1;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

static int record(const char *dir, const struct ingress *in)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	FILE *f;

	file_of(dir, in->guest_port, "", path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "we");
	if (!f)
		return -1;
	fprintf(f, "%d %s %u\n", (int)in->pid, in->host_addr, in->host_port);
	if (fclose(f) || rename(tmp, path)) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static pid_t spawn(const char *dir, const char *ns, unsigned guest_port, int lfd)
{
	char prog[PATH_MAX], to[32], log[PATH_MAX], errf[PATH_MAX];
	char *argv[] = { prog, "--listen-fd", "3", "--netns", (char *)ns, "--to", to, "--log",
			 log, NULL };

	artefact("KILN_INGRESS", PROG, prog, sizeof(prog));
	snprintf(to, sizeof(to), NETNS_GUEST ":%u", guest_port);
	file_of(dir, guest_port, ".log", log, sizeof(log));
	file_of(dir, guest_port, ".err", errf, sizeof(errf));
	return service_spawn(argv, errf, lfd);
}

int ingress_start(const char *dir, unsigned guest_port, const char *host_addr,
		  struct ingress *out, char *err, size_t errlen)
{
	struct ingress list[INGRESS_MAX];
	char ns[NETNS_NAME_MAX], errf[PATH_MAX];
	int lfd;

	err[0] = 0;
	if (guest_port == 0 || guest_port > 65535) {
		snprintf(err, errlen, "port %u is not a TCP port", guest_port);
		return -1;
	}
	if (read_one(dir, guest_port, out) == 0)
		return 0;
	if (vm_netns(dir, ns, sizeof(ns))) {
		snprintf(err, errlen, "the sandbox has no network");
		return -1;
	}
	if (ingress_list(dir, list) >= INGRESS_MAX) {
		snprintf(err, errlen, "at most %d ports per sandbox", INGRESS_MAX);
		return INGRESS_FULL;
	}
	*out = (struct ingress){ .guest_port = guest_port };
	snprintf(out->host_addr, sizeof(out->host_addr), "%s", host_addr);
	lfd = listen_any_port(host_addr, &out->host_port, err, errlen);
	if (lfd < 0)
		return -1;
	out->pid = spawn(dir, ns, guest_port, lfd);
	close(lfd);
	file_of(dir, guest_port, ".err", errf, sizeof(errf));
	if (out->pid < 0 || service_wait_ready(PROG, out->pid, errf, err, errlen) ||
	    record(dir, out)) {
		if (out->pid > 0) {
			kill(out->pid, SIGKILL);
			waitpid(out->pid, NULL, 0);
		}
		if (out->pid < 0 || !err[0])
			snprintf(err, errlen, "cannot start " PROG);
		return -1;
	}
	return 0;
}

int ingress_stop(const char *dir, unsigned guest_port)
{
	char path[PATH_MAX];
	pid_t pid;

	file_of(dir, guest_port, "", path, sizeof(path));
	pid = service_running(path, PROG);
	unlink(path);
	if (!pid)
		return -1;
	service_stop(pid);
	return 0;
}

void ingress_stop_all(const char *dir)
{
	struct ingress list[INGRESS_MAX];
	unsigned n = ingress_list(dir, list);

	for (unsigned i = 0; i < n; i++)
		ingress_stop(dir, list[i].guest_port);
}
