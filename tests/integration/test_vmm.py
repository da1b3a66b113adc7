"""kiln-vmm end to end: real Linux guests booted from disks these tests build."""
import hashlib
import os
import subprocess
import time

from conftest import KERNEL, VMM, Run, read_ext4_file, run_vmm, tiny_elf


def assert_clean_exit(run: Run):
    assert run.status == 0, f"status {run.status}\nstderr: {run.stderr}\nconsole:\n{run.console}"


def test_boot_run_command_and_read_result_from_disk(guest):
    run = guest.boot("uname -r > /result.txt\n"
                     "echo hello-from-guest >> /result.txt\n"
                     "sync\n"
                     "poweroff -f")
    assert_clean_exit(run)
    result = read_ext4_file(run.root, "/result.txt")
    assert result.startswith("6.1."), result
    assert "hello-from-guest" in result


def test_two_vcpus_are_online(guest):
    run = guest.boot("echo online=$(cat /sys/devices/system/cpu/online)\n"
                     "echo count=$(grep -c ^processor /proc/cpuinfo)\n"
                     "poweroff -f", cpus=2)
    assert_clean_exit(run)
    assert "online=0-1" in run.console
    assert "count=2" in run.console


def test_read_only_disk_refuses_writes(guest, tmp_path):
    data = tmp_path / "data.img"
    data.write_bytes(b"KILN-RO-DISK" + b"\0" * (1 << 20))
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    run = guest.boot(
        "echo ro=$(cat /sys/block/vdb/ro)\n"
        "echo head=$(head -c 12 /dev/vdb)\n"
        "dd if=/dev/zero of=/dev/vdb bs=4096 count=1 conv=fsync 2>/dev/null; echo dd1=$?\n"
        # Lie to the guest kernel that the disk is writable: the device itself must refuse.
        "blockdev --setrw /dev/vdb\n"
        "dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct 2>/dev/null; echo dd2=$?\n"
        "poweroff -f",
        disks=[f"{data},ro"])
    assert_clean_exit(run)
    assert "ro=1" in run.console
    assert "head=KILN-RO-DISK" in run.console
    assert "dd1=0" not in run.console
    assert "dd2=0" not in run.console
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before


def test_writable_disk_and_device_id(guest, tmp_path):
    data = tmp_path / "data.img"
    data.write_bytes(b"\0" * (4 << 20))
    run = guest.boot("echo serial=$(cat /sys/block/vdb/serial)\n"
                     "echo size=$(cat /sys/block/vdb/size)\n"
                     "echo -n KILN-WROTE-THIS | dd of=/dev/vdb bs=512 seek=8 conv=fsync 2>/dev/null\n"
                     "poweroff -f",
                     disks=[f"{data},id=scratch-disk-1"])
    assert_clean_exit(run)
    assert "serial=scratch-disk-1" in run.console
    assert "size=8192" in run.console
    with open(data, "rb") as f:
        f.seek(8 * 512)
        assert f.read(15) == b"KILN-WROTE-THIS"


def test_entropy_device(guest):
    run = guest.boot("echo rng=$(cat /sys/class/misc/hw_random/rng_current)\n"
                     "echo bytes=$(head -c 64 /dev/hwrng | wc -c)\n"
                     "poweroff -f")
    assert_clean_exit(run)
    assert "rng=virtio_rng.0" in run.console
    assert "bytes=64" in run.console


def test_poweroff_ends_vmm_with_status_0(guest):
    run = guest.boot("poweroff -f")
    assert_clean_exit(run)
    assert "halted" in run.stderr


def test_reboot_ends_vmm_with_status_0(guest):
    run = guest.boot("reboot -f")
    assert_clean_exit(run)
    assert "rebooted" in run.stderr


