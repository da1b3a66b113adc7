/*
 * exec.c - EXEC, ATTACH, PS and KILL: run a process and relay its stdio over the connection.
 *
 * The worker that started a process stays with it until the end.  It relays stdin from the
 * host, stdout/stderr to the host, signals and PTY resizes, enforces the timeout by killing the
 * whole process group, and reports the exit.  If the host goes away, a foreground process is
 * killed; a background one keeps running while its output goes to bounded ring buffers, and the
 * worker listens on AGENT_RUN_DIR/PID.sock so that ATTACH (in another worker) can hand it a new
 * connection.  AGENT_RUN_DIR/PID.info describes the process for PS.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "spawn.h"

#define RING_SIZE		(1u << 20)	/* per stream, while detached */
#define DRAIN_GRACE_MS		200		/* output after exit from lingering children */
#define EXITED_KEEP_MS		(10 * 60 * 1000)	/* an exited background process awaits attach */
#define READ_CHUNK		(64u << 10)

struct ring {
	uint8_t *buf;
	size_t head, len;
};

struct session {
	int conn;			/* -1 while detached */
	pid_t pid;
	int pidfd;
	int in_fd, out_fd, err_fd;
	bool pty, background;
	uint8_t *pending;		/* host stdin not yet written */
	size_t pending_len, pending_off;
	bool close_stdin_after_pending;
	int64_t deadline;		/* ms, 0: none */
	bool timed_out, exited;
	int64_t exited_at;
	siginfo_t status;
	int listen_fd;
	struct ring ring[2];		/* stdout, stderr while detached */
	uint64_t dropped;
	char info_path[100], sock_path[100];
	char cgroup[128];		/* the process tree's own cgroup, or empty */
	char cmdline[256];
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ring_put(struct ring *r, const uint8_t *p, size_t n, uint64_t *dropped)
{
	if (!r->buf && !(r->buf = malloc(RING_SIZE))) {
		*dropped += n;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (r->len == RING_SIZE) {		/* full: the oldest byte goes */
			r->head = (r->head + 1) % RING_SIZE;
			r->len--;
			(*dropped)++;
		}
		r->buf[(r->head + r->len) % RING_SIZE] = p[i];
		r->len++;
	}
}

static int send_data(int conn, uint8_t type, const uint8_t *p, size_t n)
{
	struct frame f;
	int r = -1;

	if (frame_init(&f, type))
		return -1;
	if (!frame_put(&f, TAG_DATA, p, n))
		r = proto_write_frame(conn, &f);
	frame_free(&f);
	return r;
}

/* Send what piled up while detached, oldest first, in chunks. */
static int ring_flush(int conn, struct ring *r, uint8_t type)
{
	while (r->len) {
		size_t n = r->len < PROTO_DATA_CHUNK ? r->len : PROTO_DATA_CHUNK;
		size_t first = RING_SIZE - r->head;

		if (n > first)
			n = first;
		if (send_data(conn, type, r->buf + r->head, n))
			return -1;
		r->head = (r->head + n) % RING_SIZE;
		r->len -= n;
	}
	return 0;
}

static void write_info(struct session *s)
{
	FILE *f = fopen(s->info_path, "we");

	if (!f)
		return;
	fprintf(f, "%s\n%s\n%s\n", s->exited ? "exited" : "running",
		s->background ? "background" : "foreground", s->cmdline);
	fclose(f);
}

/* Free the strings parsed from a request. */
static void free_strv(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

/* Collect every string field with tag into a NULL-terminated vector. */
static char **collect(const struct request *req, uint16_t tag, int *count)
{
	uint32_t off = 0;
	struct field f;
	int n = 0, cap = 8;
	char **v = calloc(cap + 1, sizeof(char *));

	while (v && frame_next(req->payload, req->len, &off, &f)) {
		if (f.tag != tag)
			continue;
		if (memchr(f.val, 0, f.len))
			goto bad;
		if (n == cap) {
			char **nv = realloc(v, (2 * cap + 1) * sizeof(char *));

			if (!nv)
				goto bad;
			v = nv;
			cap *= 2;
		}
		v[n] = strndup((const char *)f.val, f.len);
		if (!v[n])
			goto bad;
		v[++n] = NULL;
	}
	*count = n;
	return v;
bad:
	free_strv(v);
	return NULL;
}

static int parse_exec(const struct request *req, struct spawn_req *sr, uint32_t *timeout_ms,
		      bool *background, const char **why)
{
	char shell[65536];
	int argc = 0;
	uint8_t flag;
	struct field f;

	memset(sr, 0, sizeof(*sr));
	*why = "bad argv";
	if (req_str(req, TAG_SHELL, shell, sizeof(shell))) {
		sr->argv = calloc(4, sizeof(char *));
		if (!sr->argv)
			return -1;
		sr->argv[0] = strdup("/bin/sh");
		sr->argv[1] = strdup("-c");
		sr->argv[2] = strdup(shell);
		argc = 3;
	} else {
		sr->argv = collect(req, TAG_ARG, &argc);
	}
	if (!sr->argv || argc == 0)
		return -1;
	*why = "bad environment";
	sr->envp = collect(req, TAG_ENV, &sr->envc);
	if (!sr->envp)
		return -1;
	for (int i = 0; i < sr->envc; i++)
		if (!strchr(sr->envp[i], '=') || sr->envp[i][0] == '=')
			return -1;
	*why = "bad cwd or user";
	if (frame_find(req->payload, req->len, TAG_CWD, &f) && !field_str(&f, sr->cwd, sizeof(sr->cwd)))
		return -1;
	if (frame_find(req->payload, req->len, TAG_USER, &f) &&
	    !field_str(&f, sr->user, sizeof(sr->user)))
		return -1;
	*timeout_ms = 0;
	req_u32(req, TAG_TIMEOUT_MS, timeout_ms);
	if (frame_find(req->payload, req->len, TAG_PTY_ROWS, &f)) {
		sr->pty = true;
		sr->rows = 24;
		sr->cols = 80;
		field_u16(&f, &sr->rows);
		if (frame_find(req->payload, req->len, TAG_PTY_COLS, &f))
			field_u16(&f, &sr->cols);
	}
	sr->want_stdin = req_u8(req, TAG_STDIN, &flag) && flag;
	*background = req_u8(req, TAG_BACKGROUND, &flag) && flag;
	return 0;
}

static void session_kill(struct session *s, int sig)
{
	/* The process leads its own group; signal the group so children go too. */
	if (kill(-s->pid, sig) < 0)
		kill(s->pid, sig);
	/* A kill must also reach what left the group (setsid, daemons) or was being forked
	 * while we signalled (a fork bomb): cgroup.kill takes the whole tree atomically. */
	if (sig == SIGKILL && s->cgroup[0]) {
		char path[160];
		int fd;

		snprintf(path, sizeof(path), "%s/cgroup.kill", s->cgroup);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t w = write(fd, "1", 1);

			(void)w;
			close(fd);
		}
	}
}

static int send_started(struct session *s)
{
	struct frame f;
	int r = -1;

	if (frame_init(&f, MSG_STARTED))
		return -1;
	if (!frame_put_u32(&f, TAG_PID, s->pid))
		r = proto_write_frame(s->conn, &f);
	frame_free(&f);
	return r;
}

static int send_exit(struct session *s)
{
	struct frame f;
	int r = -1;

	if (frame_init(&f, MSG_EXIT))
		return -1;
	if (s->status.si_code == CLD_EXITED)
		r = frame_put_u32(&f, TAG_EXIT_CODE, s->status.si_status);
	else
		r = frame_put_u32(&f, TAG_EXIT_SIGNAL, s->status.si_status);
	if (!r && s->timed_out)
		r = frame_put_u8(&f, TAG_TIMED_OUT, 1);
	if (!r && s->dropped)
		r = frame_put_u64(&f, TAG_DROPPED, s->dropped);
	if (!r)
		r = proto_write_frame(s->conn, &f);
	frame_free(&f);
	return r;
}

/* The host connection is gone: a background process is kept, anything else killed. */
static void detach(struct session *s)
{
	if (s->conn >= 0)
		close(s->conn);
	s->conn = -1;
	if (!s->background) {
		session_kill(s, SIGKILL);
		return;
	}
	if (s->listen_fd >= 0)
		return;

	struct sockaddr_un a = { .sun_family = AF_UNIX };

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", s->sock_path);
	unlink(a.sun_path);
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(s->listen_fd, 4) < 0) {
		session_kill(s, SIGKILL);	/* cannot be re-attached: do not leave it orphaned */
		s->background = false;
	}
}

