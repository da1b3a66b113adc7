/*
 * init.c - kiln-init: PID 1 of every kiln guest, and the agent the host talks to.
 *
 * Boot (when PID 1, started from the initramfs kiln-vmm boots):
 *   1. mount /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /run;
 *   2. build the root: the read-only image (kiln.root=, default /dev/vda) as the lower layer and
 *      a writable scratch disk (kiln.scratch=, default /dev/vdb; "tmpfs" for memory) as the
 *      upper layer of an overlayfs, then move everything onto it and chroot, so sandboxes share
 *      one image and write only their own scratch disk;
 *   3. hostname (kiln.hostname=), loopback up, eth0 if there is a NIC (net.c), cgroup v2 with a "user" group for everything the
 *      host runs (pids and memory capped below the agent's needs), oom_score_adj -1000 for us;
 *   4. listen on vsock port PROTO_AGENT_PORT and fork one worker per connection; reap orphans.
 *
 * With --listen-unix PATH it skips the PID 1 duties and serves a unix socket instead: that is
 * how the protocol is tested on the host without a VM.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

bool agent_is_init;

static void console(const char *fmt, const char *arg)
{
	int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		return;
	dprintf(fd, "kiln-init: ");
	dprintf(fd, fmt, arg);
	dprintf(fd, "\n");
	close(fd);
}

/* Value of NAME=... on the kernel command line, or def. */
static const char *cmdline_get(const char *name, const char *def, char *buf, size_t len)
{
	static char cmdline[4096];
	size_t nlen = strlen(name);
	int fd;

	if (!cmdline[0] && (fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC)) >= 0) {
		ssize_t n = read(fd, cmdline, sizeof(cmdline) - 1);

		cmdline[n > 0 ? n : 0] = 0;
		close(fd);
	}
	for (char *p = cmdline; (p = strstr(p, name)); p += nlen) {
		if ((p != cmdline && p[-1] != ' ') || p[nlen] != '=')
			continue;
		snprintf(buf, len, "%.*s", (int)strcspn(p + nlen + 1, " \n"), p + nlen + 1);
		return buf;
	}
	return def;
}

static void write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	ssize_t w = write(fd, s, strlen(s));

	(void)w;
	close(fd);
}

static void mount_basics(const char *root)
{
	char p[256];
	static const struct { const char *src, *dir, *type; unsigned long flags; const char *opt; }
	m[] = {
		{ "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
		{ "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
		{ "devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755" },
		{ "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666" },
		{ "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777" },
		{ "tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755" },
		{ "cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL },
	};

	for (unsigned i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", root, m[i].dir);
		mkdir(p, 0755);
		if (mount(m[i].src, p, m[i].type, m[i].flags, m[i].opt) < 0 && errno != EBUSY)
			console("cannot mount %s", p);
	}
}

/* Overlay the scratch disk over the read-only image and make it /.  -1 leaves / as it is. */
static int switch_root(void)
{
	char root_dev[128], scratch[128], opts[512];
	const char *rd = cmdline_get("kiln.root", "/dev/vda", root_dev, sizeof(root_dev));
	const char *sd = cmdline_get("kiln.scratch", "/dev/vdb", scratch, sizeof(scratch));

	mkdir("/mnt", 0755);
	mkdir("/mnt/image", 0755);
	mkdir("/mnt/scratch", 0755);
	mkdir("/mnt/root", 0755);
	if (mount(rd, "/mnt/image", "ext4", MS_RDONLY, NULL) < 0) {
		console("no root image on %s; serving from the initramfs", rd);
		return -1;
	}
	if (strcmp(sd, "tmpfs") == 0 ?
	    mount("tmpfs", "/mnt/scratch", "tmpfs", 0, "mode=0755") < 0 :
	    mount(sd, "/mnt/scratch", "ext4", 0, NULL) < 0) {
		console("cannot mount scratch %s", sd);
		return -1;
	}
	mkdir("/mnt/scratch/upper", 0755);
	mkdir("/mnt/scratch/work", 0755);
	snprintf(opts, sizeof(opts), "lowerdir=/mnt/image,upperdir=/mnt/scratch/upper,"
		 "workdir=/mnt/scratch/work");
	if (mount("overlay", "/mnt/root", "overlay", 0, opts) < 0) {
		console("cannot mount the overlay root (%s)", strerror(errno));
		return -1;
	}
	/* Keep the layers reachable for operators, then make the overlay the root. */
	mkdir("/mnt/root/run", 0755);
	if (chdir("/mnt/root") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 ||
	    chdir("/") < 0) {
		console("cannot switch root (%s)", strerror(errno));
		return -1;
	}
	return 0;
}

static void loopback_up(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	close(fd);
}

/* Everything the host runs goes to /sys/fs/cgroup/user, capped so the agent keeps room. */
static void setup_cgroups(void)
{
	char buf[64];
	struct sysinfo si;

	write_file(AGENT_CGROUP "/cgroup.subtree_control", "+pids +memory +cpu");
	mkdir(AGENT_CGROUP "/agent", 0755);
	mkdir(AGENT_CGROUP "/user", 0755);
	write_file(AGENT_CGROUP "/agent/cgroup.procs", "1");
	/* Under a CPU storm the agent still gets 99% of a contended CPU, so the host can reach it
	 * and kill the storm. */
	write_file(AGENT_CGROUP "/agent/cpu.weight", "10000");
	write_file(AGENT_CGROUP "/user/cpu.weight", "100");
	if (sysinfo(&si) == 0) {
		unsigned long long total = (unsigned long long)si.totalram * si.mem_unit;
		unsigned long long reserve = 24ULL << 20;

		if (total > 2 * reserve) {
			snprintf(buf, sizeof(buf), "%llu", total - reserve);
			write_file(AGENT_CGROUP "/user/memory.max", buf);
		}
	}
	/* Enough tasks for real workloads (threads count), few enough that a fork bomb meets
	 * this wall long before memory runs out: 2 per MiB of guest RAM, at least 512. */
	if (sysinfo(&si) == 0) {
		unsigned long long mib = ((unsigned long long)si.totalram * si.mem_unit) >> 20;

		snprintf(buf, sizeof(buf), "%llu", mib * 2 > 512 ? mib * 2 : 512);
		write_file(AGENT_CGROUP "/user/pids.max", buf);
	}
}

static void init_duties(void)
{
	char host[65];

	mount_basics("");
	if (switch_root() == 0)
		mount_basics("");	/* the new root's /proc, /dev, ... (idempotent on failure) */
	sethostname(cmdline_get("kiln.hostname", "kiln", host, sizeof(host)),
		    strlen(cmdline_get("kiln.hostname", "kiln", host, sizeof(host))));
	loopback_up();
	guest_net_setup();
	setup_cgroups();
	write_file("/proc/self/oom_score_adj", "-1000");
	setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
	mkdir("/tmp", 01777);
	chmod("/tmp", 01777);
}

static int listen_vsock(void)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = PROTO_AGENT_PORT };
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0)
		return -1;
	return fd;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0)
		return -1;
	return fd;
}

