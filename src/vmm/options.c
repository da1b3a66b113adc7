/*
 * options.c - parse kiln-vmm's command line (see options.h).
 */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"
#include "vm.h"

#define DEFAULT_CMDLINE		"console=ttyS0 reboot=k panic=-1"

/* Options that describe the machine itself, which a snapshot fixes. */
#define BOOT_ONLY	"--kernel, --initrd, --cmdline, --cpus and --memory"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kiln-vmm --kernel VMLINUX [--initrd FILE] [--cmdline STR] [--cpus N]\n"
		"                [--memory MIB] [--disk PATH[,ro][,id=SERIAL]]...\n"
		"                [--serial stdio|file:PATH|none] [--vsock CID,PATH]\n"
		"                [--net tap=NAME|fd=N[,mac=MAC][,rx_bps=N][,rx_pps=N]\n"
		"                      [,tx_bps=N][,tx_pps=N][,pcap=PATH][,pcap_max=BYTES]]\n"
		"                [--control PATH] [--verbose]\n"
		"       kiln-vmm --restore DIR [--disk N=PATH]... [--serial ...] [--vsock CID,PATH]\n"
		"                [--control PATH] [--verbose]\n"
		"Boots VMLINUX (an uncompressed ELF kernel) in a KVM microVM, or resumes the\n"
		"snapshot in DIR.  --vsock gives the guest CID (3 or more) a virtio-vsock device\n"
		"whose host side is the unix socket PATH (Firecracker's hybrid vsock).  --control\n"
		"takes commands on the unix socket PATH: status, pause, resume, snapshot DIR,\n"
		"stop.  --net adds a virtio-net NIC on the tap device NAME (or the open\n"
		"descriptor N), rate-limited in bytes and packets per second each way (rx:\n"
		"to the guest), every frame captured to PATH up to BYTES (default 64 MiB).\n"
		"Exit status: 0 guest powered off or rebooted (or stopped), 1 guest\n"
		"crashed, 2 bad arguments or an unusable snapshot.\n");
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

	if (o->nr_disks == SNAP_MAX_DISKS)
		die(VM_EXIT_USAGE, "--disk: at most %d disks", SNAP_MAX_DISKS);
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
		else if (!strncmp(opt, "id=", 3) && strlen(opt + 3) <= SNAP_DISK_ID_MAX)
			snprintf(d->id, sizeof(d->id), "%s", opt + 3);
		else
			die(VM_EXIT_USAGE, "--disk: unknown option '%s' (ro, rw, id=SERIAL up to 20 "
			    "characters)", opt);
	}
	o->nr_disks++;
}

/* --disk N=PATH, restoring. */
static void parse_override(struct options *o, char *arg)
{
	char *eq = strchr(arg, '=');
	struct disk_override *d;

	if (o->nr_overrides == SNAP_MAX_DISKS)
		die(VM_EXIT_USAGE, "--disk: at most %d disks", SNAP_MAX_DISKS);
	if (!eq || !eq[1])
		die(VM_EXIT_USAGE, "--disk with --restore: expected N=PATH, got '%s'", arg);
	*eq = '\0';
	d = &o->disk_override[o->nr_overrides++];
	d->index = parse_number("--disk N", arg, 0, SNAP_MAX_DISKS - 1);
	d->path = eq + 1;
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

#define NET_DEFAULT_MAC		"02:6b:69:6c:6e:01"	/* locally administered; "kiln" */
#define NET_DEFAULT_PCAP_MAX	(64ULL << 20)

static void parse_mac(uint8_t mac[6], const char *s)
{
	unsigned v[6];
	char end;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &end) != 6 || strlen(s) != 17)
		die(VM_EXIT_USAGE, "--net: mac=%s is not a MAC address (xx:xx:xx:xx:xx:xx)", s);
	for (int i = 0; i < 6; i++)
		mac[i] = v[i];
	if (mac[0] & 1)
		die(VM_EXIT_USAGE, "--net: mac=%s is a multicast address", s);
}

static const char *const net_rates[4] = { "rx_bps=", "rx_pps=", "tx_bps=", "tx_pps=" };

static bool parse_net_rate(struct dev_ident *n, const char *opt)
{
	for (unsigned i = 0; i < 4; i++) {
		size_t l = strlen(net_rates[i]);

		if (!strncmp(opt, net_rates[i], l)) {
			n->rate[i] = parse_number("--net rate", opt + l, 0, UINT64_MAX >> 8);
			return true;
		}
	}
	return false;
}

