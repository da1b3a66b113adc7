"""Code contexts (CONTEXT_* requests, src/guest/context.c) served by the agent on this host,
with this host's /usr/bin/python3, driven by raw frames and by `kiln code`.

Charts and DataFrames need matplotlib and pandas, which this host's Python lacks: they are
tested in a real guest, tests/integration/test_contexts.py."""
import errno
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import KILN, MSG_ERROR, MSG_STDERR, MSG_STDOUT, TAG_DATA, frame, read_frame

CONTEXT_CREATE, CONTEXT_RUN, CONTEXT_LIST, CONTEXT_INTERRUPT, CONTEXT_RESTART, CONTEXT_DELETE = \
    14, 15, 16, 17, 18, 19
MSG_ENTRY, MSG_OK, MSG_END, MSG_SIGNAL = 42, 43, 41, 37
MSG_RESULT, MSG_EXCEPTION, MSG_DONE = 46, 47, 48
TAG_ENV, TAG_CWD, TAG_USER, TAG_TIMEOUT_MS, TAG_PID, TAG_SIGNAL = 3, 4, 5, 6, 11, 12
TAG_ERRNO, TAG_MESSAGE, TAG_PATH = 22, 23, 17
TAG_CONTEXT_ID, TAG_LANGUAGE, TAG_CODE, TAG_MIME, TAG_INDEX = 43, 44, 45, 46, 47
TAG_ENAME, TAG_EVALUE, TAG_TRACEBACK, TAG_EXEC_COUNT, TAG_STATUS = 48, 49, 50, 51, 52
CELL_OK, CELL_ERROR, CELL_INTERRUPTED, CELL_TIMEOUT = 0, 1, 2, 3
CONTEXT_DIR = "/run/kiln/contexts"


def u32(v):
    return struct.pack("<I", v)


class Cell:
    """Everything one CONTEXT_RUN returned, with the arrival time of each frame."""

    def __init__(self):
        self.stdout = b""
        self.stderr = b""
        self.results = []       # (index, mime, data)
        self.exception = None   # (name, value, traceback lines)
        self.count = self.status = None
        self.error = None       # (errno, message)
        self.frames = []        # (seconds since sent, type)

    def text(self):
        return [d.decode() for _, m, d in self.results if m == "text/plain"]


def request(agent, mtype, fields=()):
    s = agent.connect()
    s.sendall(frame(mtype, fields))
    return s


def reply(agent, mtype, fields=()):
    s = request(agent, mtype, fields)
    r = read_frame(s)
    s.close()
    return r[0], dict(r[1])


def error_of(fields):
    return struct.unpack("<I", fields[TAG_ERRNO])[0], fields[TAG_MESSAGE].decode()


def collect(s, cell=None, start=None):
    cell = cell or Cell()
    start = start or time.monotonic()
    while True:
        f = read_frame(s)
        assert f is not None, "connection closed before DONE or ERROR"
        mtype, fields = f
        cell.frames.append((time.monotonic() - start, mtype))
        d = dict(fields)
        if mtype == MSG_STDOUT:
            cell.stdout += d[TAG_DATA]
        elif mtype == MSG_STDERR:
            cell.stderr += d[TAG_DATA]
        elif mtype == MSG_RESULT:
            cell.results.append((struct.unpack("<I", d[TAG_INDEX])[0], d[TAG_MIME].decode(),
                                 d[TAG_DATA]))
        elif mtype == MSG_EXCEPTION:
            cell.exception = (d[TAG_ENAME].decode(), d.get(TAG_EVALUE, b"").decode(),
                              [v.decode() for t, v in fields if t == TAG_TRACEBACK])
        elif mtype == MSG_DONE:
            cell.count = struct.unpack("<I", d[TAG_EXEC_COUNT])[0]
            cell.status = d[TAG_STATUS][0]
            return cell
        elif mtype == MSG_ERROR:
            cell.error = error_of(d)
            return cell
        else:
            raise AssertionError(f"unexpected frame {mtype}")


