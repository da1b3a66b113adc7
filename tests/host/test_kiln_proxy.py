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
    def __init__(self, tmp, policy, http_up, tls_up, netns=None, secrets=None):
        self.policy = tmp / "policy"
        self.policy.write_text(policy)
        self.log = tmp / "proxy.log"
        # Below the ephemeral range (32768-60999): a port some client connection (or its
        # TIME_WAIT) holds there makes the listen fail.
        self.http, self.tls = random.sample(range(20000, 32768), 2)
        cmd = [str(PROXY), "--http", f"127.0.0.1:{self.http}", "--tls",
               f"127.0.0.1:{self.tls}", "--policy", str(self.policy), "--log", str(self.log),
               "--http-upstream-port", str(http_up), "--tls-upstream-port", str(tls_up)]
        if netns:
            cmd += ["--netns", netns]
        if secrets:
            (tmp / "secrets").write_text(secrets)
            (tmp / "ca").mkdir()
            subprocess.run([str(PROXY), "--make-ca", str(tmp / "ca")], check=True)
            cmd += ["--secrets", str(tmp / "secrets"), "--ca", str(tmp / "ca")]
        self.p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        assert "serving" in self.p.stderr.readline()

    def entries(self, wait_for=0):
        """The log, once it has at least wait_for lines (a connection is logged when it
        ends, just after the client has seen its end; a loaded machine may take a while)."""
        deadline = time.monotonic() + 30
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

    def start(policy=POLICY, netns=None, http_up=None, secrets=None):
        p = Proxy(tmp_path, policy, http_up or upstream_http, upstream_tls, netns, secrets)
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


# ---- plain HTTP: every request on a kept-alive connection is inspected ----

