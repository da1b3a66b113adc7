/*
 * template.c - warm snapshots (see template.h).
 */
#include "template.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#define KEY_FORMAT	"kiln-warm 1"	/* bump when what a snapshot depends on changes */
#define WARMUP_TIMEOUT_MS (600 * 1000)
#define WARM_CONTEXT_FILE "/etc/kiln/warm-context.py"

static const char *cache_dir(void)
{
	const char *c = getenv("KILN_CACHE");

	return c && *c ? c : "/var/cache/kiln";
}

/* "PATH SIZE MTIME" of a file, by its real path; "PATH missing" if it is not there. */
static void describe_file(const char *what, const char *path, char *out, size_t len)
{
	char real[PATH_MAX];
	struct stat st;

	if (!realpath(path, real) || stat(real, &st)) {
		snprintf(out, len, "%s=%s missing\n", what, path);
		return;
	}
	snprintf(out, len, "%s=%s %lld %lld.%09ld\n", what, real, (long long)st.st_size,
		 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

/* Everything a warm snapshot of spec depends on, as text (also saved as DIR/key). */
static void describe(const struct vm_spec *s, char *out, size_t len)
{
	char vmm[PATH_MAX], kernel[PATH_MAX], initrd[PATH_MAX], line[3][PATH_MAX + 64], root[PATH_MAX + 64];
	struct utsname u;

	artefact("KILN_VMM", "kiln-vmm", vmm, sizeof(vmm));
	artefact("KILN_KERNEL", "vmlinux", kernel, sizeof(kernel));
	artefact("KILN_INITRD", "kiln-initrd.cpio", initrd, sizeof(initrd));
	describe_file("vmm", vmm, line[0], sizeof(line[0]));
	describe_file("kernel", kernel, line[1], sizeof(line[1]));
	describe_file("initrd", initrd, line[2], sizeof(line[2]));
	describe_file("rootfs", s->rootfs, root, sizeof(root));
	uname(&u);
	/* "net=1" only with a NIC, so the keys of snapshots without one stay as they were. */
	snprintf(out, len, KEY_FORMAT "\n%s%s%s%scpus=%u\nmemory_mib=%u\nscratch_mib=%u\n%s"
		 "host=%s %s %s\n", line[0], line[1], line[2], root, s->cpus, s->memory_mib,
		 s->scratch_mib, s->net ? "net=1\n" : "", u.sysname, u.release, u.machine);
}

static uint64_t fnv1a64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h;
}

/* "NAME-" for spec: the image's file name without .ext4, made safe for a file name. */
static void image_prefix(const struct vm_spec *s, char *out, size_t len)
{
	char name[sizeof(s->name)];

	snprintf(name, sizeof(name), "%s", s->name[0] ? s->name : "rootfs");
	char *dot = strrchr(name, '.');

	if (dot && dot != name)
		*dot = 0;
	for (char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '_'))
			*p = '_';
	snprintf(out, len, "%s-", name);
}

/* "NAME-CPUSxMEM-": the image prefix and the shape. */
static void name_prefix(const struct vm_spec *s, char *out, size_t len)
{
	char image[NAME_MAX + 2];

	image_prefix(s, image, sizeof(image));
	snprintf(out, len, "%s%ux%u-", image, s->cpus, s->memory_mib);
}

static void snapshot_dir(const struct vm_spec *s, const char *key, char *dir, size_t len)
{
	char prefix[NAME_MAX + 32];

	name_prefix(s, prefix, sizeof(prefix));
	snprintf(dir, len, "%s/warm/%s%016llx", cache_dir(), prefix,
		 (unsigned long long)fnv1a64(key));
}

/* The key a snapshot was made for (DIR/key), NUL-terminated in buf.  0 or -1. */
static int read_key(const char *dir, char *buf, size_t len)
{
	char path[PATH_MAX];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/key", dir);
	f = fopen(path, "re");
	if (!f)
		return -1;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = 0;
	return 0;
}

/* The saved key matches and the snapshot is complete (its state file is written last). */
static bool snapshot_matches(const char *dir, const char *key)
{
	char path[PATH_MAX], saved[8192];

	snprintf(path, sizeof(path), "%s/state", dir);
	if (access(path, R_OK))
		return false;
	return read_key(dir, saved, sizeof(saved)) == 0 && strcmp(saved, key) == 0;
}

/*
 * A warm snapshot directory is named "IMAGE-CPUSxMEM-HASH": IMAGE is only for people reading
 * the cache (`kiln warm --rootfs FILE` names it after FILE, kilnd after the template), so a
 * lookup goes by the shape and the key's hash, whatever the directory's first part says.
 * 0 and the name's shape and hash if name has that form.
 */
