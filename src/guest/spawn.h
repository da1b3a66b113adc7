/*
 * spawn.h - start one user process for the agent (see spawn.c).
 */
#ifndef KILN_SPAWN_H
#define KILN_SPAWN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct user_info {
	char name[256];
	uid_t uid;
	gid_t gid;
	char home[512];
	char shell[256];
};

struct spawn_req {
	char **argv;		/* NULL-terminated */
	char **envp;		/* "K=V" overrides */
	int envc;
	char cwd[4096];		/* empty: the user's home */
	char user[256];		/* empty: root */
	bool pty;
	uint16_t rows, cols;
	bool want_stdin;
	char cgroup[128];	/* cgroup directory to run in; empty: stay where we are */
	int pass_fd[2];		/* become fds 3 and 4 of the process (code contexts) */
	int npass;
};

struct spawn_result {
	pid_t pid;
	int in_fd;		/* -1 when stdin is /dev/null */
	int out_fd;		/* with a PTY: the master, also in_fd */
	int err_fd;		/* -1 with a PTY */
};

enum { SPAWN_STAGE_SYSTEM = 1, SPAWN_STAGE_CWD, SPAWN_STAGE_USER, SPAWN_STAGE_EXEC };

struct spawn_failure {
	int stage;
	int err;
};

/* 0: running.  1: forked but failed before exec (fail says why; the caller reaps res->pid).
 * -1: not started (fail says why). */
int spawn_process(const struct spawn_req *r, struct spawn_result *res, struct spawn_failure *fail);
int lookup_user(const char *spec, struct user_info *u);
const char *spawn_stage_message(int stage);

#endif
