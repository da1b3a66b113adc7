/*
 * memhog.c - a guest-side test helper: allocate and touch memory 16 MiB at a time until the
 * kernel says no or the OOM killer ends us.  The VM tests use it to check that a runaway
 * process is what dies, never the agent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
	size_t total = 0;

	for (;;) {
		char *p = malloc(16 << 20);

		if (!p) {
			printf("allocation refused after %zu MiB\n", total >> 20);
			return 1;
		}
		memset(p, 0xa5, 16 << 20);
		total += 16 << 20;
	}
}
