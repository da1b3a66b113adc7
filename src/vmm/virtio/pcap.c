/*
 * pcap.c - the capped capture file (see pcap.h).  Records are written with one writev() each so
 * a reader of a live file never sees a record header without its bytes for long; short writes
 * (disk full) stop the capture rather than leave a torn record behind more than once.
 */
#include "pcap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define PCAP_MAGIC_US		0xa1b2c3d4u
#define LINKTYPE_ETHERNET	1

struct pcap_file_hdr {
	uint32_t magic;
	uint16_t major, minor;
	int32_t thiszone;
	uint32_t sigfigs, snaplen, linktype;
};

struct pcap_rec_hdr {
	uint32_t ts_sec, ts_usec, incl_len, orig_len;
};

static const struct pcap_file_hdr file_hdr = {
	.magic = PCAP_MAGIC_US, .major = 2, .minor = 4,
	.snaplen = PCAP_SNAPLEN, .linktype = LINKTYPE_ETHERNET,
};

/*
 * The end of the last whole record of the capture on fd, which starts with our header; 0 if
 * it does not.  A record cut short (the VMM killed in its write) is where the capture goes on.
 */
static uint64_t capture_end(int fd, uint64_t file_size)
{
	struct pcap_file_hdr h;
	struct pcap_rec_hdr r;
	uint64_t at = sizeof(h);

	if (pread(fd, &h, sizeof(h), 0) != sizeof(h) || memcmp(&h, &file_hdr, sizeof(h)))
		return 0;
	while (at + sizeof(r) <= file_size) {
		if (pread(fd, &r, sizeof(r), at) != sizeof(r) || r.incl_len > PCAP_SNAPLEN ||
		    at + sizeof(r) + r.incl_len > file_size)
			break;
		at += sizeof(r) + r.incl_len;
	}
	return at;
}

int pcap_open(struct pcap_writer *w, const char *path, uint64_t max, bool resume, char *err,
	      size_t errlen)
{
	struct stat st;
	uint64_t end = 0;

	memset(w, 0, sizeof(*w));
	w->fd = -1;
	if (max < PCAP_HDR_SIZE) {
		snprintf(err, errlen, "pcap_max %llu is below the %d-byte file header",
			 (unsigned long long)max, PCAP_HDR_SIZE);
		return -1;
	}
	w->fd = open(path, O_RDWR | O_CREAT | (resume ? 0 : O_TRUNC) | O_CLOEXEC | O_NOFOLLOW,
		     0600);
	if (w->fd < 0) {
		snprintf(err, errlen, "pcap %s: %s", path, strerror(errno));
		return -1;
	}
	if (resume && fstat(w->fd, &st) == 0 && st.st_size > 0) {
		end = capture_end(w->fd, st.st_size);
		if (!end) {
			snprintf(err, errlen, "pcap %s: not a capture to go on with", path);
			goto fail;
		}
		if (ftruncate(w->fd, end) || lseek(w->fd, end, SEEK_SET) < 0) {
			snprintf(err, errlen, "pcap %s: %s", path, strerror(errno));
			goto fail;
		}
	} else if (write(w->fd, &file_hdr, sizeof(file_hdr)) != sizeof(file_hdr)) {
		snprintf(err, errlen, "pcap %s: cannot write the header", path);
		goto fail;
	}
	w->max = max;
	w->size = end ? end : sizeof(file_hdr);
	return 0;
fail:
	close(w->fd);
	w->fd = -1;
	return -1;
}

void pcap_frame(struct pcap_writer *w, uint64_t realtime_ns, const void *frame, uint32_t len)
{
	struct pcap_rec_hdr r;
	struct iovec iov[2];
	uint32_t incl = len < PCAP_SNAPLEN ? len : PCAP_SNAPLEN;
	ssize_t n;

	if (w->fd < 0)
		return;
	if (w->size + sizeof(r) + incl > w->max) {
		w->skipped++;
		return;
	}
	r.ts_sec = (uint32_t)(realtime_ns / 1000000000ULL);
	r.ts_usec = (uint32_t)(realtime_ns % 1000000000ULL / 1000);
	r.incl_len = incl;
	r.orig_len = len;
	iov[0] = (struct iovec){ &r, sizeof(r) };
	iov[1] = (struct iovec){ (void *)frame, incl };
	n = writev(w->fd, iov, 2);
	if (n != (ssize_t)(sizeof(r) + incl)) {
		/* Disk full or I/O error: cut back to the last whole record and stop. */
		if (ftruncate(w->fd, w->size))
			w->size = w->max;
		w->max = w->size;
		w->skipped++;
		return;
	}
	w->size += n;
	w->frames++;
}

void pcap_close(struct pcap_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
}
