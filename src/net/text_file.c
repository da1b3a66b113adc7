/*
 * text_file.c - read a small text file whole (text_file.h).
 */
#include "text_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *read_text_file(const char *path, size_t max, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t n;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	text = malloc(max + 1);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	n = fread(text, 1, max + 1, f);
	if (ferror(f) || n > max || memchr(text, 0, n)) {
		snprintf(err, errlen, "%s: unreadable, over %zu bytes, or holds a NUL byte", path,
			 max);
		free(text);
		text = NULL;
		goto out;
	}
	text[n] = 0;
out:
	fclose(f);
	return text;
}
