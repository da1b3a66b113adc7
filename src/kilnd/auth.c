/*
 * auth.c - see auth.h.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "db.h"

#define MAX_KEY_LEN	256

int auth_new_key(const char *prefix, char *out, size_t len)
{
	unsigned char r[32];
	size_t n;

	if (getrandom(r, sizeof(r), 0) != sizeof(r))
		return -1;
	n = snprintf(out, len, "%s", prefix);
	for (size_t i = 0; i < sizeof(r) && n + 2 < len; i++)
		n += snprintf(out + n, len - n, "%02x", r[i]);
	return 0;
}

void auth_hash(const char *key, char out[65])
{
	unsigned char d[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)key, strlen(key), d);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int make_admin_key(const char *path, char *key, size_t len, char *err, size_t errlen)
{
	int fd;

	if (auth_new_key(KEY_PREFIX_ADMIN, key, len))
		goto fail;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	if (dprintf(fd, "%s\n", key) < 0 || fsync(fd)) {
		close(fd);
		goto fail;
	}
	close(fd);
	return 0;
fail:
	snprintf(err, errlen, "cannot create the admin key %s: %s", path, strerror(errno));
	return -1;
}

int auth_load_admin(const char *path, bool create, char *err, size_t errlen)
{
	char key[MAX_KEY_LEN + 2] = "";
	FILE *f = fopen(path, "re");

	if (!f && errno == ENOENT && create)
		return make_admin_key(path, key, sizeof(key), err, errlen) ? -1 :
		       (auth_hash(key, cfg.admin_hash), 0);
	if (!f || !fgets(key, sizeof(key), f)) {
		snprintf(err, errlen, "cannot read the admin key from %s", path);
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	key[strcspn(key, "\r\n")] = 0;
	if (strlen(key) < 16) {
		snprintf(err, errlen, "%s: the admin key must be at least 16 characters", path);
		return -1;
	}
	auth_hash(key, cfg.admin_hash);
	return 0;
}

/* Compare two hashes in time independent of where they differ. */
static bool same_hash(const char *a, const char *b)
{
	unsigned char diff = 0;

	for (int i = 0; i < 64; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

enum caller auth_check(const char *header, struct agent *a)
{
	char hash[65];
	const char *key;

	if (!header || strncmp(header, "Bearer ", 7))
		return CALLER_NONE;
	key = header + 7;
	if (!*key || strlen(key) > MAX_KEY_LEN)
		return CALLER_NONE;
	auth_hash(key, hash);
	if (same_hash(hash, cfg.admin_hash))
		return CALLER_ADMIN;
	if (db_agent_by_key_hash(hash, a) == 0)
		return CALLER_AGENT;
	return CALLER_NONE;
}
