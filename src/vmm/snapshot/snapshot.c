/*
 * snapshot.c - take and restore snapshots of a machine (see snapshot.h).
 *
 * Taking one: pause (vCPUs parked outside KVM_RUN, device threads off guest memory), collect
 * KVM's and every device's state in memory, copy the writable disks, write guest RAM, and last
 * write the state file under a temporary name and rename it into place.  The guest stays paused
 * throughout, so RAM, disks and device state all describe the same instant.
 */
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../common/log.h"
#include "../virtio/devices.h"
#include "files.h"
#include "../../common/sparse_file.h"
#include "kvm_state.h"

#define STATE_NAME	"state"
#define STATE_TMP	"state.tmp"
#define MEMORY_NAME	"memory"

/* Device blobs while taking a snapshot: serial, i8042, then one per virtio device. */
struct blobs {
	struct sbuf b[2 + SNAP_MAX_DEVICES];
};

static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static int path_in(char *out, const char *dir, const char *name, char *err, size_t errlen)
{
	if (snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) {
		snprintf(err, errlen, "%s: path too long", dir);
		return -1;
	}
	return 0;
}

/* ---- taking ---- */

static bool dir_is_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool empty = true;

	if (!d)
		return false;
	while (empty && (e = readdir(d)))
		empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
	closedir(d);
	return empty;
}

static int prepare_dir(const char *dir, bool *made, char *err, size_t errlen)
{
	*made = mkdir(dir, 0700) == 0;
	if (*made)
		return 0;
	if (errno == EEXIST && dir_is_empty(dir))
		return 0;
	snprintf(err, errlen, "%s: %s", dir, errno == EEXIST ? "exists and is not an empty "
		 "directory" : strerror(errno));
	return -1;
}

/* Undo a failed snapshot: every name we may have created, then the directory if it was ours. */
static void remove_partial(const char *dir, bool made)
{
	static const char *const names[] = { STATE_TMP, STATE_NAME, MEMORY_NAME };
	char path[PATH_MAX], name[16];

	for (unsigned i = 0; i < 3; i++)
		if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) < PATH_MAX)
			unlink(path);
	for (unsigned i = 0; i < SNAP_MAX_DISKS; i++) {
		snprintf(name, sizeof(name), "disk%u", i);
		if (snprintf(path, sizeof(path), "%s/%s", dir, name) < PATH_MAX)
			unlink(path);
	}
	if (made)
		rmdir(dir);
}

static int save_devices(struct machine *m, struct snap_vm *s, struct blobs *bl, char *err,
			size_t errlen)
{
	unsigned n = 2 + m->nr_devs;

	serial_save(&m->serial, &bl->b[0]);
	i8042_save(&m->kbd, &bl->b[1]);
	for (unsigned i = 0; i < m->nr_devs; i++)
		virtio_save(m->dev[i], &bl->b[2 + i]);
	for (unsigned i = 0; i < n; i++) {
		if (bl->b[i].failed || bl->b[i].len > SNAP_MAX_DEV_STATE) {
			snprintf(err, errlen, "saving device state: out of memory");
			return -1;
		}
	}
	s->serial = (struct snap_blob){ bl->b[0].data, bl->b[0].len };
	s->i8042 = (struct snap_blob){ bl->b[1].data, bl->b[1].len };
	for (unsigned i = 0; i < m->nr_devs; i++)
		s->dev_state[i] = (struct snap_blob){ bl->b[2 + i].data, bl->b[2 + i].len };
	return 0;
}

/* Identities as a restore must see them: a writable disk becomes its copy, "diskN". */
static void save_config(struct machine *m, struct snap_vm *s)
{
	unsigned disk = 0;

	s->nr_vcpus = m->vm.nr_vcpus;
	s->memory_mib = m->memory_mib;
	s->nr_devs = m->nr_devs;
	for (unsigned i = 0; i < m->nr_devs; i++) {
		s->dev[i] = m->ident[i];
		if (s->dev[i].kind != SNAP_DEV_BLK)
			continue;
		if (!s->dev[i].read_only)
			snprintf(s->dev[i].path, sizeof(s->dev[i].path), "disk%u", disk);
		disk++;
	}
}

static int save_state(struct machine *m, struct snap_vm *s, struct blobs *bl, char *err,
		      size_t errlen)
{
	save_config(m, s);
	if (kvm_save_vm(&m->vm, s, err, errlen))
		return -1;
	for (unsigned i = 0; i < m->vm.nr_vcpus; i++) {
		char why[200];

		if (kvm_save_vcpu(&m->vm.vcpu[i], &s->vcpu[i], why, sizeof(why))) {
			snprintf(err, errlen, "vCPU %u: %s", i, why);
			return -1;
		}
	}
	return save_devices(m, s, bl, err, errlen);
}

