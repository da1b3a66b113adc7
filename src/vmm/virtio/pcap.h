/*
 * pcap.h - a capped capture file of a NIC's frames, in the classic libpcap format (microsecond
 * timestamps, LINKTYPE_ETHERNET) that tcpdump and wireshark read.  For forensics: the file never
 * grows past its cap; frames that would not fit whole are counted, not written, so the file
 * always ends on a record boundary.
 */
#ifndef KILN_PCAP_H
#define KILN_PCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCAP_HDR_SIZE		24
#define PCAP_REC_HDR_SIZE	16
#define PCAP_SNAPLEN		65535

struct pcap_writer {
	int fd;			/* -1: not capturing */
	uint64_t max;		/* bytes, including the file header */
	uint64_t size;		/* bytes written so far */
	uint64_t frames, skipped;
};

/*
 * Create (truncate) path and write the file header; with resume, go on with the capture
 * already there (a restored VM's: its file header ours, a torn last record dropped), or start
 * one if there is none.  -1 with a reason in err.
 */
int pcap_open(struct pcap_writer *w, const char *path, uint64_t max, bool resume, char *err,
	      size_t errlen);

/* Append one frame with its time (CLOCK_REALTIME ns), unless the cap is reached. */
void pcap_frame(struct pcap_writer *w, uint64_t realtime_ns, const void *frame, uint32_t len);

void pcap_close(struct pcap_writer *w);

#endif
