"""The guest agent in a real microVM: kiln-init as PID 1 from its initramfs, reached through
kiln-vmm's vsock, driven by the kiln CLI.  One VM serves the whole module (boots are slow in
the VM test host); every test leaves it usable for the next, which is itself a check."""
import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, busybox_image

KILN = ROOT / "build" / "kiln"


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agentvm")
    image = busybox_image(tmp)
    vmdir = tmp / "vm"
    # One vCPU: under the load these tests make (fork bomb, OOM, 100 MB copies), 2-vCPU guests
    # in the emulated test host sometimes triple-fault after a cross-vCPU IPI (seen in booted
    # and restored guests alike, never on a real KVM host so far); SMP is covered by test_vmm.
    r = subprocess.run([str(KILN), "up", "--rootfs", str(image), "--dir", str(vmdir),
                        "--cpus", "1", "--memory", "512", "--hostname", "kiln-test"],
                       capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr
    yield vmdir
    # Keep the logs (kiln down removes the directory) and show them if a test failed.
    for name in ("console.log", "vmm.log"):
        if (vmdir / name).exists():
            shutil.copy(vmdir / name, tmp / name)
            print(f"--- {name} (last 3000 bytes)\n" + (tmp / name).read_bytes()[-3000:].decode(errors="replace"))
    subprocess.run([str(KILN), "down", "--dir", str(vmdir)], timeout=60)


def kiln(vm, *args, input=None, timeout=180):
    cmd = [str(KILN), args[0], "--dir", str(vm)] + [str(a) for a in args[1:]]
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)


def test_agent_is_pid_1_on_an_overlay_root(vm):
    r = kiln(vm, "exec", "--", "sh", "-c",
             "cat /proc/1/comm; hostname; grep ' / ' /proc/mounts | cut -d' ' -f3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["init", "kiln-test", "overlay"]


def test_exit_codes_and_streams(vm):
    r = kiln(vm, "exec", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")


def test_stdin_10mb(vm):
    data = os.urandom(10 << 20)
    r = kiln(vm, "exec", "--", "sha256sum", input=data)
    assert r.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_file_round_trip_100mb(vm, tmp_path):
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
    assert kiln(vm, "cp", src, ":/home/user/big.bin").returncode == 0
    r = kiln(vm, "exec", "--", "sha256sum", "/home/user/big.bin")
    assert r.stdout.split()[0].decode() == hashlib.sha256(src.read_bytes()).hexdigest()
    back = tmp_path / "back.bin"
    assert kiln(vm, "cp", ":/home/user/big.bin", back).returncode == 0
    assert back.read_bytes() == src.read_bytes()
    kiln(vm, "exec", "--", "rm", "/home/user/big.bin")


def test_tty_under_pty(vm):
    r = kiln(vm, "exec", "-t", "--", "tty")
    assert r.returncode == 0 and r.stdout.startswith(b"/dev/pts/")


def test_timeout_kills_a_sleeping_command(vm):
    r = kiln(vm, "exec", "--timeout", "2", "--", "sleep", "600")
    assert r.returncode == 124


def test_env_cwd_user(vm):
    r = kiln(vm, "exec", "-e", "GREETING=hi there", "-w", "/tmp", "-u", "user", "--",
             "sh", "-c", 'echo "$GREETING|$(pwd)|$(id -u)|$HOME"')
    assert r.stdout.decode().strip() == "hi there|/tmp|1000|/home/user"


def test_twenty_concurrent_commands(vm):
    procs = [subprocess.Popen([str(KILN), "exec", "--dir", str(vm), "--", "sh", "-c",
                               f"sleep 1; echo job{i}"], stdout=subprocess.PIPE)
             for i in range(20)]
    outs = sorted(p.communicate(timeout=300)[0] for p in procs)
    assert all(p.returncode == 0 for p in procs)
    assert outs == sorted(f"job{i}\n".encode() for i in range(20))


def test_memory_hog_does_not_kill_the_agent(vm):
    # memhog touches memory until the OOM killer ends it (in the user cgroup, not the agent).
    r = kiln(vm, "exec", "--timeout", "120", "--", "memhog")
    assert r.returncode == 128 + 9, r
    assert kiln(vm, "exec", "--", "echo", "alive").stdout == b"alive\n"


def test_fork_bomb_does_not_kill_the_agent(vm):
    # The shell stays (sleep) so the bomb counts as part of the command and the timeout
    # applies; a command that exits normally may leave background children running.
    r = kiln(vm, "exec", "--timeout", "10", "--", "sh", "-c", "b() { b | b & }; b; sleep 600")
    assert r.returncode == 124
    assert kiln(vm, "exec", "--", "echo", "alive").stdout == b"alive\n"
    # The timeout took the whole tree, including what was mid-fork: nothing is left over
    # (the agent waits for the tree to die before it reports; allow stragglers a minute).
    r = kiln(vm, "exec", "--", "sh", "-c",
             "for i in $(seq 600); do [ $(cat /sys/fs/cgroup/user/pids.current) -le 3 ] && break;"
             " sleep 0.1; done; cat /sys/fs/cgroup/user/pids.current")
    assert int(r.stdout) <= 3, r.stdout


def test_hostile_frames_from_the_host(vm):
    # Straight at the agent through the vsock socket, with a malformed frame.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(str(vm / "vsock.sock"))
    s.sendall(b"CONNECT 52\n")
    line = b""
    while not line.endswith(b"\n"):
        line += s.recv(1)
    assert line.startswith(b"OK ")
    s.sendall(b"\xff\xff\xff\xff\x01\x01\x00\x00garbage")
    s.settimeout(60)
    try:
        while s.recv(4096):
            pass
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert kiln(vm, "exec", "--", "echo", "alive").stdout == b"alive\n"


def test_identity_sets_clock_hostname_and_environment(vm):
    import struct
    import time as _time

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(str(vm / "vsock.sock"))
    s.sendall(b"CONNECT 52\n")
    line = b""
    while not line.endswith(b"\n"):
        line += s.recv(1)
    fields = [(13, os.urandom(64)), (41, struct.pack("<Q", _time.time_ns())),
              (31, b"clone-7"), (42, b"sbx-7"), (3, b"ROLE=worker")]
    payload = b"".join(struct.pack("<HI", t, len(v)) + v for t, v in fields)
    s.sendall(struct.pack("<IBBH", len(payload), 1, 13, 0) + payload)
    hdr = s.recv(8)
    assert hdr[5] == 43, hdr  # MSG_OK
    s.close()
    before = _time.time()
    r = kiln(vm, "exec", "--", "sh", "-c", 'hostname; date +%s; echo "$KILN_SANDBOX_ID $ROLE"')
    after = _time.time()
    assert r.returncode == 0, (r.stdout, r.stderr)
    host, clock, env = r.stdout.decode().splitlines()
    assert host == "clone-7"
    assert before - 1 <= int(clock) <= after + 1
    assert env == "sbx-7 worker"
