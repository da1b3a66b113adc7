/*
 * code.h - `kiln code`: cells in a guest's code contexts (code.c).
 */
#ifndef KILN_CODE_H
#define KILN_CODE_H

#include <stddef.h>

/* How kiln finds a VM's agent socket from its --dir (the VM layout is not code.c's business). */
typedef void (*code_sock_fn)(const char *dir, char *buf, size_t len);

/* argv[0] is the program; returns the exit status. */
int cmd_code(int argc, char **argv, code_sock_fn sock_of_dir);

#endif