static int parse_snapshot_name(const char *name, unsigned *cpus, unsigned *memory_mib,
			       uint64_t *hash)
{
	const char *dash = strrchr(name, '-'), *p;
	int end = 0;

	if (!dash || strlen(dash + 1) != 16 || dash == name)
		return -1;
	for (p = dash - 1; p > name && *p != '-'; p--)
		;
	if (p == name || sscanf(p, "-%ux%u-%n", cpus, memory_mib, &end) != 2 || p + end != dash + 1)
		return -1;
	for (p = dash + 1; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return -1;
	*hash = strtoull(dash + 1, NULL, 16);
	return 0;
}

/* Any complete snapshot in the cache whose key is key, whatever its image part is named. */
static int find_by_key(const struct vm_spec *s, const char *key, char *dir, size_t len)
{
	char warm[PATH_MAX], path[PATH_MAX * 2];
	uint64_t want = fnv1a64(key), hash;
	unsigned cpus, memory_mib;
	struct dirent *d;
	int ret = -1;
	DIR *dp;

	snprintf(warm, sizeof(warm), "%s/warm", cache_dir());
	dp = opendir(warm);
	if (!dp)
		return -1;
	while (ret && (d = readdir(dp))) {
		if (parse_snapshot_name(d->d_name, &cpus, &memory_mib, &hash) ||
		    cpus != s->cpus || memory_mib != s->memory_mib || hash != want)
			continue;
		snprintf(path, sizeof(path), "%s/%s", warm, d->d_name);
		if (snapshot_matches(path, key) && (size_t)snprintf(dir, len, "%s", path) < len)
			ret = 0;
	}
	closedir(dp);
	return ret;
}

int template_find(const struct vm_spec *s, char *dir, size_t len)
{
	char key[8192];

	describe(s, key, sizeof(key));
	snapshot_dir(s, key, dir, len);
	if (snapshot_matches(dir, key))
		return 0;
	return find_by_key(s, key, dir, len);
}

/* Run sh -c script in the guest as root; its exit status, or -1 with e set. */
static int guest_sh(const char *vm_dir, const char *script, struct agent_error *e)
{
	struct agent_exec x = { .shell = script, .timeout_ms = WARMUP_TIMEOUT_MS };
	struct agent_event ev;
	char sock[PATH_MAX];
	uint8_t *buf = NULL;
	size_t cap = 0;
	uint32_t pid;
	int fd, status = -1;

	vm_sock_path(vm_dir, sock, sizeof(sock));
	fd = agent_connect(sock, PROTO_AGENT_PORT, 10000, e);
	if (fd < 0)
		return -1;
	if (agent_exec_start(fd, &x, &pid, e))
		goto out;
	while (agent_next_event(fd, &ev, &buf, &cap) == 0) {
		if (ev.type == EV_EXIT) {
			status = ev.timed_out ? 124 : ev.exit_signal ? 128 + ev.exit_signal :
								       ev.exit_code;
			goto out;
		}
		if (ev.type == EV_ERROR) {
			*e = ev.error;
			goto out;
		}
	}
	snprintf(e->message, sizeof(e->message), "connection to the guest agent lost");
out:
	free(buf);
	close(fd);
	return status;
}

/* Run one cell in context id of the VM in dir; 0 if it finished without an exception. */
static int context_cell(const char *vm_dir, const char *id, const char *code,
			struct agent_error *e)
{
	struct agent_cell_event ev = { 0 };
	char sock[PATH_MAX];
	uint8_t *buf = NULL;
	size_t cap = 0;
	int fd, ret = -1;

	vm_sock_path(vm_dir, sock, sizeof(sock));
	fd = agent_connect(sock, PROTO_AGENT_PORT, 10000, e);
	if (fd < 0)
		return -1;
	if (agent_context_run(fd, id, code, strlen(code), WARMUP_TIMEOUT_MS, e))
		goto out;
	while (agent_next_cell_event(fd, &ev, &buf, &cap) == 0) {
		if (ev.type == CEV_EXCEPTION)
			snprintf(e->message, sizeof(e->message), "%s: %s", ev.ename,
				 ev.evalue ? ev.evalue : "");
		if (ev.type == CEV_ERROR)
			*e = ev.error;
		if (ev.type == CEV_DONE)
			ret = ev.status == CELL_OK ? 0 : -1;
		if (ev.type == CEV_DONE || ev.type == CEV_ERROR)
			goto out;
	}
	snprintf(e->message, sizeof(e->message), "connection to the guest agent lost");
out:
	agent_cell_event_free(&ev);
	free(buf);
	close(fd);
	return ret;
}

/* The image's warm context: a Python context that ran /etc/kiln/warm-context.py.  Its id in
 * id (empty when the image has none); 0, or -1 with e set. */
static int warm_context(const char *vm_dir, char *id, struct agent_error *e)
{
	struct agent_context c;
	char sock[PATH_MAX];
	int fd, r;

	id[0] = 0;
	r = guest_sh(vm_dir, "test -e " WARM_CONTEXT_FILE, e);
	if (r != 0)
		return r > 0 ? 0 : -1;
	vm_sock_path(vm_dir, sock, sizeof(sock));
	fd = agent_connect(sock, PROTO_AGENT_PORT, 10000, e);
	if (fd < 0)
		return -1;
	r = agent_context_create(fd, "python", NULL, NULL, NULL, &c, e);
	close(fd);
	if (r)
		return -1;
	if (context_cell(vm_dir, c.id, "exec(open('" WARM_CONTEXT_FILE "').read())", e)) {
		char why[sizeof(e->message)];

		snprintf(why, sizeof(why), "%s", e->message);
		snprintf(e->message, sizeof(e->message), WARM_CONTEXT_FILE ": %s", why);
		return -1;
	}
	snprintf(id, AGENT_CONTEXT_ID_LEN + 1, "%s", c.id);
	return 0;
}

/*
 * Every clone starts with the warm context's interpreter state, random module included: give
 * Python's and numpy's global generators fresh seeds from the clone's (reseeded) kernel RNG.
 */
static const char reseed_cell[] =
	"import os as _os, random as _random, sys as _sys\n"
	"_random.seed(_os.urandom(32))\n"
	"if 'numpy' in _sys.modules:\n"
	"    _sys.modules['numpy'].random.seed(int.from_bytes(_os.urandom(4), 'little'))\n"
	"del _os, _random, _sys\n";

static int write_small_file(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "we");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static void read_small_file(const char *dir, const char *name, char *out, size_t len)
{
	char path[PATH_MAX];
	FILE *f;

	out[0] = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "re");
	if (!f)
		return;
	if (!fgets(out, len, f))
		out[0] = 0;
	out[strcspn(out, "\n")] = 0;
	fclose(f);
}

