/*
 * bus.c - see bus.h.
 */
#include "bus.h"

#include <string.h>

int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 bus_read_fn read, bus_write_fn write, void *dev)
{
	if (bus->nr == BUS_MAX_RANGES || len == 0)
		return -1;
	for (unsigned i = 0; i < bus->nr; i++) {
		const struct bus_range *r = &bus->range[i];

		if (base < r->base + r->len && r->base < base + len)
			return -1;	/* overlap */
	}
	bus->range[bus->nr++] = (struct bus_range){ base, len, read, write, dev };
	return 0;
}

static const struct bus_range *find(const struct bus *bus, uint64_t addr, unsigned len)
{
	for (unsigned i = 0; i < bus->nr; i++) {
		const struct bus_range *r = &bus->range[i];

		if (addr >= r->base && addr - r->base < r->len && len <= r->len - (addr - r->base))
			return r;
	}
	return NULL;
}

void bus_read(const struct bus *bus, uint64_t addr, void *data, unsigned len)
{
	const struct bus_range *r = find(bus, addr, len);

	memset(data, 0xff, len);
	if (r && r->read)
		r->read(r->dev, addr - r->base, data, len);
}

void bus_write(const struct bus *bus, uint64_t addr, const void *data, unsigned len)
{
	const struct bus_range *r = find(bus, addr, len);

	if (r && r->write)
		r->write(r->dev, addr - r->base, data, len);
}
