/*
 * egress_secrets.c - a sandbox's credentials, on the host side of the boundary (egress.h).
 *
 * The user's file names each secret and the guest environment variable that will hold its
 * placeholder; kiln makes the placeholders (random, per sandbox), the sandbox's CA, and the
 * files kiln-proxy reads (docs/egress.md):
 *
 *	DIR/egress.secrets	"secret NAME PLACEHOLDER HEADER HOSTS VALUE" lines, 0600: the only
 *				place the values are, read by kiln-proxy alone
 *	DIR/egress.env		"ENV=PLACEHOLDER" lines, what the guest will see
 *	DIR/egress-ca/		ca.pem (public, goes into the guest) and ca.key (0600, never does)
 *
 * Each user line is rewritten into the proxy's form and checked by the proxy's own parser
 * (secrets_add_line), so both sides accept exactly the same secrets.
 */
#include "egress.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/sparse_file.h"
#include "../net/secrets.h"
#include "../net/text_file.h"
#include "vmctl.h"

#define USER_FILE_MAX	(1 << 20)
#define PH_PREFIX	"KILN_PH_"
#define PH_HEX		32
#define ENV_NAME_MAX	63

/* Names the guest environment already uses for kiln's own purposes. */
static const char *const reserved_env[] = {
	"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
	"KILN_SANDBOX_ID", "PATH", "HOME", "USER", NULL,
};

struct parse_ctx {
	struct secrets *sec;
	char env[SECRETS_MAX][ENV_NAME_MAX + 1];
	char *proxy_text, *env_text;	/* what is written; NULL when only checking */
	size_t proxy_len, env_len;
	char why[128];
};

static const char *env_name_bad(const struct parse_ctx *c, const char *name)
{
	size_t n = strlen(name);

	if (!n || n > ENV_NAME_MAX || (name[0] >= '0' && name[0] <= '9'))
		return "ENV must be a variable name: letters, digits, '_', not starting with a digit";
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_'))
			return "ENV must be a variable name: letters, digits, '_', not starting "
			       "with a digit";
	for (const char *const *r = reserved_env; *r; r++)
		if (!strcmp(name, *r))
			return "ENV names a variable kiln sets itself";
	for (unsigned i = 0; i < c->sec->n; i++)
		if (!strcmp(c->env[i], name))
			return "ENV is used by another secret";
	return NULL;
}

static int make_placeholder(char *buf, size_t len)
{
	unsigned char rnd[PH_HEX / 2];

	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		return -1;
	size_t off = snprintf(buf, len, PH_PREFIX);

	for (size_t i = 0; i < sizeof(rnd) && off + 2 < len; i++)
		off += snprintf(buf + off, len - off, "%02x", rnd[i]);
	return 0;
}

static bool append(char **text, size_t *len, const char *s)
{
	size_t n = strlen(s);
	char *t = realloc(*text, *len + n + 1);

	if (!t)
		return false;
	memcpy(t + *len, s, n + 1);
	*text = t;
	*len += n;
	return true;
}

/* "secret NAME ENV HEADER HOSTS VALUE..." */
static const char *user_line(char *line, void *ctx)
{
	struct parse_ctx *c = ctx;
	char *f[5], *rest = line, ph[64], *proxy_line;
	const char *why;
	size_t len;

	for (int i = 0; i < 5; i++) {
		rest += strspn(rest, " \t");
		f[i] = rest;
		rest += strcspn(rest, " \t");
		if (rest == f[i])
			return "expected: secret NAME ENV HEADER HOSTS VALUE";
		if (*rest)
			*rest++ = 0;
	}
	rest += strspn(rest, " \t");
	if (strcmp(f[0], "secret"))
		return "unknown directive (secret)";
	if (c->sec->n == SECRETS_MAX)
		return "too many secrets";
	why = env_name_bad(c, f[2]);
	if (why)
		return why;
	if (make_placeholder(ph, sizeof(ph)))
		return "no randomness for the placeholder";
	len = strlen(f[1]) + strlen(ph) + strlen(f[3]) + strlen(f[4]) + strlen(rest) + 16;
	proxy_line = malloc(len);
	if (!proxy_line)
		return "out of memory";
	snprintf(proxy_line, len, "secret %s %s %s %s %s", f[1], ph, f[3], f[4], rest);
	/* The proxy's parser cuts its copy into fields: keep the whole line for the file. */
	char *copy = strdup(proxy_line);

	why = copy ? secrets_add_line(c->sec, copy) : "out of memory";
	free(copy);
	if (!why) {
		snprintf(c->env[c->sec->n - 1], sizeof(c->env[0]), "%s", f[2]);
		if (c->proxy_text &&
		    (!append(&c->proxy_text, &c->proxy_len, proxy_line) ||
		     !append(&c->proxy_text, &c->proxy_len, "\n") ||
		     !append(&c->env_text, &c->env_len, f[2]) ||
		     !append(&c->env_text, &c->env_len, "=") ||
		     !append(&c->env_text, &c->env_len, ph) ||
		     !append(&c->env_text, &c->env_len, "\n")))
			why = "out of memory";
	} else if (!strncmp(why, "expected:", 9)) {
		why = "expected: secret NAME ENV HEADER HOSTS VALUE";
	}
	explicit_bzero(proxy_line, len);
	free(proxy_line);
	return why;
}

