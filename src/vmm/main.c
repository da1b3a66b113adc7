/*
 * main.c - kiln-vmm: boot one Linux microVM on KVM and run it until the guest stops.
 *
 *   kiln-vmm --kernel vmlinux [--initrd FILE] [--cmdline STR] [--cpus N] [--memory MIB]
 *            [--disk PATH[,ro][,id=SERIAL]]... [--serial stdio|file:PATH|none]
 *            [--vsock CID,PATH]
 *
 * Exit status: 0 when the guest powers off, halts or reboots; 1 when it crashes (kernel panic,
 * triple fault, KVM refusing to run it), with the reason on stderr; 2 for bad arguments or
 * unusable inputs, before any guest code runs.
 *
 * The main thread owns set-up and then waits: on the exit eventfd, on stdin for the serial
 * console, on termination signals, and on a timer that drives the halt watch and the panic
 * deadline.  vCPU threads do everything else.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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
#include "devices/i8042.h"
#include "devices/serial.h"
#include "virtio/devices.h"
#include "vm.h"
#include "x86/boot.h"
#include "x86/cpuid.h"
#include "x86/layout.h"
#include "x86/mptable.h"

#define MAX_DISKS		16
#define MAX_VIRTIO		(IOAPIC_PINS - IRQ_VIRTIO_FIRST)
#define DEFAULT_CMDLINE		"console=ttyS0 reboot=k panic=-1"
#define WATCH_INTERVAL_MS	200
#define PANIC_GRACE_MS		2000

struct disk_arg {
	const char *path;
	bool read_only;
	char id[21];
};

struct options {
	const char *kernel, *initrd, *cmdline;
	unsigned cpus;
	uint64_t memory_mib;
	struct disk_arg disk[MAX_DISKS];
	unsigned nr_disks;
	enum { SERIAL_STDIO, SERIAL_FILE, SERIAL_NONE } serial;
	const char *serial_path;
	uint32_t vsock_cid;
	const char *vsock_path;		/* NULL: no vsock device */
};

/* What the console watcher learned; written by vCPU threads under the serial lock. */
struct panic_watch {
	bool seen;
	char reason[160];
	struct timespec when;
};

static struct vm vm;
static struct serial serial;
static struct i8042 kbd;
static struct panic_watch panic_watch;
static struct termios saved_tty;
static bool tty_raw;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kiln-vmm --kernel VMLINUX [--initrd FILE] [--cmdline STR] [--cpus N]\n"
		"                [--memory MIB] [--disk PATH[,ro][,id=SERIAL]]...\n"
		"                [--serial stdio|file:PATH|none] [--vsock CID,PATH] [--verbose]\n"
		"Boots VMLINUX (an uncompressed ELF kernel) in a KVM microVM.  --vsock gives the\n"
		"guest CID (3 or more) a virtio-vsock device whose host side is the unix socket\n"
		"PATH (Firecracker's hybrid vsock).  Exit status:\n"
		"0 guest powered off or rebooted, 1 guest crashed, 2 bad arguments.\n");
}

static unsigned long parse_number(const char *opt, const char *s, unsigned long min,
				  unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		die(VM_EXIT_USAGE, "%s: '%s' is not a number", opt, s);
	if (v < min || v > max)
		die(VM_EXIT_USAGE, "%s: %lu is out of range (%lu to %lu)", opt, v, min, max);
	return v;
}

static void parse_disk(struct options *o, char *arg)
{
	struct disk_arg *d;
	char *opt;

	if (o->nr_disks == MAX_DISKS)
		die(VM_EXIT_USAGE, "--disk: at most %d disks", MAX_DISKS);
	d = &o->disk[o->nr_disks];
	d->path = strtok(arg, ",");
	if (!d->path || !*d->path)
		die(VM_EXIT_USAGE, "--disk: missing path");
	snprintf(d->id, sizeof(d->id), "kiln-disk%u", o->nr_disks);
	while ((opt = strtok(NULL, ","))) {
		if (!strcmp(opt, "ro"))
			d->read_only = true;
		else if (!strcmp(opt, "rw"))
			d->read_only = false;
		else if (!strncmp(opt, "id=", 3) && strlen(opt + 3) <= 20)
			snprintf(d->id, sizeof(d->id), "%s", opt + 3);
		else
			die(VM_EXIT_USAGE, "--disk: unknown option '%s' (ro, rw, id=SERIAL up to 20 "
			    "characters)", opt);
	}
	o->nr_disks++;
}

