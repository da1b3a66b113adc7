/*
 * log.c - see log.h.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const char *prog = "kiln";
static bool verbose;

void log_init(const char *progname)
{
	prog = progname;
}

void log_set_verbose(bool on)
{
	verbose = on;
}

static void vlog(const char *level, const char *fmt, va_list ap)
{
	/* Build the line first so concurrent threads never interleave inside one message. */
	char line[1024];
	int n = snprintf(line, sizeof(line), "%s: %s", prog, level);

	if (n < 0 || n >= (int)sizeof(line))
		n = 0;
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	fprintf(stderr, "%s\n", line);
}

void log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("", fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("warning: ", fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	vlog("debug: ", fmt, ap);
	va_end(ap);
}

void die(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("", fmt, ap);
	va_end(ap);
	exit(status);
}
