/*
 * main.c - kiln-vmm: boot one Linux microVM on KVM, or resume one from a snapshot, and run it
 * until the guest stops.
 *
 *   kiln-vmm --kernel vmlinux [--initrd FILE] [--cmdline STR] [--cpus N] [--memory MIB]
 *            [--disk PATH[,ro][,id=SERIAL]]... [--serial stdio|file:PATH|none]
 *            [--vsock CID,PATH] [--control PATH]
 *   kiln-vmm --restore DIR [--disk N=PATH]... [--serial ...] [--vsock CID,PATH] [--control PATH]
 *
 * Exit status: 0 when the guest powers off, halts or reboots, or is stopped through the control
 * socket; 1 when it crashes (kernel panic, triple fault, KVM refusing to run it), with the
 * reason on stderr; 2 for bad arguments or unusable inputs (a bad snapshot included), before any
 * guest code runs.
 *
 * The main thread owns set-up and then waits: on the exit eventfd, on stdin for the serial
 * console, on termination signals, on the control socket, and on a timer that drives the halt
 * watch and the panic deadline.  vCPU threads (and the vsock I/O thread) do everything else.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "control.h"
#include "machine.h"
#include "options.h"
#include "snapshot/kvm_state.h"
#include "snapshot/snapshot.h"
#include "x86/boot.h"
#include "x86/cpuid.h"
#include "x86/layout.h"
#include "x86/mptable.h"

#define WATCH_INTERVAL_MS	200
#define PANIC_GRACE_MS		2000

/* What the console watcher learned; written by vCPU threads under the serial lock. */
struct panic_watch {
	bool seen;
	char reason[160];
	struct timespec when;
};

static struct machine m;
static struct control ctl = { .listen_fd = -1 };
static struct panic_watch panic_watch;
static struct termios saved_tty;
static bool tty_raw;
static struct timespec started;

/* Map a whole input file read-only; dies with status 2 if it cannot be used. */
static const uint8_t *map_file(const char *what, const char *path, size_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die(VM_EXIT_USAGE, "%s %s: %s", what, path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		die(VM_EXIT_USAGE, "%s %s: not a regular file", what, path);
	if (st.st_size == 0)
		die(VM_EXIT_USAGE, "%s %s: empty file", what, path);
	void *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

	close(fd);
	if (p == MAP_FAILED)
		die(VM_EXIT_USAGE, "%s %s: %s", what, path, strerror(errno));
	*size = st.st_size;
	return p;
}

static void restore_tty(void)
{
	if (tty_raw)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
}

static void make_tty_raw(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) < 0)
		return;
	t = saved_tty;
	cfmakeraw(&t);
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
		tty_raw = true;
		atexit(restore_tty);
	}
}

/* Console watcher: Linux prints "Kernel panic - not syncing: REASON" and, last, "---[ end ...". */
static void console_line(void *ctx, const char *line)
{
	const char *p;

	(void)ctx;
	if (!panic_watch.seen && (p = strstr(line, "Kernel panic - not syncing: "))) {
		snprintf(panic_watch.reason, sizeof(panic_watch.reason), "%s", p + 28);
		clock_gettime(CLOCK_MONOTONIC, &panic_watch.when);
		__atomic_store_n(&panic_watch.seen, true, __ATOMIC_RELEASE);
	} else if (panic_watch.seen && strstr(line, "---[ end Kernel panic")) {
		vm_request_exit(&m.vm, VM_EXIT_GUEST, "guest kernel panic: %s", panic_watch.reason);
	}
}

static void guest_reset(void *ctx)
{
	vm_request_exit(ctx, VM_EXIT_OK, "guest rebooted");
}

static int open_serial_out(const struct options *o)
{
	int fd;

	switch (o->serial) {
	case SERIAL_STDIO:
		return STDOUT_FILENO;
	case SERIAL_FILE:
		/* A restored guest continues its console: append to what the boot wrote. */
		fd = open(o->serial_path, O_WRONLY | O_CREAT | O_CLOEXEC |
			  (o->restore_dir ? O_APPEND : O_TRUNC), 0644);
		if (fd < 0)
			die(VM_EXIT_USAGE, "--serial file:%s: %s", o->serial_path, strerror(errno));
		return fd;
	default:
		return -1;
	}
}

