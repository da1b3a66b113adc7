"""kiln-proxy, the transparent egress proxy (src/net/kiln_proxy.c), on this host: real HTTP
and TLS clients through a real kiln-proxy to upstream servers on loopback (reached through a
policy rewrite and an allow-cidr, as a sandbox would reach an allowed host).  Allowed names
go through untouched, end to end (a TLS handshake with the upstream's own certificate);
denied names, missing SNI, ambiguous requests, IP literals and names that resolve onto
loopback are refused with a 403 or a TLS alert; replacing the policy cuts an open connection;
every connection is logged; and the listeners can live in a network namespace while the
upstream connections leave from the host's."""
import http.server
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROXY = ROOT / "build" / "kiln-proxy"
POLICY = "rewrite upstream.test 127.0.0.1\nallow-cidr 127.0.0.0/8\n"


class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"upstream saw {self.path} for {self.headers['Host']}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def upstream_http():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=upstream.test", "-addext", "subjectAltName=DNS:upstream.test",
                    "-keyout", d / "key.pem", "-out", d / "cert.pem"],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="module")
def upstream_tls(cert):
    """Answers each TLS connection with a greeting, then echoes lines."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    ls = socket.create_server(("127.0.0.1", 0))

    def serve(conn):
        try:
            with ctx.wrap_socket(conn, server_side=True) as t:
                t.sendall(b"hello from upstream\n")
                while (data := t.recv(4096)):
                    t.sendall(data)
        except (OSError, ssl.SSLError):
            pass

    def loop():
        while True:
            try:
                conn, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    yield ls.getsockname()[1]
    ls.close()


class Proxy:
    def __init__(self, tmp, policy, http_up, tls_up, netns=None):
        self.policy = tmp / "policy"
        self.policy.write_text(policy)
        self.log = tmp / "proxy.log"
        self.http, self.tls = random.sample(range(20000, 60000), 2)
        cmd = [str(PROXY), "--http", f"127.0.0.1:{self.http}", "--tls",
               f"127.0.0.1:{self.tls}", "--policy", str(self.policy), "--log", str(self.log),
               "--http-upstream-port", str(http_up), "--tls-upstream-port", str(tls_up)]
        if netns:
            cmd += ["--netns", netns]
        self.p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        assert "serving" in self.p.stderr.readline()

    def entries(self, wait_for=0):
        """The log, once it has at least wait_for lines (a connection is logged when it
        ends, just after the client has seen its end)."""
        deadline = time.monotonic() + 5
        while True:
            lines = self.log.read_text().splitlines() if self.log.exists() else []
            if len(lines) >= wait_for or time.monotonic() > deadline:
                return [json.loads(line) for line in lines]
            time.sleep(0.05)

    def stop(self):
        self.p.kill()
        self.p.wait()


@pytest.fixture
def proxy(tmp_path, upstream_http, upstream_tls):
    made = []

    def start(policy=POLICY, netns=None):
        p = Proxy(tmp_path, policy, upstream_http, upstream_tls, netns)
        made.append(p)
        return p

    yield start
    for p in made:
        p.stop()


def http_get(port, host_header, path="/x", extra=""):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n{extra}Connection: close\r\n"
              "\r\n".encode())
    data = b""
    while (chunk := s.recv(4096)):
        data += chunk
    s.close()
    return data.decode()


def tls_connect(port, cert, sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cert[0])
    if sni is None:
        ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=sni)


def test_allowed_http_goes_through_by_name(proxy):
    p = proxy()
    r = http_get(p.http, "upstream.test")
    assert r.startswith("HTTP/1.0 200") and "upstream saw /x for upstream.test" in r
    e = p.entries(wait_for=1)[-1]
    assert (e["kind"], e["name"], e["verdict"]) == ("http", "upstream.test", "allowed")
    assert e["upstream"] == "127.0.0.1" and e["bytes_in"] > 0


def test_refusals_say_why(proxy):
    p = proxy()
    cases = {
        "denied.test": "name not allowed",
        "127.0.0.1": None,                      # a literal an allow-cidr names: allowed
        "10.1.1.1": "an IP address no allow-cidr names",
        "0x0a010101": "an IP address no allow-cidr names",
    }
    for host, why in cases.items():
        r = http_get(p.http, host)
        if why is None:
            assert " 200 " in r.splitlines()[0], (host, r)
        else:
            assert r.startswith("HTTP/1.1 403") and why in r, (host, r)
    r = http_get(p.http, "upstream.test", extra="Host: other.test\r\n")
    assert r.startswith("HTTP/1.1 403") and "two Host headers" in r
    r = http_get(p.http, "upstream.test", path="http://other.test/")
    assert r.startswith("HTTP/1.1 403") and "different hosts" in r


def test_an_allowed_name_resolving_to_loopback_is_refused(proxy):
    p = proxy("allow localhost\n")
    r = http_get(p.http, "localhost")
    assert r.startswith("HTTP/1.1 403") and "does not allow" in r


def test_tls_end_to_end_with_the_upstreams_certificate(proxy, cert):
    p = proxy()
    with tls_connect(p.tls, cert, "upstream.test") as t:
        assert t.recv(100) == b"hello from upstream\n"
        t.sendall(b"ping\n")
        assert t.recv(100) == b"ping\n"
    e = p.entries(wait_for=1)[-1]
    assert (e["kind"], e["name"], e["verdict"]) == ("tls", "upstream.test", "allowed")


def test_tls_without_sni_or_to_a_denied_name_gets_an_alert(proxy, cert):
    p = proxy()
    for sni in (None, "denied.test"):
        with pytest.raises(ssl.SSLError) as exc:
            tls_connect(p.tls, cert, sni)
        assert "ACCESS_DENIED" in str(exc.value).upper()
    reasons = [e["reason"] for e in p.entries(wait_for=2)]
    assert "TLS without a server name (SNI)" in reasons and "name not allowed" in reasons


def test_a_policy_change_cuts_an_open_connection(proxy, cert):
    p = proxy()
    t = tls_connect(p.tls, cert, "upstream.test")
    assert t.recv(100) == b"hello from upstream\n"
    p.policy.write_text("allow-cidr 127.0.0.0/8\n")    # upstream.test no longer listed
    p.p.send_signal(signal.SIGHUP)
    t.settimeout(10)
    start = time.monotonic()
    with pytest.raises((ssl.SSLError, OSError, AssertionError)):
        data = t.recv(100)
        assert data, "closed"
        t.sendall(b"still there?\n")
        assert not t.recv(100)
    assert time.monotonic() - start < 5
    t.close()
    assert any(e["verdict"] == "cut" for e in p.entries(wait_for=1))


def test_listening_inside_a_network_namespace(proxy, upstream_http):
    ns = f"kiln-proxytest-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode:
        pytest.skip("cannot create network namespaces here")
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        p = proxy(netns=ns)
        here = str(Path(__file__).parent)
        client = ("import sys; sys.path.insert(0, %r); import test_kiln_proxy as t; "
                  "print(t.http_get(%d, 'upstream.test'))" % (here, p.http))
        r = subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", client],
                           capture_output=True, text=True, timeout=30)
        assert "upstream saw /x for upstream.test" in r.stdout, r.stderr
        # From inside, the upstream itself is out of reach: only the proxy leads out.
        direct = ("import socket; s = socket.socket(); s.settimeout(2); "
                  "print(s.connect_ex(('127.0.0.1', %d)))" % upstream_http)
        r = subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", direct],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout.strip() not in ("", "0"), r.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns])
