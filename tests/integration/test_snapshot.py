"""Snapshots end to end: pause and resume a live guest, snapshot it through the control socket,
restore it in new kiln-vmm processes (one, then several clones at once), and refuse broken
snapshots with status 2 before anything runs.

The guest's init prints an increasing counter on the serial console every 0.2 s and answers
each line it is sent with "got=LINE ro=..." after writing LINE to its scratch disk, so a test
can tell where a guest's counter stands, whether it runs, and which disks are whose.  It also
serves a vsock echo on ECHO_PORT.  One snapshot, taken once for the module, serves every
restore (boots are slow in the VM test host); restores run on their own copies of its disks.
"""
import hashlib
import os
import re
import select
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import BASE_CMDLINE, BOOT_TIMEOUT, KERNEL, ROOT, VMM, make_ext4, make_rootfs

PEER = ROOT / "build" / "tests" / "guest" / "vsock-peer"
ECHO_PORT = 5000
RO_MARK = b"KILN-RO"
TIMEOUT = 120           # guest-visible progress, generous for the emulated test host

# The counter runs in the background; the foreground reads whole lines from the console (a
# "read -t" would leave the tty non-canonical and drop a line's start when it times out).
COUNTER_INIT = f"""
/bin/vsock-peer serve {ECHO_PORT} >/dev/null
i=0
while true; do
    i=$((i+1))
    echo count=$i
    sleep 0.2
done &
while read -r line; do
    echo "$line" | dd of=/dev/vdb conv=fsync 2>/dev/null
    echo "got=$line ro=$(head -c {len(RO_MARK)} /dev/vdc)"
done
"""


