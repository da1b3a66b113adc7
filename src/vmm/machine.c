/*
 * machine.c - assemble a microVM's devices and pause or resume it as a whole (see machine.h).
 */
#include "machine.h"

#include <stdio.h>
#include <string.h>

#include "virtio/devices.h"
#include "x86/layout.h"

static void serial_irq(void *ctx, int level)
{
	vm_irq_line(ctx, IRQ_SERIAL, level);
}

static void virtio_irq(void *ctx, unsigned irq)
{
	vm_irq_pulse(ctx, irq);
}

void machine_add_legacy(struct machine *m, int serial_fd, serial_line_fn on_line,
			i8042_reset_fn on_reset)
{
	serial_init(&m->serial, serial_fd, serial_irq, on_line, &m->vm);
	i8042_init(&m->kbd, on_reset, &m->vm);
	bus_register(&m->vm.pio, SERIAL_PORT_BASE, SERIAL_PORT_LEN, serial_read, serial_write,
		     &m->serial);
	bus_register(&m->vm.pio, I8042_DATA_PORT, 5, i8042_read, i8042_write, &m->kbd);
}

static struct virtio_dev *create_net(struct machine *m, const struct dev_ident *id, char *err,
				     size_t errlen)
{
	struct net_params p = {
		.fd = id->fd, .tap = id->path,
		.rx = { id->rate[0], id->rate[1] }, .tx = { id->rate[2], id->rate[3] },
		.pcap = id->pcap[0] ? id->pcap : NULL, .pcap_max = id->pcap_max,
		.pcap_resume = id->pcap_resume,
	};

	memcpy(p.mac, id->mac, sizeof(p.mac));
	return virtio_net_create(&m->vm.mem, &p, err, errlen);
}

static struct virtio_dev *create(struct machine *m, const struct dev_ident *id, char *err,
				 size_t errlen)
{
	struct virtio_dev *d;

	switch (id->kind) {
	case SNAP_DEV_BLK:
		return virtio_blk_create(&m->vm.mem, id->path, id->read_only, id->id, err, errlen);
	case SNAP_DEV_RNG:
		d = virtio_rng_create(&m->vm.mem);
		if (!d)
			snprintf(err, errlen, "out of memory");
		return d;
	case SNAP_DEV_VSOCK:
		return virtio_vsock_create(&m->vm.mem, id->cid, id->path, err, errlen);
	case SNAP_DEV_NET:
		return create_net(m, id, err, errlen);
	default:
		snprintf(err, errlen, "unknown device kind %u", id->kind);
		return NULL;
	}
}

int machine_add_virtio(struct machine *m, const struct dev_ident *id, char *err, size_t errlen)
{
	unsigned slot = m->nr_devs;
	struct virtio_dev *d;

	if (slot == SNAP_MAX_DEVICES) {
		snprintf(err, errlen, "at most %d virtio devices", SNAP_MAX_DEVICES);
		return -1;
	}
	d = create(m, id, err, errlen);
	if (!d)
		return -1;
	d->irq = IRQ_VIRTIO_FIRST + slot;
	d->raise_irq = virtio_irq;
	d->irq_ctx = &m->vm;
	bus_register(&m->vm.mmio, VIRTIO_MMIO_BASE + slot * VIRTIO_MMIO_SIZE, VIRTIO_MMIO_SIZE,
		     virtio_mmio_read, virtio_mmio_write, d);
	m->dev[slot] = d;
	m->ident[slot] = *id;
	m->nr_devs++;
	return 0;
}

void machine_cmdline_devices(const struct machine *m, char *cmdline, size_t size)
{
	for (unsigned i = 0; i < m->nr_devs; i++) {
		size_t len = strlen(cmdline);

		snprintf(cmdline + len, size - len, " virtio_mmio.device=4K@%#llx:%u",
			 (unsigned long long)(VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE),
			 m->dev[i]->irq);
	}
}

/* vCPUs first: once they are parked, nothing new reaches a device from the guest. */
int machine_pause(struct machine *m, char *err, size_t errlen)
{
	if (m->paused)
		return 0;
	if (vm_pause(&m->vm, MACHINE_PAUSE_TIMEOUT_MS, err, errlen))
		return -1;
	for (unsigned i = 0; i < m->nr_devs; i++)
		virtio_pause(m->dev[i], true);
	m->paused = true;
	return 0;
}

void machine_resume(struct machine *m)
{
	if (!m->paused)
		return;
	for (unsigned i = 0; i < m->nr_devs; i++)
		virtio_pause(m->dev[i], false);
	vm_resume(&m->vm);
	m->paused = false;
}

void machine_status(const struct machine *m, char *buf, size_t size)
{
	size_t n = snprintf(buf, size, "state=%s vcpus=%u memory_mib=%llu devices=",
			    m->paused ? "paused" : "running", m->vm.nr_vcpus,
			    (unsigned long long)m->memory_mib);

	for (unsigned i = 0; i < m->nr_devs && n < size; i++)
		n += snprintf(buf + n, size - n, "%s%s", i ? "," : "",
			      snap_dev_name(m->ident[i].kind));
}
