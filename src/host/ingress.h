/*
 * ingress.h - a sandbox's guest ports exposed on a host address (dev-server previews), each
 * by one kiln-ingress process (src/net/kiln_ingress.c, docs/egress.md) that connects into the
 * sandbox's network namespace.  The host port is chosen by the kernel: kilnd binds the socket
 * and hands it over, so it is known and can never be taken by someone else in between.
 *
 * Files in the VM directory: ingress-PORT ("PID HOSTADDR HOSTPORT"), ingress-PORT.log (one
 * JSON line per connection), ingress-PORT.err.  vm_down stops them all.
 */
#ifndef KILN_INGRESS_H
#define KILN_INGRESS_H

#include <stddef.h>
#include <sys/types.h>

#define INGRESS_MAX	16	/* per sandbox */
#define INGRESS_FULL	(-2)	/* ingress_start: INGRESS_MAX are exposed already */

struct ingress {
	unsigned guest_port;
	char host_addr[64];
	unsigned host_port;
	pid_t pid;
};

/*
 * Expose guest_port of dir's sandbox on host_addr (IPv4).  If it is exposed already, *out is
 * the existing one.  0; INGRESS_FULL when INGRESS_MAX are exposed; -1 with err otherwise (no
 * network, the address does not bind).
 */
int ingress_start(const char *dir, unsigned guest_port, const char *host_addr,
		  struct ingress *out, char *err, size_t errlen);

/* The running ones, in list (at most INGRESS_MAX), ordered by guest port; their number. */
unsigned ingress_list(const char *dir, struct ingress *list);

/* Stop exposing guest_port.  0, or -1 if it was not exposed. */
int ingress_stop(const char *dir, unsigned guest_port);

void ingress_stop_all(const char *dir);

#endif
