/*
 * text_file.h - read a small text file whole (text_file.c): the policy and secrets files of
 * the egress programs, which are parsed as text and must hold no NUL.
 */
#ifndef KILN_TEXT_FILE_H
#define KILN_TEXT_FILE_H

#include <stddef.h>

/* The file's bytes, NUL-terminated (free them), or NULL with the reason in err when it
 * cannot be read, is over max bytes or holds a NUL. */
char *read_text_file(const char *path, size_t max, char *err, size_t errlen);

#endif