static void attach(struct session *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (s->conn >= 0) {			/* one host at a time */
		send_error(fd, EBUSY, "process is attached elsewhere", NULL);
		close(fd);
		return;
	}
	s->conn = fd;
	if (send_started(s) || ring_flush(fd, &s->ring[0], MSG_STDOUT) ||
	    ring_flush(fd, &s->ring[1], MSG_STDERR))
		detach(s);
}

static void on_output(struct session *s, int which)
{
	int *fd = which ? &s->err_fd : &s->out_fd;
	uint8_t buf[READ_CHUNK];
	ssize_t n = read(*fd, buf, sizeof(buf));

	if (n <= 0) {
		if (n < 0 && errno == EINTR)
			return;
		/* EOF, or EIO from a PTY whose slave side is gone. */
		if (*fd == s->in_fd)
			s->in_fd = -1;
		close(*fd);
		*fd = -1;
		return;
	}
	if (s->conn >= 0) {
		if (send_data(s->conn, which ? MSG_STDERR : MSG_STDOUT, buf, n) == 0)
			return;
		detach(s);
	}
	ring_put(&s->ring[which], buf, n, &s->dropped);
}

static void close_stdin(struct session *s)
{
	if (s->in_fd < 0)
		return;
	if (s->pty) {
		ssize_t w = write(s->in_fd, "\004", 1);		/* VEOF at the start of a line */

		(void)w;
		return;
	}
	close(s->in_fd);
	s->in_fd = -1;
}

