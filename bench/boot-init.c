/*
 * boot-init.c - PID 1 of the boot benchmark's initramfs.
 *
 * The moment it runs, the guest has reached init: it says so on the serial console with a
 * marker the harness (bench/boot) waits for, then sleeps so the harness can measure the VMM's
 * memory with the guest idle.  The harness kills the VMM; nothing here needs to shut down.
 * Static and tiny so that what we time is the VMM and the kernel, not a userland's start-up.
 */
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void)
{
	static const char marker[] = "KILN_INIT_MARKER\n";
	int fd;

	mkdir("/dev", 0755);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	fd = open("/dev/ttyS0", O_WRONLY | O_NOCTTY);
	if (fd >= 0 && write(fd, marker, sizeof(marker) - 1) < 0)
		return 1;
	for (;;)
		pause();
}
