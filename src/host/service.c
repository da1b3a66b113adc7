/*
 * service.c - see service.h.
 */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_TIMEOUT_MS	10000

void service_child_signals(void)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
}

pid_t service_spawn(char *const argv[], const char *errfile, int listen_fd)
{
	pid_t pid = fork();
	int null, err;

	if (pid != 0)
		return pid;
	service_child_signals();
	null = open("/dev/null", O_RDWR);
	err = open(errfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	setsid();
	dup2(null, 0);
	dup2(null, 1);
	dup2(err >= 0 ? err : null, 2);
	if (listen_fd >= 0 && dup2(listen_fd, 3) < 0)
		_exit(127);
	execv(argv[0], argv);
	fprintf(stderr, "%s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

int service_wait_ready(const char *name, pid_t pid, const char *errfile, char *err,
		       size_t errlen)
{
	char buf[512];

	for (int waited = 0; waited < READY_TIMEOUT_MS; waited += 20) {
		FILE *f = fopen(errfile, "re");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

		if (f)
			fclose(f);
		buf[n] = 0;
		if (strstr(buf, "serving"))
			return 0;
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			buf[strcspn(buf, "\n")] = 0;
			snprintf(err, errlen, "%s did not start: %s", name, buf);
			return -1;
		}
		usleep(20000);
	}
	snprintf(err, errlen, "%s did not start in time", name);
	return -1;
}

pid_t service_running(const char *pidfile, const char *prog)
{
	char path[64], cmd[256];
	const char *base;
	int pid = 0, fd;
	ssize_t n;
	FILE *f = fopen(pidfile, "re");

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
	base = strrchr(cmd, '/');
	return !strcmp(base ? base + 1 : cmd, prog) ? pid : 0;
}

void service_stop(pid_t pid)
{
	if (pid <= 1 || kill(pid, SIGTERM) < 0)
		return;
	for (int waited = 0; waited < 2000 && kill(pid, 0) == 0; waited += 20) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			break;
		usleep(20000);
	}
}