static void flush_stdin(struct session *s)
{
	while (s->pending_off < s->pending_len) {
		ssize_t n = write(s->in_fd, s->pending + s->pending_off, s->pending_len - s->pending_off);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			s->pending_len = s->pending_off = 0;	/* reader gone: drop it */
			break;
		}
		s->pending_off += n;
	}
	s->pending_len = s->pending_off = 0;
	if (s->close_stdin_after_pending) {
		s->close_stdin_after_pending = false;
		close_stdin(s);
	}
}

static void on_host_frame(struct session *s, uint8_t type, const uint8_t *p, uint32_t len)
{
	struct field f;
	uint32_t sig;
	uint16_t rows = 0, cols = 0;

	switch (type) {
	case MSG_STDIN:
		if (s->in_fd < 0 || !frame_find(p, len, TAG_DATA, &f) || !f.len)
			return;
		s->pending = realloc(s->pending, f.len);
		if (!s->pending)
			return;
		memcpy(s->pending, f.val, f.len);
		s->pending_len = f.len;
		s->pending_off = 0;
		flush_stdin(s);
		return;
	case MSG_STDIN_CLOSE:
		if (s->pending_len)
			s->close_stdin_after_pending = true;
		else
			close_stdin(s);
		return;
	case MSG_SIGNAL:
		if (frame_find(p, len, TAG_SIGNAL, &f) && field_u32(&f, &sig) && sig > 0 && sig < 65)
			session_kill(s, sig);
		return;
	case MSG_RESIZE:
		if (s->pty && frame_find(p, len, TAG_ROWS, &f) && field_u16(&f, &rows) &&
		    frame_find(p, len, TAG_COLS, &f) && field_u16(&f, &cols)) {
			struct winsize ws = { .ws_row = rows, .ws_col = cols };

			ioctl(s->out_fd, TIOCSWINSZ, &ws);
		}
		return;
	default:
		detach(s);		/* not part of this operation: a confused or hostile host */
	}
}