static void parse_serial(struct options *o, const char *arg)
{
	if (!strcmp(arg, "stdio"))
		o->serial = SERIAL_STDIO;
	else if (!strcmp(arg, "none"))
		o->serial = SERIAL_NONE;
	else if (!strncmp(arg, "file:", 5) && arg[5])
		o->serial = SERIAL_FILE, o->serial_path = arg + 5;
	else
		die(VM_EXIT_USAGE, "--serial: expected stdio, none or file:PATH, got '%s'", arg);
}

static void parse_vsock(struct options *o, char *arg)
{
	char *comma = strchr(arg, ',');

	if (o->vsock_path)
		die(VM_EXIT_USAGE, "--vsock: only one vsock device");
	if (!comma || !comma[1])
		die(VM_EXIT_USAGE, "--vsock: expected CID,PATH, got '%s'", arg);
	*comma = '\0';
	o->vsock_cid = parse_number("--vsock CID", arg, 3, UINT32_MAX - 1);
	o->vsock_path = comma + 1;
}

static uint64_t host_memory_mib(void)
{
	return (uint64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE) >> 20;
}

static void parse_args(struct options *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "cpus", required_argument, NULL, 'p' },
		{ "memory", required_argument, NULL, 'm' },
		{ "disk", required_argument, NULL, 'd' },
		{ "serial", required_argument, NULL, 's' },
		{ "vsock", required_argument, NULL, 'V' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->cpus = 1;
	o->memory_mib = 128;
	o->cmdline = DEFAULT_CMDLINE;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'k': o->kernel = optarg; break;
		case 'i': o->initrd = optarg; break;
		case 'c': o->cmdline = optarg; break;
		case 'p': o->cpus = parse_number("--cpus", optarg, 1, VM_MAX_VCPUS); break;
		case 'm':
			o->memory_mib = parse_number("--memory", optarg, GUEST_MEM_MIN_MIB,
						     host_memory_mib());
			break;
		case 'd': parse_disk(o, optarg); break;
		case 's': parse_serial(o, optarg); break;
		case 'V': parse_vsock(o, optarg); break;
		case 'v': log_set_verbose(true); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(VM_EXIT_USAGE);
		}
	}
	if (optind < argc)
		die(VM_EXIT_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
	if (!o->kernel)
		die(VM_EXIT_USAGE, "--kernel is required (see --help)");
}

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

static void serial_irq(void *ctx, int level)
{
	vm_irq_line(ctx, IRQ_SERIAL, level);
}

static void virtio_irq(void *ctx, unsigned irq)
{
	vm_irq_pulse(ctx, irq);
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
		vm_request_exit(&vm, VM_EXIT_GUEST, "guest kernel panic: %s", panic_watch.reason);
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
		fd = open(o->serial_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			die(VM_EXIT_USAGE, "--serial file:%s: %s", o->serial_path, strerror(errno));
		return fd;
	default:
		return -1;
	}
}

static void add_legacy_devices(const struct options *o)
{
	serial_init(&serial, open_serial_out(o), serial_irq, console_line, &vm);
	i8042_init(&kbd, guest_reset, &vm);
	bus_register(&vm.pio, SERIAL_PORT_BASE, SERIAL_PORT_LEN, serial_read, serial_write, &serial);
	bus_register(&vm.pio, I8042_DATA_PORT, 5, i8042_read, i8042_write, &kbd);
}

