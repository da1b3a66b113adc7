/*
 * vmctl.c - see vmctl.h.
 *
 * A VM directory holds: scratch.ext4 (sparse, formatted here or copied from a snapshot; the only
 * thing a sandbox writes), vsock.sock (kiln-vmm's hybrid vsock socket), control.sock (its
 * control socket), console.log, vmm.log (kiln-vmm's stderr), vmm.pid, and while paused to disk
 * paused/ (a snapshot).  The read-only root image is shared by every VM and never copied.
 * Paths handed to kiln-vmm are absolute, so a later `kiln pause` from another working directory
 * names the same files.
 */
#include "vmctl.h"

#include "../common/sparse_file.h"
#include "egress.h"
#include "ingress.h"
#include "netns.h"
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AGENT_BOOT_TIMEOUT_MS	(300 * 1000)	/* generous: the nested test host is slow */
#define CONTROL_TIMEOUT_MS	(300 * 1000)	/* a snapshot writes all of guest RAM */
#define VMM_EXIT_TIMEOUT_MS	(10 * 1000)
#define VMM_KILLED_TIMEOUT_MS	(60 * 1000)
#define SCRATCH_DISK		"1"		/* disk 0 is the root image */
#define FIRST_REQUEST_TIMEOUT_S	20		/* per attempt; the nested test host is slow */

static void self_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);

	buf[n > 0 ? n : 0] = 0;
	char *slash = strrchr(buf, '/');

	if (slash)
		*slash = 0;
}

void artefact(const char *env, const char *name, char *buf, size_t len)
{
	char dir[PATH_MAX];
	const char *v = getenv(env);

	if (v && *v) {
		snprintf(buf, len, "%s", v);
		return;
	}
	self_dir(dir, sizeof(dir));
	snprintf(buf, len, "%s/%s", dir, name);
}

int image_path(const char *name, char *buf, size_t len)
{
	char dir[PATH_MAX];

	for (const char *p = name; *p; p++)
		if (!(*p == '-' || *p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			return -1;
	self_dir(dir, sizeof(dir));
	snprintf(buf, len, "%s/images/%s.ext4", dir, name);
	return access(buf, R_OK);
}

void vm_sock_path(const char *dir, char *buf, size_t len)
{
	snprintf(buf, len, "%s/vsock.sock", dir);
}

int run_quiet(char *const argv[])
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int make_scratch(const char *dir, unsigned mib)
{
	char path[PATH_MAX], size[32];
	int fd;

	snprintf(path, sizeof(path), "%s/scratch.ext4", dir);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)mib << 20) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	snprintf(size, sizeof(size), "%uM", mib);
	char *argv[] = { "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1",
			 "-L", "kiln-scratch", path, size, NULL };

	return run_quiet(argv);
}

static void vm_file(const char *dir, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static int fail_errno(struct agent_error *e, const char *what, const char *path)
{
	e->err = errno;
	snprintf(e->message, sizeof(e->message), "%s %s: %s", what, path, strerror(errno));
	return -1;
}

/* dir made absolute (it must exist). */
static int abs_dir(const char *dir, char *buf, struct agent_error *e)
{
	if (!realpath(dir, buf))
		return fail_errno(e, "VM directory", dir);
	return 0;
}

/* Create dir (it may exist, empty or not: `kiln up` has always allowed that) and absolutise. */
static int make_vm_dir(const char *dir, char *buf, struct agent_error *e)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return fail_errno(e, "cannot create", dir);
	return abs_dir(dir, buf, e);
}

