/*
 * listen_in_netns.h - a socket bound inside a sandbox's network namespace, for a process that
 * otherwise stays in the host's (listen_in_netns.c).  kiln-dns and kiln-proxy serve the guest
 * from inside its namespace but resolve and connect from the host's: a socket keeps the
 * namespace it was created in, so only its creation needs to happen in there.
 */
#ifndef KILN_LISTEN_IN_NETNS_H
#define KILN_LISTEN_IN_NETNS_H

#include <stddef.h>

/*
 * A socket of type (SOCK_DGRAM, or SOCK_STREAM, which is also listening) bound to the IPv4
 * "ADDR:PORT" in /run/netns/NETNS (NULL: this namespace).  The fd, or -1 with err set.
 */
int listen_in_netns(int type, const char *addr_port, const char *netns, char *err,
		    size_t errlen);

/* An unbound TCP socket created in /run/netns/NETNS, to connect from inside it.  Only the
 * calling thread changes namespace, and only for the call.  The fd, or -1 with err set. */
int socket_in_netns(const char *netns, char *err, size_t errlen);

#endif
