"""Hybrid vsock end to end: a real guest running tests/guest/vsock-peer talks to this test through
kiln-vmm's --vsock socket, in both directions.

One VM serves the module (boots are slow in the VM test host).  At boot the guest starts an echo
server on vsock port ECHO_PORT, connects out to the host twice (to a unix listener this test made
at PATH_HOST_PORT, and to a port nobody serves), prints what happened and waits on STOP_PORT; the
last test connects there and the guest powers off, which must end kiln-vmm with status 0.
"""
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import BASE_CMDLINE, BOOT_TIMEOUT, KERNEL, ROOT, VMM, make_ext4, make_rootfs, run_vmm

PEER = ROOT / "build" / "tests" / "guest" / "vsock-peer"
GUEST_CID = 3
ECHO_PORT = 5000
STOP_PORT = 5999
HOST_PORT = 9000        # this test's unix listener at PATH_9000 echoes
MISSING_PORT = 9001     # nobody listens at PATH_9001
GUEST_BYTES = 256 * 1024
# Size of the host -> guest -> host echo; raise it to measure throughput.
ECHO_MIB = int(os.environ.get("KILN_TEST_VSOCK_MIB", "1"))
IO_TIMEOUT = 180

GUEST_INIT = f"""
/bin/vsock-peer serve {ECHO_PORT}
/bin/vsock-peer send 2 {HOST_PORT} {GUEST_BYTES}
/bin/vsock-peer send 2 {MISSING_PORT} 16
echo vsock-guest-ready
/bin/vsock-peer wait {STOP_PORT}
poweroff -f
"""


