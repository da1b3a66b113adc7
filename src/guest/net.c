/*
 * net.c - the guest end of kiln's network: when kiln-vmm gave the VM a NIC (virtio-net, eth0),
 * kiln-init configures it here, before anything else runs, with the one fixed address every
 * sandbox has (docs/network.md): 10.0.2.2/30, default route via 10.0.2.1, which is the tap in the
 * sandbox's network namespace on the host.  The same address everywhere means a snapshot
 * restores into any sandbox's namespace unchanged; the host's nftables decide what leaves.
 *
 * ioctl()s only: root images need no `ip` or `ifconfig`.  No NIC, nothing to do (networking off
 * is the absence of the device, not a setting here).  IPv6 is switched off on eth0: the host
 * drops it anyway, and a guest that never autoconfigures it does not wait on it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"

#define GUEST_IF	"eth0"
#define GUEST_ADDR	"10.0.2.2"
#define GUEST_MASK	"255.255.255.252"
#define GUEST_GW	"10.0.2.1"

static void set_sin(struct sockaddr *sa, const char *addr)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)sa;

	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, addr, &sin->sin_addr);
}

static int if_ioctl(int fd, unsigned long req, const char *what, struct ifreq *ifr)
{
	if (ioctl(fd, req, ifr) == 0)
		return 0;
	fprintf(stderr, "kiln-init: %s %s: %s\n", GUEST_IF, what, strerror(errno));
	return -1;
}

static int add_default_route(int fd)
{
	struct rtentry rt;

	memset(&rt, 0, sizeof(rt));
	set_sin(&rt.rt_dst, "0.0.0.0");
	set_sin(&rt.rt_genmask, "0.0.0.0");
	set_sin(&rt.rt_gateway, GUEST_GW);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	rt.rt_dev = (char *)GUEST_IF;
	if (ioctl(fd, SIOCADDRT, &rt) == 0 || errno == EEXIST)
		return 0;
	fprintf(stderr, "kiln-init: default route via %s: %s\n", GUEST_GW, strerror(errno));
	return -1;
}

static void disable_ipv6(void)
{
	int fd = open("/proc/sys/net/ipv6/conf/" GUEST_IF "/disable_ipv6", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;		/* no IPv6 in the kernel: nothing to switch off */
	if (write(fd, "1", 1) < 0)
		fprintf(stderr, "kiln-init: cannot disable IPv6 on %s\n", GUEST_IF);
	close(fd);
}

/*
 * The gateway is also the sandbox's resolver (kiln-dns, when the host runs it; otherwise DNS
 * is dropped like all UDP).  Replaced, not edited: the image's file, or a symlink to a
 * resolver the guest does not have, must not win.
 */
static void write_resolv_conf(void)
{
	static const char conf[] = "# written by kiln-init: the sandbox's resolver\n"
				   "nameserver " GUEST_GW "\n";
	int fd;

	unlink("/etc/resolv.conf");
	fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, conf, sizeof(conf) - 1) != (ssize_t)sizeof(conf) - 1)
		fprintf(stderr, "kiln-init: cannot write /etc/resolv.conf\n");
	if (fd >= 0)
		close(fd);
}

int guest_net_setup(void)
{
	struct ifreq ifr;
	int fd, ret = -1;

	if (access("/sys/class/net/" GUEST_IF, F_OK))
		return 0;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	disable_ipv6();
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), GUEST_IF);
	set_sin(&ifr.ifr_addr, GUEST_ADDR);
	if (if_ioctl(fd, SIOCSIFADDR, "address", &ifr))
		goto out;
	set_sin(&ifr.ifr_netmask, GUEST_MASK);
	if (if_ioctl(fd, SIOCSIFNETMASK, "netmask", &ifr))
		goto out;
	if (if_ioctl(fd, SIOCGIFFLAGS, "flags", &ifr))
		goto out;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (if_ioctl(fd, SIOCSIFFLAGS, "up", &ifr))
		goto out;
	ret = add_default_route(fd);
	if (!ret)
		write_resolv_conf();
out:
	close(fd);
	return ret;
}