/* The first line of dir/file (a one-line record of ours) into buf; false if none. */
static bool read_line(const char *dir, const char *file, char *buf, size_t len)
{
	char path[PATH_MAX];
	FILE *f;
	bool ok;

	vm_file(dir, file, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return false;
	ok = fgets(buf, len, f) != NULL;
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return ok && buf[0];
}

static int write_line(const char *dir, const char *file, const char *line)
{
	char path[PATH_MAX];
	FILE *f;

	vm_file(dir, file, path, sizeof(path));
	f = fopen(path, "we");
	if (!f)
		return -1;
	fprintf(f, "%s\n", line);
	return fclose(f);
}

/* The sandbox's network namespace, if it has one (dir/netns holds its name). */
static bool read_netns(const char *dir, char *name, size_t len)
{
	return read_line(dir, "netns", name, len);
}

static int write_netns(const char *dir, const char *name)
{
	return write_line(dir, "netns", name);
}

/*
 * kiln-vmm's --net for s: the namespace's tap, the rate limit and the capture.  Recorded in
 * dir/vmm.net when the VM first starts, so that a resume names them again: a restore keeps
 * the rate limit from the snapshot but never a capture path from it.
 */
static int net_arg(const char *dir, const struct vm_spec *s, char *buf, size_t len)
{
	snprintf(buf, len, "tap=" NETNS_TAP ",rx_bps=%llu,tx_bps=%llu%s%s",
		 (unsigned long long)s->net_rate, (unsigned long long)s->net_rate,
		 s->net_pcap ? ",pcap=" : "", s->net_pcap ? s->net_pcap : "");
	return write_line(dir, "vmm.net", buf);
}

/*
 * Start kiln-vmm with argv (argv[0] is filled in here) detached, stderr to dir/vmm.log; inside
 * the sandbox's network namespace if it has one, where its tap is.
 */
static pid_t spawn_vmm(const char *dir, char **argv)
{
	char vmm[PATH_MAX], log[PATH_MAX], ns[NETNS_NAME_MAX];
	bool has_ns = read_netns(dir, ns, sizeof(ns));
	pid_t pid;

	artefact("KILN_VMM", "kiln-vmm", vmm, sizeof(vmm));
	argv[0] = vmm;
	vm_file(dir, "vmm.log", log, sizeof(log));
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		int err = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		service_child_signals();
		setsid();		/* the VM outlives a terminal hang-up of `kiln up` */
		dup2(null, 0);
		dup2(null, 1);
		dup2(err >= 0 ? err : null, 2);
		if (null > 2)
			close(null);
		if (err > 2)
			close(err);
		if (has_ns && netns_enter(ns)) {
			fprintf(stderr, "kiln: cannot enter network namespace %s: %s\n", ns,
				strerror(errno));
			_exit(127);
		}
		execv(vmm, argv);
		_exit(127);
	}
	return pid;
}

/* The arguments every VMM of dir gets: its sockets and console. */
struct vmm_io {
	char vsock[PATH_MAX + 8], control[PATH_MAX], serial[PATH_MAX + 8];
};

static void vmm_io_of(const char *dir, struct vmm_io *io)
{
	snprintf(io->vsock, sizeof(io->vsock), "3,%s/vsock.sock", dir);
	vm_file(dir, "control.sock", io->control, sizeof(io->control));
	snprintf(io->serial, sizeof(io->serial), "file:%s/console.log", dir);
}

static pid_t spawn_boot(const char *dir, const struct vm_spec *s)
{
	char kernel[PATH_MAX], initrd[PATH_MAX];
	char root[PATH_MAX + 16], scratch[PATH_MAX + 16];
	char cpus[16], mem[16], cmdline[512], net[PATH_MAX + 128];
	struct vmm_io io;

	artefact("KILN_KERNEL", "vmlinux", kernel, sizeof(kernel));
	artefact("KILN_INITRD", "kiln-initrd.cpio", initrd, sizeof(initrd));
	vmm_io_of(dir, &io);
	snprintf(root, sizeof(root), "%s,ro,id=root", s->rootfs);
	snprintf(scratch, sizeof(scratch), "%s/scratch.ext4,id=scratch", dir);
	snprintf(cpus, sizeof(cpus), "%u", s->cpus);
	snprintf(mem, sizeof(mem), "%u", s->memory_mib);
	snprintf(cmdline, sizeof(cmdline), "console=ttyS0 quiet reboot=k panic=-1 "
		 "kiln.root=/dev/vda kiln.scratch=/dev/vdb kiln.hostname=%s",
		 s->hostname ? s->hostname : "kiln");

	char *argv[] = { NULL, "--kernel", kernel, "--initrd", initrd, "--cpus", cpus,
			 "--memory", mem, "--disk", root, "--disk", scratch, "--vsock", io.vsock,
			 "--control", io.control, "--serial", io.serial, "--cmdline", cmdline,
			 NULL, NULL, NULL };

	if (s->net) {
		if (net_arg(dir, s, net, sizeof(net)))
			return -1;
		argv[21] = "--net";
		argv[22] = net;
	}
	return spawn_vmm(dir, argv);
}