int template_clone(const char *dir, const char *snap_dir, const struct vm_spec *s,
		   struct agent_error *e)
{
	char id[AGENT_CONTEXT_ID_LEN + 2];

	if (vm_clone(dir, snap_dir, s, e))
		return -1;
	read_small_file(snap_dir, "context", id, sizeof(id));
	if (!id[0])
		return 0;
	if (context_cell(dir, id, reseed_cell, e))
		return -1;
	return write_small_file(dir, "context", id);
}

static int rm_quiet(const char *path)
{
	char *argv[] = { "rm", "-rf", "--one-file-system", (char *)path, NULL };

	return run_quiet(argv);
}

/*
 * Whether the snapshot in dir is still usable by the image it was made from: its saved key is
 * what describe() says today for that image (the path on its rootfs= line) and its shape.
 * Another image whose file has the same name (two templates' root.ext4) must keep its own.
 */
static bool still_current(const char *dir, const struct vm_spec *s)
{
	char saved[8192], now[8192], rootfs[PATH_MAX];
	struct vm_spec other = *s;
	char *line, *end;

	if (read_key(dir, saved, sizeof(saved)))
		return false;
	line = strstr(saved, "\nrootfs=");
	if (!line)
		return false;
	line += strlen("\nrootfs=");
	end = strchr(line, '\n');
	if (!end || (size_t)(end - line) >= sizeof(rootfs))
		return false;
	snprintf(rootfs, sizeof(rootfs), "%.*s", (int)(end - line), line);
	/* "PATH SIZE MTIME": the path is what comes before the last two fields. */
	for (int i = 0; i < 2; i++) {
		char *sp = strrchr(rootfs, ' ');

		if (!sp)
			return false;
		*sp = 0;
	}
	other.rootfs = rootfs;
	other.net = strstr(saved, "\nnet=1\n") != NULL;	/* the other variant is not stale */
	describe(&other, now, sizeof(now));
	return strcmp(saved, now) == 0;
}

