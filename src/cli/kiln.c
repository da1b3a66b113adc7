/*
 * kiln.c - the kiln command line.
 *
 *   kiln run  [VM options] [EXEC options] -- CMD ARGS...   boot, run, tear down
 *   kiln up   [VM options] --dir DIR                       start a VM and leave it running
 *   kiln down --dir DIR                                    stop it and remove DIR
 *   kiln pause --dir DIR | kiln resume --dir DIR           pause to disk (the VMM exits), resume
 *   kiln warm [VM options]                                 build the image's warm snapshot
 *   kiln exec --dir DIR|--sock SOCK [EXEC options] -- CMD ARGS...
 *   kiln cp   --dir DIR|--sock SOCK SRC DST                a guest path is written :PATH
 *   kiln ps | attach PID | kill PID [SIGNAL]                 processes started through kiln
 *   kiln ls [--depth N] PATH | stat PATH | mkdir PATH | rm [-r] PATH | mv FROM TO
 *                                                          (all with --dir DIR|--sock SOCK)
 *   kiln code ... [CODE | -]                               cells in code contexts (code.c)
 *
 * VM options:   --image NAME | --rootfs FILE, --cpus N, --memory MIB, --hostname NAME,
 *               --cold (boot even if a warm snapshot exists), -v (say how the VM started)
 * EXEC options: -e K=V (repeatable), -w DIR, -u USER, -t (PTY), --timeout SECONDS,
 *               --background (print the PID and leave it running; `kiln attach` later)
 *
 * `run` and `exec` return the command's exit status (128+N if killed by signal N, 124 on
 * timeout, like timeout(1)); kiln's own failures return 125 with a one-line reason.
 * `run` and `up` clone the image's warm snapshot (template.h) when one exists for the same
 * image, kernel, kiln-vmm, vCPUs, memory and NIC or none (`kiln warm --net`), and boot
 * otherwise (also when the clone fails).
 *
 *   kiln sandbox create|ls|rm|pause|resume ...              sandboxes kept by kilnd
 *                                                          (sandbox_cmd.c)
 *   kiln template ls|build|warm|unwarm ...                  kilnd's templates (template_cmd.c)
 *   kiln secret set|ls|rm ...                               the agent's secrets (secret_cmd.c)
 * The commands above drive VMs directly; `kiln sandbox` goes through kilnd's API.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../client/agent_client.h"
#include "../host/egress.h"
#include "../host/template.h"
#include "../host/vmctl.h"
#include "code.h"
#include "sandbox_cmd.h"
#include "secret_cmd.h"
#include "template_cmd.h"

#define EXIT_KILN	125
#define EXIT_TIMEOUT	124
#define MAX_ENV		256

struct opts {
	const char *image, *rootfs, *dir, *sock, *hostname;
	unsigned cpus, memory;
	char *env[MAX_ENV + 1];
	int nenv;
	const char *cwd, *user;
	bool tty, background, recursive, cold, verbose, net;
	unsigned timeout_s, depth;
	const char *net_allow, *net_pcap, *net_policy, *net_secrets, *net_upstream_ca;
	unsigned net_rate_kib;
};

static volatile sig_atomic_t winch, interrupted;
static struct termios saved_tty;
static bool tty_raw;

static void fail(const char *fmt, const char *arg)
{
	fprintf(stderr, "kiln: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(EXIT_KILN);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: kiln run  [--image NAME|--rootfs FILE] [--cpus N] [--memory MIB] [-e K=V]...\n"
		"                 [-w DIR] [-u USER] [-t] [--timeout SEC] -- CMD [ARGS...]\n"
		"       kiln up   [--image NAME|--rootfs FILE] [--cpus N] [--memory MIB] --dir DIR\n"
		"       kiln down --dir DIR | pause --dir DIR | resume --dir DIR\n"
		"       kiln net-policy --dir DIR [--net-allow CIDR,...] [--net-policy FILE]\n"
		"                 replace the egress policy (CIDRs; names, for kiln-dns/kiln-proxy)\n"
		"       kiln warm [--image NAME|--rootfs FILE] [--cpus N] [--memory MIB] [--net]\n"
		"                 (--net: with a NIC, for run and up with a network)\n"
		"       (run and up also take --cold: boot, do not clone the warm snapshot; -v;\n"
		"        --net: a NIC, TCP only to --net-allow CIDR[,CIDR...], --net-rate KIB/s,\n"
		"        --net-pcap FILE: every frame captured, up to 64 MiB; --net-policy FILE: DNS\n"
		"        and web traffic through kiln-dns and kiln-proxy under that policy;\n"
		"        --net-secrets FILE: credentials kiln-proxy adds, the guest sees only\n"
		"        placeholders; --net-upstream-ca PEM: roots for upstreams (tests),\n"
		"        docs/egress.md)\n"
		"       kiln exec --dir DIR|--sock SOCK [-e K=V]... [-w DIR] [-u USER] [-t]\n"
		"                 [--timeout SEC] -- CMD [ARGS...]\n"
		"       kiln cp   --dir DIR|--sock SOCK SRC DST   (guest paths start with ':')\n"
		"       kiln ps|attach PID|kill PID [SIG]|ls [--depth N] PATH|stat PATH|mkdir PATH|\n"
		"            rm [-r] PATH|mv FROM TO   (each with --dir DIR|--sock SOCK)\n"
		"       kiln exec --background ...   prints the PID; kiln attach PID resumes output\n"
		"       kiln code ...   run code in a context (kiln code --help)\n"
		"       kiln sandbox create|ls|rm|pause|resume ...   through kilnd (kiln sandbox)\n"
		"       kiln template ls|build|warm|unwarm ...   kilnd's templates (kiln template)\n"
		"       kiln secret set|ls|rm ...   the agent's secrets for its sandboxes' egress\n"
		"       kiln usage [--json]   this agent's usage and cost, through kilnd\n");
	exit(EXIT_KILN);
}

static unsigned number(const char *opt, const char *s, unsigned min, unsigned max)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '-' || end == s || *end || v < min || v > max) {
		fprintf(stderr, "kiln: %s: '%s' must be a number from %u to %u\n", opt, s, min, max);
		exit(EXIT_KILN);
	}
	return v;
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "image", required_argument, NULL, 'i' }, { "rootfs", required_argument, NULL, 'F' },
		{ "cpus", required_argument, NULL, 'c' }, { "memory", required_argument, NULL, 'm' },
		{ "dir", required_argument, NULL, 'd' }, { "sock", required_argument, NULL, 's' },
		{ "hostname", required_argument, NULL, 'H' },
		{ "env", required_argument, NULL, 'e' }, { "workdir", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' }, { "tty", no_argument, NULL, 't' },
		{ "timeout", required_argument, NULL, 'T' }, { "help", no_argument, NULL, 'h' },
		{ "background", no_argument, NULL, 'b' }, { "depth", required_argument, NULL, 'D' },
		{ "recursive", no_argument, NULL, 'R' }, { "cold", no_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "net", no_argument, NULL, 'N' }, { "net-allow", required_argument, NULL, 'A' },
		{ "net-rate", required_argument, NULL, 'L' },
		{ "net-pcap", required_argument, NULL, 'P' },
		{ "net-policy", required_argument, NULL, 'G' },
		{ "net-secrets", required_argument, NULL, 'S' },
		{ "net-upstream-ca", required_argument, NULL, 'U' },
		{ 0 }
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->cpus = 1;
	o->memory = 512;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+e:w:u:thrv", longopts, NULL)) != -1) {
		switch (c) {
		case 'i': o->image = optarg; break;
		case 'F': o->rootfs = optarg; break;
		case 'c': o->cpus = number("--cpus", optarg, 1, 32); break;
		case 'm': o->memory = number("--memory", optarg, 64, 1 << 20); break;
		case 'd': o->dir = optarg; break;
		case 's': o->sock = optarg; break;
		case 'H': o->hostname = optarg; break;
		case 'e':
			if (!strchr(optarg, '=') || optarg[0] == '=')
				fail("-e %s: expected NAME=VALUE", optarg);
			if (o->nenv == MAX_ENV)
				fail("too many -e options%s", "");
			o->env[o->nenv++] = optarg;
			break;
		case 'w': o->cwd = optarg; break;
		case 'u': o->user = optarg; break;
		case 't': o->tty = true; break;
		case 'T': o->timeout_s = number("--timeout", optarg, 1, 7 * 24 * 3600); break;
		case 'b': o->background = true; break;
		case 'D': o->depth = number("--depth", optarg, 1, 64); break;
		case 'R':
		case 'r': o->recursive = true; break;
		case 'C': o->cold = true; break;
		case 'v': o->verbose = true; break;
		case 'N': o->net = true; break;
		case 'A': o->net = true; o->net_allow = optarg; break;
		case 'P': o->net = true; o->net_pcap = optarg; break;
		case 'G': o->net = true; o->net_policy = optarg; break;
		case 'S': o->net_secrets = optarg; break;
		case 'U': o->net_upstream_ca = optarg; break;
		case 'L': o->net = true; o->net_rate_kib = number("--net-rate", optarg, 1, 1 << 30);
			break;
		default: usage();
		}
	}
	return optind;
}

static void restore_tty(void)
{
	if (tty_raw)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	tty_raw = false;
}

static void on_winch(int s)
{
	(void)s;
	winch = 1;
}

static void on_interrupt(int s)
{
	interrupted = s;
}

static void window_size(uint16_t *rows, uint16_t *cols)
{
	struct winsize ws;

	*rows = 24;
	*cols = 80;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

static int status_of(const struct agent_event *ev)
{
	if (ev->timed_out)
		return EXIT_TIMEOUT;
	return ev->exit_signal ? 128 + ev->exit_signal : ev->exit_code;
}

/* Pump stdin to the process and its output to ours until it exits. */
static int relay(int fd, bool tty)
{
	uint8_t *buf = NULL, in[65536];
	size_t cap = 0;
	bool stdin_open = true;
	struct agent_event ev;

	for (;;) {
		struct pollfd p[2] = { { fd, POLLIN, 0 }, { STDIN_FILENO, POLLIN, 0 } };

		if (winch && tty) {
			uint16_t r, c;

			winch = 0;
			window_size(&r, &c);
			agent_resize(fd, r, c);
		}
		if (interrupted && !tty) {
			agent_send_signal(fd, interrupted);	/* Ctrl-C goes to the guest process */
			interrupted = 0;
		}
		if (poll(p, stdin_open ? 2 : 1, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents) {
			if (agent_next_event(fd, &ev, &buf, &cap) < 0) {
				free(buf);
				fail("connection to the guest agent lost%s", "");
			}
			if (ev.type == EV_STDOUT || ev.type == EV_STDERR) {
				if (proto_write_all(ev.type == EV_STDOUT ? STDOUT_FILENO : STDERR_FILENO,
						    ev.data, ev.len) < 0)
					{ /* our reader is gone; keep draining so the process can end */ }
				continue;
			}
			free(buf);
			if (ev.type == EV_ERROR)
				fail("%s", ev.error.message);
			return status_of(&ev);
		}
		if (stdin_open && p[1].revents) {
			ssize_t n = read(STDIN_FILENO, in, sizeof(in));

			if (n > 0 ? agent_send_stdin(fd, in, n) : agent_close_stdin(fd))
				break;
			if (n <= 0)
				stdin_open = false;
		}
	}
	free(buf);
	fail("connection to the guest agent lost%s", "");
	return EXIT_KILN;
}

static int do_exec(const char *sock, const struct opts *o, char **cmd)
{
	struct agent_error e = { 0 };
	struct agent_exec x = { .argv = cmd, .env = (char *const *)o->env, .cwd = o->cwd,
				.user = o->user, .timeout_ms = o->timeout_s * 1000, .pty = o->tty,
				.stdin_stream = !o->background, .background = o->background };
	uint32_t pid;
	int fd = agent_connect(sock, PROTO_AGENT_PORT, 30000, &e);

	if (fd < 0)
		fail("%s", e.message);
	if (o->tty) {
		window_size(&x.rows, &x.cols);
		if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tty) == 0) {
			struct termios t = saved_tty;

			cfmakeraw(&t);
			tty_raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
			atexit(restore_tty);
		}
	}
	signal(SIGWINCH, on_winch);
	signal(SIGINT, on_interrupt);
	signal(SIGTERM, on_interrupt);
	signal(SIGPIPE, SIG_IGN);
	if (agent_exec_start(fd, &x, &pid, &e)) {
		restore_tty();
		if (e.path[0])
			fprintf(stderr, "kiln: %s: %s\n", e.path, e.message);
		else
			fprintf(stderr, "kiln: %s\n", e.message);
		/* Like a shell: 127 command not found, 126 not executable; else kiln's 125. */
		if (strcmp(e.path, cmd[0]))
			return EXIT_KILN;
		return e.err == ENOENT ? 127 : e.err == EACCES ? 126 : EXIT_KILN;
	}
	if (o->background) {
		printf("%u\n", pid);	/* closing the connection leaves it running */
		close(fd);
		return 0;
	}
	int status = relay(fd, o->tty);

	restore_tty();
	close(fd);
	return status;
}

