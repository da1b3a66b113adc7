/*
 * service.h - the host programs that serve one sandbox beside its VMM (kiln-dns, kiln-proxy,
 * kiln-ingress): started detached in their own session, so they outlive the kiln or kilnd
 * process that started them, and found again through a pid file in the VM directory.
 *
 * A pid from a file is trusted only while /proc says it is still the program that was
 * started: pids are reused.
 */
#ifndef KILN_SERVICE_H
#define KILN_SERVICE_H

#include <stddef.h>
#include <sys/types.h>

/*
 * In a child about to exec a program that outlives its parent: no blocked signals and SIGPIPE
 * back to its default.  Both survive exec, and kilnd blocks SIGTERM in every thread (its main
 * thread waits for it): inherited, SIGTERM would never stop the program.
 */
void service_child_signals(void);

/* Start argv[0] detached: stdin and stdout /dev/null, stderr into errfile (truncated);
 * listen_fd, if >= 0, becomes its fd 3.  The child's pid, or -1. */
pid_t service_spawn(char *const argv[], const char *errfile, int listen_fd);

/* Wait until the service writes "serving" to errfile (it has bound its sockets).  0, or -1
 * with its first line of complaint (or a timeout) in err; the caller stops it. */
int service_wait_ready(const char *name, pid_t pid, const char *errfile, char *err,
		       size_t errlen);

/* The pid in pidfile (its first number) if that process still runs the program named prog
 * (the last component of its argv[0]); else 0. */
pid_t service_running(const char *pidfile, const char *prog);

/* SIGTERM, then wait up to two seconds for it to go (reaped if it is our child). */
void service_stop(pid_t pid);

#endif
