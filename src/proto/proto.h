/*
 * proto.h - the host <-> guest agent protocol, shared by kiln-init (guest) and the host client.
 *
 * One operation per connection: the host opens a vsock stream to the agent's port, sends one
 * request frame, then the two sides exchange the frames that operation defines (docs/protocol.md)
 * until the agent's final frame (EXIT, END, OK or ERROR) or a disconnect.
 *
 * A frame is an 8-byte header and a payload of tagged fields:
 *
 *   u32 payload length (<= PROTO_MAX_PAYLOAD) | u8 version | u8 type | u16 reserved (0)
 *   field: u16 tag | u32 length | length bytes        (repeated; little-endian throughout)
 *
 * Fields a reader does not know are skipped, so either side can add fields without a version
 * bump; the version changes only when a meaning changes.  Both sides treat the other's frames as
 * untrusted: a frame that is too long, truncated, or whose fields overrun the payload is a
 * protocol error that closes the connection.
 */
#ifndef KILN_PROTO_H
#define KILN_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION		1
#define PROTO_AGENT_PORT	52		/* vsock port kiln-init listens on */
#define PROTO_HDR_SIZE		8
#define PROTO_MAX_PAYLOAD	(1u << 20)
#define PROTO_DATA_CHUNK	(256u << 10)	/* stream data per frame */

enum proto_type {
	/* requests (host -> agent, first frame of a connection) */
	MSG_EXEC = 1,		/* run a process */
	MSG_ATTACH,		/* re-attach to a process by PID */
	MSG_PS,			/* list processes started through the agent */
	MSG_KILL,		/* signal a process by PID */
	MSG_FILE_READ,		/* stream a file to the host */
	MSG_FILE_WRITE,		/* stream a file from the host */
	MSG_LIST,		/* directory listing with depth */
	MSG_STAT,
	MSG_MKDIR,		/* always with parents */
	MSG_REMOVE,
	MSG_RENAME,
	MSG_INFO,		/* health and info */
	MSG_IDENTITY,		/* after a restore: fresh entropy, wall clock, hostname, env */
	MSG_CONTEXT_CREATE,	/* start a long-lived interpreter (code contexts) */
	MSG_CONTEXT_RUN,	/* run one cell in a context */
	MSG_CONTEXT_LIST,
	MSG_CONTEXT_INTERRUPT,	/* KeyboardInterrupt in the running cell; state survives */
	MSG_CONTEXT_RESTART,	/* a fresh interpreter under the same id */
	MSG_CONTEXT_DELETE,

	/* within an operation */
	MSG_STARTED = 32,	/* agent: process running; PID */
	MSG_STDIN,		/* host: bytes for the process's stdin (or PTY) */
	MSG_STDIN_CLOSE,	/* host: end of stdin */
	MSG_STDOUT,		/* agent: bytes from stdout (or the PTY) */
	MSG_STDERR,		/* agent: bytes from stderr */
	MSG_SIGNAL,		/* host: signal the process of this operation */
	MSG_RESIZE,		/* host: PTY window size */
	MSG_EXIT,		/* agent: final; exit code or signal */
	MSG_DATA,		/* file bytes, either way */
	MSG_END,		/* end of a stream of DATA or ENTRY frames */
	MSG_ENTRY,		/* agent: one directory entry or stat result, or one process */
	MSG_OK,			/* agent: final success */
	MSG_ERROR,		/* agent: final failure; errno, message, path */
	MSG_INFO_REPLY,
	MSG_RESULT,		/* agent: one rich result of a cell: MIME, DATA, INDEX */
	MSG_EXCEPTION,		/* agent: the cell raised: ENAME, EVALUE, TRACEBACK* */
	MSG_DONE,		/* agent: final frame of CONTEXT_RUN: EXEC_COUNT, STATUS */
};

/* STATUS of a DONE frame. */
enum cell_status { CELL_OK, CELL_ERROR, CELL_INTERRUPTED, CELL_TIMEOUT };