static const char *target_sock(const struct opts *o, char *buf, size_t len)
{
	if (o->sock)
		return o->sock;
	if (!o->dir)
		fail("need --dir DIR or --sock SOCK%s", "");
	vm_sock_path(o->dir, buf, len);
	return buf;
}

/* --net-secrets, checked before anything starts; its paths made absolute (the VM directory's
 * services outlive us). */
static void net_secrets_of(const struct opts *o, struct vm_spec *s)
{
	static char secrets[PATH_MAX], upstream_ca[PATH_MAX];
	char err[512];

	if (o->net_upstream_ca && !o->net_secrets)
		fail("--net-upstream-ca needs --net-secrets%s", "");
	if (!o->net_secrets)
		return;
	if (!o->net_policy)
		fail("--net-secrets needs --net-policy (the proxy that injects them)%s", "");
	if (!realpath(o->net_secrets, secrets))
		fail("--net-secrets %s: no such file", o->net_secrets);
	if (egress_check_secrets(secrets, err, sizeof(err)))
		fail("--net-secrets: %s", err);
	s->net_secrets = secrets;
	if (o->net_upstream_ca) {
		if (!realpath(o->net_upstream_ca, upstream_ca))
			fail("--net-upstream-ca %s: no such file", o->net_upstream_ca);
		s->net_upstream_ca = upstream_ca;
	}
}

