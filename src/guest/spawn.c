/*
 * spawn.c - start a user process the way the host asked: argv or shell, environment, working
 * directory, user, PTY or pipes, in its own session and process group, in the user cgroup.
 *
 * Errors before exec (bad directory, unknown user, command not found) travel back over a
 * close-on-exec pipe so the host gets an ERROR naming the cause instead of an exit code 127.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"
#include "spawn.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Look a user up in /etc/passwd by name or numeric uid, without NSS (we are static). */
int lookup_user(const char *spec, struct user_info *u)
{
	char line[1024];
	char *end;
	long want_uid = strtol(spec, &end, 10);
	bool numeric = *spec && !*end;
	FILE *f = fopen("/etc/passwd", "re");

	if (!f)
		goto fallback;
	while (fgets(line, sizeof(line), f)) {
		char *fld[7];
		char *p = line;
		int n = 0;

		line[strcspn(line, "\n")] = 0;
		while (n < 7 && (fld[n] = strsep(&p, ":")))
			n++;
		if (n < 7)
			continue;
		if (numeric ? atol(fld[2]) != want_uid : strcmp(fld[0], spec))
			continue;
		snprintf(u->name, sizeof(u->name), "%s", fld[0]);
		u->uid = atoi(fld[2]);
		u->gid = atoi(fld[3]);
		snprintf(u->home, sizeof(u->home), "%s", *fld[5] ? fld[5] : "/");
		snprintf(u->shell, sizeof(u->shell), "%s", *fld[6] ? fld[6] : "/bin/sh");
		fclose(f);
		return 0;
	}
	fclose(f);
fallback:
	/* A uid without a passwd entry is still a valid identity to run as. */
	if (numeric && want_uid >= 0) {
		snprintf(u->name, sizeof(u->name), "%ld", want_uid);
		u->uid = u->gid = want_uid;
		snprintf(u->home, sizeof(u->home), "/");
		snprintf(u->shell, sizeof(u->shell), "/bin/sh");
		return 0;
	}
	return -1;
}

static int env_find(char **env, int n, const char *kv)
{
	size_t klen = strcspn(kv, "=");

	for (int i = 0; i < n; i++)
		if (!strncmp(env[i], kv, klen) && env[i][klen] == '=')
			return i;
	return -1;
}

static int env_merge(char **env, int n, char **add, int count)
{
	for (int i = 0; i < count; i++) {
		int at = env_find(env, n, add[i]);

		if (at >= 0)
			env[at] = add[i];
		else
			env[n++] = add[i];
	}
	return n;
}

/* The environment: sane defaults for the user, the sandbox's (IDENTITY), then the request's. */
static char **build_env(const struct spawn_req *r, const struct user_info *u)
{
	int idc, n = 0;
	char **id = identity_env(&idc);
	int cap = r->envc + idc + 8;
	char **env = calloc(cap + 1, sizeof(char *));
	char buf[1200];

	if (!env)
		return NULL;
	env[n++] = strdup("PATH=" DEFAULT_PATH);
	snprintf(buf, sizeof(buf), "HOME=%s", u->home);
	env[n++] = strdup(buf);
	snprintf(buf, sizeof(buf), "USER=%s", u->name);
	env[n++] = strdup(buf);
	snprintf(buf, sizeof(buf), "LOGNAME=%s", u->name);
	env[n++] = strdup(buf);
	snprintf(buf, sizeof(buf), "SHELL=%s", u->shell);
	env[n++] = strdup(buf);
	env[n++] = strdup("LANG=C.UTF-8");
	if (r->pty)
		env[n++] = strdup("TERM=xterm-256color");
	n = env_merge(env, n, id, idc);
	n = env_merge(env, n, r->envp, r->envc);
	free(id);		/* the strings now belong to env */
	env[n] = NULL;
	return env;
}

static const char *env_get(char **env, const char *key)
{
	size_t k = strlen(key);

	for (; *env; env++)
		if (!strncmp(*env, key, k) && (*env)[k] == '=')
			return *env + k + 1;
	return NULL;
}

/* execve with a PATH search in the new environment's PATH, like a shell would. */
static void exec_path(char *const argv[], char **env)
{
	const char *path = env_get(env, "PATH");
	char full[4096];
	int saved = ENOENT;

	if (strchr(argv[0], '/')) {
		execve(argv[0], argv, env);
		return;
	}
	if (!path)
		path = DEFAULT_PATH;
	while (*path) {
		size_t len = strcspn(path, ":");

		snprintf(full, sizeof(full), "%.*s/%s", (int)len, len ? path : ".", argv[0]);
		execve(full, argv, env);
		if (errno != ENOENT && errno != ENOTDIR)
			saved = errno;
		path += len + (path[len] == ':');
	}
	errno = saved;
}

static void report_and_exit(int fd, int stage)
{
	struct spawn_failure fail = { .stage = stage, .err = errno };
	ssize_t w = write(fd, &fail, sizeof(fail));

	(void)w;
	_exit(127);
}

