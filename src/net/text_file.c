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

int parse_lines(const char *text, const char *(*fn)(char *line, void *ctx), void *ctx,
		char *err, size_t errlen)
{
	char *copy = strdup(text), *line;
	unsigned lineno = 0;
	int r = 0;

	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* strsep, not strtok: empty lines still count for the line numbers. */
	for (char *rest = copy; !r && (line = strsep(&rest, "\n"));) {
		size_t n = strlen(line);
		const char *why;

		lineno++;
		if (n && line[n - 1] == '\r')
			line[n - 1] = 0;
		if (!line[strspn(line, " \t")] || line[strspn(line, " \t")] == '#')
			continue;
		why = fn(line, ctx);
		if (why) {
			snprintf(err, errlen, "line %u: %s", lineno, why);
			r = -1;
		}
	}
	free(copy);
	return r;
}
