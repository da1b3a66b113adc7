"""Agent tests without a VM: kiln-init serves a unix socket (--listen-unix) on this host and
the tests drive it with the real client (build/kiln) and with hand-made hostile frames.

The same agent code runs as PID 1 in guests; tests/integration/test_agent.py covers that.
"""
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KILN = ROOT / "build" / "kiln"
AGENT = Path(os.environ.get("KILN_TEST_AGENT", ROOT / "build" / "kiln-init"))

# Message types and tags, as in src/proto/proto.h.
MSG_EXEC, MSG_ATTACH, MSG_PS, MSG_KILL, MSG_FILE_READ, MSG_FILE_WRITE = 1, 2, 3, 4, 5, 6
MSG_INFO = 12
MSG_STARTED, MSG_STDIN, MSG_STDIN_CLOSE, MSG_STDOUT, MSG_STDERR = 32, 33, 34, 35, 36
MSG_EXIT, MSG_ERROR, MSG_INFO_REPLY = 39, 44, 45
TAG_ARG, TAG_SHELL, TAG_BACKGROUND, TAG_PID, TAG_DATA = 1, 2, 10, 11, 13
TAG_EXIT_CODE, TAG_ERRNO, TAG_MESSAGE = 14, 22, 23


def frame(mtype, fields=(), version=1):
    payload = b"".join(struct.pack("<HI", t, len(v)) + v for t, v in fields)
    return struct.pack("<IBBH", len(payload), version, mtype, 0) + payload


def read_frame(sock):
    hdr = recv_exact(sock, 8)
    if hdr is None:
        return None
    length, _version, mtype, _ = struct.unpack("<IBBH", hdr)
    payload = recv_exact(sock, length) if length else b""
    fields, off = [], 0
    while off < len(payload):
        t, n = struct.unpack_from("<HI", payload, off)
        fields.append((t, payload[off + 6:off + 6 + n]))
        off += 6 + n
    return mtype, fields


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class Agent:
    def __init__(self, path):
        self.path = path
        self.sock = "unix:" + str(path)

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(str(self.path))
        return s

    def kiln(self, *args, input=None, timeout=60):
        cmd = [str(KILN), args[0], "--sock", self.sock] + [str(a) for a in args[1:]]
        return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    path = tmp_path_factory.mktemp("agent") / "agent.sock"
    # A session of its own: the agent forks helpers that would outlive a kill of it alone.
    p = subprocess.Popen([str(AGENT), "--listen-unix", str(path)], start_new_session=True)
    # To a deadline, not 2 s of tries: the sanitizer build starts slowly on a loaded machine.
    deadline = time.monotonic() + 60
    while not path.exists():
        assert p.poll() is None, f"the agent exited {p.returncode}"
        assert time.monotonic() < deadline, "the agent never made its socket"
        time.sleep(0.02)
    yield Agent(path)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
