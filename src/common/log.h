/*
 * log.h - one-line diagnostics shared by every kiln program.
 *
 * Messages go to stderr prefixed with the program name, so a test or an operator reading mixed
 * output can tell which process spoke.  die() is for the paths where the only sane thing left is
 * to stop with a clear reason: it exits with the given status, never aborts.
 */
#ifndef KILN_LOG_H
#define KILN_LOG_H

#include <stdbool.h>

void log_init(const char *progname);
void log_set_verbose(bool verbose);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

#endif
