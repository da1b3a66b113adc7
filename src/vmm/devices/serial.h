/*
 * serial.h - a 16550A UART at the PC's COM1 address (0x3f8, IRQ 4): the guest console.
 *
 * Output goes to a file descriptor (or nowhere) and, a line at a time, to a watcher callback,
 * which is how the VMM notices a kernel panic even when the console is thrown away.  Input is
 * pushed by the main thread into a 64-byte receive FIFO.
 */
#ifndef KILN_SERIAL_H
#define KILN_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SERIAL_PORT_BASE	0x3f8
#define SERIAL_PORT_LEN		8
#define SERIAL_FIFO_LEN		64
#define SERIAL_LINE_MAX		256

typedef void (*serial_irq_fn)(void *ctx, int level);
typedef void (*serial_line_fn)(void *ctx, const char *line);

struct serial {
	pthread_mutex_t lock;
	int out_fd;			/* -1: discard */
	serial_irq_fn set_irq;
	serial_line_fn on_line;
	void *ctx;

	uint8_t ier, lcr, mcr, lsr_extra, scr, dll, dlm, fcr;
	bool thr_irq_pending;		/* THR empty interrupt waiting to be seen in IIR */
	int irq_level;
	uint8_t rx[SERIAL_FIFO_LEN];
	unsigned rx_head, rx_count;

	char line[SERIAL_LINE_MAX];
	unsigned line_len;
};

void serial_init(struct serial *s, int out_fd, serial_irq_fn set_irq,
		 serial_line_fn on_line, void *ctx);
void serial_read(void *dev, uint64_t offset, void *data, unsigned len);
void serial_write(void *dev, uint64_t offset, const void *data, unsigned len);

/* Feed host input to the guest; returns how many bytes fitted in the FIFO. */
unsigned serial_input(struct serial *s, const uint8_t *buf, unsigned len);

struct sbuf;
struct sreader;

/*
 * Snapshots: the guest-visible registers and the receive FIFO.  The output descriptor and the
 * console watcher's line buffer belong to the host and are not saved.  serial_restore() checks
 * every field before changing anything; false with the reason in r.
 */
void serial_save(struct serial *s, struct sbuf *b);
bool serial_restore(struct serial *s, struct sreader *r);

#endif