static void on_host(struct session *s, uint8_t **buf, size_t *cap)
{
	uint8_t type;
	uint32_t len;

	if (proto_read_frame(s->conn, buf, cap, &type, &len) != 1) {
		detach(s);
		return;
	}
	on_host_frame(s, type, *buf, len);
}

static void on_exit_event(struct session *s)
{
	memset(&s->status, 0, sizeof(s->status));
	if (syscall(SYS_waitid, P_PIDFD, s->pidfd, &s->status, WEXITED | WNOHANG, NULL) < 0 ||
	    s->status.si_pid == 0)
		return;
	s->exited = true;
	s->exited_at = now_ms();
	close(s->pidfd);
	s->pidfd = -1;
	write_info(s);
}

/* After cgroup.kill, let the tree actually die before reporting, so a caller that sees the
 * timeout's EXIT finds nothing of the command still running (bounded: dying can be slow). */
static void wait_cgroup_empty(const char *cgroup, int max_ms)
{
	char path[160], buf[256];

	snprintf(path, sizeof(path), "%s/cgroup.events", cgroup);
	for (int waited = 0; waited < max_ms; waited += 10) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

		if (fd >= 0)
			close(fd);
		if (n <= 0)
			return;
		buf[n] = 0;
		if (strstr(buf, "populated 0"))
			return;
		usleep(10000);
	}
}

/* True when the session is over and the worker can leave. */
static bool finished(struct session *s)
{
	if (!s->exited)
		return false;
	bool drained = (s->out_fd < 0 && s->err_fd < 0) || now_ms() - s->exited_at > DRAIN_GRACE_MS;

	if (!drained)
		return false;
	if (s->conn >= 0) {
		if (s->timed_out && s->cgroup[0])
			wait_cgroup_empty(s->cgroup, 10000);
		send_exit(s);
		return true;
	}
	/* Detached: a background process's result waits a while for someone to attach. */
	return !s->background || now_ms() - s->exited_at > EXITED_KEEP_MS;
}

static int poll_timeout(struct session *s)
{
	int64_t t = -1, now = now_ms();

	if (s->deadline && !s->exited)
		t = s->deadline > now ? s->deadline - now : 0;
	if (s->exited) {
		int64_t left = DRAIN_GRACE_MS - (now - s->exited_at);

		if (s->out_fd < 0 && s->err_fd < 0)
			left = EXITED_KEEP_MS - (now - s->exited_at);
		t = left > 0 ? left : 0;
	}
	return t > 60000 ? 60000 : (int)t;
}

static void run_session(struct session *s)
{
	uint8_t *buf = NULL;
	size_t cap = 0;

	while (!finished(s)) {
		struct pollfd p[6];
		int n = 0, i_conn = -1, i_in = -1, i_out = -1, i_err = -1, i_pid = -1, i_lis = -1;

		if (s->conn >= 0 && !s->pending_len)
			p[i_conn = n++] = (struct pollfd){ s->conn, POLLIN, 0 };
		if (s->in_fd >= 0 && s->pending_len)
			p[i_in = n++] = (struct pollfd){ s->in_fd, POLLOUT, 0 };
		if (s->out_fd >= 0)
			p[i_out = n++] = (struct pollfd){ s->out_fd, POLLIN, 0 };
		if (s->err_fd >= 0)
			p[i_err = n++] = (struct pollfd){ s->err_fd, POLLIN, 0 };
		if (s->pidfd >= 0)
			p[i_pid = n++] = (struct pollfd){ s->pidfd, POLLIN, 0 };
		if (s->listen_fd >= 0 && s->conn < 0)
			p[i_lis = n++] = (struct pollfd){ s->listen_fd, POLLIN, 0 };

		int r = poll(p, n, poll_timeout(s));

		if (r < 0 && errno != EINTR)
			break;
		if (s->deadline && !s->exited && now_ms() >= s->deadline && !s->timed_out) {
			s->timed_out = true;
			session_kill(s, SIGKILL);
		}
		if (r <= 0)
			continue;
		if (i_out >= 0 && p[i_out].revents)
			on_output(s, 0);
		if (i_err >= 0 && p[i_err].revents)
			on_output(s, 1);
		if (i_in >= 0 && p[i_in].revents)
			flush_stdin(s);
		if (i_conn >= 0 && p[i_conn].revents && s->conn >= 0)
			on_host(s, &buf, &cap);
		if (i_pid >= 0 && p[i_pid].revents)
			on_exit_event(s);
		if (i_lis >= 0 && p[i_lis].revents)
			attach(s);
	}
	free(buf);
}

