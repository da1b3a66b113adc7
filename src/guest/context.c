/*
 * context.c - code contexts: long-lived interpreters that keep their state between cells.
 *
 * A context is an interpreter process running a kernel compiled into kiln-init: python3 or
 * node with a kernel script (context/python_kernel.py, context/node_kernel.js, embedded by
 * kernels.c), or bash driven by kiln-init itself (bash_kernel.c), all speaking the same frames.
 * Workers serve one connection and exit,
 * so a context cannot be a worker's child for long: CONTEXT_CREATE starts it in its own session
 * and returns; when the worker exits the interpreter is re-parented to PID 1, which reaps it.
 * The worker hands the interpreter a listening unix socket, CONTEXT_DIR/ID.sock, in a directory
 * only root can enter; every later CONTEXT_RUN worker connects there, passes the cell on and
 * relays what comes back.  CONTEXT_DIR/ID.ctx records the context (language, cwd, user, env,
 * pid, created) as a protocol frame, so restart can start the same interpreter again and the
 * record is read back with the same checked parser as the wire.
 *
 * The interpreter runs user code, so everything it sends is untrusted: each frame is checked
 * (type, field sizes, MIME syntax, status range) and rebuilt field by field before it reaches
 * the host.  Interrupts and timeouts are SIGINT to the interpreter's process group (a
 * KeyboardInterrupt in the cell; the state survives); a cell that ignores them for
 * KILL_GRACE_MS past its deadline has its context killed.  In the guest, contexts run in their
 * own cgroup under the user group, like commands, so a runaway cell cannot starve the agent.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "spawn.h"

#define CONTEXT_DIR		"/run/kiln/contexts"
#define CONTEXT_ID_LEN		16
#define START_TIMEOUT_MS	120000	/* python3 starting in a cold, slow guest */
#define INTERRUPT_EVERY_MS	1000	/* after the deadline, until the cell gives up */
#define KILL_GRACE_MS		10000	/* ...then the context is killed */
#define MAX_MIME		128
#define MAX_ENAME		256

/* Each interpreter's bootstrap reads its kernel script from fd 4 and runs it.  "<kiln-kernel>"
 * also marks our interpreters in /proc/PID/cmdline, checked before a pid from a record is
 * signalled. */
#define KERNEL_MARK		"<kiln-kernel>"
static const char PYTHON_BOOT[] =
	"import os;f=os.fdopen(4,'rb');s=f.read();f.close();exec(compile(s,'" KERNEL_MARK "','exec'))";
static const char NODE_BOOT[] =
	"const fs=require('fs');const s=fs.readFileSync(4,'utf8');fs.closeSync(4);"
	"require('vm').runInThisContext(s,{filename:'" KERNEL_MARK "'})(require)";

extern const char python_kernel_src[], python_kernel_end[];
extern const char node_kernel_src[], node_kernel_end[];

/* The languages a context can speak.  script is NULL when kiln-init is the kernel. */
struct language {
	const char *name;
	const char *program;	/* what "not found" names */
	char *argv[4];
	const char *script, *script_end;
};

static const struct language languages[] = {
	{ "python", "python3", { "python3", "-c", (char *)PYTHON_BOOT, NULL },
	  python_kernel_src, python_kernel_end },
	{ "node", "node", { "node", "-e", (char *)NODE_BOOT, NULL },
	  node_kernel_src, node_kernel_end },
	{ "bash", "bash", { "/proc/self/exe", "--bash-kernel", KERNEL_MARK, NULL }, NULL, NULL },
};

static const struct language *find_language(const char *name)
{
	for (size_t i = 0; i < sizeof(languages) / sizeof(languages[0]); i++)
		if (!strcmp(languages[i].name, name))
			return &languages[i];
	return NULL;
}

struct ctx_spec {
	char language[32];
	char cwd[4096];
	char user[256];
	char **env;
	int envc;
	uint32_t pid;
	uint64_t created;
};

