/*
 * agent_client.h - the host side of the agent protocol (src/proto/proto.h): connect to a
 * guest's kiln-init through kiln-vmm's vsock socket, run processes, move files.
 *
 * Used by the CLI and, later, the service.  Calls block; a connection carries one operation.
 * Errors come back as struct agent_error: an errno value, a message, and the path concerned.
 */
#ifndef KILN_AGENT_CLIENT_H
#define KILN_AGENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/proto.h"

struct agent_error {
	int err;		/* errno value, from the guest or local */
	char message[512];
	char path[512];
};

/*
 * Connect to the agent: through kiln-vmm's hybrid vsock socket ("CONNECT port" handshake) or,
 * with a path prefixed "unix:", straight to a unix socket (the agent's host test mode).
 * Retries until timeout_ms while the guest is still booting.  Returns an fd or -1.
 */
int agent_connect(const char *sock, unsigned port, int timeout_ms, struct agent_error *e);

struct agent_exec {
	char *const *argv;	/* or shell */
	const char *shell;
	char *const *env;	/* "K=V", NULL-terminated; may be NULL */
	const char *cwd, *user;
	uint32_t timeout_ms;
	bool pty;
	uint16_t rows, cols;
	bool stdin_stream;
	bool background;
};

/* Send EXEC and wait for STARTED (pid) or ERROR.  0 / -1. */
int agent_exec_start(int fd, const struct agent_exec *x, uint32_t *pid, struct agent_error *e);

enum agent_event_type { EV_STDOUT, EV_STDERR, EV_EXIT, EV_ERROR };

struct agent_event {
	enum agent_event_type type;
	const uint8_t *data;	/* STDOUT/STDERR, valid until the next call */
	uint32_t len;
	int exit_code;		/* -1 if killed by a signal */
	int exit_signal;	/* 0 if it exited */
	bool timed_out;
	struct agent_error error;
};

/* Next output or the final EXIT/ERROR.  0 on an event, -1 when the connection broke. */
int agent_next_event(int fd, struct agent_event *ev, uint8_t **buf, size_t *cap);

int agent_send_stdin(int fd, const void *data, size_t len);
int agent_close_stdin(int fd);
int agent_send_signal(int fd, int sig);
int agent_resize(int fd, uint16_t rows, uint16_t cols);

/* Files.  Copy a local fd into a guest path, or a guest path into a local fd. */
int agent_write_file(int fd, const char *path, uint32_t mode, int src, uint64_t *bytes,
		     struct agent_error *e);
int agent_read_file(int fd, const char *path, int dst, uint64_t *bytes, struct agent_error *e);

/* Re-attach to a background process: on success events follow as after agent_exec_start. */
int agent_attach(int fd, uint32_t pid, struct agent_error *e);

/* One process (PS) or directory entry (LIST, STAT). */
struct agent_entry {
	uint32_t pid;
	bool running, background;
	char path[4096];	/* LIST/STAT: the path; PS: the command line */
	char type;		/* 'f', 'd', 'l', 'o' */
	uint64_t size, mtime;
	uint32_t mode;
};

/* PS, LIST or STAT: calls fn for every entry.  0 or -1 with e set. */
int agent_entries(int fd, uint8_t type, const char *path, uint32_t depth,
		  void (*fn)(const struct agent_entry *, void *), void *ctx, struct agent_error *e);

/* After a restore: fresh entropy, the host's wall clock, a hostname and environment for every
 * later process.  NULL/0 leaves an item unchanged (entropy and clock are always sent). */
int agent_set_identity(int fd, const char *hostname, const char *sandbox_id, char *const *env,
		       struct agent_error *e);

/* Signal a process the agent started. */
int agent_kill(int fd, uint32_t pid, uint32_t sig, struct agent_error *e);

/* Requests answered by OK or ERROR: MKDIR, REMOVE (num 1: recursive), RENAME. */
int agent_simple(int fd, uint8_t type, const char *path, const char *path2, uint32_t num,
		 struct agent_error *e);

/*
 * Code contexts: long-lived interpreters in the guest (docs/protocol.md, CONTEXT_*).
 * Context ids are 16 hex digits.
 */
#define AGENT_CONTEXT_ID_LEN 16

struct agent_context {
	char id[AGENT_CONTEXT_ID_LEN + 1];
	char language[32];
	char cwd[4096], user[256];
	uint32_t pid;
	bool running;
	uint64_t created;	/* seconds since the epoch */
};

/* Start a context; language NULL is python, env "K=V" NULL-terminated or NULL. */
int agent_context_create(int fd, const char *language, const char *cwd, const char *user,
			 char *const *env, struct agent_context *out, struct agent_error *e);

/* Send one cell; then read agent_next_cell_event until CEV_DONE or CEV_ERROR.  Ctrl-C:
 * agent_send_signal(fd, SIGINT) interrupts the cell. */
int agent_context_run(int fd, const char *id, const char *code, size_t len, uint32_t timeout_ms,
		      struct agent_error *e);

enum agent_cell_event_type { CEV_STDOUT, CEV_STDERR, CEV_RESULT, CEV_EXCEPTION, CEV_DONE,
			     CEV_ERROR };

struct agent_cell_event {
	enum agent_cell_event_type type;
	const uint8_t *data;	/* STDOUT/STDERR/RESULT bytes, valid until the next call */
	uint32_t len;
	char mime[128];		/* RESULT */
	uint32_t index;		/* RESULT: which result of the cell (one per value or figure) */
	char ename[256];	/* EXCEPTION */
	char *evalue;		/* EXCEPTION: malloc'd, freed by the next call */
	char *traceback;	/* EXCEPTION: lines joined with '\n'; malloc'd, freed likewise */
	uint32_t exec_count;	/* DONE */
	uint8_t status;		/* DONE: enum cell_status */
	struct agent_error error;	/* ERROR */
};

/* Next event of a cell.  ev must be zeroed before the first call and freed with
 * agent_cell_event_free after the last.  0 on an event, -1 when the connection broke. */
int agent_next_cell_event(int fd, struct agent_cell_event *ev, uint8_t **buf, size_t *cap);
void agent_cell_event_free(struct agent_cell_event *ev);

/* CONTEXT_LIST: fn for every context. */
int agent_context_list(int fd, void (*fn)(const struct agent_context *, void *), void *ctx,
		       struct agent_error *e);

/* CONTEXT_INTERRUPT, CONTEXT_RESTART (pid may be NULL) or CONTEXT_DELETE. */
int agent_context_op(int fd, uint8_t type, const char *id, uint32_t *pid, struct agent_error *e);

#endif