static void session_cleanup(struct session *s)
{
	unlink(s->info_path);
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(s->sock_path);
	}
	free(s->ring[0].buf);
	free(s->ring[1].buf);
	free(s->pending);
	if (s->conn >= 0)
		close(s->conn);
	if (s->cgroup[0])
		rmdir(s->cgroup);	/* fails, harmlessly, while children it left still run */
}

static void describe(struct session *s, char **argv)
{
	size_t used = 0;

	s->cmdline[0] = 0;
	for (char **a = argv; *a && used < sizeof(s->cmdline) - 1; a++)
		used += snprintf(s->cmdline + used, sizeof(s->cmdline) - used, "%s%s",
				 a == argv ? "" : " ", *a);
	for (char *c = s->cmdline; *c; c++)
		if (*c == '\n')
			*c = ' ';
}

static int start_failed(int conn, const struct spawn_failure *fail, const struct spawn_req *sr)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "%s: %s", spawn_stage_message(fail->stage), strerror(fail->err));
	return send_error(conn, fail->err, msg,
			  fail->stage == SPAWN_STAGE_CWD ? sr->cwd :
			  fail->stage == SPAWN_STAGE_EXEC ? sr->argv[0] : NULL);
}

int op_exec(int conn, const struct request *req)
{
	struct spawn_req sr;
	struct spawn_result res;
	struct spawn_failure fail;
	struct session s = { .conn = conn, .listen_fd = -1 };
	uint32_t timeout_ms;
	const char *why;
	int r;

	if (parse_exec(req, &sr, &timeout_ms, &s.background, &why)) {
		free_strv(sr.argv);
		free_strv(sr.envp);
		return send_error(conn, EINVAL, why, NULL);
	}
	mkdir("/run/kiln", 0700);
	mkdir(AGENT_RUN_DIR, 0700);
	/* Each process tree gets its own cgroup under the capped user group, named by worker. */
	if (agent_is_init) {
		snprintf(s.cgroup, sizeof(s.cgroup), AGENT_CGROUP "/user/exec-%d", getpid());
		if (mkdir(s.cgroup, 0755) < 0 && errno != EEXIST)
			s.cgroup[0] = 0;
		snprintf(sr.cgroup, sizeof(sr.cgroup), "%s", s.cgroup);
	}
	r = spawn_process(&sr, &res, &fail);
	if (r != 0) {
		if (r == 1)
			waitpid(res.pid, NULL, 0);
		r = start_failed(conn, &fail, &sr);
		if (s.cgroup[0])
			rmdir(s.cgroup);
		free_strv(sr.argv);
		free_strv(sr.envp);
		return r;
	}
	s.pid = res.pid;
	s.pidfd = syscall(SYS_pidfd_open, res.pid, 0);
	s.in_fd = res.in_fd;
	s.out_fd = res.out_fd;
	s.err_fd = res.err_fd;
	s.pty = sr.pty;
	if (s.in_fd >= 0)
		fcntl(s.in_fd, F_SETFL, fcntl(s.in_fd, F_GETFL) | O_NONBLOCK);
	if (timeout_ms)
		s.deadline = now_ms() + timeout_ms;
	snprintf(s.info_path, sizeof(s.info_path), AGENT_RUN_DIR "/%d.info", s.pid);
	snprintf(s.sock_path, sizeof(s.sock_path), AGENT_RUN_DIR "/%d.sock", s.pid);
	describe(&s, sr.argv);
	free_strv(sr.argv);
	free_strv(sr.envp);
	write_info(&s);
	if (send_started(&s))
		detach(&s);
	run_session(&s);
	session_cleanup(&s);
	return 0;
}