static void spec_free(struct ctx_spec *s)
{
	for (int i = 0; i < s->envc; i++)
		free(s->env[i]);
	free(s->env);
	s->env = NULL;
	s->envc = 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Fields of a create request or a record.  NULL or why it is bad. */
static const char *spec_parse(const uint8_t *p, uint32_t len, struct ctx_spec *s)
{
	uint32_t off = 0;
	struct field f;

	memset(s, 0, sizeof(*s));
	snprintf(s->language, sizeof(s->language), "python");
	if (frame_find(p, len, TAG_LANGUAGE, &f) && !field_str(&f, s->language, sizeof(s->language)))
		return "bad language";
	if (frame_find(p, len, TAG_CWD, &f) && !field_str(&f, s->cwd, sizeof(s->cwd)))
		return "bad cwd";
	if (frame_find(p, len, TAG_USER, &f) && !field_str(&f, s->user, sizeof(s->user)))
		return "bad user";
	if (frame_find(p, len, TAG_PID, &f))
		field_u32(&f, &s->pid);
	if (frame_find(p, len, TAG_CREATED, &f))
		field_u64(&f, &s->created);
	while (frame_next(p, len, &off, &f)) {
		if (f.tag != TAG_ENV)
			continue;
		if (!f.len || f.len > 65536 || memchr(f.val, 0, f.len) || !memchr(f.val, '=', f.len) ||
		    f.val[0] == '=')
			goto bad_env;
		char **v = realloc(s->env, (s->envc + 2) * sizeof(char *));

		if (!v)
			goto bad_env;
		s->env = v;
		if (!(s->env[s->envc] = strndup((const char *)f.val, f.len)))
			goto bad_env;
		s->env[++s->envc] = NULL;
	}
	return NULL;
bad_env:
	spec_free(s);
	return "bad environment";
}

static bool valid_id(const char *id)
{
	if (strlen(id) != CONTEXT_ID_LEN)
		return false;
	for (const char *c = id; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return false;
	return true;
}

static void ctx_path(char *buf, size_t len, const char *id, const char *ext)
{
	snprintf(buf, len, CONTEXT_DIR "/%s.%s", id, ext);
}

static void ctx_cgroup(char *buf, size_t len, const char *id)
{
	if (agent_is_init)
		snprintf(buf, len, AGENT_CGROUP "/user/ctx-%s", id);
	else
		buf[0] = 0;
}

static int record_write(const char *id, const struct ctx_spec *s)
{
	char path[128], tmp[140];
	struct frame f;
	int fd, r = -1;

	if (frame_init(&f, MSG_CONTEXT_CREATE))
		return -1;
	if (frame_put_str(&f, TAG_CONTEXT_ID, id) || frame_put_str(&f, TAG_LANGUAGE, s->language) ||
	    (s->cwd[0] && frame_put_str(&f, TAG_CWD, s->cwd)) ||
	    (s->user[0] && frame_put_str(&f, TAG_USER, s->user)) ||
	    frame_put_u32(&f, TAG_PID, s->pid) || frame_put_u64(&f, TAG_CREATED, s->created))
		goto out;
	for (int i = 0; i < s->envc; i++)
		if (frame_put_str(&f, TAG_ENV, s->env[i]))
			goto out;
	ctx_path(path, sizeof(path), id, "ctx");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	r = proto_write_frame(fd, &f);
	if (close(fd) || r || rename(tmp, path)) {
		unlink(tmp);
		r = -1;
	}
out:
	frame_free(&f);
	return r;
}

/* 0, or -1 with errno ENOENT when there is no such context. */
static int record_read(const char *id, struct ctx_spec *s)
{
	char path[128];
	uint8_t *buf = NULL, type;
	size_t cap = 0;
	uint32_t len;
	int fd, r = -1;

	ctx_path(path, sizeof(path), id, "ctx");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (proto_read_frame(fd, &buf, &cap, &type, &len) == 1 && type == MSG_CONTEXT_CREATE &&
	    !spec_parse(buf, len, s))
		r = 0;
	else
		errno = EIO;
	close(fd);
	free(buf);
	return r;
}

/* Whether pid is one of our interpreters (a record's pid may have died and been reused). */
static bool is_kernel(uint32_t pid)
{
	char path[64], cmd[512];
	int fd;
	ssize_t n;

	if (pid <= 1 || pid > 0x7fffffff)
		return false;
	snprintf(path, sizeof(path), "/proc/%u/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (n <= 0)
		return false;
	cmd[n] = 0;
	for (ssize_t i = 0; i < n; i++)
		if (!cmd[i])
			cmd[i] = ' ';
	return strstr(cmd, KERNEL_MARK) != NULL;
}

static void signal_kernel(uint32_t pid, int sig)
{
	if (!is_kernel(pid))
		return;
	/* The interpreter leads its own group: a cell's child processes get the signal too. */
	if (kill(-(pid_t)pid, sig) < 0)
		kill(pid, sig);
}

/* Kill the interpreter and all it started, and wait (bounded) until it has gone. */
static void stop_kernel(const char *id, uint32_t pid)
{
	char cg[128], path[160];
	int pidfd = -1, fd;

	if (is_kernel(pid))
		pidfd = syscall(SYS_pidfd_open, pid, 0);
	signal_kernel(pid, SIGKILL);
	ctx_cgroup(cg, sizeof(cg), id);
	if (cg[0]) {
		snprintf(path, sizeof(path), "%s/cgroup.kill", cg);
		if ((fd = open(path, O_WRONLY | O_CLOEXEC)) >= 0) {
			ssize_t w = write(fd, "1", 1);

			(void)w;
			close(fd);
		}
	}
	if (pidfd >= 0) {
		struct pollfd p = { pidfd, POLLIN, 0 };

		poll(&p, 1, 5000);
		close(pidfd);
	}
}

static int listen_at(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	unlink(path);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int script_fd(const struct language *lang)
{
	int fd = memfd_create("kiln-kernel", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (proto_write_all(fd, lang->script, lang->script_end - lang->script) ||
	    lseek(fd, 0, SEEK_SET) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Wait for the interpreter's "ready" line; on failure msg gets what it printed on stderr. */
static int wait_ready(const struct spawn_result *res, char *msg, size_t msglen)
{
	char out[64], err[1024];
	size_t nout = 0, nerr = 0;
	int64_t deadline = now_ms() + START_TIMEOUT_MS;
	int out_fd = res->out_fd, err_fd = res->err_fd;

	while (out_fd >= 0 && now_ms() < deadline) {
		struct pollfd p[2] = { { out_fd, POLLIN, 0 }, { err_fd, POLLIN, 0 } };
		int np = err_fd >= 0 ? 2 : 1;

		if (poll(p, np, deadline - now_ms()) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < np; i++) {
			if (!p[i].revents)
				continue;
			char *b = i ? err : out;
			size_t *n = i ? &nerr : &nout, cap = i ? sizeof(err) : sizeof(out);
			char junk[512];
			ssize_t r = *n + 1 < cap ? read(p[i].fd, b + *n, cap - 1 - *n) :
						   read(p[i].fd, junk, sizeof(junk));

			if (r <= 0) {
				if (i)
					err_fd = -1;
				else
					out_fd = -1;
				continue;
			}
			if (*n + 1 < cap)
				*n += r;
		}
		out[nout] = 0;
		if (strstr(out, "ready\n"))
			return 0;
	}
	err[nerr] = 0;
	while (nerr && (err[nerr - 1] == '\n' || err[nerr - 1] == ' '))
		err[--nerr] = 0;
	/* The last line of a traceback says what went wrong. */
	const char *last = strrchr(err, '\n');

	snprintf(msg, msglen, "the interpreter did not start%s%s", nerr ? ": " : "",
		 last ? last + 1 : err);
	return -1;
}

static bool env_has(const struct ctx_spec *s, const char *key)
{
	size_t k = strlen(key);

	for (int i = 0; i < s->envc; i++)
		if (!strncmp(s->env[i], key, k) && s->env[i][k] == '=')
			return true;
	return false;
}

/* Start the interpreter for context id; s->pid gets its pid.  0, or -1 with err and msg. */
static int start_kernel(const char *id, struct ctx_spec *s, int *err, char *msg, size_t msglen)
{
	struct spawn_req sr;
	struct spawn_result res;
	struct spawn_failure fail;
	struct user_info u;
	const struct language *lang = find_language(s->language);
	char sock[128];
	char *env[s->envc + 2];
	int lfd, mfd = -1, r;

	memset(&sr, 0, sizeof(sr));
	ctx_path(sock, sizeof(sock), id, "sock");
	lfd = listen_at(sock);
	if (lang && lang->script)
		mfd = script_fd(lang);
	if (!lang || lfd < 0 || (lang->script && mfd < 0)) {
		*err = errno;
		snprintf(msg, msglen, "cannot set up the context: %s", strerror(errno));
		goto fail;
	}
	/* Charts render off-screen; the request's environment may still say otherwise. */
	env[0] = "MPLBACKEND=Agg";
	for (int i = 0; i < s->envc; i++)
		env[i + 1] = s->env[i];
	env[s->envc + 1] = NULL;
	sr.argv = (char **)lang->argv;
	sr.envp = env_has(s, "MPLBACKEND") ? s->env : env;
	sr.envc = env_has(s, "MPLBACKEND") ? s->envc : s->envc + 1;
	snprintf(sr.cwd, sizeof(sr.cwd), "%s", s->cwd);
	/* Like a sandbox's commands: the unprivileged "user" when the image has one. */
	snprintf(sr.user, sizeof(sr.user), "%s",
		 s->user[0] ? s->user : lookup_user("user", &u) == 0 ? "user" : "root");
	ctx_cgroup(sr.cgroup, sizeof(sr.cgroup), id);
	if (sr.cgroup[0] && mkdir(sr.cgroup, 0755) < 0 && errno != EEXIST)
		sr.cgroup[0] = 0;
	sr.pass_fd[0] = lfd;
	sr.pass_fd[1] = mfd;
	sr.npass = mfd >= 0 ? 2 : 1;
	r = spawn_process(&sr, &res, &fail);
	if (mfd >= 0)
		close(mfd);
	mfd = -1;
	close(lfd);
	lfd = -1;
	if (r != 0) {
		if (r == 1)
			waitpid(res.pid, NULL, 0);
		*err = fail.err;
		if (fail.err == ENOENT && fail.stage == SPAWN_STAGE_EXEC)
			snprintf(msg, msglen, "%s is not installed in this image", lang->program);
		else
			snprintf(msg, msglen, "%s: %s", spawn_stage_message(fail.stage),
				 strerror(fail.err));
		goto fail;
	}
	if (wait_ready(&res, msg, msglen)) {
		kill(-res.pid, SIGKILL);
		waitpid(res.pid, NULL, 0);
		close(res.out_fd);
		close(res.err_fd);
		*err = ECHILD;
		goto fail;
	}
	close(res.out_fd);
	close(res.err_fd);
	s->pid = res.pid;
	return 0;
fail:
	if (lfd >= 0)
		close(lfd);
	if (mfd >= 0)
		close(mfd);
	unlink(sock);
	if (sr.cgroup[0])
		rmdir(sr.cgroup);
	return -1;
}

static int send_id_pid(int conn, uint8_t type, const char *id, uint32_t pid)
{
	struct frame f;
	int r = -1;

	if (frame_init(&f, type))
		return -1;
	if (!frame_put_str(&f, TAG_CONTEXT_ID, id) && !frame_put_u32(&f, TAG_PID, pid))
		r = proto_write_frame(conn, &f);
	frame_free(&f);
	return r;
}

/*
 * Start context id's interpreter as s says, record it and answer OK with the id and pid, or
 * the ERROR; frees s.  cwd_path: name s->cwd in an ERROR about it (a create's fresh cwd).
 */
static int start_and_reply(int conn, const char *id, struct ctx_spec *s, bool cwd_path)
{
	char msg[1200];
	int err, r;

	if (start_kernel(id, s, &err, msg, sizeof(msg))) {
		bool about_cwd = cwd_path && (err == ENOENT || err == ENOTDIR);

		r = send_error(conn, err, msg, about_cwd ? s->cwd : NULL);
		spec_free(s);
		return r;
	}
	if (record_write(id, s)) {
		stop_kernel(id, s->pid);
		spec_free(s);
		return send_error(conn, errno, "cannot record the context", NULL);
	}
	r = send_id_pid(conn, MSG_OK, id, s->pid);
	spec_free(s);
	return r;
}

int op_context_create(int conn, const struct request *req)
{
	struct ctx_spec s;
	uint8_t rnd[CONTEXT_ID_LEN / 2];
	char id[CONTEXT_ID_LEN + 1];
	const char *why = spec_parse(req->payload, req->len, &s);

	if (why)
		return send_error(conn, EINVAL, why, NULL);
	if (!find_language(s.language)) {
		spec_free(&s);
		return send_error(conn, EINVAL, "unsupported language (have: python, node, bash)",
				  NULL);
	}
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		spec_free(&s);
		return send_error(conn, errno, "no randomness for a context id", NULL);
	}
	for (unsigned i = 0; i < sizeof(rnd); i++)
		snprintf(id + 2 * i, 3, "%02x", rnd[i]);
	mkdir("/run/kiln", 0700);
	mkdir(CONTEXT_DIR, 0700);
	s.created = time(NULL);
	return start_and_reply(conn, id, &s, true);
}

/* The context a request names: its id and record.  Replies itself on failure (-2). */
static int find_context(int conn, const struct request *req, char *id, struct ctx_spec *s)
{
	if (!req_str(req, TAG_CONTEXT_ID, id, CONTEXT_ID_LEN + 1) || !valid_id(id))
		return send_error(conn, EINVAL, "bad or missing context id", NULL) ? -1 : -2;
	if (record_read(id, s))
		return send_error(conn, ESRCH, "no such context", NULL) ? -1 : -2;
	return 0;
}

/* Check and rebuild one frame from the interpreter.  1 sent, 2 the cell has started (not
 * sent), 0 done (DONE sent), -1 bad, -2 host gone. */
static int relay(int conn, uint8_t type, const uint8_t *p, uint32_t len, bool timed_out)
{
	struct frame out;
	struct field f;
	char mime[MAX_MIME];
	uint32_t v32;
	uint8_t v8;
	int bad = 0;

	if (type == MSG_STARTED)
		return 2;		/* for us: the cell began (see op_context_run) */
	if (frame_init(&out, type))
		return -2;
	switch (type) {
	case MSG_STDOUT:
	case MSG_STDERR:
		bad = !frame_find(p, len, TAG_DATA, &f) || frame_put(&out, TAG_DATA, f.val, f.len);
		break;
	case MSG_RESULT:
		bad = !frame_find(p, len, TAG_MIME, &f) || !field_str(&f, mime, sizeof(mime)) ||
		      !strchr(mime, '/') || strspn(mime, "abcdefghijklmnopqrstuvwxyz"
						   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/+.-_") !=
		      strlen(mime) || frame_put_str(&out, TAG_MIME, mime) ||
		      !frame_find(p, len, TAG_DATA, &f) || frame_put(&out, TAG_DATA, f.val, f.len);
		if (!bad && frame_find(p, len, TAG_INDEX, &f))
			bad = !field_u32(&f, &v32) || frame_put_u32(&out, TAG_INDEX, v32);
		break;
	case MSG_EXCEPTION: {
		uint32_t off = 0;

		bad = !frame_find(p, len, TAG_ENAME, &f) || !f.len || f.len >= MAX_ENAME ||
		      memchr(f.val, 0, f.len) || frame_put(&out, TAG_ENAME, f.val, f.len);
		if (!bad && frame_find(p, len, TAG_EVALUE, &f))
			bad = memchr(f.val, 0, f.len) || frame_put(&out, TAG_EVALUE, f.val, f.len);
		while (!bad && frame_next(p, len, &off, &f))
			if (f.tag == TAG_TRACEBACK)
				bad = memchr(f.val, 0, f.len) ||
				      frame_put(&out, TAG_TRACEBACK, f.val, f.len);
		break;
	}
	case MSG_DONE:
		bad = !frame_find(p, len, TAG_EXEC_COUNT, &f) || !field_u32(&f, &v32) ||
		      !frame_find(p, len, TAG_STATUS, &f) || !field_u8(&f, &v8) ||
		      v8 > CELL_INTERRUPTED;
		/* The interpreter sees only an interrupt; we know it was the deadline's. */
		if (!bad && timed_out && v8 == CELL_INTERRUPTED)
			v8 = CELL_TIMEOUT;
		bad = bad || frame_put_u32(&out, TAG_EXEC_COUNT, v32) ||
		      frame_put_u8(&out, TAG_STATUS, v8);
		break;
	default:
		bad = 1;
	}
	int r = bad ? -1 : proto_write_frame(conn, &out) ? -2 : type == MSG_DONE ? 0 : 1;

	frame_free(&out);
	return r;
}

static int connect_kernel(const char *id)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ctx_path(a.sun_path, sizeof(a.sun_path), id, "sock");
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int op_context_run(int conn, const struct request *req)
{
	struct ctx_spec s;
	struct field code;
	struct frame f;
	char id[CONTEXT_ID_LEN + 1];
	uint32_t timeout_ms = 0, len;
	uint8_t *buf = NULL, type;
	size_t cap = 0;
	int64_t deadline = 0, next_int = 0;
	bool timed_out = false, started = false;
	int kfd, r = find_context(conn, req, id, &s);

	if (r)
		return r == -2 ? 0 : -1;
	spec_free(&s);
	if (!frame_find(req->payload, req->len, TAG_CODE, &code) || memchr(code.val, 0, code.len))
		return send_error(conn, EINVAL, "no code, or code with a NUL byte", NULL);
	req_u32(req, TAG_TIMEOUT_MS, &timeout_ms);
	kfd = connect_kernel(id);
	if (kfd < 0)
		return send_error(conn, ESRCH, "the context's interpreter is not running; "
				  "restart the context", NULL);
	if (frame_init(&f, MSG_CONTEXT_RUN) || frame_put(&f, TAG_CODE, code.val, code.len) ||
	    proto_write_frame(kfd, &f)) {
		frame_free(&f);
		close(kfd);
		return send_error(conn, EPIPE, "cannot pass the cell to the interpreter", NULL);
	}
	frame_free(&f);
	for (;;) {
		struct pollfd p[2] = { { kfd, POLLIN, 0 }, { conn, POLLIN, 0 } };
		int64_t now = now_ms(), wait = -1;

		if (deadline) {
			int64_t at = timed_out ? next_int : deadline;

			wait = at > now ? at - now : 0;
		}
		if (poll(p, 2, wait > 60000 ? 60000 : wait) < 0 && errno != EINTR)
			break;
		if (p[0].revents) {
			int rr = proto_read_frame(kfd, &buf, &cap, &type, &len);

			if (rr != 1) {
				r = send_error(conn, rr == 0 ? EPIPE : EPROTO, rr == 0 ?
					       "the context's interpreter exited during the cell; "
					       "restart the context" :
					       "the context sent a malformed reply", NULL);
				break;
			}
			rr = relay(conn, type, buf, len, timed_out);
			if (rr == 2 && !started) {
				/* Timed from when it runs, not while queued behind another cell. */
				started = true;
				if (timeout_ms)
					deadline = now_ms() + timeout_ms;
			} else if (rr <= 0) {
				if (rr == -1)
					r = send_error(conn, EPROTO, "the context sent a malformed reply",
						       NULL);
				else
					r = rr == 0 ? 0 : -1;
				break;
			}
		}
		if (p[1].revents) {
			/* The host may interrupt the cell; anything else, or EOF, means it has gone:
			 * the cell runs on, unheard, like a notebook's. */
			if (proto_read_frame(conn, &buf, &cap, &type, &len) != 1 || type != MSG_SIGNAL) {
				r = -1;
				break;
			}
			if (started)
				signal_kernel(s.pid, SIGINT);
		}
		now = now_ms();
		if (deadline && now >= deadline + KILL_GRACE_MS) {
			/* Deaf to interrupts (a C extension in a loop, or caught and ignored). */
			stop_kernel(id, s.pid);
			r = send_error(conn, ETIMEDOUT, "the cell ignored interrupts after its timeout; "
				       "the context was stopped: restart it", NULL);
			break;
		}
		if (deadline && now >= (timed_out ? next_int : deadline)) {
			timed_out = true;
			next_int = now + INTERRUPT_EVERY_MS;
			signal_kernel(s.pid, SIGINT);
		}
	}
	free(buf);
	close(kfd);
	return r;
}

static void put_entry(int conn, const char *id, const struct ctx_spec *s, int *r)
{
	struct frame f;

	if (*r || frame_init(&f, MSG_ENTRY)) {
		*r = -1;
		return;
	}
	if (frame_put_str(&f, TAG_CONTEXT_ID, id) || frame_put_str(&f, TAG_LANGUAGE, s->language) ||
	    frame_put_str(&f, TAG_CWD, s->cwd) || frame_put_str(&f, TAG_USER, s->user) ||
	    frame_put_u32(&f, TAG_PID, s->pid) ||
	    frame_put_u8(&f, TAG_RUNNING, is_kernel(s->pid)) ||
	    frame_put_u64(&f, TAG_CREATED, s->created) || proto_write_frame(conn, &f))
		*r = -1;
	frame_free(&f);
}

int op_context_list(int conn)
{
	DIR *d = opendir(CONTEXT_DIR);
	struct dirent *e;
	int r = 0;

	while (d && !r && (e = readdir(d))) {
		char id[CONTEXT_ID_LEN + 1];
		struct ctx_spec s;
		size_t len = strlen(e->d_name);

		if (len != CONTEXT_ID_LEN + 4 || strcmp(e->d_name + CONTEXT_ID_LEN, ".ctx"))
			continue;
		snprintf(id, sizeof(id), "%.*s", CONTEXT_ID_LEN, e->d_name);
		if (!valid_id(id) || record_read(id, &s))
			continue;
		put_entry(conn, id, &s, &r);
		spec_free(&s);
	}
	if (d)
		closedir(d);
	return r ? r : send_simple(conn, MSG_END);
}

int op_context_interrupt(int conn, const struct request *req)
{
	struct ctx_spec s;
	char id[CONTEXT_ID_LEN + 1];
	int r = find_context(conn, req, id, &s);

	if (r)
		return r == -2 ? 0 : -1;
	spec_free(&s);
	if (!is_kernel(s.pid))
		return send_error(conn, ESRCH, "the context's interpreter is not running", NULL);
	signal_kernel(s.pid, SIGINT);
	return send_ok(conn);
}

int op_context_restart(int conn, const struct request *req)
{
	struct ctx_spec s;
	char id[CONTEXT_ID_LEN + 1];
	int r = find_context(conn, req, id, &s);

	if (r)
		return r == -2 ? 0 : -1;
	stop_kernel(id, s.pid);
	return start_and_reply(conn, id, &s, false);
}

int op_context_delete(int conn, const struct request *req)
{
	struct ctx_spec s;
	char id[CONTEXT_ID_LEN + 1], path[160];
	int r = find_context(conn, req, id, &s);

	if (r)
		return r == -2 ? 0 : -1;
	spec_free(&s);
	stop_kernel(id, s.pid);
	ctx_path(path, sizeof(path), id, "sock");
	unlink(path);
	ctx_path(path, sizeof(path), id, "ctx");
	unlink(path);
	ctx_cgroup(path, sizeof(path), id);
	if (path[0])
		rmdir(path);
	return send_ok(conn);
}
