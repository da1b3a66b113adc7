/*
 * proto.c - frame building, checked parsing and blocking frame I/O (see proto.h).
 */
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIELD_HDR 6

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = v >> (8 * i);
}

static uint16_t get_le16(const uint8_t *p)
{
	return p[0] | (uint16_t)p[1] << 8;
}

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void set_payload_len(struct frame *f)
{
	put_le32(f->buf, f->len - PROTO_HDR_SIZE);
}

int frame_init(struct frame *f, uint8_t type)
{
	f->type = type;
	f->version = PROTO_VERSION;
	f->cap = 256;
	f->buf = malloc(f->cap);
	if (!f->buf)
		return -1;
	f->len = PROTO_HDR_SIZE;
	f->buf[4] = PROTO_VERSION;
	f->buf[5] = type;
	put_le16(f->buf + 6, 0);
	set_payload_len(f);
	return 0;
}

void frame_free(struct frame *f)
{
	free(f->buf);
	f->buf = NULL;
	f->len = f->cap = 0;
}

int frame_put(struct frame *f, uint16_t tag, const void *val, uint32_t len)
{
	size_t need = f->len + FIELD_HDR + (size_t)len;

	if (need - PROTO_HDR_SIZE > PROTO_MAX_PAYLOAD)
		return -1;
	if (need > f->cap) {
		size_t cap = f->cap;

		while (cap < need)
			cap *= 2;
		uint8_t *b = realloc(f->buf, cap);

		if (!b)
			return -1;
		f->buf = b;
		f->cap = cap;
	}
	put_le16(f->buf + f->len, tag);
	put_le32(f->buf + f->len + 2, len);
	if (len)
		memcpy(f->buf + f->len + FIELD_HDR, val, len);
	f->len = need;
	set_payload_len(f);
	return 0;
}

int frame_put_str(struct frame *f, uint16_t tag, const char *s)
{
	return frame_put(f, tag, s, strlen(s));
}

int frame_put_u8(struct frame *f, uint16_t tag, uint8_t v)
{
	return frame_put(f, tag, &v, 1);
}

int frame_put_u16(struct frame *f, uint16_t tag, uint16_t v)
{
	uint8_t b[2];

	put_le16(b, v);
	return frame_put(f, tag, b, 2);
}

int frame_put_u32(struct frame *f, uint16_t tag, uint32_t v)
{
	uint8_t b[4];

	put_le32(b, v);
	return frame_put(f, tag, b, 4);
}

int frame_put_u64(struct frame *f, uint16_t tag, uint64_t v)
{
	uint8_t b[8];

	put_le32(b, (uint32_t)v);
	put_le32(b + 4, (uint32_t)(v >> 32));
	return frame_put(f, tag, b, 8);
}

int frame_header(const uint8_t hdr[PROTO_HDR_SIZE], uint8_t *type, uint32_t *payload_len)
{
	uint32_t len = get_le32(hdr);

	if (hdr[4] != PROTO_VERSION || len > PROTO_MAX_PAYLOAD || get_le16(hdr + 6) != 0)
		return -1;
	*type = hdr[5];
	*payload_len = len;
	return 0;
}

bool frame_next(const uint8_t *payload, uint32_t len, uint32_t *off, struct field *out)
{
	/* off <= len always holds, so len - off cannot wrap. */
	if (*off > len || len - *off < FIELD_HDR)
		return false;
	uint32_t flen = get_le32(payload + *off + 2);

	if (flen > len - *off - FIELD_HDR)
		return false;
	out->tag = get_le16(payload + *off);
	out->len = flen;
	out->val = payload + *off + FIELD_HDR;
	*off += FIELD_HDR + flen;
	return true;
}

bool frame_fields_valid(const uint8_t *payload, uint32_t len)
{
	uint32_t off = 0;
	struct field f;

	while (frame_next(payload, len, &off, &f))
		;
	return off == len;
}

bool frame_find(const uint8_t *payload, uint32_t len, uint16_t tag, struct field *out)
{
	uint32_t off = 0;

	while (frame_next(payload, len, &off, out))
		if (out->tag == tag)
			return true;
	return false;
}

bool field_u8(const struct field *f, uint8_t *v)
{
	if (f->len != 1)
		return false;
	*v = f->val[0];
	return true;
}

