/*
 * bash_kernel.c - the bash side of a code context (context.c), for images without Python.
 *
 * Python and Node contexts run a kernel script inside the interpreter itself; bash cannot speak
 * our framed protocol on a socket, so its kernel is this small C program.  context.c starts it
 * as `kiln-init --bash-kernel <kiln-kernel>` (re-executing /proc/self/exe) with the same fds a
 * script kernel gets: fd 3 the context's listening socket, fd 1 the pipe for "ready".
 *
 * It keeps one bash process alive for the context's life: variables, functions, cwd and
 * exported env persist between cells exactly as in an interactive shell.  bash reads its
 * commands from a pipe; each cell is handed over in a quoted here-document under a random
 * delimiter (so no text in the cell can end it early or be parsed outside it), run by eval
 * inside a function with stdin from /dev/null (a command reading stdin must not eat the next
 * cell), and followed by a printf of its status and whether it was interrupted onto a control
 * pipe only we read.  The cell's stdout and stderr stream back as they come; a non-zero status
 * is reported as an ExitStatus error.  SIGINT (interrupt, timeout) kills the running command:
 * bash traps it and returns from the cell, keeping its state.
 *
 * Everything bash and the cell print is untrusted; context.c checks each frame we send.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

#define LISTEN_FD	3
#define CONTROL_FD	63		/* in bash: where each cell's status line goes */
#define CHUNK		(64 << 10)

struct bash {
	pid_t pid;
	int pidfd;
	int in;			/* bash's stdin: the commands we send */
	int out, err;		/* its stdout and stderr */
	int control;		/* status lines: "STATUS INTERRUPTED\n" */
	unsigned count;		/* cells run */
};

/* Defined by bash once, before the first cell.  The trap's `return` leaves the cell's function,
 * so an interrupt ends the whole cell, not just the command it hit; between cells SIGINT does
 * nothing (a non-interactive bash would die of it).  The returning trap is set again
 * before every cell: after a trap has returned from a function while bash waited for a child
 * killed by the same SIGINT, bash 5.2 ignores the trap during later builtin-only loops. */
static const char PRELUDE[] =
	"__kiln_cell() { eval \"$__kiln_code\"; }\n"
	"trap : INT\n"
	"printf 'ready\\n' >&63\n";