/* Restore snap_dir with dir's scratch disk, sockets and network (vmm.net, if it has one). */
static pid_t spawn_restore(const char *dir, const char *snap_dir)
{
	char scratch[PATH_MAX + 8], net[PATH_MAX + 128];
	struct vmm_io io;

	vmm_io_of(dir, &io);
	snprintf(scratch, sizeof(scratch), SCRATCH_DISK "=%s/scratch.ext4", dir);

	char *argv[] = { NULL, "--restore", (char *)snap_dir, "--disk", scratch,
			 "--vsock", io.vsock, "--control", io.control, "--serial", io.serial,
			 NULL, NULL, NULL };

	if (read_line(dir, "vmm.net", net, sizeof(net))) {
		argv[11] = "--net";
		argv[12] = net;
	}
	return spawn_vmm(dir, argv);
}

static void tail_file(const char *dir, const char *name, char *out, size_t len)
{
	char path[PATH_MAX], buf[4096];
	int fd;
	ssize_t n;

	out[0] = 0;
	vm_file(dir, name, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);

	lseek(fd, end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	char *last = strrchr(buf, '\n');

	snprintf(out, len, "%s", last ? last + 1 : buf);
}

static void write_pid(const char *dir, pid_t pid)
{
	char path[PATH_MAX];
	FILE *f;

	vm_file(dir, "vmm.pid", path, sizeof(path));
	f = fopen(path, "we");
	if (f) {
		fprintf(f, "%d\n", pid);
		fclose(f);
	}
}

/* Running, not a zombie nobody has reaped yet (a VMM whose parent kilnd has restarted). */
static bool process_alive(pid_t pid)
{
	char path[64], stat[256], *paren;
	ssize_t n;
	int fd;

	if (kill(pid, 0) < 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	n = read(fd, stat, sizeof(stat) - 1);
	close(fd);
	if (n <= 0)
		return true;
	stat[n] = 0;
	/* "PID (COMM) STATE ...": COMM may hold anything, so the state follows the last ')'. */
	paren = strrchr(stat, ')');
	return !(paren && paren[1] == ' ' && paren[2] == 'Z');
}

static pid_t read_pid(const char *dir)
{
	char path[PATH_MAX];
	FILE *f;
	int pid = 0;

	vm_file(dir, "vmm.pid", path, sizeof(path));
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return pid > 0 && process_alive(pid) ? pid : 0;
}

/* Wait up to timeout_ms for pid (not necessarily our child) to exit; true if it did.  A pidfd
 * says so even when the VMM is another process's zombie (adopted after a kilnd restart and
 * never reaped), which kill(pid, 0) cannot tell from a running process. */
static bool wait_exit(pid_t pid, int timeout_ms)
{
	int pidfd = syscall(SYS_pidfd_open, pid, 0);
	bool gone;

	if (pidfd < 0)
		return errno == ESRCH;
	struct pollfd p = { pidfd, POLLIN, 0 };

	gone = poll(&p, 1, timeout_ms) > 0;
	close(pidfd);
	waitpid(pid, NULL, WNOHANG);	/* reap it if it was ours */
	return gone;
}

/* What a VM's first agent request is: INFO after a boot, IDENTITY after a restore. */
struct first_request {
	const char *hostname;		/* IDENTITY: NULL keeps it */
	char *const *env;		/* IDENTITY: the guest's environment; NULL keeps it */
	bool identity, new_id;
};

static int info_request(int fd)
{
	struct frame f;
	uint8_t *buf = NULL;
	size_t cap = 0;
	uint8_t type;
	uint32_t len;
	int ok = frame_init(&f, MSG_INFO) == 0 && proto_write_frame(fd, &f) == 0 &&
		 proto_read_frame(fd, &buf, &cap, &type, &len) == 1 && type == MSG_INFO_REPLY;

	frame_free(&f);
	free(buf);
	return ok ? 0 : -1;
}

/* A restored guest becomes a machine of its own: entropy, clock, hostname, sandbox id. */
static int identity_request(int fd, const struct first_request *r, struct agent_error *e)
{
	char id[32];
	uint64_t rnd;

	if (!r->new_id)
		return agent_set_identity(fd, r->hostname, NULL, r->env, e);
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		return fail_errno(e, "getrandom", "");
	snprintf(id, sizeof(id), "sbx-%016llx", (unsigned long long)rnd);
	return agent_set_identity(fd, r->hostname, id, r->env, e);
}

/*
 * Poll for the agent of the VMM pid just started and make its first request, noticing at once
 * if the VMM died instead.  The first request is what kiln up waits for, so nobody reaches a
 * restored guest before it has its own identity.
 */
static int wait_agent(const char *dir, pid_t pid, const struct first_request *r,
		      struct agent_error *e)
{
	char sock[PATH_MAX], why[300];
	int status;

	vm_sock_path(dir, sock, sizeof(sock));
	for (int waited = 0; waited < AGENT_BOOT_TIMEOUT_MS; waited += 100) {
		int fd, ok;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			tail_file(dir, "vmm.log", why, sizeof(why));
			snprintf(e->message, sizeof(e->message), "VM stopped while starting: %s", why);
			return -1;
		}
		if (access(sock, F_OK) == 0 && (fd = agent_connect(sock, PROTO_AGENT_PORT, 200, e)) >= 0) {
			/* A guest still starting may take a connection and never answer it: give
			 * up on this one after a while and try a new one. */
			struct timeval tv = { .tv_sec = FIRST_REQUEST_TIMEOUT_S };

			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			ok = r->identity ? identity_request(fd, r, e) : info_request(fd);
			close(fd);
			if (ok == 0)
				return 0;
		}
		usleep(100000);
	}
	snprintf(e->message, sizeof(e->message), "guest agent did not come up");
	return -1;
}

/* Start a VMM (boot or restore) in dir and wait for its agent; on failure nothing runs. */
static int start(const char *dir, pid_t pid, const struct first_request *r,
		 struct agent_error *e)
{
	if (pid < 0) {
		snprintf(e->message, sizeof(e->message), "cannot start kiln-vmm: %s", strerror(errno));
		return -1;
	}
	write_pid(dir, pid);
	if (wait_agent(dir, pid, r, e) == 0)
		return 0;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/*
 * A namespace given in spec->net_ns belongs to the VM from the call on: recorded in dir at
 * once, so the caller's vm_down after any failure destroys it; destroyed here if even that
 * fails.
 */
static int adopt_netns(const char *abs, const struct vm_spec *s, struct agent_error *e)
{
	unsigned slot;

	if (!s->net_ns)
		return 0;
	if (!abs) {
		netns_destroy(s->net_ns);
		return -1;
	}
	if (netns_slot(s->net_ns, &slot)) {
		snprintf(e->message, sizeof(e->message), "network: '%s' is not a sandbox namespace",
			 s->net_ns);
		return -1;
	}
	if (write_netns(abs, s->net_ns)) {
		netns_destroy(s->net_ns);
		return fail_errno(e, "cannot write the netns file in", abs);
	}
	return 0;
}

/*
 * A sandbox with egress secrets: install its CA in the guest's trust store and, after a boot
 * (set_env; a clone got it in its first IDENTITY), give the guest the placeholders'
 * environment.  Only placeholders and the public CA certificate cross into the guest.
 */
static int egress_secrets_to_guest(const char *dir, bool set_env, struct agent_error *e)
{
	char sock[PATH_MAX], **env = NULL;
	int fd, r;

	if (!egress_has_secrets(dir))
		return 0;
	if (set_env && !(env = egress_guest_env(dir, e->message, sizeof(e->message))))
		return -1;
	r = egress_guest_install(dir, e);
	if (!r && set_env) {
		vm_sock_path(dir, sock, sizeof(sock));
		fd = agent_connect(sock, PROTO_AGENT_PORT, 10000, e);
		r = fd < 0 ? -1 : agent_set_identity(fd, NULL, NULL, env, e);
		if (fd >= 0)
			close(fd);
	}
	egress_env_free(env);
	if (r && !e->message[0])
		snprintf(e->message, sizeof(e->message), "cannot set up the guest's egress");
	return r;
}

/*
 * The network of a VM about to start in abs: its namespace (spec->net_ns, already adopted, or
 * a new one recorded in abs) and, with a policy, its egress services inside it.
 */
static int net_start(const char *abs, const struct vm_spec *s, struct agent_error *e)
{
	char ns[NETNS_NAME_MAX], why[256], path[PATH_MAX];

	if (s->net_ns)
		snprintf(ns, sizeof(ns), "%s", s->net_ns);	/* already written */
	else if (netns_create(s->net_allow, s->net_policy != NULL, ns, sizeof(ns), why,
			      sizeof(why))) {
		snprintf(e->message, sizeof(e->message), "network: %s", why);
		return -1;
	}
	if (!s->net_ns && write_netns(abs, ns)) {
		netns_destroy(ns);
		return fail_errno(e, "cannot write the netns file in", abs);
	}
	if (!s->net_policy || !egress_start(abs, ns, s->net_policy, s->net_secrets,
					    s->net_upstream_ca, why, sizeof(why)))
		return 0;
	/* Gone, and forgotten: a later vm_down must not destroy the slot again (another
	 * sandbox may have it by then). */
	netns_destroy(ns);
	vm_file(abs, "netns", path, sizeof(path));
	unlink(path);
	snprintf(e->message, sizeof(e->message), "egress: %s", why);
	return -1;
}

int vm_up(const char *dir, const struct vm_spec *s, struct agent_error *e)
{
	char abs[PATH_MAX];

	if (make_vm_dir(dir, abs, e)) {
		adopt_netns(NULL, s, e);
		return -1;
	}
	if (adopt_netns(abs, s, e))
		return -1;
	if (make_scratch(abs, s->scratch_mib)) {
		snprintf(e->message, sizeof(e->message), "cannot create the scratch disk in %s", abs);
		return -1;
	}
	if (s->net && net_start(abs, s, e))
		return -1;
	if (start(abs, spawn_boot(abs, s), &(struct first_request){ 0 }, e))
		return -1;
	return egress_secrets_to_guest(abs, true, e);
}

int vm_clone(const char *dir, const char *snap_dir, const struct vm_spec *s,
	     struct agent_error *e)
{
	char abs[PATH_MAX], from[PATH_MAX], to[PATH_MAX], net[PATH_MAX + 128], **env = NULL;
	int r;

	if (make_vm_dir(dir, abs, e)) {
		adopt_netns(NULL, s, e);
		return -1;
	}
	if (adopt_netns(abs, s, e))
		return -1;
	snprintf(from, sizeof(from), "%s/disk" SCRATCH_DISK, snap_dir);
	vm_file(abs, "scratch.ext4", to, sizeof(to));
	/* Not durable: a clone that does not survive a host crash has nothing to lose. */
	if (sparse_copy_file(from, to, false, e->message, sizeof(e->message)))
		return -1;
	/* A snapshot with a NIC reopens its tap by name in the namespace it starts in, with
	 * this sandbox's rate limit and capture. */
	if (s->net && (net_start(abs, s, e) || net_arg(abs, s, net, sizeof(net))))
		return -1;
	if (egress_has_secrets(abs) &&
	    !(env = egress_guest_env(abs, e->message, sizeof(e->message))))
		return -1;
	r = start(abs, spawn_restore(abs, snap_dir),
		  &(struct first_request){ .identity = true, .new_id = true, .env = env,
					   .hostname = s->hostname ? s->hostname : "kiln" }, e);
	egress_env_free(env);
	return r ? r : egress_secrets_to_guest(abs, false, e);
}

int vm_control(const char *dir, const char *command, char *reply, size_t len,
	       struct agent_error *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char line[PATH_MAX + 64];
	size_t got = 0;
	int fd, n = snprintf(line, sizeof(line), "%s\n", command);

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/control.sock", dir) >=
	    sizeof(sa.sun_path)) {
		snprintf(e->message, sizeof(e->message), "%s: path too long for a socket", dir);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, line, n) != n) {
		fail_errno(e, "control socket", sa.sun_path);
		goto out;
	}
	while (got < sizeof(line) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, CONTROL_TIMEOUT_MS) != 1)
			break;
		r = read(fd, line + got, sizeof(line) - 1 - got);
		if (r <= 0)
			break;
		got += r;
		if (memchr(line, '\n', got))
			break;
	}
	line[got] = 0;
	line[strcspn(line, "\n")] = 0;
	close(fd);
	if (!strncmp(line, "ok", 2) && (line[2] == 0 || line[2] == ' ')) {
		snprintf(reply, len, "%s", line[2] ? line + 3 : "");
		return 0;
	}
	snprintf(e->message, sizeof(e->message), "kiln-vmm: %s",
		 got ? line : "no answer on the control socket");
	return -1;
