/*
 * ledger.c - see ledger.h.
 */
#include "ledger.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void prices_default(struct prices *p)
{
	p->vcpu_second = DEFAULT_VCPU_SECOND;
	p->gib_second = DEFAULT_GIB_SECOND;
	p->disk_gib_second = DEFAULT_DISK_GIB_SECOND;
	p->network_gib = DEFAULT_NETWORK_GIB;
}

static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = 0;
	return s;
}

int prices_parse_line(const char *line, struct prices *p, char *err, size_t errlen)
{
	char buf[256], *key, *val, *eq, *end;
	unsigned long long v;

	if (strlen(line) >= sizeof(buf)) {
		snprintf(err, errlen, "line too long");
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", line);
	key = trim(buf);
	if (!*key || *key == '#')
		return 0;
	eq = strchr(key, '=');
	if (!eq) {
		snprintf(err, errlen, "expected key = value");
		return -1;
	}
	*eq = 0;
	key = trim(key);
	val = trim(eq + 1);
	errno = 0;
	v = strtoull(val, &end, 10);
	if (!*val || *val == '-' || *end || errno || v > 1000000000ULL) {
		snprintf(err, errlen, "%s: '%s' is not a whole number of micro-units up to 10^9",
			 key, val);
		return -1;
	}
	if (!strcmp(key, "vcpu_second"))
		p->vcpu_second = v;
	else if (!strcmp(key, "gib_second"))
		p->gib_second = v;
	else if (!strcmp(key, "disk_gib_second"))
		p->disk_gib_second = v;
	else if (!strcmp(key, "network_gib"))
		p->network_gib = v;
	else {
		snprintf(err, errlen, "unknown price '%s' (vcpu_second, gib_second, "
			 "disk_gib_second, network_gib)", key);
		return -1;
	}
	return 0;
}

int64_t ledger_cost_micro(uint64_t run_ms, unsigned cpus, unsigned memory_mib,
			  const struct prices *p)
{
	/* per millisecond, in units of 1/(1024*1000) micro: exact in 128 bits */
	unsigned __int128 rate = (unsigned __int128)cpus * p->vcpu_second * 1024 +
				 (unsigned __int128)memory_mib * p->gib_second;
	unsigned __int128 cost = rate * run_ms / (1024 * 1000);

	return cost > INT64_MAX ? INT64_MAX : (int64_t)cost;
}

int64_t ledger_disk_cost_micro(int64_t disk_mib_ms, const struct prices *p)
{
	unsigned __int128 cost;

	if (disk_mib_ms <= 0)
		return 0;
	cost = (unsigned __int128)disk_mib_ms * p->disk_gib_second / (1024 * 1000);
	return cost > INT64_MAX ? INT64_MAX : (int64_t)cost;
}

int64_t ledger_network_cost_micro(int64_t bytes, const struct prices *p)
{
	unsigned __int128 cost;

	if (bytes <= 0)
		return 0;
	cost = (unsigned __int128)bytes * p->network_gib >> 30;
	return cost > INT64_MAX ? INT64_MAX : (int64_t)cost;
}

int64_t ledger_add(int64_t a, int64_t b)
{
	return a > INT64_MAX - b ? INT64_MAX : a + b;
}

int64_t ledger_debit_due(int64_t cost_so_far, int64_t debited)
{
	return cost_so_far > debited ? cost_so_far - debited : 0;
}
