"""Shared by the kilnd tests (test_kilnd.py, test_kilnd_scale.py): a real kilnd on a
temporary data directory and unix socket, an HTTP client for it, and the checks its answers
get.  Nothing here is faked: kilnd runs from build/ and boots real guests."""
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time

from conftest import ROOT

KILND = ROOT / "build" / "kilnd"
VCPU_PRICE = 1000          # micro-USDC per vCPU-second
BOOT_TIMEOUT = 600
REQUEST_TIMEOUT = 240       # a create boots a guest: seconds in the test host
START_TIMEOUT = 120         # kilnd answering /v1/health after its start


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=BOOT_TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Kilnd:
    def __init__(self, tmp, image, extra_args=(), env=None):
        self.tmp = tmp
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.sock = str(tmp / "k.sock")
        self.data = tmp / "data"
        self.prices = tmp / "prices"
        self.prices.write_text(f"# test prices\nvcpu_second = {VCPU_PRICE}\ngib_second = 0\n")
        self.image = image
        self.proc = None
        self.log = open(tmp / "kilnd.log", "ab")

    def start(self):
        env = {**os.environ, "KILN_CACHE": str(self.tmp / "cache"), **self.env}
        self.proc = subprocess.Popen(
            [str(KILND), "--socket", self.sock, "--data", str(self.data), "--prices",
             str(self.prices), "--template", f"base={self.image}", *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env)
        # Polled to a deadline, not a count of tries: in the test host a start (or a restart
        # adopting running sandboxes) can take many seconds, and a stalled CPU a few more.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.request("GET", "/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"kilnd exited {self.proc.returncode}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"kilnd did not come up\n{self.log_tail()}")
            time.sleep(0.1)
        self.admin = (self.data / "admin.key").read_text().strip()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self):
        self.log.flush()
        return (self.tmp / "kilnd.log").read_text(errors="replace")[-3000:]

    def request(self, method, path, body=None, key=None, raw=None, headers=None,
                timeout=REQUEST_TIMEOUT):
        c = UnixHTTPConnection(self.sock, timeout=timeout)
        h = dict(headers or {})
        if key:
            h["Authorization"] = "Bearer " + key
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            payload = r.read()
        except TimeoutError as e:
            raise AssertionError(f"{method} {path}: no answer\n{self.log_tail()}") from e
        finally:
            c.close()
        ctype = r.getheader("Content-Type", "")
        if ctype.startswith("application/json"):
            return r.status, json.loads(payload)
        return r.status, payload

    def agent(self, credit=10**9, **quota):
        status, a = self.request("POST", "/v1/agents", quota, key=self.admin)
        assert status == 201, a
        if credit:
            self.credit(a["id"], credit)
        return a

    def credit(self, agent_id, amount):
        status, w = self.request("POST", f"/v1/agents/{agent_id}/credit",
                                 {"amount_micro": amount, "currency": "USDC"}, key=self.admin)
        assert status == 200, w
        return w

    def db(self):
        return sqlite3.connect(f"file:{self.data / 'kilnd.db'}?mode=ro", uri=True)


PYTHON_IMAGE = ROOT / "build" / "images" / "python.ext4"


def python_kilnd(tmp_path_factory, name):
    """A started kilnd with the python image as template "python" (skips without the image);
    stop it with stop_kilnd."""
    import pytest
    if not PYTHON_IMAGE.exists():
        pytest.skip("python image not built (make images)")
    from conftest import busybox_image
    k = Kilnd(tmp_path_factory.mktemp(name), busybox_image(tmp_path_factory.mktemp(name + "img")),
              extra_args=["--template", f"python={PYTHON_IMAGE}"])
    k.start()
    return k


def exec_(kilnd, key, sb, **body):
    status, r = kilnd.request("POST", f"/v1/sandboxes/{sb['id']}/exec", body, key=key)
    assert status == 200, r
    return r


def error_of(resp, status, code, field=None):
    st, body = resp
    assert st == status, body
    assert body["error"]["code"] == code, body
    if field:
        assert body["error"]["field"] == field, body
    return body["error"]["message"]


def stop_kilnd(k):
    """Stop kilnd, then the VMs it leaves running (it leaves them for the next kilnd)."""
    k.stop()
    for sb_dir in (k.data / "sandboxes").glob("*"):
        subprocess.run([str(ROOT / "build" / "kiln"), "down", "--dir", str(sb_dir)],
                       capture_output=True, timeout=60)
    print((k.tmp / "kilnd.log").read_text(errors="replace")[-3000:])


def wait_job(k, name, kind, timeout=BOOT_TIMEOUT):
    """Poll GET /v1/templates/NAME/KIND until the job is no longer running; its record."""
    deadline = time.monotonic() + timeout
    while True:
        status, job = k.request("GET", f"/v1/templates/{name}/{kind}", key=k.admin)
        assert status == 200, job
        if job["state"] != "running" or time.monotonic() > deadline:
            return job
        time.sleep(1)