enum proto_tag {
	TAG_ARG = 1,		/* string, repeated: argv */
	TAG_SHELL,		/* string: run via /bin/sh -c */
	TAG_ENV,		/* string "K=V", repeated */
	TAG_CWD,
	TAG_USER,		/* user name or numeric uid */
	TAG_TIMEOUT_MS,		/* u32 */
	TAG_PTY_ROWS,		/* u16; presence requests a PTY */
	TAG_PTY_COLS,		/* u16 */
	TAG_STDIN,		/* u8 1: the host will stream stdin */
	TAG_BACKGROUND,		/* u8 1: survive the host disconnecting */
	TAG_PID,		/* u32 */
	TAG_SIGNAL,		/* u32 */
	TAG_DATA,		/* bytes */
	TAG_EXIT_CODE,		/* u32 */
	TAG_EXIT_SIGNAL,	/* u32 */
	TAG_TIMED_OUT,		/* u8 */
	TAG_PATH,
	TAG_PATH2,		/* rename target */
	TAG_MODE,		/* u32 */
	TAG_DEPTH,		/* u32 */
	TAG_RECURSIVE,		/* u8 */
	TAG_ERRNO,		/* u32, a Linux errno value */
	TAG_MESSAGE,
	TAG_TYPE,		/* u8: 'f' file, 'd' directory, 'l' link, 'o' other */
	TAG_SIZE,		/* u64 */
	TAG_MTIME,		/* u64, seconds */
	TAG_BYTES,		/* u64: bytes transferred */
	TAG_RUNNING,		/* u8 */
	TAG_VERSION,		/* string */
	TAG_KERNEL,		/* string */
	TAG_HOSTNAME,		/* string */
	TAG_MEM_TOTAL,		/* u64 bytes */
	TAG_MEM_AVAILABLE,	/* u64 bytes */
	TAG_UPTIME_MS,		/* u64 */
	TAG_ROWS,		/* u16 */
	TAG_COLS,		/* u16 */
	TAG_APPEND,		/* u8 */
	TAG_OFFSET,		/* u64 */
	TAG_LENGTH,		/* u64 */
	TAG_DROPPED,		/* u64: output bytes lost while nobody was attached */
	TAG_TIME_NS,		/* u64: wall clock, ns since the epoch */
	TAG_SANDBOX_ID,		/* string */
	TAG_CONTEXT_ID,		/* string: 16 lowercase hex digits */
	TAG_LANGUAGE,		/* string: "python" */
	TAG_CODE,		/* string: a cell's source */
	TAG_MIME,		/* string: a result's MIME type */
	TAG_INDEX,		/* u32: which result of the cell a RESULT frame belongs to */
	TAG_ENAME,		/* string: exception class name */
	TAG_EVALUE,		/* string: str() of the exception */
	TAG_TRACEBACK,		/* string, repeated: traceback lines */
	TAG_EXEC_COUNT,		/* u32: cells run in the context so far */
	TAG_STATUS,		/* u8: enum cell_status */
	TAG_CREATED,		/* u64: seconds since the epoch */
};

/* A frame being built or parsed.  Built frames own buf; parsed frames point into a buffer. */
struct frame {
	uint8_t type;
	uint8_t version;
	uint8_t *buf;		/* header + payload */
	size_t len, cap;	/* bytes used (header included), bytes allocated */
};

/* A field found in a parsed frame. */
struct field {
	uint16_t tag;
	uint32_t len;
	const uint8_t *val;
};

/* Building: frame_init, frame_put_*, then write frame.buf[0..frame.len). -1 on overflow. */
int frame_init(struct frame *f, uint8_t type);
void frame_free(struct frame *f);
int frame_put(struct frame *f, uint16_t tag, const void *val, uint32_t len);
int frame_put_str(struct frame *f, uint16_t tag, const char *s);
int frame_put_u8(struct frame *f, uint16_t tag, uint8_t v);
int frame_put_u16(struct frame *f, uint16_t tag, uint16_t v);
int frame_put_u32(struct frame *f, uint16_t tag, uint32_t v);
int frame_put_u64(struct frame *f, uint16_t tag, uint64_t v);

/*
 * Parsing.  frame_header() checks an 8-byte header and gives the payload length.
 * frame_fields_valid() checks that the payload is a whole number of well-formed fields.
 * frame_next() iterates; frame_find() returns the first field with a tag.
 */
int frame_header(const uint8_t hdr[PROTO_HDR_SIZE], uint8_t *type, uint32_t *payload_len);
bool frame_fields_valid(const uint8_t *payload, uint32_t len);
bool frame_next(const uint8_t *payload, uint32_t len, uint32_t *off, struct field *out);
bool frame_find(const uint8_t *payload, uint32_t len, uint16_t tag, struct field *out);

/* Typed getters for a found field; false when the length does not match the type. */
bool field_u8(const struct field *f, uint8_t *v);
bool field_u16(const struct field *f, uint16_t *v);
bool field_u32(const struct field *f, uint32_t *v);
bool field_u64(const struct field *f, uint64_t *v);
/* Copy a string field into dst (NUL-terminated); false if it has a NUL or does not fit. */
bool field_str(const struct field *f, char *dst, size_t dstlen);

/*
 * Blocking I/O on a stream socket.  proto_read_frame() reads one frame into *buf (grown as
 * needed, up to PROTO_MAX_PAYLOAD): 1 on a frame, 0 on clean EOF before a header, -1 on error
 * or a malformed frame (errno EPROTO).
 */
int proto_write_frame(int fd, const struct frame *f);
int proto_read_frame(int fd, uint8_t **buf, size_t *cap, uint8_t *type, uint32_t *len);

/*
 * A reader of a stream of frames: proto_read_in() is proto_read_frame() into in->buf, which
 * grows as needed and is reused from frame to frame.  Start it zeroed; free(in.buf) at the end.
 */
struct frame_in {
	uint8_t *buf;
	size_t cap;
	uint8_t type;
	uint32_t len;
};
int proto_read_in(int fd, struct frame_in *in);

/* All len bytes or -1; a write refused for want of kernel memory is retried smaller (proto.c). */
int proto_write_all(int fd, const void *buf, size_t len);
int proto_read_all(int fd, void *buf, size_t len);	/* 1 done, 0 EOF at start, -1 error */

#endif