static void add_virtio(const struct dev_ident *id)
{
	char err[512];

	if (machine_add_virtio(&m, id, err, sizeof(err)))
		die(VM_EXIT_USAGE, "%s", err);
}

/* A snapshot refers to read-only disks by path: keep an absolute one. */
static void set_path(char *dst, const char *path)
{
	char abs[PATH_MAX];

	snprintf(dst, SNAP_PATH_MAX, "%s", realpath(path, abs) ? abs : path);
}

/* Disks in command-line order, then entropy, vsock, net: the slot order a snapshot keeps. */
static void add_virtio_devices(const struct options *o)
{
	static struct dev_ident id;

	for (unsigned i = 0; i < o->nr_disks; i++) {
		memset(&id, 0, sizeof(id));
		id.kind = SNAP_DEV_BLK;
		set_path(id.path, o->disk[i].path);
		id.read_only = o->disk[i].read_only;
		snprintf(id.id, sizeof(id.id), "%s", o->disk[i].id);
		add_virtio(&id);
	}
	memset(&id, 0, sizeof(id));
	id.kind = SNAP_DEV_RNG;
	add_virtio(&id);
	if (o->vsock_path) {
		id.kind = SNAP_DEV_VSOCK;
		id.cid = o->vsock_cid;
		snprintf(id.path, sizeof(id.path), "%s", o->vsock_path);
		add_virtio(&id);
	}
	if (o->net)
		add_virtio(&o->net_arg);
}

static void load_initrd(const struct options *o, struct boot_info *bi, uint64_t kernel_end)
{
	size_t isize;
	const uint8_t *initrd = map_file("initrd", o->initrd, &isize);

	bi->initrd_addr = initrd_place(&m.vm.mem, kernel_end, isize);
	if (!bi->initrd_addr)
		die(VM_EXIT_USAGE, "initrd %s (%zu bytes) does not fit in %llu MiB of guest "
		    "memory", o->initrd, isize, (unsigned long long)o->memory_mib);
	gm_write(&m.vm.mem, bi->initrd_addr, initrd, isize);
	bi->initrd_size = isize;
	munmap((void *)initrd, isize);
}

