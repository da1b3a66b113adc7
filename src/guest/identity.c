/*
 * identity.c - IDENTITY: make a restored clone a distinct machine before it serves anyone.
 *
 * Every clone of a snapshot wakes with the same kernel RNG state, the wall clock of the moment
 * the snapshot was taken, and the template's hostname.  The host sends, first thing after a
 * restore: fresh entropy (credited to the pool, then a forced CRNG reseed so /dev/urandom
 * output diverges at once), the wall clock, a hostname, a sandbox id and environment variables
 * for every later process.  The environment lives in a file because requests are served by
 * forked workers, which cannot change PID 1's memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define IDENTITY_ENV_FILE	"/run/kiln/env"
#define ENTROPY_MAX		512

static int add_entropy(const uint8_t *data, uint32_t len)
{
	struct {
		struct rand_pool_info info;
		uint8_t buf[ENTROPY_MAX];
	} e;
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -1;
	e.info.entropy_count = len * 8;
	e.info.buf_size = len;
	memcpy(e.buf, data, len);
	r = ioctl(fd, RNDADDENTROPY, &e.info);
	if (r == 0)
		r = ioctl(fd, RNDRESEEDCRNG);
	close(fd);
	return r;
}

static int set_clock(uint64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000ULL, .tv_nsec = ns % 1000000000ULL };

	return clock_settime(CLOCK_REALTIME, &ts);
}

/* Environment file: "K=V" lines, replaced atomically.  A request with neither a sandbox id
 * nor variables (a resume) keeps it: the host's secrets placeholders and CA variables, and
 * the id, belong to the sandbox, not to one run of its VMM. */
static int save_env(const struct request *req)
{
	uint32_t off = 0;
	struct field f;
	FILE *out;
	char id[129];

	if (!frame_find(req->payload, req->len, TAG_SANDBOX_ID, &f) &&
	    !frame_find(req->payload, req->len, TAG_ENV, &f))
		return 0;

	mkdir("/run/kiln", 0700);
	out = fopen(IDENTITY_ENV_FILE ".tmp", "we");
	if (!out)
		return -1;
	if (frame_find(req->payload, req->len, TAG_SANDBOX_ID, &f) && field_str(&f, id, sizeof(id)) &&
	    id[0] && !strchr(id, '\n'))
		fprintf(out, "KILN_SANDBOX_ID=%s\n", id);
	while (frame_next(req->payload, req->len, &off, &f)) {
		if (f.tag != TAG_ENV)
			continue;
		if (!f.len || memchr(f.val, 0, f.len) || memchr(f.val, '\n', f.len) ||
		    !memchr(f.val, '=', f.len) || f.val[0] == '=') {
			fclose(out);
			unlink(IDENTITY_ENV_FILE ".tmp");
			errno = EINVAL;
			return -1;
		}
		fprintf(out, "%.*s\n", (int)f.len, (const char *)f.val);
	}
	if (fclose(out) || rename(IDENTITY_ENV_FILE ".tmp", IDENTITY_ENV_FILE))
		return -1;
	return 0;
}

char **identity_env(int *count)
{
	FILE *f = fopen(IDENTITY_ENV_FILE, "re");
	char line[8192];
	int n = 0, cap = 16;
	char **v;

	*count = 0;
	if (!f)
		return NULL;
	v = calloc(cap + 1, sizeof(char *));
	while (v && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strchr(line, '='))
			continue;
		if (n == cap) {
			char **nv = realloc(v, (2 * cap + 1) * sizeof(char *));

			if (!nv)
				break;
			v = nv;
			cap *= 2;
		}
		v[n++] = strdup(line);
		v[n] = NULL;
	}
	fclose(f);
	*count = n;
	return v;
}

int op_identity(int conn, const struct request *req)
{
	struct field f;
	uint64_t ns;
	char host[65];

	if (frame_find(req->payload, req->len, TAG_DATA, &f)) {
		if (f.len == 0 || f.len > ENTROPY_MAX)
			return send_error(conn, EINVAL, "entropy must be 1 to 512 bytes", NULL);
		if (add_entropy(f.val, f.len))
			return send_error(conn, errno, "cannot add entropy", NULL);
	}
	/* The clock and hostname belong to the machine: only the guest's init may set them. */
	if (frame_find(req->payload, req->len, TAG_TIME_NS, &f) && agent_is_init) {
		if (!field_u64(&f, &ns) || set_clock(ns))
			return send_error(conn, errno ? errno : EINVAL, "cannot set the clock", NULL);
	}
	if (frame_find(req->payload, req->len, TAG_HOSTNAME, &f) && agent_is_init) {
		if (!field_str(&f, host, sizeof(host)) || !host[0] || sethostname(host, strlen(host)))
			return send_error(conn, errno ? errno : EINVAL, "bad hostname", NULL);
	}
	if (save_env(req))
		return send_error(conn, errno, "bad environment", NULL);
	return send_ok(conn);
}