/* Parse the user's file; with write, also build the proxy's and the guest's texts. */
static int parse_user_file(const char *path, struct parse_ctx *c, bool write, char *err,
			   size_t errlen)
{
	char *text = read_text_file(path, USER_FILE_MAX, err, errlen);
	int r = -1;

	if (!text)
		return -1;
	c->sec = calloc(1, sizeof(*c->sec));
	if (write) {
		c->proxy_text = calloc(1, 1);
		c->env_text = calloc(1, 1);
	}
	if (!c->sec || (write && (!c->proxy_text || !c->env_text))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (parse_lines(text, user_line, c, err, errlen))
		goto out;
	if (!c->sec->n) {
		snprintf(err, errlen, "no secrets in the file");
		goto out;
	}
	r = 0;
out:
	explicit_bzero(text, strlen(text));
	free(text);
	if (c->sec)
		explicit_bzero(c->sec, sizeof(*c->sec));
	free(c->sec);
	c->sec = NULL;
	return r;
}

static void free_texts(struct parse_ctx *c)
{
	if (c->proxy_text)
		explicit_bzero(c->proxy_text, c->proxy_len);
	free(c->proxy_text);
	free(c->env_text);
}

int egress_check_secrets(const char *path, char *err, size_t errlen)
{
	struct parse_ctx c = { 0 };
	int r = parse_user_file(path, &c, false, err, errlen);
	char why[512];

	if (r) {
		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "secrets %s: %s", path, why);
	}
	return r;
}

/* Write text to path, mode 0600, whole or not at all. */
static int write_private(const char *path, const char *text, size_t len, char *err,
			 size_t errlen)
{
	char tmp[PATH_MAX + 8];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	if (write(fd, text, len) != (ssize_t)len || fsync(fd)) {
		close(fd);
		goto fail;
	}
	if (close(fd) || rename(tmp, path))
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "%s: %s", path, strerror(errno));
	unlink(tmp);
	return -1;
}

static int make_ca(const char *dir, char *err, size_t errlen)
{
	char ca[PATH_MAX], prog[PATH_MAX];

	snprintf(ca, sizeof(ca), "%s/" EGRESS_CA_DIR, dir);
	if (mkdir(ca, 0700) && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", ca, strerror(errno));
		return -1;
	}
	artefact("KILN_PROXY", "kiln-proxy", prog, sizeof(prog));
	if (run_quiet((char *const[]){ prog, "--make-ca", ca, NULL })) {
		snprintf(err, errlen, "%s --make-ca %s failed", prog, ca);
		return -1;
	}
	return 0;
}

int egress_prepare_secrets(const char *dir, const char *secrets, const char *upstream_ca,
			   char *err, size_t errlen)
{
	struct parse_ctx c = { 0 };
	char path[PATH_MAX], why[512];
	int r = -1;

	if (parse_user_file(secrets, &c, true, err, errlen)) {
		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "secrets %s: %s", secrets, why);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/" EGRESS_SECRETS_FILE, dir);
	if (write_private(path, c.proxy_text, c.proxy_len, err, errlen))
		goto out;
	snprintf(path, sizeof(path), "%s/" EGRESS_ENV_FILE, dir);
	if (write_private(path, c.env_text, c.env_len, err, errlen))
		goto out;
	if (upstream_ca) {
		snprintf(path, sizeof(path), "%s/" EGRESS_UPSTREAM_CA, dir);
		if (sparse_copy_file(upstream_ca, path, true, err, errlen))
			goto out;
	}
	r = make_ca(dir, err, errlen);
out:
	free_texts(&c);
	return r;
}

bool egress_has_secrets(const char *dir)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/" EGRESS_SECRETS_FILE, dir);
	return access(path, F_OK) == 0;
}

void egress_env_free(char **env)
{
	for (char **p = env; p && *p; p++)
		free(*p);
	free(env);
}

/* The variables pointing TLS clients at the sandbox's CA (egress_guest.c writes the files). */
static const char *const ca_env[] = {
	"SSL_CERT_FILE=" EGRESS_GUEST_BUNDLE,
	"REQUESTS_CA_BUNDLE=" EGRESS_GUEST_BUNDLE,
	"CURL_CA_BUNDLE=" EGRESS_GUEST_BUNDLE,
	"NODE_EXTRA_CA_CERTS=" EGRESS_GUEST_CA,
};

char **egress_guest_env(const char *dir, char *err, size_t errlen)
{
	size_t nca = sizeof(ca_env) / sizeof(ca_env[0]), n = 0;
	char path[PATH_MAX], *text, *line, *rest;
	char **env = NULL;

	snprintf(path, sizeof(path), "%s/" EGRESS_ENV_FILE, dir);
	text = read_text_file(path, USER_FILE_MAX, err, errlen);
	if (!text)
		return NULL;
	env = calloc(SECRETS_MAX + nca + 1, sizeof(char *));
	if (!env)
		goto oom;
	for (size_t i = 0; i < nca; i++)
		if (!(env[n++] = strdup(ca_env[i])))
			goto oom;
	for (rest = text; (line = strsep(&rest, "\n"));) {
		if (!*line)
			continue;
		if (n == SECRETS_MAX + nca || !strchr(line, '=')) {
			snprintf(err, errlen, "%s: not what kiln wrote", path);
			goto fail;
		}
		if (!(env[n++] = strdup(line)))
			goto oom;
	}
	free(text);
	return env;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	free(text);
	egress_env_free(env);
	return NULL;
}