bool field_u16(const struct field *f, uint16_t *v)
{
	if (f->len != 2)
		return false;
	*v = get_le16(f->val);
	return true;
}

bool field_u32(const struct field *f, uint32_t *v)
{
	if (f->len != 4)
		return false;
	*v = get_le32(f->val);
	return true;
}

bool field_u64(const struct field *f, uint64_t *v)
{
	if (f->len != 8)
		return false;
	*v = get_le32(f->val) | (uint64_t)get_le32(f->val + 4) << 32;
	return true;
}

bool field_str(const struct field *f, char *dst, size_t dstlen)
{
	if (f->len >= dstlen || memchr(f->val, 0, f->len))
		return false;
	memcpy(dst, f->val, f->len);
	dst[f->len] = 0;
	return true;
}

/*
 * A socket write that fails with ENOMEM or ENOBUFS sent nothing: the kernel could not get a
 * buffer for that much at once.  The guest's vsock is where this happens: it copies each packet
 * (up to 64 KiB) into one linear buffer, an order-5 allocation that fails when guest memory is
 * low and fragmented, and AF_VSOCK then returns ENOMEM.  That is no reason to drop the
 * connection, so such a write is retried with half as many bytes (an allocation of a lower
 * order), down to WRITE_MIN_CHUNK, then after pauses growing to WRITE_MAX_PAUSE_MS; a write
 * that gets through lets the size grow back.  Only WRITE_GIVE_UP_MS without a byte through
 * fails.
 */
#define WRITE_MIN_CHUNK		1024
#define WRITE_MAX_PAUSE_MS	100
#define WRITE_GIVE_UP_MS	30000

struct write_backoff {
	size_t chunk;		/* most bytes to offer one write */
	unsigned pause_ms, waited_ms;
};

/* After a write failed for want of kernel memory: whether to try again (having waited if so). */
static bool backoff_retry(struct write_backoff *b)
{
	if (b->chunk > WRITE_MIN_CHUNK) {
		b->chunk = b->chunk / 2 > WRITE_MIN_CHUNK ? b->chunk / 2 : WRITE_MIN_CHUNK;
		return true;
	}
	if (b->waited_ms >= WRITE_GIVE_UP_MS)
		return false;
	usleep(b->pause_ms * 1000);
	b->waited_ms += b->pause_ms;
	b->pause_ms = b->pause_ms * 2 < WRITE_MAX_PAUSE_MS ? b->pause_ms * 2 : WRITE_MAX_PAUSE_MS;
	return true;
}

static void backoff_progress(struct write_backoff *b)
{
	b->chunk = b->chunk > SIZE_MAX / 2 ? SIZE_MAX : b->chunk * 2;
	b->pause_ms = 1;
	b->waited_ms = 0;
}

int proto_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	struct write_backoff b = { .chunk = len, .pause_ms = 1 };

	while (len) {
		ssize_t n = write(fd, p, len < b.chunk ? len : b.chunk);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == ENOMEM || errno == ENOBUFS) && backoff_retry(&b))
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
		backoff_progress(&b);
	}
	return 0;
}

int proto_read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, p + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			if (done == 0)
				return 0;
			errno = EPROTO;		/* EOF inside a frame */
			return -1;
		}
		done += n;
	}
	return 1;
}

int proto_write_frame(int fd, const struct frame *f)
{
	return proto_write_all(fd, f->buf, f->len);
}

int proto_read_frame(int fd, uint8_t **buf, size_t *cap, uint8_t *type, uint32_t *len)
{
	uint8_t hdr[PROTO_HDR_SIZE];
	int r = proto_read_all(fd, hdr, sizeof(hdr));

	if (r <= 0)
		return r;
	if (frame_header(hdr, type, len)) {
		errno = EPROTO;
		return -1;
	}
	if (*len > *cap || !*buf) {
		uint8_t *b = realloc(*buf, *len ? *len : 1);

		if (!b)
			return -1;
		*buf = b;
		*cap = *len ? *len : 1;
	}
	if (*len && proto_read_all(fd, *buf, *len) != 1) {
		errno = EPROTO;
		return -1;
	}
	if (!frame_fields_valid(*buf, *len)) {
		errno = EPROTO;
		return -1;
	}
	return 1;
}

int proto_read_in(int fd, struct frame_in *in)
{
	return proto_read_frame(fd, &in->buf, &in->cap, &in->type, &in->len);
}
