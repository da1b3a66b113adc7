/*
 * auth.h - API keys.  A key is shown once, when it is made; kilnd keeps only its SHA-256.
 * The admin key comes from a file (made, mode 0600, on first start if there is none).
 */
#ifndef KILND_AUTH_H
#define KILND_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "kilnd.h"

#define KEY_PREFIX_ADMIN	"kiln_admin_"
#define KEY_PREFIX_AGENT	"kiln_agent_"

/* A new key: prefix and 64 random hex digits. */
int auth_new_key(const char *prefix, char *out, size_t len);

/* Lowercase hex SHA-256 of a key (65 bytes with the NUL). */
void auth_hash(const char *key, char out[65]);

/* Read the admin key from path, or make one there if it does not exist; its hash to cfg. */
int auth_load_admin(const char *path, bool create, char *err, size_t errlen);

enum caller { CALLER_NONE, CALLER_ADMIN, CALLER_AGENT };

/* Who an "Authorization: Bearer KEY" header value belongs to; a is filled for an agent. */
enum caller auth_check(const char *header, struct agent *a);

#endif