out:
	if (fd >= 0)
		close(fd);
	return -1;
}

int vm_pause(const char *dir, struct agent_error *e)
{
	char abs[PATH_MAX], snap[PATH_MAX], cmd[PATH_MAX + 16], reply[256], path[PATH_MAX];
	pid_t pid;

	if (abs_dir(dir, abs, e))
		return -1;
	pid = read_pid(abs);
	if (!pid) {
		snprintf(e->message, sizeof(e->message), "%s: no running VM", abs);
		return -1;
	}
	vm_file(abs, "paused", snap, sizeof(snap));
	snprintf(cmd, sizeof(cmd), "snapshot %s", snap);
	if (vm_control(abs, cmd, reply, sizeof(reply), e))
		return -1;	/* kiln-vmm removed what it wrote and resumed the guest */
	if (vm_control(abs, "stop", reply, sizeof(reply), e) || !wait_exit(pid, VMM_EXIT_TIMEOUT_MS)) {
		kill(pid, SIGKILL);
		wait_exit(pid, VMM_KILLED_TIMEOUT_MS);
	}
	/* The snapshot's copy of the scratch disk equals scratch.ext4 now that the guest is gone:
	 * resume uses scratch.ext4 in place, so drop the copy. */
	snprintf(path, sizeof(path), "%s/disk" SCRATCH_DISK, snap);
	unlink(path);
	for (const char *const *f = (const char *const[]){ "vmm.pid", "vsock.sock", "control.sock",
							    NULL }; *f; f++) {
		vm_file(abs, *f, path, sizeof(path));
		unlink(path);
	}
	return 0;
}