/* Attach virtio devices, appending each one's virtio_mmio.device= to the command line. */
static void add_virtio_devices(const struct options *o, char *cmdline, size_t cmdsize)
{
	struct virtio_dev *dev[MAX_VIRTIO];
	unsigned n = 0;
	char err[256];

	for (unsigned i = 0; i < o->nr_disks; i++) {
		const struct disk_arg *d = &o->disk[i];

		dev[n] = virtio_blk_create(&vm.mem, d->path, d->read_only, d->id, err, sizeof(err));
		if (!dev[n])
			die(VM_EXIT_USAGE, "%s", err);
		n++;
	}
	dev[n] = virtio_rng_create(&vm.mem);
	if (!dev[n])
		die(VM_EXIT_GUEST, "out of memory");
	n++;
	if (o->vsock_path) {
		dev[n] = virtio_vsock_create(&vm.mem, o->vsock_cid, o->vsock_path, err, sizeof(err));
		if (!dev[n++])
			die(VM_EXIT_USAGE, "%s", err);
	}

	for (unsigned i = 0; i < n; i++) {
		uint64_t base = VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE;
		size_t len = strlen(cmdline);

		dev[i]->irq = IRQ_VIRTIO_FIRST + i;
		dev[i]->raise_irq = virtio_irq;
		dev[i]->irq_ctx = &vm;
		bus_register(&vm.mmio, base, VIRTIO_MMIO_SIZE, virtio_mmio_read, virtio_mmio_write,
			     dev[i]);
		snprintf(cmdline + len, cmdsize - len, " virtio_mmio.device=4K@%#llx:%u",
			 (unsigned long long)base, dev[i]->irq);
	}
}

static void load_guest(const struct options *o, const uint8_t *kernel, size_t ksize,
		       const char *cmdline)
{
	struct kernel_image k;
	struct boot_info bi = { .cmdline = cmdline };
	char err[256];

	if (elf_load(&vm.mem, kernel, ksize, &k, err, sizeof(err)))
		die(VM_EXIT_USAGE, "kernel %s: %s", o->kernel, err);
	if (o->initrd) {
		size_t isize;
		const uint8_t *initrd = map_file("initrd", o->initrd, &isize);

		bi.initrd_addr = initrd_place(&vm.mem, k.end, isize);
		if (!bi.initrd_addr)
			die(VM_EXIT_USAGE, "initrd %s (%zu bytes) does not fit in %llu MiB of guest "
			    "memory", o->initrd, isize, (unsigned long long)o->memory_mib);
		gm_write(&vm.mem, bi.initrd_addr, initrd, isize);
		bi.initrd_size = isize;
		munmap((void *)initrd, isize);
	}
	if (boot_write_tables(&vm.mem, &bi, err, sizeof(err)))
		die(VM_EXIT_USAGE, "%s", err);
	if (mptable_write(&vm.mem, o->cpus))
		die(VM_EXIT_USAGE, "cannot write the MP table for %u vCPUs", o->cpus);

	struct kvm_cpuid2 *base = cpuid_supported(vm.kvm_fd);

	if (!base)
		die(VM_EXIT_GUEST, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
	for (unsigned i = 0; i < o->cpus; i++) {
		struct kvm_cpuid2 *c = cpuid_for_vcpu(base, i, o->cpus);

		if (!c || vcpu_create(&vm, i, c, err, sizeof(err)))
			die(VM_EXIT_GUEST, "%s", c ? err : "out of memory");
		free(c);
	}
	free(base);
	vm.nr_vcpus = o->cpus;
	if (boot_setup_vcpu(vm.vcpu[0].fd, k.entry))
		die(VM_EXIT_GUEST, "setting boot registers: %s", strerror(errno));
}

static int setup_event_loop(int *timer_fd, int *sig_fd, bool watch_stdin)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
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
	*sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
	*timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (ep < 0 || *sig_fd < 0 || *timer_fd < 0 || timerfd_settime(*timer_fd, 0, &its, NULL))
		die(VM_EXIT_GUEST, "event loop set-up: %s", strerror(errno));

	int fds[] = { vm.exit_fd, *timer_fd, *sig_fd, STDIN_FILENO };

	for (unsigned i = 0; i < (watch_stdin ? 4u : 3u); i++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fds[i] };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0 && fds[i] != STDIN_FILENO)
			die(VM_EXIT_GUEST, "epoll_ctl: %s", strerror(errno));
	}
	return ep;
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
		vm_request_exit(&vm, VM_EXIT_GUEST, "guest kernel panic: %s", panic_watch.reason);
	if (vm_guest_stopped(&vm))
		vm_request_exit(&vm, VM_EXIT_OK, "guest halted");
}