/* img receives the root image's real path: snapshots record it, and an image rebuild that
 * moves build/images/NAME.ext4 to a new file must not change what an old snapshot reads. */
static void vm_spec_of(const struct opts *o, struct vm_spec *s, char *img, size_t len)
{
	char given[PATH_MAX];

	if (o->rootfs) {
		snprintf(given, sizeof(given), "%s", o->rootfs);
	} else {
		const char *name = o->image ? o->image : "base";

		if (image_path(name, given, sizeof(given)))
			fail("image '%s' is not built (make images, or pass --rootfs FILE)", name);
	}
	if (access(given, R_OK) || len < PATH_MAX || !realpath(given, img))
		fail("root image %s: not readable", given);
	*s = (struct vm_spec){ .rootfs = img, .cpus = o->cpus, .memory_mib = o->memory,
			       .scratch_mib = 4096, .hostname = o->hostname, .net = o->net,
			       .net_allow = o->net_allow,
			       .net_rate = (uint64_t)o->net_rate_kib * 1024 };
	if (o->net_pcap) {
		static char pcap[PATH_MAX];

		/* kiln-vmm's --net splits at commas, and runs from elsewhere: absolute path. */
		if (strchr(o->net_pcap, ','))
			fail("--net-pcap %s: no commas in the path, please", o->net_pcap);
		if (o->net_pcap[0] == '/')
			snprintf(pcap, sizeof(pcap), "%s", o->net_pcap);
		else if (getcwd(pcap, sizeof(pcap) - strlen(o->net_pcap) - 2))
			snprintf(pcap + strlen(pcap), sizeof(pcap) - strlen(pcap), "/%s", o->net_pcap);
		else
			fail("--net-pcap %s: cannot make the path absolute", o->net_pcap);
		s->net_pcap = pcap;
	}
	if (o->net_policy) {
		static char policy[PATH_MAX];

		if (!realpath(o->net_policy, policy))
			fail("--net-policy %s: no such file", o->net_policy);
		s->net_policy = policy;
	}
	net_secrets_of(o, s);
	const char *base = strrchr(given, '/');

	snprintf(s->name, sizeof(s->name), "%s", base ? base + 1 : given);
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1e3 + (t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Clone the warm snapshot if there is a usable one, else boot.  Exits on failure. */
static void start_vm(const char *dir, const struct opts *o, const struct vm_spec *spec)
{
	struct agent_error e = { 0 };
	char snap[PATH_MAX];
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* A VM with a network finds only a snapshot warmed with a NIC (`kiln warm --net`; its
	 * key says so), which vm_clone restores into the VM's own namespace and policy. */
	if (!o->cold && template_find(spec, snap, sizeof(snap)) == 0) {
		if (template_clone(dir, snap, spec, &e) == 0) {
			if (o->verbose)
				fprintf(stderr, "kiln: cloned warm snapshot %s in %.0f ms\n", snap,
					ms_since(&t0));
			return;
		}
		fprintf(stderr, "kiln: warm snapshot %s: %s; booting instead\n", snap, e.message);
		vm_down(dir);
		e = (struct agent_error){ 0 };
		clock_gettime(CLOCK_MONOTONIC, &t0);
	}
	if (vm_up(dir, spec, &e)) {
		vm_down(dir);
		fail("%s", e.message);
	}
	if (o->verbose)
		fprintf(stderr, "kiln: booted in %.0f ms\n", ms_since(&t0));
}

static int cmd_run(int argc, char **argv)
{
	struct opts o;
	struct vm_spec spec;
	char img[PATH_MAX], dir[] = "/tmp/kiln-run-XXXXXX", sock[PATH_MAX];
	int i = parse(argc, argv, &o);

	if (i >= argc)
		usage();
	vm_spec_of(&o, &spec, img, sizeof(img));
	if (!mkdtemp(dir))
		fail("cannot create a temporary directory: %s", strerror(errno));
	start_vm(dir, &o, &spec);
	vm_sock_path(dir, sock, sizeof(sock));
	int status = do_exec(sock, &o, argv + i);

	vm_down(dir);
	return status;
}

static int cmd_up(int argc, char **argv)
{
	struct opts o;
	struct vm_spec spec;
	char img[PATH_MAX];

	if (parse(argc, argv, &o) != argc || !o.dir)
		usage();
	vm_spec_of(&o, &spec, img, sizeof(img));
	start_vm(o.dir, &o, &spec);
	return 0;
}

static int cmd_warm(int argc, char **argv)
{
	struct opts o;
	struct vm_spec spec;
	struct agent_error e = { 0 };
	char img[PATH_MAX], snap[PATH_MAX];

	if (parse(argc, argv, &o) != argc || o.dir)
		usage();
	vm_spec_of(&o, &spec, img, sizeof(img));
	if (template_warm(&spec, snap, sizeof(snap), &e))
		fail("warm: %s", e.message);
	printf("%s\n", snap);
	return 0;
}

/* pause, resume */
static int cmd_pause_resume(const char *cmd, int argc, char **argv)
{
	struct opts o;
	struct agent_error e = { 0 };

	if (parse(argc, argv, &o) != argc || !o.dir)
		usage();
	if ((!strcmp(cmd, "pause") ? vm_pause : vm_resume)(o.dir, &e))
		fail("%s", e.message);
	return 0;
}

static int cmd_down(int argc, char **argv)
{
	struct opts o;

	if (parse(argc, argv, &o) != argc || !o.dir)
		usage();
	vm_down(o.dir);
	return 0;
}

/* kiln net-policy --dir DIR [--net-allow CIDR,...]: replace a running sandbox's egress policy. */
static int cmd_net_policy(int argc, char **argv)
{
	struct agent_error e = { 0 };
	struct opts o;

	if (parse(argc, argv, &o) != argc || !o.dir)
		usage();
	/* The CIDRs first: they are what the namespace's nftables enforce. */
	if (vm_set_net_policy(o.dir, o.net_allow, &e))
		fail("%s", e.message);
	if (o.net_policy) {
		char err[512];

		if (egress_set_policy(o.dir, o.net_policy, err, sizeof(err)))
			fail("%s", err);
	}
	return 0;
}

static int cmd_exec(int argc, char **argv)
{
	struct opts o;
	char sock[PATH_MAX];
	int i = parse(argc, argv, &o);

	if (i >= argc)
		usage();
	return do_exec(target_sock(&o, sock, sizeof(sock)), &o, argv + i);
}

static int cmd_cp(int argc, char **argv)
{
	struct opts o;
	struct agent_error e = { 0 };
	char sockbuf[PATH_MAX];
	uint64_t bytes = 0;
	int i = parse(argc, argv, &o), fd, local, r;

	if (argc - i != 2)
		usage();
	const char *src = argv[i], *dst = argv[i + 1], *sock = target_sock(&o, sockbuf, sizeof(sockbuf));
	bool to_guest = dst[0] == ':' && src[0] != ':';

	if (!to_guest && !(src[0] == ':' && dst[0] != ':'))
		fail("cp: exactly one of SRC and DST must be a guest path (:PATH)%s", "");
	fd = agent_connect(sock, PROTO_AGENT_PORT, 30000, &e);
	if (fd < 0)
		fail("%s", e.message);
	if (to_guest) {
		local = strcmp(src, "-") ? open(src, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
		if (local < 0)
			fail("%s: cannot open", src);
		r = agent_write_file(fd, dst + 1, 0644, local, &bytes, &e);
	} else {
		local = strcmp(dst, "-") ? open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) :
					   STDOUT_FILENO;
		if (local < 0)
			fail("%s: cannot create", dst);
		r = agent_read_file(fd, src + 1, local, &bytes, &e);
	}
	if (r) {
		fprintf(stderr, "kiln: cp: %s%s%s\n", e.path[0] ? e.path : "", e.path[0] ? ": " : "",
			e.message);
		return EXIT_KILN;
	}
	return 0;
}

static int connect_or_fail(const struct opts *o)
{
	char sock[PATH_MAX];
	struct agent_error e = { 0 };
	int fd = agent_connect(target_sock(o, sock, sizeof(sock)), PROTO_AGENT_PORT, 30000, &e);

	if (fd < 0)
		fail("%s", e.message);
	return fd;
}

static int report(int r, const char *what, const struct agent_error *e)
{
	if (r == 0)
		return 0;
	fprintf(stderr, "kiln: %s: %s%s%s\n", what, e->path[0] ? e->path : "", e->path[0] ? ": " : "",
		e->message);
	return EXIT_KILN;
}

static void print_entry(const struct agent_entry *en, void *ctx)
{
	uint8_t type = *(uint8_t *)ctx;

	if (type == MSG_PS)
		printf("%-8u %-9s %-10s %s\n", en->pid, en->running ? "running" : "exited",
		       en->background ? "background" : "foreground", en->path);
	else
		printf("%c %04o %12llu %s\n", en->type, en->mode, (unsigned long long)en->size,
		       en->path);
}

static int cmd_attach(const struct opts *o, char **args, int n)
{
	struct agent_error e = { 0 };

	if (n != 1)
		usage();
	uint32_t pid = number("attach", args[0], 1, 0x7fffffff);
	int fd = connect_or_fail(o);

	if (agent_attach(fd, pid, &e))
		return report(-1, "attach", &e);
	signal(SIGPIPE, SIG_IGN);
	return relay(fd, false);
}

/* ps, attach, kill, ls, stat, mkdir, rm, mv: one request each. */
static int cmd_guest(const char *cmd, int argc, char **argv)
{
	struct opts o;
	struct agent_error e = { 0 };
	int i = parse(argc, argv, &o), n = argc - i;
	char **args = argv + i;
	uint8_t type;

	if (!strcmp(cmd, "attach"))
		return cmd_attach(&o, args, n);
	if (!strcmp(cmd, "ps") && n == 0)
		type = MSG_PS;
	else if (!strcmp(cmd, "ls") && n == 1)
		type = MSG_LIST;
	else if (!strcmp(cmd, "stat") && n == 1)
		type = MSG_STAT;
	else if (!strcmp(cmd, "kill") && (n == 1 || n == 2))
		type = MSG_KILL;
	else if (!strcmp(cmd, "mkdir") && n == 1)
		type = MSG_MKDIR;
	else if (!strcmp(cmd, "rm") && n == 1)
		type = MSG_REMOVE;
	else if (!strcmp(cmd, "mv") && n == 2)
		type = MSG_RENAME;
	else
		usage();

	int fd = connect_or_fail(&o);

	switch (type) {
	case MSG_PS:
	case MSG_LIST:
	case MSG_STAT:
		return report(agent_entries(fd, type, n ? args[0] : NULL, o.depth, print_entry, &type,
					    &e), cmd, &e);
	case MSG_KILL: {
		uint32_t pid = number("kill", args[0], 1, 0x7fffffff);
		uint32_t sig = n == 2 ? number("kill", args[1], 1, 64) : SIGTERM;

		return report(agent_kill(fd, pid, sig, &e), cmd, &e);
	}
	default:
		return report(agent_simple(fd, type, args[0], n == 2 ? args[1] : NULL, o.recursive, &e),
			      cmd, &e);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *cmd = argv[1];

	argv[1] = argv[0];
	argc--;
	argv++;
	if (!strcmp(cmd, "run"))
		return cmd_run(argc, argv);
	if (!strcmp(cmd, "up"))
		return cmd_up(argc, argv);
	if (!strcmp(cmd, "down"))
		return cmd_down(argc, argv);
	if (!strcmp(cmd, "net-policy"))
		return cmd_net_policy(argc, argv);
	if (!strcmp(cmd, "warm"))
		return cmd_warm(argc, argv);
	if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume"))
		return cmd_pause_resume(cmd, argc, argv);
	if (!strcmp(cmd, "exec"))
		return cmd_exec(argc, argv);
	if (!strcmp(cmd, "cp"))
		return cmd_cp(argc, argv);
	if (!strcmp(cmd, "code"))
		return cmd_code(argc, argv, vm_sock_path);
	if (!strcmp(cmd, "sandbox"))
		return cmd_sandbox(argc, argv);
	if (!strcmp(cmd, "template"))
		return cmd_template(argc, argv);
	if (!strcmp(cmd, "secret"))
		return cmd_secret(argc, argv);
	if (!strcmp(cmd, "usage"))
		return cmd_usage(argc, argv);
	return cmd_guest(cmd, argc, argv);
}
