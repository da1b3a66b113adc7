# python_kernel.py - the Python side of a kiln code context (src/guest/context.c).
#
# kiln-init starts this script once per context, as the context's user, with:
#   fd 3  a listening unix socket (/run/kiln/contexts/ID.sock, reachable by root only);
#   fd 1  a pipe on which we say "ready" once we serve (fd 2 goes to the same worker, so a
#         failure to start reaches the host); then stdout and stderr become pipes of our own,
#         read by a thread, so output of print() and of child processes alike streams;
#   fd 4  this script, which the bootstrap passed to python3 -c has read and compiled.
# It serves one connection at a time.  Each connection carries one CONTEXT_RUN frame (the same
# framing as the host protocol, src/proto/proto.h) and gets back STDOUT/STDERR, RESULT,
# EXCEPTION frames and a final DONE.  Everything the user defines lives in one namespace that
# survives between cells; SIGINT (interrupt, timeout) raises KeyboardInterrupt in the running
# cell only.  kiln-init treats whatever we send as untrusted: user code runs in this process.
import ast
import io
import json
import linecache
import os
import select
import signal
import socket
import struct
import sys
import threading
import traceback
import types

MSG_CONTEXT_RUN = 15
MSG_STARTED, MSG_STDOUT, MSG_STDERR = 32, 35, 36
MSG_RESULT, MSG_EXCEPTION, MSG_DONE = 46, 47, 48
TAG_DATA, TAG_CODE, TAG_MIME, TAG_INDEX = 13, 45, 46, 47
TAG_ENAME, TAG_EVALUE, TAG_TRACEBACK, TAG_EXEC_COUNT, TAG_STATUS = 48, 49, 50, 51, 52
CELL_OK, CELL_ERROR, CELL_INTERRUPTED = 0, 1, 2

MAX_PAYLOAD = 1 << 20
# Room for a result's MIME and field headers inside one frame.
MAX_RESULT = MAX_PAYLOAD - 4096
CHUNK = 64 << 10
KERNEL_FILE = "<kiln-kernel>"


def frame(mtype, fields):
    payload = b"".join(struct.pack("<HI", t, len(v)) + v for t, v in fields)
    return struct.pack("<IBBH", len(payload), 1, mtype, 0) + payload


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(conn):
    hdr = recv_exact(conn, 8)
    if hdr is None:
        return None
    length, version, mtype, _ = struct.unpack("<IBBH", hdr)
    if version != 1 or length > MAX_PAYLOAD:
        return None
    payload = recv_exact(conn, length) if length else b""
    if payload is None:
        return None
    fields, off = {}, 0
    while off + 6 <= len(payload):
        tag, n = struct.unpack_from("<HI", payload, off)
        fields.setdefault(tag, payload[off + 6:off + 6 + n])
        off += 6 + n
    return mtype, fields


class Channel:
    """The current host connection, shared by the cell and the output thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.conn = None

    def send(self, mtype, fields):
        data = frame(mtype, fields)
        with self.lock:
            if self.conn is None:
                return
            try:
                self.conn.sendall(data)
            except OSError:
                self.conn = None    # the host went away: the cell runs on, unheard


class Output:
    """fds 1 and 2 are pipes we read ourselves, so output from print() and from child
    processes (os.system, subprocess) streams alike."""

    def __init__(self, channel):
        self.channel = channel
        self.lock = threading.Lock()
        self.fds = {}
        for fd, mtype in ((1, MSG_STDOUT), (2, MSG_STDERR)):
            r, w = os.pipe()
            os.dup2(w, fd)
            os.close(w)
            os.set_blocking(r, False)
            self.fds[r] = mtype
        threading.Thread(target=self.loop, daemon=True).start()

    def pump(self, fd):
        while True:
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                return
            if not data:
                return
            self.channel.send(self.fds[fd], [(TAG_DATA, data)])

    def loop(self):
        # SIGINT is for the main thread, where the cell runs.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        while True:
            ready, _, _ = select.select(list(self.fds), [], [])
            with self.lock:
                for fd in ready:
                    self.pump(fd)

    def drain(self):
        """Everything written so far goes out before the cell's results."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        with self.lock:
            for fd in self.fds:
                self.pump(fd)