static void create_boot_vcpus(unsigned n, uint64_t entry)
{
	struct kvm_cpuid2 *base = cpuid_supported(m.vm.kvm_fd);
	char err[256];

	if (!base)
		die(VM_EXIT_GUEST, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	for (unsigned i = 0; i < n; i++) {
		struct kvm_cpuid2 *c = cpuid_for_vcpu(base, i, n);

		if (!c || vcpu_create(&m.vm, i, c, err, sizeof(err)) ||
		    vcpu_setup_boot(&m.vm.vcpu[i], err, sizeof(err)))
			die(VM_EXIT_GUEST, "%s", c ? err : "out of memory");
		free(c);
	}
	free(base);
	m.vm.nr_vcpus = n;
	if (boot_setup_vcpu(m.vm.vcpu[0].fd, entry))
		die(VM_EXIT_GUEST, "setting boot registers: %s", strerror(errno));
}

static void load_guest(const struct options *o, const uint8_t *kernel, size_t ksize,
		       const char *cmdline)
{
	struct kernel_image k;
	struct boot_info bi = { .cmdline = cmdline };
	char err[256];

	if (elf_load(&m.vm.mem, kernel, ksize, &k, err, sizeof(err)))
		die(VM_EXIT_USAGE, "kernel %s: %s", o->kernel, err);
	if (o->initrd)
		load_initrd(o, &bi, k.end);
	if (boot_write_tables(&m.vm.mem, &bi, err, sizeof(err)))
		die(VM_EXIT_USAGE, "%s", err);
	if (mptable_write(&m.vm.mem, o->cpus))
		die(VM_EXIT_USAGE, "cannot write the MP table for %u vCPUs", o->cpus);
	create_boot_vcpus(o->cpus, k.entry);
}

static void boot(const struct options *o)
{
	char cmdline[BOOT_CMDLINE_MAX * 2];
	char err[256];
	size_t ksize;
	const uint8_t *kernel = map_file("kernel", o->kernel, &ksize);

	if (ksize < 4 || memcmp(kernel, "\177ELF", 4))
		die(VM_EXIT_USAGE, "kernel %s: not an ELF file (expected an uncompressed vmlinux)",
		    o->kernel);
	if (vm_create(&m.vm, o->memory_mib << 20, -1, err, sizeof(err)))
		die(VM_EXIT_GUEST, "%s", err);
	m.memory_mib = o->memory_mib;
	machine_add_legacy(&m, open_serial_out(o), console_line, guest_reset);
	add_virtio_devices(o);
	snprintf(cmdline, sizeof(cmdline), "%s", o->cmdline);
	machine_cmdline_devices(&m, cmdline, sizeof(cmdline));
	load_guest(o, kernel, ksize, cmdline);
	munmap((void *)kernel, ksize);
}

/* --vsock and --disk N=PATH given with --restore replace the saved attachments. */
static void override_devices(const struct options *o, struct snap_vm *s)
{
	unsigned disk = 0, vsock = 0, net = 0;

	for (unsigned i = 0; i < s->nr_devs; i++) {
		struct dev_ident *d = &s->dev[i];

		if (d->kind == SNAP_DEV_VSOCK && o->vsock_path) {
			d->cid = o->vsock_cid;
			snprintf(d->path, sizeof(d->path), "%s", o->vsock_path);
		}
		vsock += d->kind == SNAP_DEV_VSOCK;
		if (d->kind == SNAP_DEV_NET) {
			/* The guest's MAC is in its memory: the device must keep it (net_restore).
			 * A capture named again goes on where the paused VM left it. */
			if (o->net) {
				*d = o->net_arg;
				d->pcap_resume = true;
			}
			else if (!d->path[0])
				die(VM_EXIT_USAGE, "--net: the snapshot's NIC was on a descriptor; "
				    "give --net again");
			net++;
		}
		if (d->kind != SNAP_DEV_BLK)
			continue;
		for (unsigned k = 0; k < o->nr_overrides; k++)
			if (o->disk_override[k].index == disk)
				set_path(d->path, o->disk_override[k].path);
		disk++;
	}
	if (o->net && !net)
		die(VM_EXIT_USAGE, "--net: the snapshot has no network device");
	if (o->vsock_path && !vsock)
		die(VM_EXIT_USAGE, "--vsock: the snapshot has no vsock device");
	/* The saved socket path is the state file's word: never bind or connect where it says. */
	if (vsock && !o->vsock_path)
		die(VM_EXIT_USAGE, "--restore: the snapshot has a vsock device: give its socket "
		    "with --vsock CID,PATH");
	for (unsigned k = 0; k < o->nr_overrides; k++)
		if (o->disk_override[k].index >= disk)
			die(VM_EXIT_USAGE, "--disk %u=: the snapshot has %u disks",
			    o->disk_override[k].index, disk);
}

static void create_saved_vcpus(const struct snap_vm *s)
{
	char err[256];

	for (unsigned i = 0; i < s->nr_vcpus; i++) {
		struct kvm_cpuid2 *c = kvm_saved_cpuid(&s->vcpu[i]);

		if (!c || vcpu_create(&m.vm, i, c, err, sizeof(err)))
			die(VM_EXIT_USAGE, "--restore: %s", c ? err : "out of memory");
		free(c);
	}
	m.vm.nr_vcpus = s->nr_vcpus;
}

/* Everything a restore can check without creating anything: the state and memory files. */
static void *restore_check(const struct options *o, struct snap_vm *s, int *mem_fd)
{
	char err[768];
	void *file = snapshot_load(o->restore_dir, s, err, sizeof(err));

	if (!file)
		die(VM_EXIT_USAGE, "--restore: %s", err);
	/* A sparse memory file costs no disk: its size alone must not commit the host. */
	if (s->memory_mib > host_memory_mib())
		die(VM_EXIT_USAGE, "--restore: the snapshot's %llu MiB of RAM is more than this "
		    "host has (%llu MiB)", (unsigned long long)s->memory_mib,
		    (unsigned long long)host_memory_mib());
	override_devices(o, s);
	*mem_fd = snapshot_open_memory(o->restore_dir, s, err, sizeof(err));
	if (*mem_fd < 0)
		die(VM_EXIT_USAGE, "--restore: %s", err);
	return file;
}

/* The same construction as a boot, from the saved identities, then the saved state on top. */
static void restore(const struct options *o, struct snap_vm *s, int mem_fd)
{
	char err[768];

	if (vm_create(&m.vm, s->memory_mib << 20, mem_fd, err, sizeof(err)))
		die(VM_EXIT_USAGE, "--restore: %s", err);
	close(mem_fd);
	m.memory_mib = s->memory_mib;
	machine_add_legacy(&m, open_serial_out(o), console_line, guest_reset);
	for (unsigned i = 0; i < s->nr_devs; i++)
		add_virtio(&s->dev[i]);
	create_saved_vcpus(s);
	if (snapshot_apply(&m, s, err, sizeof(err)))
		die(VM_EXIT_USAGE, "--restore: %s/state: %s", o->restore_dir, err);
}

/* ---- the control socket ---- */

static void cmd_result(int r, const char *err, char *reply, size_t size)
{
	snprintf(reply, size, r ? "error %s" : "ok", err);
}

static void on_command(void *ctx, const char *cmd, const char *arg, char *reply, size_t size)
{
	char err[768];

	(void)ctx;
	if (!strcmp(cmd, "status") && !*arg) {
		int n = snprintf(reply, size, "ok ");

		machine_status(&m, reply + n, size - n);
	} else if (!strcmp(cmd, "pause") && !*arg) {
		cmd_result(machine_pause(&m, err, sizeof(err)), err, reply, size);
	} else if (!strcmp(cmd, "resume") && !*arg) {
		machine_resume(&m);
		cmd_result(0, "", reply, size);
	} else if (!strcmp(cmd, "snapshot") && *arg) {
		cmd_result(snapshot_take(&m, arg, err, sizeof(err)), err, reply, size);
	} else if (!strcmp(cmd, "stop") && !*arg) {
		vm_request_exit(&m.vm, VM_EXIT_OK, "stopped through the control socket");
		cmd_result(0, "", reply, size);
	} else {
		snprintf(reply, size, "error unknown command '%.64s' (status, pause, resume, "
			 "snapshot DIR, stop)", cmd);
	}
}

/* ---- the event loop ---- */

struct loop {
	int ep, timer_fd, sig_fd;
	bool watch_stdin;		/* stdin is the console's input and not finished */
	bool stdin_on;			/* ... and in the epoll set (not while paused) */
	uint8_t pending[SERIAL_FIFO_LEN];
	unsigned npending;
};

static void loop_add(struct loop *l, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die(VM_EXIT_GUEST, "epoll_ctl: %s", strerror(errno));
}

static void setup_event_loop(struct loop *l)
{
	struct itimerspec its = {
		.it_interval = { 0, WATCH_INTERVAL_MS * 1000000L },
		.it_value = { 0, WATCH_INTERVAL_MS * 1000000L },
	};
	sigset_t sigs;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	l->sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
	l->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (l->ep < 0 || l->sig_fd < 0 || l->timer_fd < 0 ||
	    timerfd_settime(l->timer_fd, 0, &its, NULL))
		die(VM_EXIT_GUEST, "event loop set-up: %s", strerror(errno));
	loop_add(l, m.vm.exit_fd);
	loop_add(l, l->timer_fd);
	loop_add(l, l->sig_fd);
	control_attach(&ctl, l->ep);
}

/* Console input reaches the guest only while it runs: a paused UART must not change. */
static void sync_stdin(struct loop *l)
{
	bool want = l->watch_stdin && !m.paused;
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = STDIN_FILENO };

	if (want == l->stdin_on)
		return;
	if (!want)
		epoll_ctl(l->ep, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
	else if (epoll_ctl(l->ep, EPOLL_CTL_ADD, STDIN_FILENO, &ev) < 0)
		l->watch_stdin = false;	/* not pollable (a regular file): no console input */
	l->stdin_on = want && l->watch_stdin;
}

static long ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void on_timer(int timer_fd)
{
	uint64_t ticks;

	if (read(timer_fd, &ticks, sizeof(ticks)) < 0)
		return;
	if (__atomic_load_n(&panic_watch.seen, __ATOMIC_ACQUIRE) &&
	    ms_since(&panic_watch.when) > PANIC_GRACE_MS)
		vm_request_exit(&m.vm, VM_EXIT_GUEST, "guest kernel panic: %s", panic_watch.reason);
	/* Parked vCPUs cannot answer the halt watch, and a paused guest is not a halted one. */
	if (!m.paused && vm_guest_stopped(&m.vm))
		vm_request_exit(&m.vm, VM_EXIT_OK, "guest halted");
}

/* Forward stdin to the UART; returns false once stdin is finished with. */
static bool on_stdin(struct loop *l)
{
	if (l->npending == 0) {
		ssize_t n = read(STDIN_FILENO, l->pending, SERIAL_FIFO_LEN);

		if (n <= 0)
			return n < 0 && errno == EINTR;
		l->npending = n;
	}
	unsigned took = serial_input(&m.serial, l->pending, l->npending);

	memmove(l->pending, l->pending + took, l->npending - took);
	l->npending -= took;
	return true;
}

static void on_event(struct loop *l, int fd)
{
	struct signalfd_siginfo si;

	if (fd == l->timer_fd) {
		on_timer(l->timer_fd);
	} else if (fd == l->sig_fd) {
		if (read(l->sig_fd, &si, sizeof(si)) == sizeof(si))
			vm_request_exit(&m.vm, 128 + si.ssi_signo, "stopped by signal %u",
					si.ssi_signo);
	} else if (fd == STDIN_FILENO && l->stdin_on && !l->npending) {
		if (!on_stdin(l))
			l->watch_stdin = false;
	} else if (control_owns(&ctl, fd)) {
		control_event(&ctl, fd);
	}
}

static int run_event_loop(bool watch_stdin)
{
	struct loop l = { .watch_stdin = watch_stdin };

	setup_event_loop(&l);
	while (!m.vm.exit_requested) {
		struct epoll_event ev[8];

		sync_stdin(&l);
		/* Input the FIFO could not take yet is retried soon; otherwise wait for events. */
		int n = epoll_wait(l.ep, ev, 8, l.npending && !m.paused ? 10 : -1);

		if (l.npending && !m.paused)
			on_stdin(&l);
		for (int i = 0; i < n; i++)
			on_event(&l, ev[i].data.fd);
	}
	/* A panic explains whatever came after it (reset, halt, triple fault). */
	if (panic_watch.seen && m.vm.exit_status == VM_EXIT_OK)
		return VM_EXIT_GUEST;
	return m.vm.exit_status;
}

int main(int argc, char **argv)
{
	static struct snap_vm snap;
	struct options o;
	char err[512];
	void *snap_file = NULL;
	int mem_fd = -1;

	clock_gettime(CLOCK_MONOTONIC, &started);
	log_init("kiln-vmm");
	options_parse(&o, argc, argv);
	if (o.restore_dir)
		snap_file = restore_check(&o, &snap, &mem_fd);
	/* Before any thread exists: control_listen() changes the umask for a moment. */
	if (o.control_path &&
	    control_listen(&ctl, o.control_path, on_command, NULL, err, sizeof(err)))
		die(VM_EXIT_USAGE, "%s", err);
	if (o.restore_dir) {
		restore(&o, &snap, mem_fd);
		snap_vm_free(&snap);
		free(snap_file);
	} else {
		boot(&o);
	}

	bool watch_stdin = o.serial == SERIAL_STDIO;

	if (watch_stdin)
		make_tty_raw();
	for (unsigned i = 0; i < m.vm.nr_vcpus; i++)
		if (vcpu_start(&m.vm.vcpu[i]))
			die(VM_EXIT_GUEST, "cannot start vCPU thread %u", i);
	log_debug("%s in %ld ms", o.restore_dir ? "restored" : "started", ms_since(&started));

	int status = run_event_loop(watch_stdin);

	if (status == VM_EXIT_GUEST && panic_watch.seen && !strstr(m.vm.exit_reason, "panic"))
		log_info("guest kernel panic: %s (then %s)", panic_watch.reason, m.vm.exit_reason);
	else
		log_info("%s", m.vm.exit_reason);
	restore_tty();
	fflush(stdout);
	_exit(status);
}
