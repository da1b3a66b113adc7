/*
 * format.c - writer, reader, CRC-32 and header of snapshot state files (see format.h).
 */
#include "format.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CRC-32, reflected polynomial 0xedb88320, one table lookup per byte ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

uint32_t snap_crc32(const void *p, size_t len)
{
	pthread_once(&crc_once, crc_init);
	return ~crc_update(~0u, p, len);
}

/* The file's CRC with its own crc field (bytes 12..15) read as zeros. */
static uint32_t file_crc(const uint8_t *p, size_t len)
{
	static const uint8_t zero[4];
	uint32_t crc;

	pthread_once(&crc_once, crc_init);
	crc = crc_update(~0u, p, 12);
	crc = crc_update(crc, zero, 4);
	crc = crc_update(crc, p + 16, len - 16);
	return ~crc;
}

/* ---- writer ---- */

static bool sbuf_reserve(struct sbuf *b, size_t n)
{
	if (b->failed)
		return false;
	if (n <= b->cap - b->len)
		return true;

	size_t cap = b->cap ? b->cap : 4096;

	while (cap - b->len < n)
		cap *= 2;
	uint8_t *d = realloc(b->data, cap);

	if (!d) {
		b->failed = true;
		return false;
	}
	b->data = d;
	b->cap = cap;
	return true;
}