/* Remove older snapshots of the same image and shape: a rebuild makes them stale for good. */
static void remove_stale(const struct vm_spec *s, const char *keep)
{
	char warm[PATH_MAX], prefix[NAME_MAX + 32], path[PATH_MAX * 2];
	const char *keep_name = strrchr(keep, '/') + 1;
	struct dirent *d;
	DIR *dp;

	snprintf(warm, sizeof(warm), "%s/warm", cache_dir());
	name_prefix(s, prefix, sizeof(prefix));
	dp = opendir(warm);
	if (!dp)
		return;
	while ((d = readdir(dp))) {
		if (strncmp(d->d_name, prefix, strlen(prefix)) || !strcmp(d->d_name, keep_name) ||
		    strlen(d->d_name) != strlen(keep_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", warm, d->d_name);
		if (!still_current(path, s))
			rm_quiet(path);
	}
	closedir(dp);
}

void template_each(const struct vm_spec *s,
		   void (*fn)(const char *dir, const struct vm_spec *shape, void *ctx), void *ctx)
{
	char warm[PATH_MAX], path[PATH_MAX * 2], key[8192];
	struct vm_spec shape = *s;
	struct dirent *d;
	uint64_t hash;
	DIR *dp;

	snprintf(warm, sizeof(warm), "%s/warm", cache_dir());
	dp = opendir(warm);
	if (!dp)
		return;
	while ((d = readdir(dp))) {
		if (parse_snapshot_name(d->d_name, &shape.cpus, &shape.memory_mib, &hash))
			continue;
		/* Only the key tells whose it is: names are for people, and may repeat. */
		snprintf(path, sizeof(path), "%s/%s", warm, d->d_name);
		for (int net = 0; net < 2; net++) {
			shape.net = net;
			describe(&shape, key, sizeof(key));
			if (hash == fnv1a64(key) && snapshot_matches(path, key))
				fn(path, &shape, ctx);
		}
	}
	closedir(dp);
}

int template_warm(const struct vm_spec *s, char *dir, size_t len, struct agent_error *e)
{
	char key[8192], warm[PATH_MAX], work[PATH_MAX], snap[PATH_MAX + 16];
	char vm[] = "/tmp/kiln-warm-XXXXXX";	/* short: socket paths live in it */
	char cmd[PATH_MAX + 32], reply[256], context[AGENT_CONTEXT_ID_LEN + 2];
	int status, ret = -1;

	/* With a NIC: in a namespace of its own that lets nothing out, and nothing of a
	 * sandbox's network (policy, limits, capture) in the snapshot. */
	struct vm_spec bare = { .rootfs = s->rootfs, .cpus = s->cpus,
				.memory_mib = s->memory_mib, .scratch_mib = s->scratch_mib,
				.hostname = s->hostname, .net = s->net };

	snprintf(bare.name, sizeof(bare.name), "%s", s->name);
	s = &bare;
	describe(s, key, sizeof(key));
	snapshot_dir(s, key, dir, len);
	snprintf(warm, sizeof(warm), "%s/warm", cache_dir());
	snprintf(work, sizeof(work), "%s/.tmp-XXXXXX", warm);
	if ((mkdir(cache_dir(), 0755) < 0 && errno != EEXIST) ||
	    (mkdir(warm, 0700) < 0 && errno != EEXIST) || !mkdtemp(work)) {
		snprintf(e->message, sizeof(e->message), "cannot create a directory in %s: %s",
			 warm, strerror(errno));
		return -1;
	}
	snprintf(snap, sizeof(snap), "%s/snapshot", work);
	if (!mkdtemp(vm)) {
		snprintf(e->message, sizeof(e->message), "cannot create %s: %s", vm, strerror(errno));
		goto out;
	}
	if (vm_up(vm, s, e))
		goto out;
	status = guest_sh(vm, "if [ -e /etc/kiln/warmup ]; then sh /etc/kiln/warmup; fi; sync", e);
	if (status != 0) {
		if (status > 0)
			snprintf(e->message, sizeof(e->message),
				 "/etc/kiln/warmup in the image failed with status %d", status);
		goto out;
	}
	if (warm_context(vm, context, e))
		goto out;
	snprintf(cmd, sizeof(cmd), "snapshot %s", snap);
	if (vm_control(vm, cmd, reply, sizeof(reply), e) || write_small_file(snap, "key", key))
		goto out;
	if (context[0] && write_small_file(snap, "context", context))
		goto out;
	rm_quiet(dir);
	if (rename(snap, dir)) {
		snprintf(e->message, sizeof(e->message), "cannot move the snapshot to %s: %s", dir,
			 strerror(errno));
		goto out;
	}
	remove_stale(s, dir);
	ret = 0;
out:
	vm_down(vm);
	rm_quiet(work);
	return ret;
}