def start_run(agent, cid, code, timeout_ms=None):
    fields = [(TAG_CONTEXT_ID, cid.encode()), (TAG_CODE, code.encode())]
    if timeout_ms:
        fields.append((TAG_TIMEOUT_MS, u32(timeout_ms)))
    return request(agent, CONTEXT_RUN, fields)


def run(agent, cid, code, timeout_ms=None):
    s = start_run(agent, cid, code, timeout_ms)
    start = time.monotonic()
    try:
        return collect(s, start=start)
    finally:
        s.close()


@pytest.fixture(scope="module")
def contexts(agent):
    """Creates contexts and deletes, at the end, every one it made."""
    made = []

    def create(*fields):
        mtype, d = reply(agent, CONTEXT_CREATE, list(fields))
        assert mtype == MSG_OK, error_of(d)
        cid = d[TAG_CONTEXT_ID].decode()
        made.append(cid)
        return cid

    yield create
    for cid in made:
        reply(agent, CONTEXT_DELETE, [(TAG_CONTEXT_ID, cid.encode())])


@pytest.fixture(scope="module")
def ctx(contexts):
    return contexts()


def pid_of(agent, cid):
    for c in list_contexts(agent):
        if c[TAG_CONTEXT_ID].decode() == cid:
            return struct.unpack("<I", c[TAG_PID])[0]
    return None


def list_contexts(agent):
    s = request(agent, CONTEXT_LIST)
    out = []
    while True:
        mtype, fields = read_frame(s)
        if mtype != MSG_ENTRY:
            assert mtype == MSG_END
            break
        out.append(dict(fields))
    s.close()
    return out


def test_state_survives_between_cells(agent, ctx):
    first = run(agent, ctx, "x = 41")
    assert (first.status, first.results, first.exception) == (CELL_OK, [], None)
    second = run(agent, ctx, "x + 1")
    assert second.status == CELL_OK and second.text() == ["42"]
    assert second.count == first.count + 1


def test_last_expression_only_and_none_is_not_shown(agent, ctx):
    c = run(agent, ctx, "a = [1, 2]\na.append(3)\na")
    assert c.text() == ["[1, 2, 3]"]
    assert ("application/json" in [m for _, m, _ in c.results])
    assert run(agent, ctx, "None").results == []
    assert run(agent, ctx, "print('p')").results == []   # print's value is None


def test_stdout_streams_while_the_cell_runs(agent, ctx):
    c = run(agent, ctx, "import time, sys\nprint('early', flush=True)\n"
                        "sys.stderr.write('to stderr\\n')\ntime.sleep(1.5)\nprint('late')")
    assert c.stdout == b"early\nlate\n" and c.stderr == b"to stderr\n"
    first_out = next(t for t, m in c.frames if m == MSG_STDOUT)
    done = c.frames[-1][0]
    assert done - first_out > 1.0, c.frames   # "early" arrived before the sleep ended


def test_output_of_child_processes_is_captured(agent, ctx):
    c = run(agent, ctx, "import os, subprocess\nos.system('echo from-shell')\n"
                        "subprocess.run(['sh', '-c', 'echo child-err >&2'])\nNone")
    assert c.stdout == b"from-shell\n" and c.stderr == b"child-err\n"


def test_exception_gives_name_value_traceback_and_state_stays(agent, ctx):
    run(agent, ctx, "kept = 'yes'")
    c = run(agent, ctx, "def inner():\n    return {}['missing']\ninner()")
    assert c.status == CELL_ERROR
    name, value, tb = c.exception
    assert (name, value) == ("KeyError", "'missing'")
    assert tb[0] == "Traceback (most recent call last):"
    assert any("in inner" in line for line in tb) and tb[-1] == "KeyError: 'missing'"
    assert not any("kiln-kernel" in line for line in tb)   # the kernel's own frames are hidden
    assert run(agent, ctx, "kept").text() == ["'yes'"]