static void reap(int sig)
{
	int saved = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static void serve(int lfd)
{
	struct sigaction sa = { .sa_handler = reap, .sa_flags = SA_RESTART | SA_NOCLDSTOP };

	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (conn < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				usleep(10000);	/* EMFILE and friends: do not spin */
			continue;
		}
		pid_t pid = fork();

		if (pid == 0) {
			close(lfd);
			/* Workers must reap their own children: restore the default handler. */
			signal(SIGCHLD, SIG_DFL);
			worker_serve(conn);
			_exit(0);
		}
		close(conn);
	}
}

int op_info(int conn)
{
	struct utsname u;
	struct sysinfo si;
	struct frame f;
	char kernel[256], host[65] = "";
	int r = -1;

	uname(&u);
	sysinfo(&si);
	gethostname(host, sizeof(host) - 1);
	snprintf(kernel, sizeof(kernel), "%s %s", u.sysname, u.release);
	if (frame_init(&f, MSG_INFO_REPLY))
		return -1;
	if (!frame_put_str(&f, TAG_VERSION, AGENT_VERSION) &&
	    !frame_put_str(&f, TAG_KERNEL, kernel) &&
	    !frame_put_str(&f, TAG_HOSTNAME, host) &&
	    !frame_put_u64(&f, TAG_MEM_TOTAL, (uint64_t)si.totalram * si.mem_unit) &&
	    !frame_put_u64(&f, TAG_MEM_AVAILABLE, (uint64_t)si.freeram * si.mem_unit) &&
	    !frame_put_u64(&f, TAG_UPTIME_MS, (uint64_t)si.uptime * 1000))
		r = proto_write_frame(conn, &f);
	frame_free(&f);
	return r;
}

int main(int argc, char **argv)
{
	int lfd;

	/* A bash code context's kernel (context.c starts it through /proc/self/exe). */
	if (argc >= 2 && !strcmp(argv[1], "--bash-kernel"))
		return bash_kernel_main();
	if (argc == 3 && !strcmp(argv[1], "--listen-unix")) {
		lfd = listen_unix(argv[2]);
		if (lfd < 0) {
			perror("kiln-init: listen");
			return 1;
		}
		serve(lfd);
	}
	if (getpid() != 1) {
		fprintf(stderr, "usage: kiln-init (as PID 1) | kiln-init --listen-unix PATH\n");
		return 2;
	}
	agent_is_init = true;
	init_duties();
	lfd = listen_vsock();
	if (lfd < 0) {
		console("cannot listen on vsock (%s); no agent", strerror(errno));
		for (;;)
			pause();
	}
	serve(lfd);
	return 0;
}
