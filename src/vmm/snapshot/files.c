/*
 * files.c - a snapshot's sparse memory file (see files.h).
 */
#include "files.h"

#include "../../common/sparse_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(char *err, size_t errlen, const char *what, const char *path)
{
	snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
	return -1;
}

/* Make the file complete and durable before anyone may rely on it. */
static int finish(int fd, uint64_t size)
{
	if (ftruncate(fd, size) < 0 || fdatasync(fd) < 0)
		return -1;
	return close(fd);
}

int snap_write_memory(const struct guest_mem *gm, const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	uint64_t off = 0;

	if (fd < 0)
		return fail(err, errlen, "memory file", path);
	for (unsigned i = 0; i < gm->nr; i++) {
		if (sparse_write(fd, gm->region[i].host, gm->region[i].size, off)) {
			close(fd);
			return fail(err, errlen, "writing memory file", path);
		}
		off += gm->region[i].size;
	}
	/* Clones map this file privately, reading unwritten pages from it as they go: it must
	 * never change again, so nobody may write it, us included. */
	if (fchmod(fd, 0400) < 0 || finish(fd, off))
		return fail(err, errlen, "writing memory file", path);
	return 0;
}