def test_syntax_error_and_system_exit_leave_the_context(agent, ctx):
    c = run(agent, ctx, "def broken(:\n  pass")
    assert c.status == CELL_ERROR and c.exception[0] == "SyntaxError"
    c = run(agent, ctx, "import sys; sys.exit(3)")
    assert c.status == CELL_ERROR and c.exception[0] == "SystemExit"
    assert run(agent, ctx, "1 + 1").text() == ["2"]


def until_stdout(s, text):
    """Read a running cell's frames until it has printed text; the Cell so far, for collect.
    A test interrupts a cell once it is known to run, not after a sleep that a loaded host
    may outlast before the cell even starts."""
    cell, start = Cell(), time.monotonic()
    while text not in cell.stdout:
        f = read_frame(s)
        assert f is not None and f[0] in (MSG_STDOUT, MSG_STDERR), f
        cell.frames.append((time.monotonic() - start, f[0]))
        if f[0] == MSG_STDOUT:
            cell.stdout += dict(f[1])[TAG_DATA]
    return cell


def test_interrupt_stops_a_busy_loop_and_keeps_state(agent, ctx):
    run(agent, ctx, "before = 'kept'")
    s = start_run(agent, ctx, "n = 0\nwhile True:\n    n += 1\n"
                              "    if n == 1:\n        print('looping', flush=True)")
    cell = until_stdout(s, b"looping\n")
    mtype, d = reply(agent, CONTEXT_INTERRUPT, [(TAG_CONTEXT_ID, ctx.encode())])
    assert mtype == MSG_OK
    s.settimeout(20)
    c = collect(s, cell)
    assert c.status == CELL_INTERRUPTED and c.exception[0] == "KeyboardInterrupt"
    assert run(agent, ctx, "before, n > 0").text() == ["('kept', True)"]


