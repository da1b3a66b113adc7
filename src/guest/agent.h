/*
 * agent.h - kiln-init's pieces: PID 1 duties (init.c), the per-connection worker that serves one
 * protocol operation (worker.c), processes (exec.c), files (files.c) and code contexts,
 * long-lived interpreters that keep state between cells (context.c).
 *
 * Structure: PID 1 accepts host connections and forks one worker per connection, so a bug or a
 * crash while serving a request costs that request, never the agent.  Workers of background
 * processes outlive their connection and can be re-attached through a unix socket under
 * AGENT_RUN_DIR, which is also how `ps` finds every process the agent started.
 */
#ifndef KILN_AGENT_H
#define KILN_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "../proto/proto.h"

#define AGENT_VERSION	"0.1.0"
#define AGENT_RUN_DIR	"/run/kiln/proc"
#define AGENT_CGROUP	"/sys/fs/cgroup"

/* A request: its type and payload, already checked to be well-formed fields. */
struct request {
	uint8_t type;
	const uint8_t *payload;
	uint32_t len;
};

/* Serve one connection (first frame not yet read).  Runs in a forked worker. */
void worker_serve(int conn);

/* Operations.  Each sends its own final frame; a return of -1 means the connection is gone. */
int op_exec(int conn, const struct request *req);
int op_attach(int conn, const struct request *req);
int op_ps(int conn);
int op_kill(int conn, const struct request *req);
int op_file_read(int conn, const struct request *req);
int op_file_write(int conn, const struct request *req);
int op_list(int conn, const struct request *req);
int op_stat(int conn, const struct request *req);
int op_mkdir(int conn, const struct request *req);
int op_remove(int conn, const struct request *req);
int op_rename(int conn, const struct request *req);
int op_info(int conn);
int op_identity(int conn, const struct request *req);
int op_context_create(int conn, const struct request *req);
int op_context_run(int conn, const struct request *req);
int op_context_list(int conn);
int op_context_interrupt(int conn, const struct request *req);
int op_context_restart(int conn, const struct request *req);
int op_context_delete(int conn, const struct request *req);

/* The kernel of a bash code context: serves the context's socket on fd 3 (bash_kernel.c). */
int bash_kernel_main(void);

/* Environment every process gets before its request's own (set by IDENTITY); NULL-terminated,
 * freed with the caller's free of each string and the vector. */
char **identity_env(int *count);

/* Replies shared by the operations. */
int send_error(int conn, int err, const char *message, const char *path);
int send_ok(int conn);
int send_simple(int conn, uint8_t type);

/* Find a string field; false if absent or not a valid string of at most max-1 bytes. */
bool req_str(const struct request *req, uint16_t tag, char *dst, size_t max);
bool req_u32(const struct request *req, uint16_t tag, uint32_t *v);
bool req_u8(const struct request *req, uint16_t tag, uint8_t *v);

/* Whether the agent runs as the guest's PID 1 (false in host-side test mode). */
extern bool agent_is_init;

/* net.c: configure eth0 with the fixed sandbox address if the VM has a NIC; 0 if none. */
int guest_net_setup(void);

#endif
