/*
 * i8042.h - just enough of the PC keyboard controller for the guest to reset the machine
 * (Linux reboot=k writes 0xfe to port 0x64).  There is no keyboard behind it.
 */
#ifndef KILN_I8042_H
#define KILN_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define I8042_DATA_PORT		0x60
#define I8042_CMD_PORT		0x64

typedef void (*i8042_reset_fn)(void *ctx);

struct i8042 {
	pthread_mutex_t lock;
	uint8_t cmd_byte;		/* controller configuration byte */
	uint8_t pending_cmd;		/* command waiting for its data byte */
	uint8_t out;			/* output buffer */
	int out_full;
	i8042_reset_fn reset;
	void *ctx;
};

void i8042_init(struct i8042 *k, i8042_reset_fn reset, void *ctx);
void i8042_read(void *dev, uint64_t offset, void *data, unsigned len);
void i8042_write(void *dev, uint64_t offset, const void *data, unsigned len);

struct sbuf;
struct sreader;

/* Snapshots; i8042_restore() checks every field first, false with the reason in r. */
void i8042_save(struct i8042 *k, struct sbuf *b);
bool i8042_restore(struct i8042 *k, struct sreader *r);

#endif