static int copy_disks(struct machine *m, const char *dir, char *err, size_t errlen)
{
	char dst[PATH_MAX], name[16];
	unsigned disk = 0;

	for (unsigned i = 0; i < m->nr_devs; i++) {
		const struct dev_ident *id = &m->ident[i];

		if (id->kind != SNAP_DEV_BLK)
			continue;
		snprintf(name, sizeof(name), "disk%u", disk++);
		if (id->read_only)
			continue;
		if (path_in(dst, dir, name, err, errlen) ||
		    sparse_copy_file(id->path, dst, true, err, errlen))
			return -1;
	}
	return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/* Durable, then renamed into place: a directory with a state file is a complete snapshot. */
static int write_state_file(const struct snap_vm *s, const char *dir, char *err, size_t errlen)
{
	char tmp[PATH_MAX], final[PATH_MAX];
	struct sbuf b = { 0 };
	int fd, dfd, r = -1;

	if (path_in(tmp, dir, STATE_TMP, err, errlen) || path_in(final, dir, STATE_NAME, err, errlen))
		return -1;
	snap_encode(s, &b);
	if (b.failed) {
		snprintf(err, errlen, "encoding the state: out of memory");
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, b.data, b.len) || fdatasync(fd) || close(fd) ||
	    rename(tmp, final)) {
		snprintf(err, errlen, "writing %s: %s", final, strerror(errno));
		goto out;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	r = 0;
out:
	sbuf_free(&b);
	return r;
}

static int take(struct machine *m, const char *dir, struct snap_vm *s, struct blobs *bl,
		char *err, size_t errlen)
{
	char mem[PATH_MAX];
	struct timespec t0;
	long t_state, t_disks, t_mem;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (save_state(m, s, bl, err, errlen))
		return -1;
	t_state = ms_since(&t0);
	if (copy_disks(m, dir, err, errlen))
		return -1;
	t_disks = ms_since(&t0);
	if (path_in(mem, dir, MEMORY_NAME, err, errlen) ||
	    snap_write_memory(&m->vm.mem, mem, err, errlen))
		return -1;
	t_mem = ms_since(&t0);
	if (write_state_file(s, dir, err, errlen))
		return -1;
	log_debug("snapshot %s: state %ld ms, disks %ld ms, memory %ld ms, total %ld ms", dir,
		  t_state, t_disks - t_state, t_mem - t_disks, ms_since(&t0));
	return 0;
}

int snapshot_take(struct machine *m, const char *dir, char *err, size_t errlen)
{
	struct snap_vm *s = calloc(1, sizeof(*s));
	struct blobs *bl = calloc(1, sizeof(*bl));
	bool was_paused = m->paused, made = false;
	int r = -1;

	if (!s || !bl) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (prepare_dir(dir, &made, err, errlen))
		goto out;
	if (machine_pause(m, err, errlen) == 0)
		r = take(m, dir, s, bl, err, errlen);
	if (r) {
		remove_partial(dir, made);
		if (!was_paused)
			machine_resume(m);	/* a failed snapshot leaves the VM as it was */
	}
out:
	if (s)
		snap_vm_free(s);
	if (bl)
		for (unsigned i = 0; i < 2 + SNAP_MAX_DEVICES; i++)
			sbuf_free(&bl->b[i]);
	free(s);
	free(bl);
	return r;
}

/* ---- restoring ---- */

static void *read_state_file(const char *path, size_t *len, char *err, size_t errlen)
{
	/* Not a symlink elsewhere, nor a FIFO that would block before the S_ISREG check. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat st;
	uint8_t *buf = NULL;
	size_t got = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > SNAP_MAX_FILE) {
		snprintf(err, errlen, "%s: not a state file (not a regular file of at most %u "
			 "bytes)", path, SNAP_MAX_FILE);
		goto fail;
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	while (buf && got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	if (!buf || got != (size_t)st.st_size) {
		snprintf(err, errlen, "%s: %s", path, buf ? "short read" : "out of memory");
		goto fail;
	}
	close(fd);
	*len = got;
	return buf;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

/*
 * A writable disk's file, DIR/NAME, must be a plain file: not a symlink, which realpath would
 * follow out of the directory (the guest could then write any file the VMM can).  d->path
 * becomes the absolute name through the directory's real path, not the file's.
 */
static int writable_disk_path(const char *dir, struct dev_ident *d, const char *path, char *err,
			      size_t errlen)
{
	char absdir[PATH_MAX], full[PATH_MAX];
	struct stat st;

	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: a writable disk must be a regular file in the snapshot "
			 "directory", d->path);
		return -1;
	}
	if (!realpath(dir, absdir)) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (path_in(full, absdir, d->path, err, errlen))
		return -1;
	if (snprintf(d->path, sizeof(d->path), "%s", full) >= (int)sizeof(d->path)) {
		snprintf(err, errlen, "%s: path too long", absdir);
		return -1;
	}
	return 0;
}

/*
 * A disk named without a directory lives in the snapshot directory.  A writable disk must: a
 * state file cannot send a restored guest writing anywhere else (--disk N=PATH can).
 */