class UnixEcho:
    """A host service for the guest to reach: echoes each connection, records its byte count."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.echoed = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn):
        n = 0
        with conn:
            conn.settimeout(IO_TIMEOUT)
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                conn.sendall(data)
                n += len(data)
            # Recorded before the close: the guest's EOF, and so its "ok" on the console,
            # come after it, and the test reads this once it has seen the "ok".
            self.echoed.append(n)


def unix_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(IO_TIMEOUT)
    s.connect(str(path))
    return s


def read_line(sock):
    """Up to and including the first newline; '' if the peer closed first."""
    line = b""
    while not line.endswith(b"\n"):
        c = sock.recv(1)
        if not c:
            return ""
        line += c
    return line.decode()


def assert_closed(sock):
    """The peer closed: EOF, or a reset when it closed with our bytes unread (AF_UNIX, as TCP)."""
    try:
        assert sock.recv(16) == b""
    except ConnectionResetError:
        pass


def round_trip(sock, data):
    """Send data to an echo, half-close, and return everything read back up to EOF."""
    chunks, errors = [], []

    def reader():
        try:
            while True:
                b = sock.recv(1 << 16)
                if not b:
                    return
                chunks.append(b)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    t.join(IO_TIMEOUT)
    assert not t.is_alive(), "the echo never reached EOF"
    assert not errors, errors
    return b"".join(chunks)


class VsockVM:
    def __init__(self, tmp):
        self.path = tmp / "v.sock"
        # A socket file left by a VMM that died: kiln-vmm must replace it.
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(self.path))
        stale.close()
        self.echo = UnixEcho(f"{self.path}_{HOST_PORT}")
        root = tmp / "rootfs"
        make_rootfs(root, GUEST_INIT)
        shutil.copy(PEER, root / "bin" / "vsock-peer")
        image = tmp / "root.ext4"
        make_ext4(image, root)
        self.console = tmp / "console"
        self.proc = subprocess.Popen(
            [str(VMM), "--kernel", str(KERNEL), "--disk", f"{image},id=root",
             "--serial", f"file:{self.console}", "--vsock", f"{GUEST_CID},{self.path}",
             "--cmdline", f"{BASE_CMDLINE} root=/dev/vda rw init=/init"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self.status = None
        self.stderr = ""
        self.wait_console("vsock-guest-ready", BOOT_TIMEOUT)

    def console_text(self):
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def wait_console(self, marker, timeout):
        deadline = time.monotonic() + timeout
        while marker not in self.console_text():
            if self.proc.poll() is not None:
                pytest.fail(f"kiln-vmm exited {self.proc.returncode}: {self.proc.stderr.read()}\n"
                            f"console:\n{self.console_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {marker!r} on the console:\n{self.console_text()}")
            time.sleep(0.1)

    def connect(self, port):
        """A host client through the CONNECT handshake: (socket, the reply line or '')."""
        s = unix_connect(self.path)
        s.sendall(f"CONNECT {port}\n".encode())
        return s, read_line(s)

    def stop(self):
        """Release the guest's 'wait' and collect kiln-vmm's exit."""
        if self.status is None:
            s, line = self.connect(STOP_PORT)
            s.close()
            try:
                _, self.stderr = self.proc.communicate(timeout=IO_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, self.stderr = self.proc.communicate()
            self.status = self.proc.returncode
        return self.status

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    if not PEER.exists():
        pytest.fail(f"{PEER} is missing: run make test-guest-bins")
    v = VsockVM(tmp_path_factory.mktemp("vsock"))
    yield v
    v.kill()


def assert_ok_line(line):
    assert line.startswith("OK ") and line.endswith("\n"), repr(line)
    port = int(line[3:])
    assert 2**30 <= port < 2**32
    return port


def test_guest_connects_to_host_listener(vm):
    # The guest sent 256 KiB to CID 2 port 9000 = our listener at PATH_9000, and got it echoed.
    assert f"vsock-peer: send {HOST_PORT}: ok {GUEST_BYTES}" in vm.console_text()
    assert vm.echo.echoed == [GUEST_BYTES]


def test_guest_connect_where_nobody_listens_is_reset(vm):
    assert (f"vsock-peer: send {MISSING_PORT}: connect failed: Connection reset by peer"
            in vm.console_text())


def test_host_connects_and_round_trips_1mib(vm):
    s, line = vm.connect(ECHO_PORT)
    with s:
        assert_ok_line(line)
        data = os.urandom(ECHO_MIB << 20)
        start = time.monotonic()
        echoed = round_trip(s, data)
        seconds = time.monotonic() - start
    assert len(echoed) == len(data)
    assert echoed == data
    print(f"\nvsock: {ECHO_MIB} MiB echoed through the guest in {seconds:.2f} s "
          f"({len(data) / seconds / 1e6:.2f} MB/s each way, concurrently)")


def test_connect_to_guest_port_nobody_listens_on_is_closed(vm):
    s, line = vm.connect(4444)
    with s:
        assert line == ""
        assert_closed(s)


def test_garbage_connect_line_closes_only_that_client(vm):
    for bad in (b"GARBAGE\n", b"CONNECT\n", b"CONNECT 99999999999\n", b"CONNECT -1\n",
                b"X" * 100):
        with unix_connect(vm.path) as s:
            s.sendall(bad)
            assert_closed(s)
    # The VM and the device keep working.
    s, line = vm.connect(ECHO_PORT)
    with s:
        assert_ok_line(line)
        assert round_trip(s, b"still alive") == b"still alive"


def test_ten_concurrent_connections(vm):
    results = {}

    def client(i):
        try:
            s, line = vm.connect(ECHO_PORT)
            with s:
                data = os.urandom(64 * 1024 + i)
                results[i] = (assert_ok_line(line), round_trip(s, data) == data)
        except Exception as e:  # reported below, with the others
            results[i] = (None, repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(IO_TIMEOUT * 2)
    assert len(results) == 10, results
    assert all(ok is True for _, ok in results.values()), results
    ports = [port for port, _ in results.values()]
    assert len(set(ports)) == 10, ports


def test_bad_vsock_arguments_exit_2(tmp_path):
    regular = tmp_path / "file"
    regular.write_text("not a socket\n")
    ok = tmp_path / "ok.sock"
    cases = {
        "CID 2 (the host)": ["--vsock", f"2,{ok}"],
        "CID 0": ["--vsock", f"0,{ok}"],
        "CID 2^32-1": ["--vsock", f"4294967295,{ok}"],
        "CID not a number": ["--vsock", f"three,{ok}"],
        "no path": ["--vsock", "3"],
        "empty path": ["--vsock", "3,"],
        "path too long": ["--vsock", "3,/tmp/" + "a" * 120],
        "path is not a socket": ["--vsock", f"3,{regular}"],
        "two devices": ["--vsock", f"3,{ok}", "--vsock", f"4,{ok}2"],
    }
    for what, args in cases.items():
        run = run_vmm(["--kernel", KERNEL] + args, timeout=30)
        assert run.status == 2, f"{what}: status {run.status}, stderr {run.stderr!r}"
        lines = [l for l in run.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith("kiln-vmm:"), f"{what}: {run.stderr!r}"
    assert regular.read_text() == "not a socket\n"


def test_guest_powers_off_cleanly(vm):
    status = vm.stop()
    assert status == 0, vm.stderr
    assert "warning" not in vm.stderr, vm.stderr
    assert "vsock-peer: wait 5999: done" in vm.console_text()