/* Relay bytes both ways between the host and the worker that owns the process. */
static void splice_both(int a, int b)
{
	uint8_t buf[READ_CHUNK];

	for (;;) {
		struct pollfd p[2] = { { a, POLLIN, 0 }, { b, POLLIN, 0 } };

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return;
		for (int i = 0; i < 2; i++) {
			if (!p[i].revents)
				continue;
			ssize_t n = read(p[i].fd, buf, sizeof(buf));

			if (n <= 0 || proto_write_all(p[!i].fd, buf, n))
				return;
		}
	}
}

int op_attach(int conn, const struct request *req)
{
	uint32_t pid;
	struct sockaddr_un a = { .sun_family = AF_UNIX };

	if (!req_u32(req, TAG_PID, &pid))
		return send_error(conn, EINVAL, "attach needs a pid", NULL);
	snprintf(a.sun_path, sizeof(a.sun_path), AGENT_RUN_DIR "/%u.sock", pid);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (fd >= 0)
			close(fd);
		return send_error(conn, ESRCH, "no detached background process with that pid", NULL);
	}
	splice_both(conn, fd);
	close(fd);
	return 0;
}

int op_ps(int conn)
{
	DIR *d = opendir(AGENT_RUN_DIR);
	struct dirent *e;
	int r = 0;

	while (d && r == 0 && (e = readdir(d))) {
		char path[512], state[16] = "", mode[16] = "", cmd[300] = "";
		size_t len = strlen(e->d_name);

		if (len < 6 || strcmp(e->d_name + len - 5, ".info"))
			continue;
		snprintf(path, sizeof(path), AGENT_RUN_DIR "/%s", e->d_name);
		FILE *f = fopen(path, "re");

		if (!f)
			continue;
		if (fgets(state, sizeof(state), f) && fgets(mode, sizeof(mode), f) &&
		    fgets(cmd, sizeof(cmd), f)) {
			struct frame fr;

			cmd[strcspn(cmd, "\n")] = 0;
			if (frame_init(&fr, MSG_ENTRY))
				r = -1;
			else if (frame_put_u32(&fr, TAG_PID, atoi(e->d_name)) ||
				 frame_put_str(&fr, TAG_MESSAGE, cmd) ||
				 frame_put_u8(&fr, TAG_RUNNING, state[0] == 'r') ||
				 frame_put_u8(&fr, TAG_BACKGROUND, mode[0] == 'b') ||
				 proto_write_frame(conn, &fr))
				r = -1;
			frame_free(&fr);
		}
		fclose(f);
	}
	if (d)
		closedir(d);
	return r ? r : send_simple(conn, MSG_END);
}

int op_kill(int conn, const struct request *req)
{
	uint32_t pid, sig = SIGTERM;
	char info[128];

	if (!req_u32(req, TAG_PID, &pid) || pid == 0 || pid > 0x7fffffff)
		return send_error(conn, EINVAL, "kill needs a pid", NULL);
	req_u32(req, TAG_SIGNAL, &sig);
	if (sig == 0 || sig > 64)
		return send_error(conn, EINVAL, "bad signal number", NULL);
	/* Only processes the agent started: never the agent itself or the kernel's threads. */
	snprintf(info, sizeof(info), AGENT_RUN_DIR "/%u.info", pid);
	if (access(info, F_OK) < 0)
		return send_error(conn, ESRCH, "no process with that pid was started by kiln", NULL);
	if (kill(-(pid_t)pid, sig) < 0 && kill(pid, sig) < 0)
		return send_error(conn, errno, NULL, NULL);
	return send_ok(conn);
}
