/*
 * serial.c - 16550A UART emulation (see serial.h).
 *
 * Transmission is instantaneous: a byte written to THR is out before the write returns, so the
 * transmitter is always empty and a THR-empty interrupt follows every write while the guest has
 * it enabled.  The interrupt line is ISA (edge); update_irq() makes sure each new interrupt
 * condition produces a fresh rising edge.
 */
#include "serial.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "../snapshot/format.h"

#define REG_DATA	0	/* RBR read, THR write; DLL when LCR.DLAB */
#define REG_IER		1	/* DLM when LCR.DLAB */
#define REG_IIR_FCR	2
#define REG_LCR		3
#define REG_MCR		4
#define REG_LSR		5
#define REG_MSR		6
#define REG_SCR		7

#define IER_RDI		0x01	/* receive data available */
#define IER_THRI	0x02	/* transmitter holding register empty */
#define IIR_NONE	0x01
#define IIR_THRI	0x02
#define IIR_RDI		0x04
#define IIR_FIFO	0xc0
#define LCR_DLAB	0x80
#define LSR_DR		0x01
#define LSR_THRE	0x20
#define LSR_TEMT	0x40
#define MCR_LOOP	0x10
#define FCR_ENABLE	0x01
#define FCR_CLEAR_RX	0x02

void serial_init(struct serial *s, int out_fd, serial_irq_fn set_irq,
		 serial_line_fn on_line, void *ctx)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->out_fd = out_fd;
	s->set_irq = set_irq;
	s->on_line = on_line;
	s->ctx = ctx;
	s->mcr = 0x08;		/* OUT2, as firmware leaves it */
}

static uint8_t iir(const struct serial *s)
{
	uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;

	if ((s->ier & IER_RDI) && s->rx_count)
		return IIR_RDI | fifo;
	if ((s->ier & IER_THRI) && s->thr_irq_pending)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

/* Raise or lower the line; with new_edge, pulse it so a repeated condition is seen again. */
static void update_irq(struct serial *s, bool new_edge)
{
	int level = !(iir(s) & IIR_NONE);

	if (new_edge && level && s->irq_level) {
		s->set_irq(s->ctx, 0);
		s->irq_level = 0;
	}
	if (level != s->irq_level) {
		s->set_irq(s->ctx, level);
		s->irq_level = level;
	}
}

static void console_write(struct serial *s, uint8_t c)
{
	ssize_t n;

	/* A vCPU kick (pause, halt watch) may interrupt a write to a full pipe: retry it. */
	do
		n = write(s->out_fd, &c, 1);
	while (n < 0 && errno == EINTR);
	/* A console nobody reads (closed pipe, full disk) must not stop the guest: drop bytes. */
	if (n != 1)
		s->out_fd = -1;
}

static void console_byte(struct serial *s, uint8_t c)
{
	if (s->out_fd >= 0)
		console_write(s, c);
	if (c == '\n' || s->line_len == SERIAL_LINE_MAX - 1) {
		s->line[s->line_len] = 0;
		if (s->on_line)
			s->on_line(s->ctx, s->line);
		s->line_len = 0;
		if (c == '\n')
			return;
	}
	if (c != '\r')
		s->line[s->line_len++] = c;
}

static void rx_push(struct serial *s, uint8_t c)
{
	if (s->rx_count == SERIAL_FIFO_LEN)
		return;
	s->rx[(s->rx_head + s->rx_count) % SERIAL_FIFO_LEN] = c;
	s->rx_count++;
}

static uint8_t rx_pop(struct serial *s)
{
	uint8_t c;

	if (!s->rx_count)
		return 0;
	c = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_LEN;
	s->rx_count--;
	return c;
}

static uint8_t modem_status(const struct serial *s)
{
	if (!(s->mcr & MCR_LOOP))
		return 0xb0;		/* DCD, DSR, CTS: a cable is there and ready */
	/* Loopback wires DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD; Linux probes this. */
	return ((s->mcr & 0x01) << 5) | ((s->mcr & 0x02) << 3) |
	       ((s->mcr & 0x04) << 4) | ((s->mcr & 0x08) << 4);
}

static uint8_t read_reg(struct serial *s, unsigned reg)
{
	uint8_t v;

	switch (reg) {
	case REG_DATA:
		if (s->lcr & LCR_DLAB)
			return s->dll;
		v = rx_pop(s);
		update_irq(s, false);
		return v;
	case REG_IER:
		return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
	case REG_IIR_FCR:
		v = iir(s);
		if ((v & 0x0f) == IIR_THRI) {
			s->thr_irq_pending = false;	/* reading IIR acknowledges THRE */
			update_irq(s, false);
		}
		return v;
	case REG_LCR:
		return s->lcr;
	case REG_MCR:
		return s->mcr;
	case REG_LSR:
		return LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
	case REG_MSR:
		return modem_status(s);
	default:
		return s->scr;
	}
}

static void write_reg(struct serial *s, unsigned reg, uint8_t v)
{
	switch (reg) {
	case REG_DATA:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			return;
		}
		if (s->mcr & MCR_LOOP)
			rx_push(s, v);
		else
			console_byte(s, v);
		s->thr_irq_pending = true;
		update_irq(s, true);
		return;
	case REG_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			return;
		}
		/* Enabling THRE with an empty transmitter interrupts at once: that starts TX. */
		if ((v & IER_THRI) && !(s->ier & IER_THRI))
			s->thr_irq_pending = true;
		s->ier = v & 0x0f;
		update_irq(s, false);
		return;
	case REG_IIR_FCR:
		s->fcr = v & ~0x06;
		if (v & FCR_CLEAR_RX)
			s->rx_count = 0;
		update_irq(s, false);
		return;
	case REG_LCR:
		s->lcr = v;
		return;
	case REG_MCR:
		s->mcr = v & 0x1f;
		return;
	case REG_SCR:
		s->scr = v;
		return;
	default:
		return;			/* LSR and MSR are read-only */
	}
}

