/*
 * egress_guest.c - put the sandbox's CA certificate into the guest's trust store (egress.h).
 *
 * Done from the host with the agent's ordinary file requests, so kiln-init needs nothing new:
 * read the image's system bundle, drop any kiln block an earlier CA left there (a sandbox made
 * from a snapshot of another one), append this sandbox's CA between markers and write it back;
 * and write the CA alone where update-ca-certificates and NODE_EXTRA_CA_CERTS find it.  Only
 * ca.pem, which is public, ever crosses; the key stays in the VM directory.
 *
 * The agent serves one request per connection, so each step connects anew.  The guest answers
 * what it likes: the bundle it sends is read into a sealed memfd that cannot
 * grow past EGRESS_BUNDLE_MAX, and is otherwise treated as opaque bytes that go back to it.
 */
#include "egress.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../net/text_file.h"
#include "../proto/proto.h"
#include "vmctl.h"

#define EGRESS_BUNDLE_MAX	(8 << 20)
#define CA_PEM_MAX		(64 << 10)
#define MARK_BEGIN		"# kiln egress CA: begin\n"
#define MARK_END		"# kiln egress CA: end\n"

static int set_err(struct agent_error *e, int err, const char *msg, const char *path)
{
	e->err = err;
	snprintf(e->message, sizeof(e->message), "%s%s%s", msg, path ? ": " : "",
		 path ? path : "");
	return -1;
}

static int connect_agent(const char *dir, struct agent_error *e)
{
	char sock[PATH_MAX];

	vm_sock_path(dir, sock, sizeof(sock));
	return agent_connect(sock, PROTO_AGENT_PORT, 10000, e);
}

/* The guest's bundle into buf (malloc'd, *len bytes); an absent one is empty. */
static int read_bundle(const char *dir, char **buf, size_t *len, struct agent_error *e)
{
	int mfd = memfd_create("kiln-bundle", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	uint64_t got = 0;
	int r = -1, fd, rd;

	*buf = NULL;
	if (mfd < 0 || ftruncate(mfd, EGRESS_BUNDLE_MAX) ||
	    fcntl(mfd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK)) {
		set_err(e, errno, "memfd", NULL);
		goto out;
	}
	fd = connect_agent(dir, e);
	if (fd < 0)
		goto out;
	rd = agent_read_file(fd, EGRESS_GUEST_BUNDLE, mfd, &got, e);
	close(fd);
	if (rd) {
		if (e->err != ENOENT) {
			set_err(e, e->err, "cannot read the guest's CA bundle (over 8 MiB?)",
				EGRESS_GUEST_BUNDLE);
			goto out;
		}
		*e = (struct agent_error){ 0 };
		got = 0;
	}
	*buf = malloc(got + 1);
	if (!*buf || pread(mfd, *buf, got, 0) != (ssize_t)got) {
		set_err(e, ENOMEM, "cannot read back the guest's CA bundle", NULL);
		goto out;
	}
	(*buf)[got] = 0;
	*len = got;
	r = 0;
out:
	if (mfd >= 0)
		close(mfd);
	if (r) {
		free(*buf);
		*buf = NULL;
	}
	return r;
}

/* Drop every marked kiln block from text[0..*len), in place. */
static void strip_kiln_blocks(char *text, size_t *len)
{
	char *b;

	while ((b = memmem(text, *len, MARK_BEGIN, strlen(MARK_BEGIN)))) {
		char *end = memmem(b, *len - (b - text), MARK_END, strlen(MARK_END));
		char *stop = end ? end + strlen(MARK_END) : text + *len;

		memmove(b, stop, text + *len - stop);
		*len -= stop - b;
	}
}

static int write_guest(const char *dir, const char *path, const char *data, size_t len,
		       struct agent_error *e)
{
	int mfd = memfd_create("kiln-ca", MFD_CLOEXEC), fd;
	uint64_t bytes = 0;
	int r = -1;

	if (mfd < 0)
		return set_err(e, errno, "memfd", NULL);
	if (write(mfd, data, len) != (ssize_t)len || lseek(mfd, 0, SEEK_SET)) {
		set_err(e, errno, "memfd", NULL);
		goto out;
	}
	fd = connect_agent(dir, e);
	if (fd >= 0) {
		r = agent_write_file(fd, path, 0644, mfd, &bytes, e);
		close(fd);
	}
out:
	close(mfd);
	return r;
}

int egress_guest_install(const char *dir, struct agent_error *e)
{
	char path[PATH_MAX], err[256], *pem, *bundle = NULL, *out = NULL;
	size_t len = 0, plen;
	int r = -1;

	snprintf(path, sizeof(path), "%s/" EGRESS_CA_DIR "/ca.pem", dir);
	pem = read_text_file(path, CA_PEM_MAX, err, sizeof(err));
	if (!pem)
		return set_err(e, EIO, err, NULL);
	plen = strlen(pem);
	if (read_bundle(dir, &bundle, &len, e))
		goto out;
	strip_kiln_blocks(bundle, &len);
	out = malloc(len + plen + strlen(MARK_BEGIN) + strlen(MARK_END) + 2);
	if (!out) {
		set_err(e, ENOMEM, "out of memory", NULL);
		goto out;
	}
	/* bundle + (newline if it lacks one) + marked CA */
	size_t n = len;

	memcpy(out, bundle, len);
	if (n && out[n - 1] != '\n')
		out[n++] = '\n';
	n += sprintf(out + n, "%s%s%s%s", MARK_BEGIN, pem,
		     plen && pem[plen - 1] != '\n' ? "\n" : "", MARK_END);
	if (write_guest(dir, EGRESS_GUEST_BUNDLE, out, n, e) ||
	    write_guest(dir, EGRESS_GUEST_CA, pem, plen, e))
		goto out;
	r = 0;
out:
	free(out);
	free(bundle);
	free(pem);
	return r;
}
