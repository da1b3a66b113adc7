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

/*
 * Call fn for each line of text that is not blank and does not start with '#' (after blanks),
 * without its line end (LF or CRLF).  fn returns NULL, or why the line is wrong: then
 * "line N: why" goes into err and this returns -1.  Never the line itself, which may hold a
 * secret.  0 when every line was accepted.
 */
int parse_lines(const char *text, const char *(*fn)(char *line, void *ctx), void *ctx,
		char *err, size_t errlen);

#endif
