/*
 * test_kilnd_ledger.c - metering arithmetic: the cost of run time by vCPUs and memory, exact
 * to the micro-unit, never wrapping; debits computed from the whole run time so that many small
 * ticks add up to exactly one big one; and the prices file's lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/kilnd/ledger.h"

static void test_cost(void **state)
{
	struct prices p = { .vcpu_second = 1000, .gib_second = 0 };

	(void)state;
	assert_int_equal(ledger_cost_micro(0, 4, 4096, &p), 0);
	assert_int_equal(ledger_cost_micro(1000, 1, 256, &p), 1000);
	assert_int_equal(ledger_cost_micro(6000, 2, 256, &p), 12000);
	assert_int_equal(ledger_cost_micro(1, 1, 256, &p), 1);
	assert_int_equal(ledger_cost_micro(999, 1, 0, &(struct prices){ .vcpu_second = 1 }), 0);
	/* one GiB for one second, and 256 MiB for four */
	p = (struct prices){ .vcpu_second = 0, .gib_second = 1024 };
	assert_int_equal(ledger_cost_micro(1000, 1, 1024, &p), 1024);
	assert_int_equal(ledger_cost_micro(4000, 1, 256, &p), 1024);
	/* both together */
	p = (struct prices){ .vcpu_second = 14, .gib_second = 5 };
	assert_int_equal(ledger_cost_micro(3600 * 1000, 2, 2048, &p), (2 * 14 + 2 * 5) * 3600);
}

static void test_cost_saturates(void **state)
{
	struct prices p = { .vcpu_second = 1000000000, .gib_second = 1000000000 };

	(void)state;
	assert_int_equal(ledger_cost_micro(UINT64_MAX, 32, 65536, &p), INT64_MAX);
}

static void test_ticks_add_up(void **state)
{
	struct prices p = { .vcpu_second = 7, .gib_second = 3 };
	int64_t debited = 0;
	uint64_t ms = 0;

	(void)state;
	/* 10 000 irregular ticks debit exactly what one reading at the end would. */
	for (int i = 0; i < 10000; i++) {
		ms += 997 + i % 13;
		debited += ledger_debit_due(ledger_cost_micro(ms, 3, 700, &p), debited);
	}
	assert_int_equal(debited, ledger_cost_micro(ms, 3, 700, &p));
	assert_int_equal(ledger_debit_due(5, 9), 0);
	assert_int_equal(ledger_debit_due(9, 5), 4);
}

static void test_prices_lines(void **state)
{
	struct prices p;
	char err[128];

	(void)state;
	prices_default(&p);
	assert_int_equal(p.vcpu_second, DEFAULT_VCPU_SECOND);
	assert_int_equal(prices_parse_line("  # comment", &p, err, sizeof(err)), 0);
	assert_int_equal(prices_parse_line("", &p, err, sizeof(err)), 0);
	assert_int_equal(prices_parse_line("vcpu_second = 25", &p, err, sizeof(err)), 0);
	assert_int_equal(prices_parse_line("gib_second=3  ", &p, err, sizeof(err)), 0);
	assert_int_equal(p.vcpu_second, 25);
	assert_int_equal(p.gib_second, 3);
	assert_int_equal(prices_parse_line("vcpu_second = -1", &p, err, sizeof(err)), -1);
	assert_int_equal(prices_parse_line("vcpu_second = 1.5", &p, err, sizeof(err)), -1);
	assert_int_equal(prices_parse_line("vcpu_second =", &p, err, sizeof(err)), -1);
	assert_int_equal(prices_parse_line("vcpu_second 5", &p, err, sizeof(err)), -1);
	assert_int_equal(prices_parse_line("disk_second = 5", &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "disk_second"));
	assert_int_equal(prices_parse_line("gib_second = 99999999999999999999", &p, err,
					   sizeof(err)), -1);
	assert_int_equal(p.vcpu_second, 25);
	assert_int_equal(p.disk_gib_second, DEFAULT_DISK_GIB_SECOND);
	assert_int_equal(prices_parse_line("disk_gib_second = 7", &p, err, sizeof(err)), 0);
	assert_int_equal(p.disk_gib_second, 7);
}

static void test_disk_cost(void **state)
{
	struct prices p = { .disk_gib_second = 1000 };

	(void)state;
	/* 1 GiB for one second: 1024 MiB * 1000 ms */
	assert_int_equal(ledger_disk_cost_micro(1024 * 1000, &p), 1000);
	assert_int_equal(ledger_disk_cost_micro(1023, &p), 0);	/* rounded down */
	assert_int_equal(ledger_disk_cost_micro(-5, &p), 0);
	p.disk_gib_second = 1000000000;
	assert_int_equal(ledger_disk_cost_micro(INT64_MAX, &p), INT64_MAX);
	assert_int_equal(ledger_add(INT64_MAX - 1, 5), INT64_MAX);
	assert_int_equal(ledger_add(2, 3), 5);
}

static void test_network_cost(void **state)
{
	struct prices p = { 0 };
	char err[128];

	(void)state;
	assert_int_equal(prices_parse_line("network_gib = 20000", &p, err, sizeof(err)), 0);
	assert_int_equal(ledger_network_cost_micro(1 << 30, &p), 20000);
	assert_int_equal(ledger_network_cost_micro(1 << 20, &p), 19);	/* rounded down */
	assert_int_equal(ledger_network_cost_micro(-1, &p), 0);
	p.network_gib = 1000000000;
	/* 128-bit arithmetic: no wrap on the way */
	assert_int_equal(ledger_network_cost_micro(INT64_MAX, &p), 0x773593ffffffffffLL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cost),
		cmocka_unit_test(test_cost_saturates),
		cmocka_unit_test(test_ticks_add_up),
		cmocka_unit_test(test_prices_lines),
		cmocka_unit_test(test_disk_cost),
		cmocka_unit_test(test_network_cost),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
