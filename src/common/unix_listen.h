/*
 * unix_listen.h - listen on a unix stream socket path that may hold a stale socket.
 *
 * VMMs exit without cleaning up after themselves (crashes, SIGKILL), so a socket file left at
 * the path is expected.  It is removed only when it is a socket and nobody accepts on it; any
 * other file, or a live socket, is refused.  Used by vsock (--vsock) and the control socket.
 */
#ifndef KILN_UNIX_LISTEN_H
#define KILN_UNIX_LISTEN_H

#include <stddef.h>

/* Non-blocking, close-on-exec listening socket at path, or -1 with "PATH: reason" in err. */
int unix_listen(const char *path, int backlog, char *err, size_t errlen);

#endif