static int resolve_disks(const char *dir, struct snap_vm *s, char *err, size_t errlen)
{
	for (unsigned i = 0; i < s->nr_devs; i++) {
		struct dev_ident *d = &s->dev[i];
		char path[PATH_MAX];

		if (d->kind != SNAP_DEV_BLK)
			continue;
		if (d->path[0] == '/') {
			if (!d->read_only)
				goto outside;
			continue;
		}
		if (strchr(d->path, '/') || !strcmp(d->path, ".") || !strcmp(d->path, "..") ||
		    !strcmp(d->path, STATE_NAME) || !strcmp(d->path, MEMORY_NAME))
			goto outside;
		if (path_in(path, dir, d->path, err, errlen))
			return -1;
		if (!d->read_only) {
			if (writable_disk_path(dir, d, path, err, errlen))
				return -1;
			continue;
		}
		/* Absolute, so that a snapshot of the restored VM still finds a read-only disk. */
		if (!realpath(path, d->path))
			snprintf(d->path, sizeof(d->path), "%s", path);
	}
	return 0;
outside:
	snprintf(err, errlen, "a writable disk outside the snapshot directory");
	return -1;
}

void *snapshot_load(const char *dir, struct snap_vm *s, char *err, size_t errlen)
{
	char path[PATH_MAX], why[256];
	size_t len;
	void *buf;

	memset(s, 0, sizeof(*s));
	if (path_in(path, dir, STATE_NAME, err, errlen))
		return NULL;
	buf = read_state_file(path, &len, err, errlen);
	if (!buf)
		return NULL;
	if (snap_decode(buf, len, s, why, sizeof(why)) ||
	    resolve_disks(dir, s, why, sizeof(why))) {
		snprintf(err, errlen, "%s: %s", path, why);
		free(buf);
		return NULL;
	}
	return buf;
}

int snapshot_open_memory(const char *dir, const struct snap_vm *s, char *err, size_t errlen)
{
	uint64_t want = s->memory_mib << 20;
	char path[PATH_MAX];
	struct stat st;
	int fd;

	if (path_in(path, dir, MEMORY_NAME, err, errlen))
		return -1;
	/* Not a symlink to some other file, nor a FIFO that would block us before the check. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != want) {
		snprintf(err, errlen, "%s: %llu bytes, the snapshot's RAM is %llu", path,
			 (unsigned long long)st.st_size, (unsigned long long)want);
		goto fail;
	}
	/* Guest RAM reads through to this file for as long as the clone runs: someone else able
	 * to write it could change a running guest's memory. */
	if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		snprintf(err, errlen, "%s: writable by others than its owner, or not ours", path);
		goto fail;
	}
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

static int restore_blob(const struct snap_blob *b, bool (*fn)(void *, struct sreader *),
			void *dev, const char *what, char *err, size_t errlen)
{
	struct sr_error e = { 0 };
	struct sreader r;

	sr_init(&r, b->p, b->len, &e);
	if (fn(dev, &r))
		return 0;
	snprintf(err, errlen, "%s: %s", what, e.failed ? e.msg : "invalid");
	return -1;
}

static bool serial_fn(void *dev, struct sreader *r)
{
	return serial_restore(dev, r);
}

static bool i8042_fn(void *dev, struct sreader *r)
{
	return i8042_restore(dev, r);
}

static bool virtio_fn(void *dev, struct sreader *r)
{
	return virtio_restore(dev, r);
}

static int restore_devices(struct machine *m, const struct snap_vm *s, char *err, size_t errlen)
{
	char what[32];

	if (restore_blob(&s->serial, serial_fn, &m->serial, "serial port", err, errlen) ||
	    restore_blob(&s->i8042, i8042_fn, &m->kbd, "i8042", err, errlen))
		return -1;
	for (unsigned i = 0; i < m->nr_devs; i++) {
		snprintf(what, sizeof(what), "device %u (%s)", i, snap_dev_name(m->ident[i].kind));
		if (restore_blob(&s->dev_state[i], virtio_fn, m->dev[i], what, err, errlen))
			return -1;
	}
	return 0;
}

static int restore_kvm(struct machine *m, const struct snap_vm *s, char *err, size_t errlen)
{
	char why[200];

	if (kvm_restore_vm(&m->vm, s, why, sizeof(why))) {
		snprintf(err, errlen, "VM state: %s", why);
		return -1;
	}
	for (unsigned i = 0; i < s->nr_vcpus; i++) {
		if (kvm_restore_vcpu(&m->vm.vcpu[i], &s->vcpu[i], why, sizeof(why))) {
			snprintf(err, errlen, "vCPU %u: %s", i, why);
			return -1;
		}
	}
	return 0;
}

/*
 * The guest's vsock streams were connected to another process: tell it they are gone (its
 * listening sockets survive), as Firecracker does.  After the irqchip is back, so the event's
 * interrupt is not lost.
 */
static void reset_vsock(struct machine *m)
{
	for (unsigned i = 0; i < m->nr_devs; i++)
		if (m->ident[i].kind == SNAP_DEV_VSOCK && virtio_vsock_transport_reset(m->dev[i]))
			log_debug("vsock: the guest had no event buffer for the transport reset");
}

int snapshot_apply(struct machine *m, const struct snap_vm *s, char *err, size_t errlen)
{
	if (restore_devices(m, s, err, errlen) || restore_kvm(m, s, err, errlen))
		return -1;
	reset_vsock(m);
	return 0;
}
