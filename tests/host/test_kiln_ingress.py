"""kiln-ingress (src/net/kiln_ingress.c) on this host: a port of a server inside a network
namespace (standing in for a guest behind its sandbox's namespace) exposed on a host address;
the forwarded connection carries data both ways; a port nobody listens on fails cleanly and
is logged; a missing namespace is refused at start."""
import json
import os
import random
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INGRESS = ROOT / "build" / "kiln-ingress"
SERVER = ("import http.server, sys\n"
          "class H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n"
          "        b = b'preview from inside the namespace\\n'\n"
          "        self.send_response(200); self.send_header('Content-Length', str(len(b)))\n"
          "        self.end_headers(); self.wfile.write(b)\n"
          "    def log_message(self, *a): pass\n"
          "s = http.server.HTTPServer(('127.0.0.1', 8000), H)\n"
          "print('up', flush=True)\n"
          "s.serve_forever()\n")


@pytest.fixture
def netns():
    ns = f"kiln-ingtest-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode:
        pytest.skip("cannot create network namespaces here")
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    yield ns
    subprocess.run(["ip", "netns", "del", ns])


def start(ns, tmp, to):
    port = random.randrange(20000, 60000)
    p = subprocess.Popen([str(INGRESS), "--listen", f"127.0.0.1:{port}", "--netns", ns,
                          "--to", to, "--log", str(tmp / "log")],
                         stderr=subprocess.PIPE, text=True)
    assert "serving" in p.stderr.readline()
    return p, port


def get(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while (chunk := s.recv(4096)):
            data += chunk
    return data.decode()


def test_a_namespace_port_is_served_on_the_host(netns, tmp_path):
    srv = subprocess.Popen(["ip", "netns", "exec", netns, "/usr/bin/python3", "-c", SERVER],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "up"
        # The host itself cannot reach it: it lives in the namespace.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 8000), timeout=2).close()
        p, port = start(netns, tmp_path, "127.0.0.1:8000")
        try:
            r = get(port)
            assert r.startswith("HTTP/1.0 200") and "preview from inside" in r
            time.sleep(0.3)
            e = json.loads((tmp_path / "log").read_text().splitlines()[-1])
            assert e["verdict"] == "forwarded" and e["bytes_out"] > 0
        finally:
            p.kill()
    finally:
        srv.kill()


def test_a_closed_guest_port_fails_cleanly(netns, tmp_path):
    p, port = start(netns, tmp_path, "127.0.0.1:8001")
    try:
        try:
            assert get(port) == ""
        except ConnectionResetError:
            pass                        # closed before our request arrived: also fine
        time.sleep(0.3)
        e = json.loads((tmp_path / "log").read_text().splitlines()[-1])
        assert e["verdict"] == "failed" and "does not answer" in e["reason"]
    finally:
        p.kill()


def test_bad_arguments(tmp_path):
    r = subprocess.run([str(INGRESS), "--listen", "127.0.0.1:5999", "--netns",
                        "kiln-no-such-ns", "--to", "10.0.2.2:80"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2 and "kiln-no-such-ns" in r.stderr
    r = subprocess.run([str(INGRESS), "--listen", "127.0.0.1:5999", "--netns", "x", "--to",
                        "not-an-address"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "usage" in r.stderr