def test_guest_panic_ends_vmm_with_reason(guest):
    run = guest.boot("exit 3")  # PID 1 exiting panics the kernel
    assert run.status == 1, run.stderr
    assert "kernel panic" in run.stderr
    assert "Attempted to kill init" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_triple_fault_ends_vmm_with_reason(tmp_path):
    # ud2 with an empty IDT: #UD -> #GP -> #DF -> triple fault.
    kernel = tmp_path / "ud2.elf"
    kernel.write_bytes(tiny_elf(b"\x0f\x0b"))
    run = run_vmm(["--kernel", kernel, "--memory", 64])
    assert run.status == 1
    assert "triple fault" in run.stderr


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    text = tmp_path / "not-elf"
    text.write_text("this is not a kernel\n")
    far = tmp_path / "far.elf"
    far.write_bytes(tiny_elf(b"\xf4", paddr=1 << 40))
    big = tmp_path / "big.initrd"
    with open(big, "wb") as f:
        f.truncate(200 << 20)
    cases = {
        "missing kernel": ["--kernel", tmp_path / "nope"],
        "no kernel": ["--memory", 64],
        "non-ELF kernel": ["--kernel", text],
        "kernel outside RAM": ["--kernel", far],
        "memory too small": ["--kernel", KERNEL, "--memory", 8],
        "memory too large": ["--kernel", KERNEL, "--memory", 1 << 40],
        "memory not a number": ["--kernel", KERNEL, "--memory", "12x"],
        "no vCPUs": ["--kernel", KERNEL, "--cpus", 0],
        "too many vCPUs": ["--kernel", KERNEL, "--cpus", 1000],
        "missing disk": ["--kernel", KERNEL, "--disk", tmp_path / "nodisk.img"],
        "bad disk option": ["--kernel", KERNEL, "--disk", f"{text},bogus"],
        "bad serial": ["--kernel", KERNEL, "--serial", "tcp:1"],
        "initrd too big": ["--kernel", KERNEL, "--memory", 64, "--initrd", big],
        "unknown option": ["--kernel", KERNEL, "--frobnicate"],
    }
    for what, args in cases.items():
        run = run_vmm(args, timeout=30)
        assert run.status == 2, f"{what}: status {run.status}, stderr {run.stderr!r}"
        lines = [l for l in run.stderr.splitlines() if l.strip()]
        assert lines and "kiln-vmm:" in lines[0], f"{what}: {run.stderr!r}"
        assert "Traceback" not in run.stderr and "Sanitizer" not in run.stderr


def holds_flock(pid, path):
    """Whether process pid has path open with a flock on it (its fdinfo lists the lock)."""
    want = os.path.realpath(path)
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != want:
                continue
            if "FLOCK" in open(f"/proc/{pid}/fdinfo/{fd}").read():
                return True
        except OSError:         # the fd closed meanwhile
            continue
    return False


def wait_flock(proc, path, seconds=120):
    """Wait until proc holds its lock on path, however slow its start here: before then a
    second VMM would find the disk free."""
    deadline = time.monotonic() + seconds
    while not holds_flock(proc.pid, path):
        assert proc.poll() is None, f"the first VMM exited {proc.returncode}"
        assert time.monotonic() < deadline, f"no flock on {path} after {seconds} s"
        time.sleep(0.1)


def test_same_disk_cannot_be_used_by_two_vms(guest):
    # The root disk of a running guest is locked: a second VMM must refuse it at once.
    root = guest.root_disk("sleep 600; poweroff -f")
    first = subprocess.Popen([str(VMM), "--kernel", str(KERNEL), "--disk", str(root),
                              "--serial", "none", "--cmdline",
                              "console=ttyS0 quiet root=/dev/vda init=/init"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_flock(first, root)
        run = run_vmm(["--kernel", KERNEL, "--disk", root], timeout=30)
        assert run.status == 2
        assert "in use" in run.stderr
    finally:
        first.kill()
        first.wait()


def test_console_input_reaches_the_guest(guest):
    # The serial console is interactive: bytes on kiln-vmm's stdin arrive on the guest's ttyS0.
    root = guest.root_disk("echo ready-for-input\n"
                           "read -r line\n"
                           "echo got=[$line]\n"
                           "poweroff -f")
    p = subprocess.Popen([str(VMM), "--kernel", str(KERNEL), "--disk", str(root),
                          "--serial", "stdio", "--cmdline",
                          "console=ttyS0 quiet reboot=k panic=-1 root=/dev/vda init=/init"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b""
    deadline = time.monotonic() + 180
    try:
        while b"ready-for-input" not in seen:
            assert time.monotonic() < deadline, seen
            chunk = p.stdout.read1(4096)
            assert chunk, f"VMM exited early: {p.stderr.read()!r}"
            seen += chunk
        p.stdin.write(b"typed by the host\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=180)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert b"got=[typed by the host]" in seen + out