class Vmm:
    """A running kiln-vmm: console on its stdin/stdout, commands on its control socket.

    console() holds everything the guest wrote until the moment it is called: it reads what
    the pipe holds itself rather than trusting a reader thread to have caught up, so that
    right after a pause the last count is the guest's last, however slow the test host.  The
    thread only keeps the pipe from filling while nobody asks."""

    def __init__(self, args, tmp, name):
        self.control_path = tmp / f"{name}.ctl"
        self.out = b""
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [str(VMM), "--serial", "stdio", "--control", str(self.control_path)] +
            [str(a) for a in args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        threading.Thread(target=self._read, daemon=True).start()

    def _drain(self):
        """Append what the pipe holds now (self.lock held); False at its end."""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self.out += chunk

    def _read(self):
        while True:
            select.select([self.fd], [], [])
            with self.lock:
                if not self._drain():
                    return

    def console(self):
        with self.lock:
            self._drain()
            return self.out.decode(errors="replace")

    def counts(self):
        # Whole lines only: the UART's bytes come one at a time, and a line cut short by a
        # pause or by the read ("count=1" of "count=12") is not a count.
        return [int(n) for n in re.findall(r"^count=(\d+)\r?\n", self.console(), re.M)]

    def wait_for(self, what, timeout=TIMEOUT):
        """Wait until what() is true; fail with the console if the VMM dies or time runs out."""
        deadline = time.monotonic() + timeout
        while not what():
            assert self.proc.poll() is None, \
                f"kiln-vmm exited {self.proc.returncode}: {self.proc.stderr.read()!r}\n" \
                f"console:\n{self.console()[-2000:]}"
            assert time.monotonic() < deadline, f"timed out; console:\n{self.console()[-2000:]}"
            time.sleep(0.05)

    def wait_count(self, n):
        self.wait_for(lambda: self.counts() and self.counts()[-1] >= n)

    def send_line(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def control(self, command, timeout=TIMEOUT):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.control_path))
            s.sendall(command.encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(4096)
                assert chunk, f"control socket closed after {reply!r}"
                reply += chunk
        return reply.decode().rstrip("\n")

    def wait_control(self):
        self.wait_for(lambda: self.control_path.exists())

    def stop(self):
        assert self.control("stop") == "ok"
        assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def vsock_echo(path, data=b"hello from the host\n"):
    """Round trip through the guest's vsock echo server, via kiln-vmm's socket at path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.connect(str(path))
        s.sendall(f"CONNECT {ECHO_PORT}\n".encode())
        line = b""
        while not line.endswith(b"\n"):
            c = s.recv(1)
            assert c, "vsock: closed before OK"
            line += c
        assert line.startswith(b"OK "), line
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        back = b""
        while len(back) < len(data):
            c = s.recv(4096)
            if not c:
                break
            back += c
    return back


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def allocated(path):
    return os.stat(path).st_blocks * 512


@dataclass
class Snapshot:
    dir: Path
    count: int          # the last count the guest printed before the snapshot
    ro_disk: Path
    seconds: float      # the snapshot command's round trip


def restore(snap, tmp, name, cid, extra=()):
    """A clone of snap on its own copies of the writable disks, with its own vsock socket."""
    disks = []
    for n in (0, 1):
        copy = tmp / f"{name}-disk{n}.img"
        subprocess.run(["cp", "--sparse=always", str(snap.dir / f"disk{n}"), str(copy)],
                       check=True)
        disks += ["--disk", f"{n}={copy}"]
    vm = Vmm(["--restore", snap.dir, "--vsock", f"{cid},{tmp / name}.vsock"] + disks +
             list(extra), tmp, name)
    vm.disks = [Path(d.split("=", 1)[1]) for d in disks[1::2]]
    vm.vsock = tmp / f"{name}.vsock"
    return vm


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("snap")
    root = tmp / "rootfs"
    make_rootfs(root, COUNTER_INIT)
    shutil.copy(PEER, root / "bin" / "vsock-peer")
    make_ext4(tmp / "root.ext4", root)
    (tmp / "scratch.img").write_bytes(b"\0" * (1 << 20))
    ro = tmp / "ro.img"
    ro.write_bytes(RO_MARK + b"\0" * ((1 << 20) - len(RO_MARK)))
    vm = Vmm(["--kernel", KERNEL, "--cpus", 2, "--memory", 128,
              "--disk", f"{tmp / 'root.ext4'},id=root", "--disk", tmp / "scratch.img",
              "--disk", f"{ro},ro", "--vsock", f"3,{tmp / 'orig.vsock'}",
              "--cmdline", f"{BASE_CMDLINE} root=/dev/vda rw init=/init"], tmp, "orig")
    try:
        vm.wait_count(5)
        assert vsock_echo(tmp / "orig.vsock") == b"hello from the host\n"
        assert vm.control("pause") == "ok"
        count = vm.counts()[-1]     # all the guest wrote is in the pipe once it is paused
        start = time.monotonic()
        reply = vm.control(f"snapshot {tmp / 'snap'}")
        seconds = time.monotonic() - start
        assert reply == "ok", reply
        assert vm.control("status") == ("ok state=paused vcpus=2 memory_mib=128 "
                                        "devices=blk,blk,blk,rng,vsock")
        time.sleep(0.5)
        assert vm.counts()[-1] == count, "the guest ran while paused"
    finally:
        vm.kill()
    return Snapshot(tmp / "snap", count, ro, seconds)


def test_snapshot_directory(snap):
    names = sorted(p.name for p in snap.dir.iterdir())
    # Writable disks are copied, the read-only one is referenced by path.
    assert names == ["disk0", "disk1", "memory", "state"]
    assert (snap.dir / "memory").stat().st_size == 128 << 20
    # Zero pages are holes: an idle 128 MiB guest uses far less.
    assert allocated(snap.dir / "memory") < 100 << 20
    assert (snap.dir / "state").read_bytes()[:8] == b"KILNSNAP"


def test_restore_continues_the_counter(snap, tmp_path):
    vm = restore(snap, tmp_path, "one", 4)
    try:
        vm.wait_count(snap.count + 5)
        counts = vm.counts()
        # It continues where it stopped: neither from 0 nor with a gap.
        assert snap.count < counts[0] <= snap.count + 2, (snap.count, counts[:5])
        assert counts == list(range(counts[0], counts[0] + len(counts)))
        vm.send_line("after-restore")
        vm.wait_for(lambda: "got=after-restore ro=KILN-RO" in vm.console())
        # The guest's vsock listener survived the transport reset, under the new CID.
        assert vsock_echo(vm.vsock) == b"hello from the host\n"
        vm.stop()
    finally:
        vm.kill()
    assert vm.disks[1].read_bytes().startswith(b"after-restore\n")
    assert not (snap.dir / "disk1").read_bytes().startswith(b"after-restore")


def test_clones_run_independently(snap, tmp_path):
    disk0 = sha256(snap.dir / "disk0")
    clones = [restore(snap, tmp_path, f"clone{i}", 10 + i) for i in range(3)]
    try:
        for vm in clones:
            vm.wait_count(snap.count + 3)
        for i, vm in enumerate(clones):
            vm.send_line(f"i-am-clone-{i}")
        for i, vm in enumerate(clones):
            vm.wait_for(lambda: f"got=i-am-clone-{i} ro=KILN-RO" in vm.console())
            assert vsock_echo(vm.vsock, f"clone {i}\n".encode()) == f"clone {i}\n".encode()
        # One clone stopping leaves the others running.
        clones[0].stop()
        for vm in clones[1:]:
            n = vm.counts()[-1]
            vm.wait_count(n + 3)
            vm.stop()
    finally:
        for vm in clones:
            vm.kill()
    for i, vm in enumerate(clones):
        assert f"i-am-clone-{(i + 1) % 3}" not in vm.console()
        assert vm.disks[1].read_bytes().startswith(f"i-am-clone-{i}\n".encode())
    assert sha256(snap.dir / "disk0") == disk0


def test_pause_resume_and_snapshot_of_a_restored_vm(snap, tmp_path):
    vm = restore(snap, tmp_path, "live", 5)
    try:
        vm.wait_count(snap.count + 3)
        assert vm.control("pause") == "ok"
        assert vm.control("pause") == "ok"        # idempotent
        assert vm.control("status").startswith("ok state=paused ")
        paused_at = vm.counts()[-1]
        time.sleep(1.5)
        assert vm.counts()[-1] == paused_at, "the counter moved while paused"
        assert vm.control("resume") == "ok"
        assert vm.control("status").startswith("ok state=running ")
        vm.wait_count(paused_at + 3)

        # A snapshot of a running VM pauses it and leaves it paused.
        assert vm.control(f"snapshot {tmp_path / 'again'}") == "ok"
        assert vm.control("status").startswith("ok state=paused ")
        second = vm.counts()[-1]
        assert vm.control("resume") == "ok"
        vm.wait_count(second + 2)
        vm.stop()
    finally:
        vm.kill()
    # The snapshot of a restored VM restores too, and continues from its own point.
    again = Snapshot(tmp_path / "again", second, snap.ro_disk, 0)
    vm = restore(again, tmp_path, "again", 6)
    try:
        vm.wait_count(second + 3)
        assert second < vm.counts()[0] <= second + 2
        vm.stop()
    finally:
        vm.kill()


def test_control_socket_errors(snap, tmp_path):
    vm = restore(snap, tmp_path, "ctl", 7)
    try:
        vm.wait_count(snap.count + 1)
        assert vm.control("bogus").startswith("error unknown command")
        assert vm.control("snapshot").startswith("error")
        busy = tmp_path / "busy"
        busy.mkdir()
        (busy / "keep").write_text("mine\n")
        reply = vm.control(f"snapshot {busy}")
        assert reply.startswith("error") and "not an empty directory" in reply, reply
        assert (busy / "keep").read_text() == "mine\n"
        assert sorted(p.name for p in busy.iterdir()) == ["keep"]
        # A failed snapshot leaves a running VM running.
        assert vm.control("status").startswith("ok state=running ")
        reply = vm.control(f"snapshot {tmp_path / 'no' / 'such' / 'parent'}")
        assert reply.startswith("error") and "No such file" in reply, reply
        assert vm.control("status").startswith("ok state=running ")
        # Several commands on one connection, answered in order.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect(str(vm.control_path))
            s.sendall(b"pause\nstatus\nresume\n")
            got = b""
            while got.count(b"\n") < 3:
                got += s.recv(4096)
        lines = got.decode().splitlines()
        assert lines[0] == "ok" and lines[1].startswith("ok state=paused") and lines[2] == "ok"
        vm.stop()
    finally:
        vm.kill()


def broken_copy(snap, tmp, name):
    """A snapshot directory sharing snap's files except the ones a case will break."""
    d = tmp / name
    d.mkdir()
    for f in ("disk0", "disk1", "memory"):
        os.link(snap.dir / f, d / f)
    shutil.copy(snap.dir / "state", d / "state")
    return d


def test_broken_snapshots_are_refused(snap, tmp_path):
    state = (snap.dir / "state").read_bytes()

    def write_state(d, data):
        (d / "state").write_bytes(data)

    def flip(d):
        data = bytearray(state)
        data[len(data) // 2] ^= 0x40
        write_state(d, bytes(data))

    def short_memory(d):
        (d / "memory").unlink()
        subprocess.run(["cp", "--sparse=always", str(snap.dir / "memory"), str(d / "memory")],
                       check=True)
        os.truncate(d / "memory", (128 << 20) - 4096)

    def disks_as_symlinks(d):
        # A writable disk that is a symlink would have the guest writing wherever it points.
        for f in ("disk0", "disk1"):
            outside = tmp_path / f"outside-{d.name}-{f}"
            (d / f).rename(outside)
            (d / f).symlink_to(outside)

    def memory_writable_by_others(d):
        (d / "memory").unlink()     # a hard link: the copy, not the shared file, is changed
        subprocess.run(["cp", "--sparse=always", str(snap.dir / "memory"), str(d / "memory")],
                       check=True)
        os.chmod(d / "memory", 0o646)

    def memory_fifo(d):
        (d / "memory").unlink()
        os.mkfifo(d / "memory")

    small = tmp_path / "small.img"
    small.write_bytes(b"\0" * 4096)
    cases = {
        "writable disk a symlink": (disks_as_symlinks, [], "regular file"),
        "memory a fifo": (memory_fifo, [], "memory"),
        "memory writable by others": (memory_writable_by_others, [], "writable by others"),
        "truncated": (lambda d: write_state(d, state[:len(state) // 2]), [], "truncated"),
        "corrupted": (flip, [], "checksum"),
        "wrong version": (lambda d: write_state(d, state[:8] + b"\x63\0\0\0" + state[12:]), [],
                          "version 99"),
        "wrong magic": (lambda d: write_state(d, b"NOTKILN!" + state[8:]), [], "magic"),
        "empty state": (lambda d: write_state(d, b""), [], "truncated"),
        "wrong-size memory": (short_memory, [], "RAM is"),
        "missing memory": (lambda d: (d / "memory").unlink(), [], "memory"),
        "disk of another size": (lambda d: None, ["--disk", f"0={small}"], "sectors"),
    }
    for name, (breakit, extra, why) in cases.items():
        d = broken_copy(snap, tmp_path, name.replace(" ", "-"))
        breakit(d)
        console = tmp_path / f"{name}.console"
        ctl = tmp_path / f"{name}.ctl"
        p = subprocess.run([str(VMM), "--restore", str(d), "--serial", f"file:{console}",
                            "--vsock", f"20,{tmp_path / 'broken.vsock'}"] + extra +
                           (["--control", str(ctl)] if not extra else []),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, f"{name}: status {p.returncode}, stderr {p.stderr!r}"
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kiln-vmm: "), f"{name}: {p.stderr!r}"
        assert why in lines[0], f"{name}: {lines[0]!r}"
        # Nothing ran: no guest output, and a bad state or memory file created no socket.
        assert not console.exists() or console.read_text() == "", name
        if not extra:
            assert not ctl.exists(), name
    assert sha256(snap.dir / "state") == hashlib.sha256(state).hexdigest()