void sbuf_put(struct sbuf *b, const void *p, size_t n)
{
	if (!n || !sbuf_reserve(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void sbuf_u8(struct sbuf *b, uint8_t v)
{
	sbuf_put(b, &v, 1);
}

void sbuf_u32(struct sbuf *b, uint32_t v)
{
	sbuf_put(b, &v, 4);	/* x86: already little-endian */
}

void sbuf_u64(struct sbuf *b, uint64_t v)
{
	sbuf_put(b, &v, 8);
}

void sbuf_blob(struct sbuf *b, const void *p, uint32_t n)
{
	sbuf_u32(b, n);
	sbuf_put(b, p, n);
}

void sbuf_str(struct sbuf *b, const char *s)
{
	sbuf_blob(b, s, strlen(s));
}

size_t sbuf_begin(struct sbuf *b, uint32_t tag)
{
	sbuf_u32(b, tag);
	sbuf_u32(b, 0);
	return b->len;
}

void sbuf_end(struct sbuf *b, size_t mark)
{
	uint32_t n = b->len - mark;

	if (!b->failed)
		memcpy(b->data + mark - 4, &n, 4);
}

void sbuf_free(struct sbuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void snap_file_begin(struct sbuf *b)
{
	static const uint8_t zero[SNAP_HEADER_SIZE - 8];

	sbuf_put(b, SNAP_MAGIC, 8);
	sbuf_put(b, zero, sizeof(zero));
}

void snap_file_seal(struct sbuf *b)
{
	uint32_t version = SNAP_VERSION, crc;
	uint64_t len = b->len;

	if (b->failed || b->len < SNAP_HEADER_SIZE)
		return;
	memcpy(b->data + 8, &version, 4);
	memcpy(b->data + 16, &len, 8);
	crc = file_crc(b->data, b->len);
	memcpy(b->data + 12, &crc, 4);
}

/* ---- reader ---- */

void sr_init(struct sreader *r, const void *p, size_t len, struct sr_error *e)
{
	r->p = p;
	r->len = len;
	r->off = 0;
	r->e = e;
}

bool sr_fail(struct sreader *r, const char *fmt, ...)
{
	va_list ap;

	if (r->e->failed)
		return false;
	r->e->failed = true;
	va_start(ap, fmt);
	vsnprintf(r->e->msg, sizeof(r->e->msg), fmt, ap);
	va_end(ap);
	return false;
}

const void *sr_bytes(struct sreader *r, size_t n, const char *what)
{
	const void *p;

	if (!sr_ok(r))
		return NULL;
	if (n > r->len - r->off) {
		sr_fail(r, "%s: truncated (%zu bytes needed, %zu left)", what, n, r->len - r->off);
		return NULL;
	}
	p = r->p + r->off;
	r->off += n;
	return p;
}

uint8_t sr_u8(struct sreader *r, const char *what)
{
	const uint8_t *p = sr_bytes(r, 1, what);

	return p ? *p : 0;
}

uint32_t sr_u32(struct sreader *r, const char *what)
{
	const void *p = sr_bytes(r, 4, what);
	uint32_t v = 0;

	if (p)
		memcpy(&v, p, 4);
	return v;
}

uint64_t sr_u64(struct sreader *r, const char *what)
{
	const void *p = sr_bytes(r, 8, what);
	uint64_t v = 0;

	if (p)
		memcpy(&v, p, 8);
	return v;
}

const void *sr_blob(struct sreader *r, uint32_t min, uint32_t max, uint32_t *len,
		    const char *what)
{
	uint32_t n = sr_u32(r, what);

	*len = 0;
	if (!sr_ok(r))
		return NULL;
	if (n < min || n > max) {
		sr_fail(r, "%s: length %u out of range (%u to %u)", what, n, min, max);
		return NULL;
	}
	*len = n;
	return sr_bytes(r, n, what);
}

bool sr_blob_exact(struct sreader *r, void *dst, size_t n, const char *what)
{
	uint32_t len;
	const void *p = sr_blob(r, n, n, &len, what);

	if (!sr_ok(r))
		return false;
	memcpy(dst, p, n);
	return true;
}

bool sr_str(struct sreader *r, char *dst, size_t cap, const char *what)
{
	uint32_t len;
	const char *p = sr_blob(r, 0, cap - 1, &len, what);

	dst[0] = '\0';
	if (!sr_ok(r))
		return false;
	if (len && memchr(p, '\0', len))
		return sr_fail(r, "%s: NUL byte inside the string", what);
	if (len)
		memcpy(dst, p, len);
	dst[len] = '\0';
	return true;
}

bool sr_bool(struct sreader *r, const char *what)
{
	uint8_t v = sr_u8(r, what);

	if (v > 1)
		sr_fail(r, "%s: %u is not a boolean", what, v);
	return v == 1;
}

bool sr_section(struct sreader *r, uint32_t tag, struct sreader *body, const char *what)
{
	uint32_t t = sr_u32(r, what);
	uint32_t len;
	const void *p;

	sr_init(body, NULL, 0, r->e);
	if (!sr_ok(r))
		return false;
	if (t != tag)
		return sr_fail(r, "%s: expected section '%.4s', found tag %#x", what,
			       (const char *)&tag, t);
	len = sr_u32(r, what);
	p = sr_bytes(r, len, what);
	if (!sr_ok(r))
		return false;
	sr_init(body, p, len, r->e);
	return true;
}

bool sr_end(struct sreader *r, const char *what)
{
	if (!sr_ok(r))
		return false;
	if (r->off != r->len)
		return sr_fail(r, "%s: %zu unexpected bytes at the end", what, r->len - r->off);
	return true;
}

bool snap_file_open(const void *p, size_t len, struct sreader *body, struct sr_error *e)
{
	const uint8_t *b = p;
	uint32_t version, crc;
	uint64_t flen;

	memset(e, 0, sizeof(*e));
	sr_init(body, NULL, 0, e);
	if (len < SNAP_HEADER_SIZE)
		return sr_fail(body, "truncated: %zu bytes, shorter than the header", len);
	if (memcmp(b, SNAP_MAGIC, 8))
		return sr_fail(body, "not a kiln snapshot state file (bad magic)");
	memcpy(&version, b + 8, 4);
	memcpy(&crc, b + 12, 4);
	memcpy(&flen, b + 16, 8);
	if (version != SNAP_VERSION)
		return sr_fail(body, "format version %u, this kiln-vmm reads version %u", version,
			       SNAP_VERSION);
	if (flen != len)
		return sr_fail(body, "%s: header says %llu bytes, file has %zu",
			       flen > len ? "truncated" : "trailing data",
			       (unsigned long long)flen, len);
	if (file_crc(b, len) != crc)
		return sr_fail(body, "checksum mismatch: the file is corrupted");
	sr_init(body, b + SNAP_HEADER_SIZE, len - SNAP_HEADER_SIZE, e);
	return true;
}
