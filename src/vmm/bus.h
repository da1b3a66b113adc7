/*
 * bus.h - dispatch of guest port I/O and MMIO exits to the device that owns the address.
 *
 * Devices register a range and two callbacks before any vCPU runs; the table is read-only after
 * that, so lookups need no lock.  Accesses nobody claims read as all ones and writes vanish, as
 * on real hardware with nothing on the bus.
 */
#ifndef KILN_BUS_H
#define KILN_BUS_H

#include <stdint.h>

#define BUS_MAX_RANGES 32

typedef void (*bus_read_fn)(void *dev, uint64_t offset, void *data, unsigned len);
typedef void (*bus_write_fn)(void *dev, uint64_t offset, const void *data, unsigned len);

struct bus_range {
	uint64_t base, len;
	bus_read_fn read;
	bus_write_fn write;
	void *dev;
};

struct bus {
	struct bus_range range[BUS_MAX_RANGES];
	unsigned nr;
};

int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 bus_read_fn read, bus_write_fn write, void *dev);
void bus_read(const struct bus *bus, uint64_t addr, void *data, unsigned len);
void bus_write(const struct bus *bus, uint64_t addr, const void *data, unsigned len);

#endif
