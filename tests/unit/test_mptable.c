/*
 * test_mptable.c - the MP table a guest without ACPI reads its CPUs from: both checksums hold,
 * one processor entry per vCPU with only the first marked BSP, and the IOAPIC's ID does not
 * collide with a CPU's APIC ID.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/vmm/guest_mem.h"
#include "../../src/vmm/x86/layout.h"
#include "../../src/vmm/x86/mptable.h"
#include "fake_driver.h"

#define RAM_SIZE (2 << 20)

static uint8_t *ram;
static struct guest_mem gm;

static int setup(void **state)
{
	(void)state;
	ram = fake_ram(&gm, RAM_SIZE);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(ram);
	return 0;
}

static void check_table(unsigned ncpus)
{
	uint8_t *mpf = ram + MPTABLE_ADDR;
	uint32_t physptr;
	uint16_t length, count;

	assert_int_equal(mptable_write(&gm, ncpus), 0);
	assert_memory_equal(mpf, "_MP_", 4);
	assert_int_equal(mptable_sum(mpf, 16), 0);
	memcpy(&physptr, mpf + 4, 4);
	assert_true(physptr + 44 <= EBDA_END);

	uint8_t *mpc = ram + physptr;

	assert_memory_equal(mpc, "PCMP", 4);
	memcpy(&length, mpc + 4, 2);
	memcpy(&count, mpc + 34, 2);
	assert_true(physptr + length <= EBDA_END);
	assert_int_equal(mptable_sum(mpc, length), 0);

	/* Walk the entries: processors are 20 bytes, everything else 8. */
	unsigned cpus = 0, bsps = 0, ioapic_id = 0xff, off = 44;

	for (unsigned i = 0; i < count; i++) {
		uint8_t *e = mpc + off;

		assert_true(off < length);
		if (e[0] == 0) {
			assert_int_equal(e[1], cpus);	/* APIC ID = vCPU index */
			cpus++;
			bsps += !!(e[3] & 2);
			off += 20;
		} else {
			if (e[0] == 2)
				ioapic_id = e[1];
			off += 8;
		}
	}
	assert_int_equal(off, length);
	assert_int_equal(cpus, ncpus);
	assert_int_equal(bsps, 1);
	assert_true(ioapic_id >= ncpus && ioapic_id != 0xff);
}

static void test_one_cpu(void **state)
{
	(void)state;
	check_table(1);
}

static void test_two_cpus(void **state)
{
	(void)state;
	check_table(2);
}

static void test_max_cpus(void **state)
{
	(void)state;
	check_table(MPTABLE_MAX_CPUS);
}

static void test_refuses_bad_counts(void **state)
{
	(void)state;
	assert_int_equal(mptable_write(&gm, 0), -1);
	assert_int_equal(mptable_write(&gm, MPTABLE_MAX_CPUS + 1), -1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_one_cpu), T(test_two_cpus), T(test_max_cpus), T(test_refuses_bad_counts),
	};

	return cmocka_run_group_tests_name("mptable", tests, NULL, NULL);
}
