/*
 * i8042.c - minimal keyboard controller: status, the configuration byte, and CPU reset both by
 * the pulse command (0xfe) and through the output port (0xd1, bit 0 low).
 * Registered over ports 0x60-0x64; offset 0 is the data port, offset 4 status/command.
 */
#include "i8042.h"

#include <string.h>

#include "../snapshot/format.h"

#define STATUS_OBF		0x01	/* output buffer full */
#define STATUS_SYS		0x04	/* self-test passed */
#define STATUS_CMD		0x08	/* last write was a command */

#define CMD_READ_CONFIG		0x20
#define CMD_WRITE_CONFIG	0x60
#define CMD_SELF_TEST		0xaa
#define CMD_WRITE_OUTPUT	0xd1
#define CMD_PULSE_RESET		0xfe

void i8042_init(struct i8042 *k, i8042_reset_fn reset, void *ctx)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->reset = reset;
	k->ctx = ctx;
}

void i8042_read(void *dev, uint64_t offset, void *data, unsigned len)
{
	struct i8042 *k = dev;
	uint8_t v = 0;

	if (len != 1)
		return;
	pthread_mutex_lock(&k->lock);
	if (offset == 0) {
		v = k->out;
		k->out_full = 0;
	} else if (offset == 4) {
		v = STATUS_SYS | (k->out_full ? STATUS_OBF : 0) | (k->pending_cmd ? STATUS_CMD : 0);
	}
	pthread_mutex_unlock(&k->lock);
	*(uint8_t *)data = v;
}

static void put_output(struct i8042 *k, uint8_t v)
{
	k->out = v;
	k->out_full = 1;
}

void i8042_write(void *dev, uint64_t offset, const void *data, unsigned len)
{
	struct i8042 *k = dev;
	uint8_t v = *(const uint8_t *)data;
	int reset = 0;

	if (len != 1)
		return;
	pthread_mutex_lock(&k->lock);
	if (offset == 4) {
		k->pending_cmd = 0;
		switch (v) {
		case CMD_READ_CONFIG:
			put_output(k, k->cmd_byte);
			break;
		case CMD_SELF_TEST:
			put_output(k, 0x55);
			break;
		case CMD_WRITE_CONFIG:
		case CMD_WRITE_OUTPUT:
			k->pending_cmd = v;
			break;
		case CMD_PULSE_RESET:
			reset = 1;
			break;
		}
	} else if (offset == 0) {
		if (k->pending_cmd == CMD_WRITE_CONFIG)
			k->cmd_byte = v;
		else if (k->pending_cmd == CMD_WRITE_OUTPUT && !(v & 1))
			reset = 1;
		k->pending_cmd = 0;
	}
	pthread_mutex_unlock(&k->lock);
	if (reset)
		k->reset(k->ctx);
}

void i8042_save(struct i8042 *k, struct sbuf *b)
{
	pthread_mutex_lock(&k->lock);
	sbuf_u8(b, k->cmd_byte);
	sbuf_u8(b, k->pending_cmd);
	sbuf_u8(b, k->out);
	sbuf_u8(b, k->out_full);
	pthread_mutex_unlock(&k->lock);
}

bool i8042_restore(struct i8042 *k, struct sreader *r)
{
	uint8_t cmd_byte = sr_u8(r, "i8042 configuration");
	uint8_t pending = sr_u8(r, "i8042 pending command");
	uint8_t out = sr_u8(r, "i8042 output");
	bool out_full = sr_bool(r, "i8042 output flag");

	if (!sr_end(r, "i8042"))
		return false;
	if (pending && pending != CMD_WRITE_CONFIG && pending != CMD_WRITE_OUTPUT)
		return sr_fail(r, "i8042: %#x is not a command that waits for data", pending);
	pthread_mutex_lock(&k->lock);
	k->cmd_byte = cmd_byte;
	k->pending_cmd = pending;
	k->out = out;
	k->out_full = out_full;
	pthread_mutex_unlock(&k->lock);
	return true;
}