static void on_signal(int sig)
{
	(void)sig;	/* caught, not ignored: bash and its commands get default handling */
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Start bash with pipes for its stdin, stdout, stderr and the control fd. */
static int bash_start(struct bash *b)
{
	int in[2], out[2], err[2], ctl[2];

	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
	    pipe2(ctl, O_CLOEXEC))
		return -1;
	b->pid = fork();
	if (b->pid < 0)
		return -1;
	if (b->pid == 0) {
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0 ||
		    dup2(ctl[1], CONTROL_FD) < 0)
			_exit(127);
		close(LISTEN_FD);
		execlp("bash", "bash", "--noprofile", "--norc", (char *)NULL);
		fprintf(stderr, "bash: %s\n", strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	close(ctl[1]);
	b->in = in[1];
	b->out = out[0];
	b->err = err[0];
	b->control = ctl[0];
	b->pidfd = syscall(SYS_pidfd_open, b->pid, 0);
	if (b->pidfd < 0 || set_nonblock(b->out) || set_nonblock(b->err) ||
	    set_nonblock(b->control))
		return -1;
	return proto_write_all(b->in, PRELUDE, sizeof(PRELUDE) - 1);
}

/* Relay what is in one output pipe to the host (conn < 0: nobody listens; dropped).  At EOF
 * (the cell closed its stdout, e.g. `exec >log`) the pipe is closed and *fdp set to -1, which
 * poll skips: otherwise its endless POLLHUP would spin us.  Reads are bounded per call so a
 * fast writer cannot keep us from the rest of the loop. */
static void pump(int *fdp, int *conn, uint8_t type)
{
	static char buf[CHUNK];
	ssize_t n;

	for (int i = 0; *fdp >= 0 && i < 16; i++) {
		struct frame f;

		n = read(*fdp, buf, sizeof(buf));
		if (n == 0) {
			close(*fdp);
			*fdp = -1;
		}
		if (n <= 0)
			return;
		if (*conn < 0)
			continue;
		if (frame_init(&f, type) || frame_put(&f, TAG_DATA, buf, n) ||
		    proto_write_frame(*conn, &f))
			*conn = -1;	/* the host went away: the cell runs on, unheard (serve
					 * closes the connection) */
		frame_free(&f);
	}
}

/*
 * Append what the control pipe holds to line.  1 once it holds a whole line, 0 not yet, -1 at
 * EOF (bash is gone).  Only bash writes there (cells run with fd 63 closed); a line too long to
 * be ours is dropped rather than left to fill the buffer.
 */
static int read_status(int fd, char *line, size_t cap, size_t *len)
{
	ssize_t n;

	for (;;) {
		if (strchr(line, '\n'))
			return 1;
		if (*len + 1 >= cap)
			*len = 0;
		n = read(fd, line + *len, cap - 1 - *len);
		if (n == 0)
			return -1;
		if (n < 0)
			return 0;
		*len += n;
		line[*len] = 0;
	}
}

/* Wait until bash has printed a status line (or died).  Output is relayed meanwhile.
 * Returns 0 with the line, -1 if bash is gone. */
static int wait_status(struct bash *b, int *conn, char *line, size_t cap)
{
	size_t len = 0;

	line[0] = 0;
	for (;;) {
		struct pollfd p[4] = { { b->out, POLLIN, 0 }, { b->err, POLLIN, 0 },
				       { b->control, POLLIN, 0 }, { b->pidfd, POLLIN, 0 } };
		int st;

		if (poll(p, 4, -1) < 0 && errno != EINTR)
			return -1;
		pump(&b->out, conn, MSG_STDOUT);
		pump(&b->err, conn, MSG_STDERR);
		st = read_status(b->control, line, cap, &len);
		if (st != 0 || p[3].revents) {
			/* Everything the cell wrote before its status goes out first. */
			pump(&b->out, conn, MSG_STDOUT);
			pump(&b->err, conn, MSG_STDERR);
			return st == 1 ? 0 : -1;
		}
	}
}

/* Hand one cell to bash.  The delimiter is random and checked against the code. */
static int send_cell(struct bash *b, const char *code, uint32_t len)
{
	uint8_t rnd[12];
	char delim[40], head[128], tail[384];

	do {
		if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
			return -1;
		strcpy(delim, "KILN_CELL_");
		for (unsigned i = 0; i < sizeof(rnd); i++)
			snprintf(delim + 10 + 2 * i, 3, "%02x", rnd[i]);
	} while (memmem(code, len, delim, strlen(delim)));
	/* read -d '' returns 1 at the end of the text: `|| :` so `set -e` from a cell survives it. */
	snprintf(head, sizeof(head), "IFS= read -r -d '' __kiln_code <<'%s' || :\n", delim);
	snprintf(tail, sizeof(tail), "\n%s\ntrap '__kiln_intr=1; return 130 2>/dev/null' INT; "
		 "__kiln_intr=0; __kiln_cell </dev/null %d>&-; "
		 "printf '%%d %%d\\n' \"$?\" \"$__kiln_intr\" >&%d; trap : INT\n", delim,
		 CONTROL_FD, CONTROL_FD);
	if (proto_write_all(b->in, head, strlen(head)) || proto_write_all(b->in, code, len) ||
	    proto_write_all(b->in, tail, strlen(tail)))
		return -1;
	return 0;
}

static int send_exception(int conn, const char *name, const char *value)
{
	struct frame f;
	int r = -1;

	if (conn < 0)
		return 0;
	if (!frame_init(&f, MSG_EXCEPTION) && !frame_put_str(&f, TAG_ENAME, name) &&
	    !frame_put_str(&f, TAG_EVALUE, value))
		r = proto_write_frame(conn, &f);
	frame_free(&f);
	return r;
}

static int send_done(int conn, unsigned count, uint8_t status)
{
	struct frame f;
	int r = -1;

	if (conn < 0)
		return 0;
	if (!frame_init(&f, MSG_DONE) && !frame_put_u32(&f, TAG_EXEC_COUNT, count) &&
	    !frame_put_u8(&f, TAG_STATUS, status))
		r = proto_write_frame(conn, &f);
	frame_free(&f);
	return r;
}

/* Run one CONTEXT_RUN request.  -1 when bash has died: the context is over. */
static int run_cell(struct bash *b, int conn, const uint8_t *p, uint32_t len)
{
	struct field code;
	char line[64], value[32];
	int status, intr;

	if (!frame_find(p, len, TAG_CODE, &code) || memchr(code.val, 0, code.len))
		return 0;
	if (send_cell(b, (const char *)code.val, code.len))
		goto dead;
	b->count++;
	if (send_simple(conn, MSG_STARTED))
		conn = -1;
	if (wait_status(b, &conn, line, sizeof(line)))
		goto dead;
	if (sscanf(line, "%d %d", &status, &intr) != 2)
		status = 255, intr = 0;
	if (intr) {
		send_exception(conn, "Interrupted", "the cell was interrupted");
		send_done(conn, b->count, CELL_INTERRUPTED);
		return 0;
	}
	if (status) {
		snprintf(value, sizeof(value), "%d", status);
		send_exception(conn, "ExitStatus", value);
	}
	send_done(conn, b->count, status ? CELL_ERROR : CELL_OK);
	return 0;
dead:
	/* No DONE: context.c tells the host the interpreter exited and to restart it. */
	return -1;
}

static void serve(struct bash *b)
{
	uint8_t *buf = NULL, type;
	size_t cap = 0;
	uint32_t len;

	for (;;) {
		struct pollfd p[4] = { { LISTEN_FD, POLLIN, 0 }, { b->out, POLLIN, 0 },
				       { b->err, POLLIN, 0 }, { b->pidfd, POLLIN, 0 } };
		int none = -1, conn;

		if (poll(p, 4, -1) < 0 && errno != EINTR)
			break;
		/* Background jobs may print between cells; nobody is listening. */
		pump(&b->out, &none, MSG_STDOUT);
		pump(&b->err, &none, MSG_STDERR);
		if (p[3].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		conn = accept4(LISTEN_FD, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0)
			continue;
		if (proto_read_frame(conn, &buf, &cap, &type, &len) == 1 &&
		    type == MSG_CONTEXT_RUN && run_cell(b, conn, buf, len) < 0) {
			close(conn);
			break;
		}
		close(conn);
	}
	free(buf);
}

int bash_kernel_main(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct bash b = { .pid = -1 };
	char line[64];
	int none = -1;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	if (bash_start(&b)) {
		fprintf(stderr, "cannot start bash: %s\n", strerror(errno));
		return 1;
	}
	if (wait_status(&b, &none, line, sizeof(line)) || strcmp(line, "ready\n")) {
		fprintf(stderr, "bash did not start (is bash in this image?)\n");
		return 1;
	}
	if (proto_write_all(1, "ready\n", 6))
		return 1;
	/* From here on the worker that started us is gone: nothing of ours goes to fds 1, 2. */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (null >= 0) {
		dup2(null, 1);
		dup2(null, 2);
		close(null);
	}
	serve(&b);
	kill(b.pid, SIGKILL);
	waitpid(b.pid, NULL, 0);
	return 0;
}