static void join_cgroup(const char *dir)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		ssize_t w = write(fd, "0", 1);

		(void)w;
		close(fd);
	}
}

static void child(const struct spawn_req *r, const struct user_info *u, char **env,
		  int pty_slave, const int pipes[3][2], int status_fd)
{
	sigset_t none;
	int fd, high[2];

	setsid();
	if (r->pty) {
		ioctl(pty_slave, TIOCSCTTY, 0);
		dup2(pty_slave, 0);
		dup2(pty_slave, 1);
		dup2(pty_slave, 2);
	} else {
		if (r->want_stdin)
			dup2(pipes[0][0], 0);
		else if ((fd = open("/dev/null", O_RDONLY)) >= 0)
			dup2(fd, 0);
		dup2(pipes[1][1], 1);
		dup2(pipes[2][1], 2);
	}
	/* Descriptors handed over become 3, 4, ...: first out of the way of each other, and the
	 * status pipe out of their way. */
	if (r->npass && (fd = fcntl(status_fd, F_DUPFD_CLOEXEC, 100)) >= 0)
		status_fd = fd;
	for (int i = 0; i < r->npass; i++)
		high[i] = fcntl(r->pass_fd[i], F_DUPFD_CLOEXEC, 100);
	for (int i = 0; i < r->npass; i++)
		if (high[i] < 0 || dup2(high[i], 3 + i) < 0)
			report_and_exit(status_fd, SPAWN_STAGE_SYSTEM);
	/* Everything else we hold is close-on-exec already; make sure of inherited ones. */
	syscall(SYS_close_range, 3 + r->npass, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	if ((fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC)) >= 0) {
		ssize_t w = write(fd, "0", 1);	/* the agent is -1000; its children are fair game */

		(void)w;
		close(fd);
	}
	if (r->cgroup[0])
		join_cgroup(r->cgroup);
	if (chdir(r->cwd[0] ? r->cwd : u->home) < 0 && (r->cwd[0] || chdir("/") < 0))
		report_and_exit(status_fd, SPAWN_STAGE_CWD);
	if (setgroups(1, &u->gid) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)
		report_and_exit(status_fd, SPAWN_STAGE_USER);
	exec_path(r->argv, env);
	report_and_exit(status_fd, SPAWN_STAGE_EXEC);
}

static int make_pipes(int pipes[3][2])
{
	for (int i = 0; i < 3; i++)
		if (pipe2(pipes[i], O_CLOEXEC) < 0)
			return -1;
	return 0;
}

int spawn_process(const struct spawn_req *r, struct spawn_result *res, struct spawn_failure *fail)
{
	struct user_info u;
	int pipes[3][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 } };
	int status[2], master = -1, slave = -1;
	char **env;

	memset(fail, 0, sizeof(*fail));
	if (lookup_user(r->user[0] ? r->user : "root", &u)) {
		*fail = (struct spawn_failure){ .stage = SPAWN_STAGE_USER, .err = ENOENT };
		return -1;
	}
	env = build_env(r, &u);
	if (!env || pipe2(status, O_CLOEXEC) < 0)
		goto sys_fail;
	if (r->pty) {
		struct winsize ws = { .ws_row = r->rows, .ws_col = r->cols };

		if (openpty(&master, &slave, NULL, NULL, &ws) < 0)
			goto sys_fail;
		fcntl(master, F_SETFD, FD_CLOEXEC);
		fcntl(slave, F_SETFD, FD_CLOEXEC);
	} else if (make_pipes(pipes) < 0) {
		goto sys_fail;
	}

	pid_t pid = fork();

	if (pid < 0)
		goto sys_fail;
	if (pid == 0)
		child(r, &u, env, slave, (const int (*)[2])pipes, status[1]);

	close(status[1]);
	ssize_t n = read(status[0], fail, sizeof(*fail));

	close(status[0]);
	res->pid = pid;
	if (r->pty) {
		close(slave);
		res->in_fd = res->out_fd = master;
		res->err_fd = -1;
	} else {
		close(pipes[0][0]);
		close(pipes[1][1]);
		close(pipes[2][1]);
		res->in_fd = pipes[0][1];
		res->out_fd = pipes[1][0];
		res->err_fd = pipes[2][0];
		if (!r->want_stdin) {
			close(res->in_fd);
			res->in_fd = -1;
		}
	}
	free(env);
	return n == sizeof(*fail) ? 1 : 0;	/* 1: started but exec failed, reaped by caller */
sys_fail:
	*fail = (struct spawn_failure){ .stage = SPAWN_STAGE_SYSTEM, .err = errno };
	free(env);
	return -1;
}

const char *spawn_stage_message(int stage)
{
	switch (stage) {
	case SPAWN_STAGE_CWD: return "cannot change to the working directory";
	case SPAWN_STAGE_USER: return "cannot run as that user";
	case SPAWN_STAGE_EXEC: return "cannot execute the command";
	default: return "cannot start the process";
	}
}