def test_interrupt_through_the_run_connection(agent, ctx):
    s = start_run(agent, ctx, "import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    cell = until_stdout(s, b"sleeping\n")
    s.sendall(frame(MSG_SIGNAL, [(TAG_SIGNAL, u32(signal.SIGINT))]))
    s.settimeout(20)
    assert collect(s, cell).status == CELL_INTERRUPTED


def test_timeout_interrupts_the_cell_and_keeps_state(agent, ctx):
    run(agent, ctx, "t = 'survives'")
    start = time.monotonic()
    c = run(agent, ctx, "while True: pass", timeout_ms=500)
    assert c.status == CELL_TIMEOUT and c.exception[0] == "KeyboardInterrupt"
    assert time.monotonic() - start < 5
    assert run(agent, ctx, "t").text() == ["'survives'"]


def test_cell_deaf_to_interrupts_gets_its_context_stopped(agent, contexts):
    cid = contexts()
    c = run(agent, cid, "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                        "time.sleep(60)", timeout_ms=300)
    assert c.error and c.error[0] == errno.ETIMEDOUT and "restart" in c.error[1]
    assert run(agent, cid, "1").error[0] == errno.ESRCH
    assert reply(agent, CONTEXT_RESTART, [(TAG_CONTEXT_ID, cid.encode())])[0] == MSG_OK
    assert run(agent, cid, "2").text() == ["2"]


def test_two_contexts_are_isolated(agent, contexts):
    a, b = contexts(), contexts()
    run(agent, a, "v = 'a'")
    run(agent, b, "v = 'b'")
    assert run(agent, a, "v").text() == ["'a'"]
    assert run(agent, b, "v").text() == ["'b'"]
    assert pid_of(agent, a) != pid_of(agent, b)


def test_restart_clears_state_and_keeps_the_id(agent, contexts):
    cid = contexts()
    run(agent, cid, "gone = 1")
    old = pid_of(agent, cid)
    mtype, d = reply(agent, CONTEXT_RESTART, [(TAG_CONTEXT_ID, cid.encode())])
    assert mtype == MSG_OK and d[TAG_CONTEXT_ID].decode() == cid
    assert pid_of(agent, cid) != old and not os.path.exists(f"/proc/{old}/cmdline") or \
        b"kiln-kernel" not in open(f"/proc/{old}/cmdline", "rb").read()
    c = run(agent, cid, "gone")
    assert c.exception[0] == "NameError" and c.count == 1


def interpreter_alive(pid):
    try:
        return b"kiln-kernel" in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False


def test_delete_stops_the_interpreter_and_forgets_the_context(agent, contexts):
    cid = contexts()
    pid = pid_of(agent, cid)
    assert reply(agent, CONTEXT_DELETE, [(TAG_CONTEXT_ID, cid.encode())])[0] == MSG_OK
    assert cid not in [c[TAG_CONTEXT_ID].decode() for c in list_contexts(agent)]
    assert not os.path.exists(f"{CONTEXT_DIR}/{cid}.sock")
    deadline = time.monotonic() + 30        # the interpreter's exit takes a moment
    while interpreter_alive(pid):
        assert time.monotonic() < deadline, f"interpreter {pid} still runs"
        time.sleep(0.05)
    c = run(agent, cid, "1")
    assert c.error[0] == errno.ESRCH


def test_interpreter_exiting_mid_cell_is_reported(agent, contexts):
    cid = contexts()
    c = run(agent, cid, "import os; os._exit(3)")
    assert c.error[0] == errno.EPIPE and "restart" in c.error[1]


def test_create_options_env_cwd_user(agent, contexts, tmp_path):
    cid = contexts((TAG_ENV, b"GREETING=hi"), (TAG_CWD, str(tmp_path).encode()),
                   (TAG_USER, b"nobody"))
    c = run(agent, cid, "import os; (os.environ['GREETING'], os.getcwd(), os.getuid(), "
                        "os.environ['MPLBACKEND'])")
    assert c.text() == [repr(("hi", str(tmp_path), 65534, "Agg"))]


def test_create_errors(agent):
    mtype, d = reply(agent, CONTEXT_CREATE, [(TAG_CWD, b"/no/such/dir")])
    assert mtype == MSG_ERROR and d[TAG_PATH] == b"/no/such/dir"
    mtype, d = reply(agent, CONTEXT_CREATE, [(TAG_LANGUAGE, b"cobol")])
    assert mtype == MSG_ERROR and b"language" in d[TAG_MESSAGE]
    mtype, d = reply(agent, CONTEXT_CREATE, [(TAG_USER, b"no-such-user-x")])
    assert mtype == MSG_ERROR
    mtype, d = reply(agent, CONTEXT_CREATE, [(TAG_ENV, b"NOEQUALS")])
    assert mtype == MSG_ERROR


def test_bad_requests_get_clear_errors(agent, ctx):
    for cid in (b"0123456789abcdef", b"../../etc/passwd", b"ABCDEF0123456789", b"", b"x" * 5000):
        for mtype in (CONTEXT_RUN, CONTEXT_INTERRUPT, CONTEXT_RESTART, CONTEXT_DELETE):
            fields = [(TAG_CONTEXT_ID, cid), (TAG_CODE, b"1")]
            t, d = reply(agent, mtype, fields)
            assert t == MSG_ERROR, (cid, mtype)
            assert error_of(d)[0] in (errno.ESRCH, errno.EINVAL)
    t, d = reply(agent, CONTEXT_RUN, [(TAG_CONTEXT_ID, ctx.encode())])
    assert t == MSG_ERROR and error_of(d)[0] == errno.EINVAL    # no code
    t, d = reply(agent, CONTEXT_RUN, [(TAG_CONTEXT_ID, ctx.encode()), (TAG_CODE, b"1\x002")])
    assert t == MSG_ERROR
    # Code over the 1 MiB frame limit: refused as a malformed frame, before any reading.
    s = agent.connect()
    s.sendall(struct.pack("<IBBH", (1 << 20) + 100, 1, CONTEXT_RUN, 0))
    assert read_frame(s)[0] == MSG_ERROR
    s.close()
    assert run(agent, ctx, "'still here'").text() == ["'still here'"]


def test_user_code_writing_garbage_to_its_connection(agent, ctx):
    # The interpreter runs user code: it can write anything on the connection to the agent.
    c = run(agent, ctx, "import gc, socket, struct\n"
                        "conn = [o for o in gc.get_objects() if isinstance(o, socket.socket)"
                        " and o.fileno() > 3][0]\n"
                        "conn.sendall(struct.pack('<IBBH', 0, 1, 200, 0))")
    assert c.error and c.error[0] == errno.EPROTO
    assert run(agent, ctx, "'after'").text() == ["'after'"]


class FakeKernel:
    """Stands in for a context's interpreter at its socket path and answers every cell with
    the given bytes."""

    def __init__(self, path, answers):
        self.answers = list(answers)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        os.unlink(path)
        self.sock.bind(path)
        self.sock.listen(8)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        for answer in self.answers:
            conn, _ = self.sock.accept()
            read_frame(conn)
            try:
                conn.sendall(answer)
            except OSError:
                pass
            conn.close()


def test_garbage_from_a_fake_kernel_is_refused(agent, contexts):
    cid = contexts()
    done = frame(MSG_DONE, [(TAG_EXEC_COUNT, u32(1)), (TAG_STATUS, b"\x00")])
    hostile = [
        b"\xff\xff\xff\xff\x01\x23\x00\x00",                             # 4 GiB frame
        frame(200),                                                       # unknown type
        frame(MSG_EXEC_LIKE := 1, [(TAG_CODE, b"x")]),                    # a request type
        frame(MSG_RESULT, [(TAG_MIME, b"text/plain\nX-Evil: 1"), (TAG_DATA, b"x")]),
        frame(MSG_RESULT, [(TAG_MIME, b"noslash"), (TAG_DATA, b"x")]),
        frame(MSG_RESULT, [(TAG_MIME, b"text/plain")]),                   # no data
        frame(MSG_RESULT, [(TAG_MIME, b"a/" + b"b" * 300), (TAG_DATA, b"x")]),
        frame(MSG_EXCEPTION, [(TAG_ENAME, b"Bad\x00Name")]),
        frame(MSG_EXCEPTION, [(TAG_ENAME, b"E" * 1000)]),
        frame(MSG_DONE, [(TAG_EXEC_COUNT, u32(1)), (TAG_STATUS, b"\x09")]),  # status range
        frame(MSG_DONE, [(TAG_EXEC_COUNT, b"\x01"), (TAG_STATUS, b"\x00")]),  # field size
        frame(MSG_DONE, [(TAG_STATUS, b"\x03")]),       # timeout is the agent's to say
        frame(MSG_STDOUT, [(TAG_DATA, b"ok")]) + b"\x05\x00\x00",           # truncated
        b"",                                                              # just closes
    ]
    assert MSG_EXEC_LIKE == 1
    fake = FakeKernel(f"{CONTEXT_DIR}/{cid}.sock",
                      hostile + [frame(MSG_STDOUT, [(TAG_DATA, b"fine\n")]) + done])
    for raw in hostile:
        c = run(agent, cid, "1")
        assert c.error and c.error[0] in (errno.EPROTO, errno.EPIPE), (raw, vars(c))
        assert c.status is None
    c = run(agent, cid, "1")     # a well-formed answer goes through, rebuilt
    assert (c.stdout, c.status, c.count) == (b"fine\n", CELL_OK, 1)
    fake.sock.close()
    assert reply(agent, CONTEXT_RESTART, [(TAG_CONTEXT_ID, cid.encode())])[0] == MSG_OK
    assert run(agent, cid, "'real again'").text() == ["'real again'"]


def test_list_reports_contexts(agent, ctx):
    entries = {c[TAG_CONTEXT_ID].decode(): c for c in list_contexts(agent)}
    e = entries[ctx]
    assert e[TAG_LANGUAGE] == b"python" and e[28] == b"\x01"   # TAG_RUNNING
    assert abs(struct.unpack("<Q", e[53])[0] - time.time()) < 3600


# The CLI.

def code(agent, *args, input=None, timeout=60):
    return subprocess.run([str(KILN), "code", "--sock", agent.sock] + [str(a) for a in args],
                          input=input, capture_output=True, timeout=timeout)


def test_cli_cells_in_a_context(agent):
    r = code(agent, "contexts", "create")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    try:
        assert code(agent, "--context", cid, "x = 41\nprint('set')").stdout == b"set\n"
        r = code(agent, "--context", cid, "x + 1")
        assert (r.returncode, r.stdout) == (0, b"42\n")
        r = code(agent, "--context", cid, "-", input=b"1/0")
        assert r.returncode == 1 and r.stderr.endswith(b"ZeroDivisionError: division by zero\n")
        r = code(agent, "--context", cid, "--timeout", "1", "while True: pass")
        assert r.returncode == 124 and b"keeps its state" in r.stderr
        r = code(agent, "--context", cid, "--rich", "{'k': [1]}")
        assert r.stdout == b"{'k': [1]}\n[application/json]\n{\"k\": [1]}\n"
        assert cid.encode() in code(agent, "contexts", "ls").stdout
        assert code(agent, "contexts", "restart", cid).returncode == 0
        assert code(agent, "--context", cid, "x").returncode == 1
    finally:
        assert code(agent, "contexts", "rm", cid).returncode == 0
    r = code(agent, "--context", cid, "1")
    assert r.returncode == 125 and b"no such context" in r.stderr


def test_cli_without_a_context_uses_one_for_the_cell(agent):
    before = {c[TAG_CONTEXT_ID] for c in list_contexts(agent)}
    r = code(agent, "import sys; print(sys.version_info[0])")
    assert (r.returncode, r.stdout) == (0, b"3\n")
    assert {c[TAG_CONTEXT_ID] for c in list_contexts(agent)} == before


def test_cli_ctrl_c_interrupts_the_cell(agent):
    p = subprocess.Popen([str(KILN), "code", "--sock", agent.sock,
                          "print('go', flush=True)\nwhile True: pass"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"go\n"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130 and b"KeyboardInterrupt" in err


def test_cli_errors(agent):
    r = code(agent, "-", input=b"x" * (2 << 20))
    assert r.returncode == 125 and b"1 MiB" in r.stderr
    r = code(agent, "-w", "/no/such/dir", "1")
    assert r.returncode == 125 and b"/no/such/dir" in r.stderr
    assert code(agent, "contexts", "frobnicate").returncode == 125
    r = code(agent, "--context", "not-an-id", "1")
    assert r.returncode == 125 and b"context id" in r.stderr


def test_a_queued_cell_is_timed_from_when_it_runs(agent, contexts):
    cid = contexts()
    first = start_run(agent, cid, "import time; time.sleep(2); 'first'")
    time.sleep(0.3)
    second = start_run(agent, cid, "'second'", timeout_ms=1000)   # waits ~1.7 s in the queue
    first.settimeout(20)
    second.settimeout(20)
    a, b = collect(first), collect(second)
    assert (a.status, a.text()) == (CELL_OK, ["'first'"])
    assert (b.status, b.text()) == (CELL_OK, ["'second'"])


def test_cells_define_into_a_real_main_module(agent, ctx):
    c = run(agent, ctx, "import pickle, sys\nclass Point:\n    pass\n"
                        "(type(pickle.loads(pickle.dumps(Point()))).__name__, "
                        "sys.modules['__main__'].Point is Point, 'Kernel' in dir())")
    assert c.text() == ["('Point', True, False)"], vars(c)
