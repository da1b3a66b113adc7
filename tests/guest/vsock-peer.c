/*
 * vsock-peer.c - the guest's half of the vsock VM tests (tests/integration/test_vsock.py).
 * Built static by the Makefile into build/tests/guest/ and copied into the test's root disk.
 *
 *   vsock-peer serve PORT             listen on PORT, then go to the background and echo every
 *                                     connection until its EOF (one child per connection)
 *   vsock-peer wait PORT              accept one connection, read it to EOF, exit
 *   vsock-peer send CID PORT BYTES    connect, send BYTES of a known pattern while reading the
 *                                     echo, half-close, check the echo up to EOF
 *
 * Results are one line on stdout, "vsock-peer: ..." (the test reads them from the console).
 * Exit status 0 on success, 1 on failure, 2 on bad arguments.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(i * 31 + (i >> 8) + 7);
}

static unsigned long number(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (!*s || *end) {
		fprintf(stderr, "vsock-peer: '%s' is not a number\n", s);
		exit(2);
	}
	return v;
}

static int vsock_socket(void)
{
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);

	if (fd < 0) {
		printf("vsock-peer: socket: %s\n", strerror(errno));
		exit(1);
	}
	return fd;
}

static int listen_on(unsigned port)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				  .svm_port = port };
	int fd = vsock_socket();

	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 64)) {
		printf("vsock-peer: listen %u: %s\n", port, strerror(errno));
		exit(1);
	}
	return fd;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static void echo(int fd)
{
	uint8_t buf[65536];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write_all(fd, buf, n))
			break;
	close(fd);
}

static int serve(unsigned port)
{
	int lfd = listen_on(port);

	printf("vsock-peer: serving %u\n", port);
	fflush(stdout);
	signal(SIGCHLD, SIG_IGN);	/* children reap themselves */
	if (fork())
		return 0;		/* listening already: the caller may go on */
	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			continue;
		if (fork() == 0) {
			close(lfd);
			echo(fd);
			_exit(0);
		}
		close(fd);
	}
}

static int wait_one(unsigned port)
{
	int lfd = listen_on(port);
	int fd = accept(lfd, NULL, NULL);
	uint8_t buf[4096];

	while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
		;
	printf("vsock-peer: wait %u: done\n", port);
	return 0;
}

struct xfer {
	uint64_t sent, got, total;
	uint64_t bad_at;		/* first corrupt byte + 1, 0 if none */
};

/* Send while reading the echo, so neither side can block the other; half-close when done. */
static int pump(int fd, struct xfer *x)
{
	uint8_t out[16384], in[65536];
	bool open_out = true;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN | (open_out ? POLLOUT : 0) };

		if (poll(&p, 1, 60000) <= 0)
			return -1;
		if (p.revents & POLLOUT) {
			size_t n = x->total - x->sent < sizeof(out) ? x->total - x->sent : sizeof(out);

			for (size_t i = 0; i < n; i++)
				out[i] = pattern(x->sent + i);
			ssize_t w = n ? write(fd, out, n) : 0;

			if (w < 0 && errno != EAGAIN && errno != EINTR)
				return -1;
			x->sent += w > 0 ? w : 0;
			if (x->sent == x->total) {
				shutdown(fd, SHUT_WR);
				open_out = false;
			}
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(fd, in, sizeof(in));

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return r;
			for (ssize_t i = 0; i < r; i++)
				if (!x->bad_at && in[i] != pattern(x->got + i))
					x->bad_at = x->got + i + 1;
			x->got += r;
		}
	}
}

static int send_to(unsigned cid, unsigned port, uint64_t bytes)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	struct xfer x = { .total = bytes };
	int fd = vsock_socket();

	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		printf("vsock-peer: send %u: connect failed: %s\n", port, strerror(errno));
		return 1;
	}
	if (pump(fd, &x) || x.got != bytes || x.bad_at) {
		printf("vsock-peer: send %u: failed: sent %llu, echoed %llu, corrupt at %llu\n",
		       port, (unsigned long long)x.sent, (unsigned long long)x.got,
		       (unsigned long long)x.bad_at);
		return 1;
	}
	printf("vsock-peer: send %u: ok %llu\n", port, (unsigned long long)bytes);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "serve"))
		return serve(number(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "wait"))
		return wait_one(number(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "send"))
		return send_to(number(argv[2]), number(argv[3]), number(argv[4]));
	fprintf(stderr, "usage: vsock-peer serve PORT | wait PORT | send CID PORT BYTES\n");
	return 2;
}
