/*
 * vmctl.c - see vmctl.h.
 *
 * A VM directory holds: scratch.ext4 (sparse, formatted here; the only thing a sandbox writes),
 * vsock.sock (kiln-vmm's hybrid vsock socket), console.log, vmm.pid.  The read-only root image
 * is shared by every VM and never copied.  kiln-vmm, vmlinux and kiln-initrd.cpio are found
 * next to this program (the build directory) unless KILN_VMM, KILN_KERNEL, KILN_INITRD say.
 */
#include "vmctl.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AGENT_BOOT_TIMEOUT_MS	(300 * 1000)	/* generous: the nested test host is slow */

static void self_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);

	buf[n > 0 ? n : 0] = 0;
	char *slash = strrchr(buf, '/');

	if (slash)
		*slash = 0;
}

static void artefact(const char *env, const char *name, char *buf, size_t len)
{
	char dir[PATH_MAX];
	const char *v = getenv(env);

	if (v && *v) {
		snprintf(buf, len, "%s", v);
		return;
	}
	self_dir(dir, sizeof(dir));
	snprintf(buf, len, "%s/%s", dir, name);
}

int image_path(const char *name, char *buf, size_t len)
{
	char dir[PATH_MAX];

	for (const char *p = name; *p; p++)
		if (!(*p == '-' || *p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			return -1;
	self_dir(dir, sizeof(dir));
	snprintf(buf, len, "%s/images/%s.ext4", dir, name);
	return access(buf, R_OK);
}

void vm_sock_path(const char *dir, char *buf, size_t len)
{
	snprintf(buf, len, "%s/vsock.sock", dir);
}

static int run_quiet(char *const argv[])
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 1);
		dup2(null, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int make_scratch(const char *dir, unsigned mib)
{
	char path[PATH_MAX], size[32];
	int fd;

	snprintf(path, sizeof(path), "%s/scratch.ext4", dir);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)mib << 20) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	snprintf(size, sizeof(size), "%uM", mib);
	char *argv[] = { "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1",
			 "-L", "kiln-scratch", path, size, NULL };

	return run_quiet(argv);
}

static pid_t spawn_vmm(const char *dir, const struct vm_spec *s)
{
	char vmm[PATH_MAX], kernel[PATH_MAX], initrd[PATH_MAX];
	char root[PATH_MAX + 8], scratch[PATH_MAX + 16], vsock[PATH_MAX + 16], serial[PATH_MAX + 16];
	char cpus[16], mem[16], cmdline[512];

	artefact("KILN_VMM", "kiln-vmm", vmm, sizeof(vmm));
	artefact("KILN_KERNEL", "vmlinux", kernel, sizeof(kernel));
	artefact("KILN_INITRD", "kiln-initrd.cpio", initrd, sizeof(initrd));
	snprintf(root, sizeof(root), "%s,ro,id=root", s->rootfs);
	snprintf(scratch, sizeof(scratch), "%s/scratch.ext4,id=scratch", dir);
	snprintf(vsock, sizeof(vsock), "3,%s/vsock.sock", dir);
	snprintf(serial, sizeof(serial), "file:%s/console.log", dir);
	snprintf(cpus, sizeof(cpus), "%u", s->cpus);
	snprintf(mem, sizeof(mem), "%u", s->memory_mib);
	snprintf(cmdline, sizeof(cmdline), "console=ttyS0 quiet reboot=k panic=-1 "
		 "kiln.root=/dev/vda kiln.scratch=/dev/vdb kiln.hostname=%s",
		 s->hostname ? s->hostname : "kiln");

	char *argv[] = { vmm, "--kernel", kernel, "--initrd", initrd, "--cpus", cpus,
			 "--memory", mem, "--disk", root, "--disk", scratch, "--vsock", vsock,
			 "--serial", serial, "--cmdline", cmdline, NULL };
	pid_t pid = fork();

	if (pid == 0) {
		char log[PATH_MAX + 16];
		int null = open("/dev/null", O_RDWR);
		int err;

		snprintf(log, sizeof(log), "%s/vmm.log", dir);
		err = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		setsid();		/* the VM outlives a terminal hang-up of `kiln up` */
		dup2(null, 0);
		dup2(null, 1);
		dup2(err >= 0 ? err : null, 2);
		execv(vmm, argv);
		_exit(127);
	}
	return pid;
}

static void tail_file(const char *dir, const char *name, char *out, size_t len)
{
	char path[PATH_MAX], buf[4096];
	int fd;
	ssize_t n;

	out[0] = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);

	lseek(fd, end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	char *last = strrchr(buf, '\n');

	snprintf(out, len, "%s", last ? last + 1 : buf);
}

static void write_pid(const char *dir, pid_t pid)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/vmm.pid", dir);
	f = fopen(path, "we");
	if (f) {
		fprintf(f, "%d\n", pid);
		fclose(f);
	}
}

int vm_up(const char *dir, const struct vm_spec *s, struct agent_error *e)
{
	char sock[PATH_MAX], why[300];
	int status;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(e->message, sizeof(e->message), "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (make_scratch(dir, s->scratch_mib)) {
		snprintf(e->message, sizeof(e->message), "cannot create the scratch disk in %s", dir);
		return -1;
	}
	pid_t pid = spawn_vmm(dir, s);

	if (pid < 0) {
		snprintf(e->message, sizeof(e->message), "cannot start kiln-vmm: %s", strerror(errno));
		return -1;
	}
	write_pid(dir, pid);
	vm_sock_path(dir, sock, sizeof(sock));
	/* Poll for the agent, but notice at once if the VMM died instead. */
	for (int waited = 0; waited < AGENT_BOOT_TIMEOUT_MS; waited += 200) {
		int fd;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			tail_file(dir, "vmm.log", why, sizeof(why));
			snprintf(e->message, sizeof(e->message), "VM stopped while booting: %s", why);
			return -1;
		}
		if (access(sock, F_OK) == 0 && (fd = agent_connect(sock, PROTO_AGENT_PORT, 200, e)) >= 0) {
			struct frame f;
			uint8_t *buf = NULL;
			size_t cap = 0;
			uint8_t type;
			uint32_t len;
			int ok = frame_init(&f, MSG_INFO) == 0 && proto_write_frame(fd, &f) == 0 &&
				 proto_read_frame(fd, &buf, &cap, &type, &len) == 1 &&
				 type == MSG_INFO_REPLY;

			frame_free(&f);
			free(buf);
			close(fd);
			if (ok)
				return 0;
		}
		usleep(200000);
	}
	snprintf(e->message, sizeof(e->message), "guest agent did not come up");
	vm_down(dir);
	return -1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

void vm_down(const char *dir)
{
	char path[PATH_MAX];
	FILE *f;
	int pid = 0;

	snprintf(path, sizeof(path), "%s/vmm.pid", dir);
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	if (pid > 0 && kill(pid, SIGTERM) == 0) {
		/* kiln-vmm exits at once on SIGTERM; wait for it (it may not be our child). */
		for (int i = 0; i < 500 && kill(pid, 0) == 0; i++) {
			waitpid(pid, NULL, WNOHANG);
			usleep(10000);
		}
		if (kill(pid, 0) == 0)
			kill(pid, SIGKILL);
		waitpid(pid, NULL, WNOHANG);
	}
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