/* --net tap=NAME|fd=N[,mac=..][,rx_bps=..]...[,pcap=PATH][,pcap_max=BYTES] */
static void parse_net(struct options *o, char *arg)
{
	struct dev_ident *n = &o->net_arg;
	char *opt;

	if (o->net)
		die(VM_EXIT_USAGE, "--net: only one network device");
	o->net = true;
	n->kind = SNAP_DEV_NET;
	n->fd = -1;
	n->pcap_max = NET_DEFAULT_PCAP_MAX;
	parse_mac(n->mac, NET_DEFAULT_MAC);
	for (opt = strtok(arg, ","); opt; opt = strtok(NULL, ",")) {
		if (!strncmp(opt, "tap=", 4) && opt[4] && strlen(opt + 4) < 16)
			snprintf(n->path, sizeof(n->path), "%s", opt + 4);
		else if (!strncmp(opt, "fd=", 3))
			n->fd = parse_number("--net fd", opt + 3, 0, INT32_MAX);
		else if (!strncmp(opt, "mac=", 4))
			parse_mac(n->mac, opt + 4);
		else if (!strncmp(opt, "pcap=", 5) && opt[5])
			snprintf(n->pcap, sizeof(n->pcap), "%s", opt + 5);
		else if (!strncmp(opt, "pcap_max=", 9))
			n->pcap_max = parse_number("--net pcap_max", opt + 9, 24, UINT64_MAX >> 1);
		else if (!parse_net_rate(n, opt))
			die(VM_EXIT_USAGE, "--net: unknown option '%s' (tap=NAME of up to 15 "
			    "characters, fd=N, mac=, rx_bps=, rx_pps=, tx_bps=, tx_pps=, pcap=, "
			    "pcap_max=)", opt);
	}
	if (!n->path[0] == (n->fd < 0))
		die(VM_EXIT_USAGE, "--net: give exactly one of tap=NAME and fd=N");
}

uint64_t host_memory_mib(void)
{
	return (uint64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE) >> 20;
}

/* --disk means PATH[,...] when booting and N=PATH when restoring: decided at the end. */
static void finish(struct options *o, char **disks, unsigned nr_disks, bool boot_only)
{
	if (o->restore_dir && boot_only)
		die(VM_EXIT_USAGE, "--restore: %s come from the snapshot", BOOT_ONLY);
	if (!o->restore_dir && !o->kernel)
		die(VM_EXIT_USAGE, "--kernel or --restore is required (see --help)");
	for (unsigned i = 0; i < nr_disks; i++) {
		if (o->restore_dir)
			parse_override(o, disks[i]);
		else
			parse_disk(o, disks[i]);
	}
}

void options_parse(struct options *o, int argc, char **argv)
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
		{ "net", required_argument, NULL, 'n' },
		{ "restore", required_argument, NULL, 'r' },
		{ "control", required_argument, NULL, 'C' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	char *disks[SNAP_MAX_DISKS];
	unsigned nr_disks = 0;
	bool boot_only = false;
	int c;

	memset(o, 0, sizeof(*o));
	o->cpus = 1;
	o->memory_mib = 128;
	o->cmdline = DEFAULT_CMDLINE;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		boot_only |= strchr("kicpm", c) != NULL;
		switch (c) {
		case 'k': o->kernel = optarg; break;
		case 'i': o->initrd = optarg; break;
		case 'c': o->cmdline = optarg; break;
		case 'p': o->cpus = parse_number("--cpus", optarg, 1, VM_MAX_VCPUS); break;
		case 'm':
			o->memory_mib = parse_number("--memory", optarg, GUEST_MEM_MIN_MIB,
						     host_memory_mib());
			break;
		case 'd':
			if (nr_disks == SNAP_MAX_DISKS)
				die(VM_EXIT_USAGE, "--disk: at most %d disks", SNAP_MAX_DISKS);
			disks[nr_disks++] = optarg;
			break;
		case 's': parse_serial(o, optarg); break;
		case 'V': parse_vsock(o, optarg); break;
		case 'n': parse_net(o, optarg); break;
		case 'r': o->restore_dir = optarg; break;
		case 'C': o->control_path = optarg; break;
		case 'v': log_set_verbose(true); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); exit(VM_EXIT_USAGE);
		}
	}
	if (optind < argc)
		die(VM_EXIT_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
	finish(o, disks, nr_disks, boot_only);
}
