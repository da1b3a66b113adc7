/*
 * control.h - kiln-vmm's control socket (--control PATH): one-line commands in, one-line
 * answers out, over a unix stream socket.
 *
 *   status          ok state=running|paused vcpus=N memory_mib=M devices=blk,rng,...
 *   pause           ok
 *   resume          ok
 *   snapshot DIR    ok                  (pauses first if needed; stays paused)
 *   stop            ok                  (then kiln-vmm exits with status 0)
 *   anything else   error REASON
 *
 * Every answer is one line starting with "ok" or "error".  A client may send several commands
 * on one connection, one per line, and gets the answers in order.  The socket is created mode
 * 0600: whoever reaches it controls the VM.  Commands run on the main thread, one at a time;
 * this file only frames lines and hands them to the handler.
 */
#ifndef KILN_CONTROL_H
#define KILN_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#define CONTROL_MAX_CLIENTS	8
#define CONTROL_LINE_MAX	4200	/* "snapshot " and a path of up to PATH_MAX */
#define CONTROL_REPLY_MAX	4400

/* Run one command (arg is "" when there is none) and write the answer line, without "\n". */
typedef void (*control_handler)(void *ctx, const char *cmd, const char *arg, char *reply,
				size_t size);

struct control_client {
	int fd;				/* -1: free slot */
	char line[CONTROL_LINE_MAX];
	size_t len;
};

struct control {
	int listen_fd;			/* -1: no control socket */
	int ep;
	control_handler handle;
	void *ctx;
	struct control_client client[CONTROL_MAX_CLIENTS];
};

/* Listen on path; -1 with a reason in err.  Call before any thread starts (it sets umask). */
int control_listen(struct control *c, const char *path, control_handler handle, void *ctx,
		   char *err, size_t errlen);
/* Register with the main thread's epoll set; events arrive with data.fd set to the fd. */
void control_attach(struct control *c, int ep);
bool control_owns(const struct control *c, int fd);
void control_event(struct control *c, int fd);

#endif