/* Forward stdin to the UART; returns false once stdin is finished with. */
static bool on_stdin(uint8_t *pending, unsigned *npending)
{
	if (*npending == 0) {
		ssize_t n = read(STDIN_FILENO, pending, SERIAL_FIFO_LEN);

		if (n <= 0)
			return n < 0 && errno == EINTR;
		*npending = n;
	}
	unsigned took = serial_input(&serial, pending, *npending);

	memmove(pending, pending + took, *npending - took);
	*npending -= took;
	return true;
}

static int run_event_loop(bool watch_stdin)
{
	int timer_fd, sig_fd;
	int ep = setup_event_loop(&timer_fd, &sig_fd, watch_stdin);
	uint8_t pending[SERIAL_FIFO_LEN];
	unsigned npending = 0;

	while (!vm.exit_requested) {
		struct epoll_event ev[4];
		/* Input the FIFO could not take yet is retried soon; otherwise wait for events. */
		int n = epoll_wait(ep, ev, 4, npending ? 10 : -1);

		if (npending)
			on_stdin(pending, &npending);
		for (int i = 0; i < n; i++) {
			int fd = ev[i].data.fd;

			if (fd == timer_fd) {
				on_timer(timer_fd);
			} else if (fd == sig_fd) {
				struct signalfd_siginfo si;

				if (read(sig_fd, &si, sizeof(si)) == sizeof(si))
					vm_request_exit(&vm, 128 + si.ssi_signo, "stopped by signal %u",
							si.ssi_signo);
			} else if (fd == STDIN_FILENO && !npending) {
				if (!on_stdin(pending, &npending))
					epoll_ctl(ep, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
			}
		}
	}
	/* A panic explains whatever came after it (reset, halt, triple fault). */
	if (panic_watch.seen && vm.exit_status == VM_EXIT_OK)
		return VM_EXIT_GUEST;
	return vm.exit_status;
}

int main(int argc, char **argv)
{
	struct options o;
	char cmdline[BOOT_CMDLINE_MAX * 2];
	char err[256];
	size_t ksize;

	log_init("kiln-vmm");
	parse_args(&o, argc, argv);

	const uint8_t *kernel = map_file("kernel", o.kernel, &ksize);

	if (ksize < 4 || memcmp(kernel, "\177ELF", 4))
		die(VM_EXIT_USAGE, "kernel %s: not an ELF file (expected an uncompressed vmlinux)",
		    o.kernel);
	if (vm_create(&vm, o.memory_mib << 20, err, sizeof(err)))
		die(VM_EXIT_GUEST, "%s", err);

	snprintf(cmdline, sizeof(cmdline), "%s", o.cmdline);
	add_legacy_devices(&o);
	add_virtio_devices(&o, cmdline, sizeof(cmdline));
	load_guest(&o, kernel, ksize, cmdline);
	munmap((void *)kernel, ksize);

	bool watch_stdin = o.serial == SERIAL_STDIO;

	if (watch_stdin)
		make_tty_raw();
	for (unsigned i = 0; i < vm.nr_vcpus; i++)
		if (vcpu_start(&vm.vcpu[i]))
			die(VM_EXIT_GUEST, "cannot start vCPU thread %u", i);

	int status = run_event_loop(watch_stdin);

	if (status == VM_EXIT_GUEST && panic_watch.seen && !strstr(vm.exit_reason, "panic"))
		log_info("guest kernel panic: %s (then %s)", panic_watch.reason, vm.exit_reason);
	else
		log_info("%s", vm.exit_reason);
	restore_tty();
	fflush(stdout);
	_exit(status);
}