class KeepAlive(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; records every request it gets (method, path, Host, body)."""
    protocol_version = "HTTP/1.1"
    seen = []

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.headers.get("Transfer-Encoding") == "chunked":
            while (size := int(self.rfile.readline().split(b";")[0], 16)):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        KeepAlive.seen.append((self.command, self.path, self.headers["Host"], body))
        out = f"{self.command} {self.path} for {self.headers['Host']}: {body!r}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = answer

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def upstream_keepalive():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()


KEEPALIVE_POLICY = POLICY + "rewrite other.test 127.0.0.1\n"
PH = "KILN_PH_" + "".join(random.choice("0123456789abcdef") for _ in range(24))
SECRETS = f"secret api {PH} Authorization api.test Bearer real-value\n"


class Conn:
    """One client connection speaking HTTP/1.1 with keep-alive."""
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("rb")

    def send(self, raw):
        self.s.sendall(raw.encode() if isinstance(raw, str) else raw)

    def response(self):
        """(status, body) of the next response, or None at the end of the connection."""
        line = self.f.readline()
        if not line:
            return None
        length = 0
        while (h := self.f.readline()) not in (b"\r\n", b""):
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":")[1])
        return int(line.split()[1]), self.f.read(length).decode()

    def close(self):
        self.f.close()
        self.s.close()


def get(host, path="/", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n"


def test_every_request_on_a_kept_alive_connection_goes_through_the_policy(proxy,
                                                                         upstream_keepalive):
    p = proxy(KEEPALIVE_POLICY, http_up=upstream_keepalive)
    KeepAlive.seen.clear()
    c = Conn(p.http)
    c.send(get("upstream.test", "/one"))
    assert c.response() == (200, "GET /one for upstream.test: b''\n")
    c.send(get("upstream.test", "/two"))       # the same host again: fine
    assert c.response() == (200, "GET /two for upstream.test: b''\n")
    # Another host, allowed on its own, on the same connection: it would reach upstream.test's
    # server (a shared front end routes by Host), so it is refused.
    c.send(get("other.test", "/three"))
    status, body = c.response()
    assert status == 403 and "names another host" in body
    assert c.response() is None
    c.close()
    assert [x[1] for x in KeepAlive.seen] == ["/one", "/two"]
    e = p.entries(wait_for=1)[-1]
    assert (e["verdict"], e["requests"]) == ("refused", 2)
    assert "names another host" in e["reason"]


def test_pipelined_requests_are_each_inspected(proxy, upstream_keepalive):
    p = proxy(KEEPALIVE_POLICY, http_up=upstream_keepalive)
    KeepAlive.seen.clear()
    c = Conn(p.http)
    # Three requests in one write: a POST whose body looks like a request (it is body), a
    # chunked one with an extension, then one for another host.
    inner = get("other.test", "/inner")
    c.send(f"POST /a HTTP/1.1\r\nHost: upstream.test\r\nContent-Length: {len(inner)}\r\n\r\n"
           f"{inner}"
           "POST /b HTTP/1.1\r\nHost: upstream.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3;x=y\r\nabc\r\n0\r\n\r\n" + get("other.test", "/c"))
    assert c.response() == (200, f"POST /a for upstream.test: {inner.encode()!r}\n")
    assert c.response() == (200, "POST /b for upstream.test: b'abc'\n")
    status, body = c.response()
    assert status == 403 and "names another host" in body
    c.close()
    assert [x[1] for x in KeepAlive.seen] == ["/a", "/b"]


def test_ambiguous_framing_is_refused(proxy, upstream_keepalive):
    p = proxy(KEEPALIVE_POLICY, http_up=upstream_keepalive)
    KeepAlive.seen.clear()
    cases = {
        "POST / HTTP/1.1\r\nHost: upstream.test\r\nContent-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n": "both Content-Length and Transfer",
        "POST / HTTP/1.1\r\nHost: upstream.test\r\nContent-Length: 5\r\n"
        "Content-Length: 50\r\n\r\nhello": "two Content-Length",
        "GET / HTTP/1.1\r\nHost: upstream.test\r\nUpgrade: h2c\r\n\r\n": "upgrades",
    }
    for req, why in cases.items():
        c = Conn(p.http)
        c.send(req)
        status, body = c.response()
        assert status == 403 and why in body, (req, body)
        c.close()
    # The same on a second request of a connection.
    c = Conn(p.http)
    c.send(get("upstream.test", "/ok"))
    assert c.response()[0] == 200
    c.send("POST / HTTP/1.1\r\nHost: upstream.test\r\nTransfer-Encoding: gzip\r\n\r\n")
    status, body = c.response()
    assert status == 403 and "other than chunked" in body
    c.close()
    # A later header block past the 16 KiB bound, sent whole or without its end.
    for end in ("\r\n\r\n", ""):
        c = Conn(p.http)
        c.send(get("upstream.test", "/ok"))
        assert c.response()[0] == 200
        c.send(get("upstream.test", "/big", "X-Pad: " + "a" * 17000 + "\r\n")[:-4] + end)
        status, body = c.response()
        assert status == 403 and "too large" in body
        c.close()
    # A bad chunk in a body cuts the connection; nothing after it goes up.
    c = Conn(p.http)
    c.send("POST /bad HTTP/1.1\r\nHost: upstream.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3 \r\nabc\r\n0\r\n\r\n" + get("other.test", "/smuggled"))
    while c.response() is not None:
        pass
    c.close()
    assert "/smuggled" not in [x[1] for x in KeepAlive.seen]
    assert [x[1] for x in KeepAlive.seen] == ["/ok"] * 3


def test_a_placeholder_in_a_later_request_is_an_alert(proxy, upstream_keepalive):
    p = proxy(KEEPALIVE_POLICY, http_up=upstream_keepalive, secrets=SECRETS)
    KeepAlive.seen.clear()
    c = Conn(p.http)
    c.send(get("upstream.test", "/first"))
    assert c.response()[0] == 200
    c.send(get("upstream.test", "/second", f"X-Token: {PH}\r\n"))
    status, body = c.response()
    assert status == 403 and "placeholder" in body
    c.close()
    e = p.entries(wait_for=1)[-1]
    assert (e["verdict"], e["requests"]) == ("alert", 1)
    # In a body, split across writes so no single read holds it whole.
    c = Conn(p.http)
    c.send(get("upstream.test", "/again"))
    assert c.response()[0] == 200
    body = f"data={PH}&x=1"
    c.send(f"POST /leak HTTP/1.1\r\nHost: upstream.test\r\nContent-Length: {len(body)}\r\n\r\n"
           + body[:15])
    time.sleep(0.3)
    c.send(body[15:])
    while c.response() is not None:
        pass
    c.close()
    assert p.entries(wait_for=2)[-1]["verdict"] == "alert"
    # The placeholder never went up; the bytes of the body before it may have, but the
    # request was never completed (the upstream got end-of-stream short of its length).
    assert all(PH.encode() not in x[3] for x in KeepAlive.seen)
    assert [x[1] for x in KeepAlive.seen][:2] == ["/first", "/again"]
    assert all(len(x[3]) < len(body) for x in KeepAlive.seen[2:])
