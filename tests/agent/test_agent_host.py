"""The guest agent's protocol and operations, served on a unix socket on this host."""
import hashlib
import os
import signal
import subprocess
import time

from conftest import (MSG_ATTACH, MSG_ERROR, MSG_EXEC, MSG_EXIT, MSG_INFO, MSG_INFO_REPLY,
                      MSG_STARTED, MSG_STDOUT, TAG_ARG, TAG_BACKGROUND, TAG_DATA, TAG_PID,
                      TAG_SHELL, frame, read_frame)


def test_exit_codes(agent):
    assert agent.kiln("exec", "--", "true").returncode == 0
    assert agent.kiln("exec", "--", "sh", "-c", "exit 42").returncode == 42
    r = agent.kiln("exec", "--", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + signal.SIGTERM


def test_stdout_and_stderr_are_separate_and_ordered(agent):
    r = agent.kiln("exec", "--", "sh", "-c",
                   "for i in 1 2 3; do echo out$i; echo err$i >&2; done")
    assert r.stdout == b"out1\nout2\nout3\n"
    assert r.stderr == b"err1\nerr2\nerr3\n"


def test_stdin_10mb(agent):
    data = os.urandom(10 << 20)
    r = agent.kiln("exec", "--", "sha256sum", input=data)
    assert r.returncode == 0
    assert r.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_file_round_trip_100mb(agent, tmp_path):
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
    guest = tmp_path / "guest-side" / "nested" / "copy.bin"
    assert agent.kiln("cp", src, f":{guest}").returncode == 0
    back = tmp_path / "back.bin"
    assert agent.kiln("cp", f":{guest}", back).returncode == 0
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


def test_write_onto_a_directory_fails_without_hanging(agent, tmp_path):
    # The agent fails only at the final rename, after the whole stream: it must answer at once.
    src = tmp_path / "one.txt"
    src.write_text("x")
    (tmp_path / "dir").mkdir()
    r = agent.kiln("cp", src, f":{tmp_path / 'dir'}", timeout=20)
    assert r.returncode != 0 and b"directory" in r.stderr.lower()
    assert os.listdir(tmp_path / "dir") == []


def test_tty_under_pty(agent):
    r = agent.kiln("exec", "-t", "--", "sh", "-c", "tty; stty size")
    assert r.returncode == 0
    assert b"/dev/pts/" in r.stdout
    assert b"24 80" in r.stdout


def test_timeout_kills_sleeping_command(agent):
    start = time.monotonic()
    r = agent.kiln("exec", "--timeout", "1", "--", "sh", "-c", "sleep 30; echo survived")
    assert r.returncode == 124
    assert b"survived" not in r.stdout
    assert time.monotonic() - start < 10


def test_env_cwd_user(agent, tmp_path):
    r = agent.kiln("exec", "-e", "KILN_TEST=hello world", "-w", tmp_path, "-u", "nobody", "--",
                   "sh", "-c", 'echo "$KILN_TEST|$(pwd)|$(id -un)|$HOME"')
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip().split("|")[:3] == ["hello world", str(tmp_path), "nobody"]


def test_errors_name_the_cause(agent):
    r = agent.kiln("exec", "--", "/no/such/program")
    assert r.returncode == 127
    assert b"/no/such/program" in r.stderr and b"No such file" in r.stderr
    r = agent.kiln("exec", "-w", "/no/such/dir", "--", "true")
    assert r.returncode == 125 and b"/no/such/dir" in r.stderr
    r = agent.kiln("exec", "-u", "no-such-user-x", "--", "true")
    assert r.returncode == 125
    r = agent.kiln("cp", ":/no/such/file", "/dev/null")
    assert r.returncode == 125 and b"/no/such/file" in r.stderr


def test_twenty_concurrent_commands(agent):
    procs = [subprocess.Popen([str(__import__("conftest").KILN), "exec", "--sock", agent.sock,
                               "--", "sh", "-c", f"sleep 0.5; echo job{i}"],
                              stdout=subprocess.PIPE) for i in range(20)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outs) == sorted(f"job{i}\n".encode() for i in range(20))


def exec_frame(shell, background=False):
    fields = [(TAG_SHELL, shell.encode())]
    if background:
        fields.append((TAG_BACKGROUND, b"\x01"))
    return frame(MSG_EXEC, fields)


def test_background_process_can_be_reattached(agent):
    s = agent.connect()
    s.sendall(exec_frame("sleep 0.5; echo before; sleep 1; echo after", background=True))
    mtype, fields = read_frame(s)
    assert mtype == MSG_STARTED
    pid = dict(fields)[TAG_PID]
    s.close()  # the host goes away; a background process keeps running
    time.sleep(2.5)
    s = agent.connect()
    s.sendall(frame(MSG_ATTACH, [(TAG_PID, pid)]))
    out, code = b"", None
    while True:
        f = read_frame(s)
        assert f is not None
        mtype, fields = f
        if mtype == MSG_STDOUT:
            out += dict(fields)[TAG_DATA]
        elif mtype == MSG_EXIT:
            code = fields
            break
    assert out == b"before\nafter\n"
    assert code is not None


def test_foreground_process_dies_with_its_connection(agent, tmp_path):
    marker = tmp_path / "still-running"
    s = agent.connect()
    s.sendall(exec_frame(f"sleep 5; touch {marker}"))
    mtype, fields = read_frame(s)
    assert mtype == MSG_STARTED
    pid = int.from_bytes(dict(fields)[TAG_PID], "little")
    s.close()
    # Wait for the shell to go rather than sleeping a fixed time: killed, it goes without
    # the marker; left running, it goes after making it.
    deadline = time.monotonic() + 60
    while running(pid):
        assert time.monotonic() < deadline, f"the shell {pid} still runs"
        time.sleep(0.05)
    assert not marker.exists()


def running(pid):
    """Whether pid is a live process (not gone, not a zombie)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_hostile_frames_close_only_that_connection(agent):
    hostile = [
        b"\xff\xff\xff\xff\x01\x01\x00\x00",              # 4 GiB payload
        frame(MSG_EXEC, version=99),                      # unknown version
        b"\x10\x00\x00\x00\x01\x01\x00\x00" + b"\x01",    # truncated payload
        b"\x08\x00\x00\x00\x01\x01\x00\x00" + b"\x01\x00\xff\xff\xff\x7f\x00\x00",  # field overruns
        frame(200),                                       # unknown request
        frame(MSG_EXEC),                                  # no argv
        frame(MSG_EXEC, [(TAG_ARG, b"a\x00b")]),          # NUL inside a string
        frame(MSG_ATTACH, [(TAG_PID, b"\x01")]),          # wrong field size
        b"\x00" * 3,                                      # not even a header
    ]
    for raw in hostile:
        s = agent.connect()
        s.sendall(raw)
        s.shutdown(1)
        reply = read_frame(s)
        assert reply is None or reply[0] == MSG_ERROR, (raw, reply)
        s.close()
    # ...and the agent still serves everyone else.
    s = agent.connect()
    s.sendall(frame(MSG_INFO))
    assert read_frame(s)[0] == MSG_INFO_REPLY
    assert agent.kiln("exec", "--", "echo", "alive").stdout == b"alive\n"


def test_ps_and_kill(agent):
    s = agent.connect()
    s.sendall(exec_frame("sleep 60", background=True))
    mtype, fields = read_frame(s)
    pid = int.from_bytes(dict(fields)[TAG_PID], "little")
    s.close()
    time.sleep(0.3)
    from conftest import MSG_KILL, MSG_PS
    s = agent.connect()
    s.sendall(frame(MSG_PS))
    pids = []
    while True:
        mtype, fields = read_frame(s)
        if mtype != 42:  # MSG_ENTRY
            break
        pids.append(int.from_bytes(dict(fields)[TAG_PID], "little"))
    assert pid in pids
    s = agent.connect()
    s.sendall(frame(MSG_KILL, [(TAG_PID, pid.to_bytes(4, "little")), (12, (9).to_bytes(4, "little"))]))
    assert read_frame(s)[0] == 43  # MSG_OK
    time.sleep(0.5)
    s = agent.connect()
    s.sendall(frame(MSG_KILL, [(TAG_PID, (1).to_bytes(4, "little"))]))
    assert read_frame(s)[0] == MSG_ERROR  # never anything the agent did not start


IDENTITY, TAG_ENV, TAG_TIME_NS, TAG_SANDBOX_ID = 13, 3, 41, 42


def test_identity_sets_environment_for_later_processes(agent):
    s = agent.connect()
    s.sendall(frame(IDENTITY, [(TAG_DATA, os.urandom(64)), (TAG_SANDBOX_ID, b"sbx-123"),
                               (TAG_ENV, b"TEAM=data"), (TAG_ENV, b"PATH=/usr/bin:/bin")]))
    assert read_frame(s)[0] == 43  # MSG_OK
    r = agent.kiln("exec", "-e", "TEAM=override", "--", "sh", "-c",
                   'echo "$KILN_SANDBOX_ID $TEAM $PATH"')
    assert r.stdout == b"sbx-123 override /usr/bin:/bin\n"
    for bad in ([(TAG_ENV, b"NOEQUALS")], [(TAG_DATA, b"")], [(TAG_DATA, b"x" * 513)]):
        s = agent.connect()
        s.sendall(frame(IDENTITY, bad))
        assert read_frame(s)[0] == MSG_ERROR
    # A resume sends neither id nor variables: the sandbox keeps its environment.
    s = agent.connect()
    s.sendall(frame(IDENTITY, [(TAG_DATA, os.urandom(64))]))
    assert read_frame(s)[0] == 43
    assert agent.kiln("exec", "--", "sh", "-c", 'echo "$KILN_SANDBOX_ID [$TEAM]"').stdout == \
        b"sbx-123 [data]\n"
    # A new identity replaces all of it.
    s = agent.connect()
    s.sendall(frame(IDENTITY, [(TAG_SANDBOX_ID, b"sbx-456")]))
    assert read_frame(s)[0] == 43
    assert agent.kiln("exec", "--", "sh", "-c", 'echo "$KILN_SANDBOX_ID [$TEAM]"').stdout == \
        b"sbx-456 []\n"
