/*
 * format.h - the byte layer of a snapshot state file: a growable little-endian writer, a
 * bounds-checked reader, CRC-32 and the file header.
 *
 * A state file is read back by a later kiln-vmm process that must treat it as untrusted input
 * (it may be truncated, corrupted, or written by another version).  So the reader never trusts a
 * length: every read is checked against what is left, the first failure is remembered with a
 * one-line reason, and every later read on a failed reader returns zeros, which lets decoders be
 * written as straight-line code that checks the error once per section.
 *
 *   file    = header section*
 *   header  = "KILNSNAP" u32 version, u32 crc32, u64 file length      (24 bytes)
 *   section = u32 tag, u32 body length, body
 *
 * The CRC-32 (IEEE 802.3, as in zlib) covers the whole file with the crc field taken as zero.
 * Everything is little-endian, as on the x86 hosts kiln runs on.
 */
#ifndef KILN_SNAPSHOT_FORMAT_H
#define KILN_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC		"KILNSNAP"
#define SNAP_VERSION		1
#define SNAP_HEADER_SIZE	24

#define SNAP_TAG(a, b, c, d) \
	((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

uint32_t snap_crc32(const void *p, size_t len);

/* ---- writing ---- */

struct sbuf {
	uint8_t *data;
	size_t len, cap;
	bool failed;		/* out of memory at some point: the contents are incomplete */
};

void sbuf_put(struct sbuf *b, const void *p, size_t n);
void sbuf_u8(struct sbuf *b, uint8_t v);
void sbuf_u32(struct sbuf *b, uint32_t v);
void sbuf_u64(struct sbuf *b, uint64_t v);
/* A u32 length, then the bytes. */
void sbuf_blob(struct sbuf *b, const void *p, uint32_t n);
void sbuf_str(struct sbuf *b, const char *s);
/* Open a section; sbuf_end() patches its length once the body is written. */
size_t sbuf_begin(struct sbuf *b, uint32_t tag);
void sbuf_end(struct sbuf *b, size_t mark);
void sbuf_free(struct sbuf *b);

/* Header placeholder first, sealing (length and CRC) last. */
void snap_file_begin(struct sbuf *b);
void snap_file_seal(struct sbuf *b);

/* ---- reading ---- */

struct sr_error {
	bool failed;
	char msg[200];
};

/* A window [p, p+len) of the file; sub-readers for sections share the parent's error. */
struct sreader {
	const uint8_t *p;
	size_t len, off;
	struct sr_error *e;
};

void sr_init(struct sreader *r, const void *p, size_t len, struct sr_error *e);
/* Record the first failure; always returns false so callers can `return sr_fail(...)`. */
bool sr_fail(struct sreader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool sr_ok(const struct sreader *r)
{
	return !r->e->failed;
}

const void *sr_bytes(struct sreader *r, size_t n, const char *what);
uint8_t sr_u8(struct sreader *r, const char *what);
uint32_t sr_u32(struct sreader *r, const char *what);
uint64_t sr_u64(struct sreader *r, const char *what);
/* A blob whose length must be exactly n (a fixed-size KVM structure), copied into dst. */
bool sr_blob_exact(struct sreader *r, void *dst, size_t n, const char *what);
/* A blob of min..max bytes; returns a pointer into the file and its length. */
const void *sr_blob(struct sreader *r, uint32_t min, uint32_t max, uint32_t *len,
		    const char *what);
/* A string of fewer than cap bytes with no NUL inside, copied NUL-terminated into dst. */
bool sr_str(struct sreader *r, char *dst, size_t cap, const char *what);
/* A boolean byte: 0 or 1, nothing else. */
bool sr_bool(struct sreader *r, const char *what);
/* The next section must carry tag; body becomes a reader over exactly its bytes. */
bool sr_section(struct sreader *r, uint32_t tag, struct sreader *body, const char *what);
/* Every byte of r must have been consumed. */
bool sr_end(struct sreader *r, const char *what);

/*
 * Check a whole state file's header: size, magic, version, length and checksum, in that order,
 * so the message names the most basic problem.  On success body reads the sections.
 */
bool snap_file_open(const void *p, size_t len, struct sreader *body, struct sr_error *e);

#endif