class Kernel:
    def __init__(self, listener):
        self.listener = listener
        self.channel = Channel()
        self.output = Output(self.channel)
        sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", 0), write_through=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", 0), write_through=True)
        sys.stdin = open(os.devnull)
        # The user's namespace is a fresh __main__ module, so pickle and multiprocessing find
        # what cells define there; the kernel's own globals stay out of sight.
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = __builtins__
        sys.modules["__main__"] = main
        self.ns = main.__dict__
        self.count = 0
        self.in_cell = False
        signal.signal(signal.SIGINT, self.on_sigint)

    def on_sigint(self, signum, frm):
        # Only a running cell is interrupted: a signal between cells must not break the loop.
        if self.in_cell:
            raise KeyboardInterrupt

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except (OSError, KeyboardInterrupt):
                continue
            try:
                self.handle(conn)
            except (OSError, KeyboardInterrupt):
                pass
            finally:
                with self.channel.lock:
                    self.channel.conn = None
                conn.close()

    def handle(self, conn):
        req = read_frame(conn)
        if req is None or req[0] != MSG_CONTEXT_RUN or TAG_CODE not in req[1]:
            return
        code = req[1][TAG_CODE].decode("utf-8", "replace")
        with self.channel.lock:
            self.channel.conn = conn
        # The agent times the cell from here: runs queued behind another cell wait untimed.
        self.channel.send(MSG_STARTED, [])
        status = self.run_cell(code)
        self.output.drain()
        self.channel.send(MSG_DONE, [(TAG_EXEC_COUNT, struct.pack("<I", self.count)),
                                     (TAG_STATUS, bytes([status]))])

    def run_cell(self, code):
        self.count += 1
        name = f"<cell {self.count}>"
        # Tracebacks show the cell's lines, as they would a file's.
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        results = []
        try:
            self.in_cell = True
            try:
                tree = ast.parse(code, filename=name)
                last = None
                if tree.body and isinstance(tree.body[-1], ast.Expr):
                    last = ast.Expression(tree.body.pop().value)
                exec(compile(tree, name, "exec"), self.ns)
                value = eval(compile(last, name, "eval"), self.ns) if last else None
            finally:
                self.in_cell = False
            results = self.figures()
            if value is not None:
                self.ns["_"] = value
                results.append(self.bundle(value))
            status = CELL_OK
        except KeyboardInterrupt as e:
            self.in_cell = False
            self.send_exception(e)
            status = CELL_INTERRUPTED
        except BaseException as e:      # SystemExit too: the context lives on
            self.in_cell = False
            self.send_exception(e)
            status = CELL_ERROR
        self.output.drain()
        for index, bundle in enumerate(results):
            for mime, data in bundle:
                self.channel.send(MSG_RESULT, [(TAG_MIME, mime.encode()), (TAG_DATA, data),
                                               (TAG_INDEX, struct.pack("<I", index))])
        return status

    def bundle(self, value):
        """The value's representations, most generic first."""
        out = []
        add = self.add_repr

        add(out, "text/plain", lambda: repr(value))
        add(out, "text/html", getattr(value, "_repr_html_", None))
        add(out, "image/png", getattr(value, "_repr_png_", None))
        if hasattr(value, "_repr_json_"):
            add(out, "application/json", lambda: json.dumps(value._repr_json_()))
        elif isinstance(value, (dict, list)):
            add(out, "application/json", lambda: json.dumps(value))
        return out

    def add_repr(self, out, mime, fn):
        if fn is None:
            return
        try:
            data = fn()
        except Exception:
            return
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        if not isinstance(data, bytes):
            return
        if len(data) > MAX_RESULT:
            sys.stderr.write(f"kiln: {mime} result of {len(data)} bytes is over the limit "
                             f"({MAX_RESULT}); dropped\n")
            return
        out.append((mime, data))

    def figures(self):
        """Every open matplotlib figure as a PNG, then closed: charts come back without
        plt.show().  Only when the user imported pyplot: we never import it ourselves."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return []
        out = []
        try:
            for num in plt.get_fignums():
                buf = io.BytesIO()
                plt.figure(num).savefig(buf, format="png")
                bundle = []
                self.add_repr(bundle, "image/png", buf.getvalue)
                if bundle:
                    out.append(bundle)
        except Exception as e:
            sys.stderr.write(f"kiln: cannot render a figure: {e!r}\n")
        finally:
            try:
                plt.close("all")
            except Exception:
                pass
        return out

    def send_exception(self, e):
        # Frames of this file (the cell runner, the SIGINT handler) are ours, not the user's.
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename != KERNEL_FILE]
        text = "".join((["Traceback (most recent call last):\n"] if frames else []) +
                       traceback.format_list(frames) +
                       traceback.format_exception_only(type(e), e))
        lines = text.splitlines()
        self.output.drain()
        fields = [(TAG_ENAME, type(e).__name__.encode()),
                  (TAG_EVALUE, str(e).encode("utf-8", "replace")[:65536])]
        size = 0
        for line in lines:
            data = line.encode("utf-8", "replace")[:65536]
            size += len(data) + 6
            if size > MAX_RESULT:
                break
            fields.append((TAG_TRACEBACK, data))
        self.channel.send(MSG_EXCEPTION, fields)


def main():
    listener = socket.socket(fileno=3)
    ready = os.dup(1)
    kernel = Kernel(listener)
    os.write(ready, b"ready\n")
    os.close(ready)
    kernel.serve()


main()