pid_t vm_pid(const char *dir)
{
	return read_pid(dir);
}


int vm_resume(const char *dir, struct agent_error *e)
{
	char abs[PATH_MAX], snap[PATH_MAX], state[PATH_MAX + 8];

	if (abs_dir(dir, abs, e))
		return -1;
	if (read_pid(abs)) {
		snprintf(e->message, sizeof(e->message), "%s: the VM is running", abs);
		return -1;
	}
	vm_file(abs, "paused", snap, sizeof(snap));
	snprintf(state, sizeof(state), "%s/state", snap);
	if (access(state, F_OK)) {
		snprintf(e->message, sizeof(e->message), "%s: not paused (no %s)", abs, state);
		return -1;
	}
	/* After a pause, the clock is behind by the time away: IDENTITY sets it (and reseeds). */
	if (start(abs, spawn_restore(abs, snap), &(struct first_request){ .identity = true }, e))
		return -1;
	/* Guest RAM is mapped from paused/memory privately: unlinking it frees the disk space
	 * when kiln-vmm exits, and nothing reads it by name again. */
	remove_tree(snap);
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int remove_tree(const char *path)
{
	return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int vm_set_net_policy(const char *dir, const char *allow, struct agent_error *e)
{
	char ns[NETNS_NAME_MAX], why[256];

	if (!read_netns(dir, ns, sizeof(ns))) {
		snprintf(e->message, sizeof(e->message), "%s has no network (started without --net)",
			 dir);
		return -1;
	}
	if (netns_set_policy(ns, allow, egress_enabled(dir), why, sizeof(why))) {
		snprintf(e->message, sizeof(e->message), "network policy: %s", why);
		return -1;
	}
	return 0;
}

void vm_down(const char *dir)
{
	pid_t pid = read_pid(dir);
	char ns[NETNS_NAME_MAX];

	/* kiln-vmm exits at once on SIGTERM; wait for it (it may not be our child).  After a
	 * SIGKILL it is sure to go, but tearing down a large guest can take a loaded host more
	 * than a few seconds, and until it is gone it holds its disks' locks and its namespace. */
	if (pid && kill(pid, SIGTERM) == 0 && !wait_exit(pid, 5000)) {
		kill(pid, SIGKILL);
		wait_exit(pid, VMM_KILLED_TIMEOUT_MS);
	}
	ingress_stop_all(dir);
	egress_stop(dir);
	if (read_netns(dir, ns, sizeof(ns)))
		netns_destroy(ns);
	remove_tree(dir);
}

int vm_netns(const char *dir, char *name, size_t len)
{
	return read_netns(dir, name, len) ? 0 : -1;
}