void serial_read(void *dev, uint64_t offset, void *data, unsigned len)
{
	struct serial *s = dev;

	if (len != 1)
		return;
	pthread_mutex_lock(&s->lock);
	*(uint8_t *)data = read_reg(s, offset);
	pthread_mutex_unlock(&s->lock);
}

void serial_write(void *dev, uint64_t offset, const void *data, unsigned len)
{
	struct serial *s = dev;

	if (len != 1)
		return;
	pthread_mutex_lock(&s->lock);
	write_reg(s, offset, *(const uint8_t *)data);
	pthread_mutex_unlock(&s->lock);
}

unsigned serial_input(struct serial *s, const uint8_t *buf, unsigned len)
{
	unsigned n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && s->rx_count < SERIAL_FIFO_LEN)
		rx_push(s, buf[n++]);
	if (n)
		update_irq(s, true);
	pthread_mutex_unlock(&s->lock);
	return n;
}

void serial_save(struct serial *s, struct sbuf *b)
{
	pthread_mutex_lock(&s->lock);

	uint8_t regs[] = { s->ier, s->lcr, s->mcr, s->scr, s->dll, s->dlm, s->fcr,
			   s->thr_irq_pending, s->irq_level };

	sbuf_put(b, regs, sizeof(regs));
	sbuf_u8(b, s->rx_count);
	for (unsigned i = 0; i < s->rx_count; i++)
		sbuf_u8(b, s->rx[(s->rx_head + i) % SERIAL_FIFO_LEN]);
	pthread_mutex_unlock(&s->lock);
}

/* Register values our own write_reg() could have produced, and nothing else. */
static bool regs_valid(struct sreader *r, const uint8_t *v)
{
	if (v[0] & ~0x0f)
		return sr_fail(r, "serial: IER %#x has reserved bits", v[0]);
	if (v[2] & ~0x1f)
		return sr_fail(r, "serial: MCR %#x has reserved bits", v[2]);
	if (v[6] & 0x06)
		return sr_fail(r, "serial: FCR %#x keeps self-clearing bits", v[6]);
	if (v[7] > 1 || v[8] > 1)
		return sr_fail(r, "serial: interrupt flags are not booleans");
	return true;
}

bool serial_restore(struct serial *s, struct sreader *r)
{
	const uint8_t *v = sr_bytes(r, 9, "serial registers");
	unsigned count = sr_u8(r, "serial FIFO count");
	const uint8_t *fifo;

	if (!sr_ok(r) || !regs_valid(r, v))
		return false;
	if (count > SERIAL_FIFO_LEN)
		return sr_fail(r, "serial: %u bytes in a %u-byte FIFO", count, SERIAL_FIFO_LEN);
	fifo = sr_bytes(r, count, "serial FIFO");
	if (!sr_end(r, "serial"))
		return false;

	pthread_mutex_lock(&s->lock);
	s->ier = v[0], s->lcr = v[1], s->mcr = v[2], s->scr = v[3];
	s->dll = v[4], s->dlm = v[5], s->fcr = v[6];
	s->thr_irq_pending = v[7];
	/*
	 * Our idea of the line level; KVM's starts low in a new VM.  The next change of level
	 * (or new_edge pulse) drives it consistently, and an edge the guest had not yet taken is
	 * already latched in the saved IOAPIC/PIC/LAPIC state.
	 */
	s->irq_level = v[8];
	memcpy(s->rx, fifo, count);
	s->rx_head = 0;
	s->rx_count = count;
	pthread_mutex_unlock(&s->lock);
	return true;
}
