"""A networked sandbox's egress through kiln-dns and kiln-proxy (docs/egress.md), end to end:
a real guest whose only resolver is the policy resolver and whose web traffic the namespace's
nftables hand to the proxy.  The upstream is test_net's (an HTTP server in its own namespace
at 10.99.0.2), named upstream.test by a policy rewrite; the sandbox has no direct CIDRs at
all.  The guest reaches the allowed name; a denied name does not resolve, whichever resolver
it asks; lying in Host or in /etc/hosts gets it nowhere else; replacing the policy live takes
the name away; both services log what they saw.  One VM.

Credential injection (--net-secrets): a second VM, of the base image (curl), whose secrets are
for an HTTPS upstream with a certificate from a test CA.  The upstream receives the real value;
the guest validates through the sandbox's CA, without -k; a placeholder sent anywhere else is
refused; and the value is nowhere in the guest: no process environment, no file, not its disk,
not its memory (a pause writes all of guest RAM to a file, which we search)."""
import json
import os
import re
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import busybox_image
from test_net import MODULES, UP, gexec, kiln, setup_upstream, sh, teardown_upstream, wait_http

ROOT = Path(__file__).resolve().parents[2]

POLICY = "rewrite upstream.test 10.99.0.2\nallow-cidr 10.99.0.0/24\n"


@pytest.fixture(scope="module")
def upstream():
    """test_net's upstream namespace (HTTP at 10.99.0.2), for every VM of this module."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    # The test host's kernel does not load modules on demand: redirect needs nft_redir.
    for m in MODULES + ["nft_redir"]:
        sh("modprobe", m, check=False)
    tmp = Path(tempfile.mkdtemp(prefix="kiln-egress-"))
    www = tmp / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello from upstream\n")
    procs = setup_upstream(www, tmp / "udp.log")
    try:
        wait_http("http://10.99.0.2/hello.txt")
        yield tmp
    finally:
        teardown_upstream(procs)


@pytest.fixture(scope="module")
def world(upstream, tmp_path_factory):
    tmp = upstream
    vm = tmp / "vm"
    policy = tmp / "policy"
    policy.write_text(POLICY)
    try:
        image = busybox_image(tmp_path_factory.mktemp("egressimg"))
        kiln("up", "--rootfs", image, "--dir", vm, "--net-policy", policy)
        yield {"vm": vm, "tmp": tmp}
    finally:
        kiln("down", "--dir", vm, check=False)


def get(vm, url, *wget_args, timeout=60):
    # Long enough for an answer from a stalled test host; refusals here come at once (an
    # unknown name, a 403), so they do not wait it out.
    return gexec(vm, f"timeout {timeout} wget -O - {' '.join(wget_args)} {url}")


def log_of(vm, name, want=None, seconds=60):
    """The service's log, once it holds want (a connection is logged when it ends), or as it
    is after seconds."""
    path = Path(vm) / f"{name}.log"
    deadline = time.monotonic() + seconds
    while True:
        text = path.read_text() if path.exists() else ""
        if want is None or want in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_an_allowed_name_through_dns_and_the_proxy(world):
    vm = world["vm"]
    assert "nameserver 10.0.2.1" in gexec(vm, "cat /etc/resolv.conf")[1]
    status, out = get(vm, "http://upstream.test/hello.txt")
    assert status == 0 and "hello from upstream" in out, out
    assert '"name": "upstream.test"' in log_of(vm, "dns", '"name": "upstream.test"')
    assert '"verdict": "allowed"' in log_of(vm, "proxy", '"verdict": "allowed"')


def test_a_denied_name_resolves_nowhere(world):
    vm = world["vm"]
    status, out = get(vm, "http://evil.test/hello.txt")
    assert status != 0 and "hello" not in out
    # Asking another resolver reaches the same policy resolver.
    status, out = gexec(vm, "timeout 10 nslookup evil.test 8.8.8.8")
    assert status != 0 or "10.99.0.2" not in out, out
    status, out = gexec(vm, "timeout 60 nslookup upstream.test 8.8.8.8")
    assert "10.99.0.2" in out, out
    assert '"name": "evil.test"' in log_of(vm, "dns", '"name": "evil.test"')


def test_lying_in_host_or_etc_hosts_gets_nowhere(world):
    vm = world["vm"]
    status, out = get(vm, "http://10.99.0.2/hello.txt", "--header 'Host: evil.test'")
    assert "hello" not in out and "403" in out, out
    # /etc/hosts sends an unlisted name to the upstream's address: the proxy reads the name.
    gexec(vm, "echo '10.99.0.2 sneaky.test' >> /etc/hosts")
    status, out = get(vm, "http://sneaky.test/hello.txt")
    assert "hello" not in out and "403" in out, out
    # ... and an allowed name to another address: the proxy connects by name, not there.
    gexec(vm, "echo '10.98.0.2 upstream.test' >> /etc/hosts")
    status, out = get(vm, "http://upstream.test/hello.txt")
    assert status == 0 and "hello from upstream" in out, out
    assert "name not allowed" in log_of(vm, "proxy", "name not allowed")


def test_replacing_the_policy_takes_the_name_away(world):
    vm = world["vm"]
    new = world["tmp"] / "policy2"
    new.write_text("allow-cidr 10.99.0.0/24\n")
    kiln("net-policy", "--dir", vm, "--net-policy", new)
    # kiln-dns and kiln-proxy take the new policy on a SIGHUP: poll rather than give them a
    # fixed second, which a stalled test host may not honour.
    deadline = time.monotonic() + 60
    while True:
        status, out = get(vm, "http://upstream.test/hello.txt")
        if status != 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert status != 0 and "hello" not in out, out
    status, out = get(vm, "http://10.99.0.2/hello.txt")      # by address, which it lists
    assert status == 0 and "hello from upstream" in out, out


# ---- credential injection -----------------------------------------------------------------

SECRET_POLICY = """rewrite upstream.test 10.99.0.2
rewrite api.upstream.test 10.99.0.2
rewrite other.upstream.test 10.99.0.2
allow-cidr 10.99.0.0/24
"""

# An HTTPS upstream that logs every request's headers (on the host: the guest never sees this
# log) and answers without echoing any of them.
HTTPS_UPSTREAM = r"""
import http.server, json, ssl, sys
log = open(sys.argv[3], "a")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        log.write(json.dumps({"path": self.path, "headers": dict(self.headers)}) + "\n")
        log.flush()
        body = b"hello over tls\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("0.0.0.0", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("serving", flush=True)
srv.serve_forever()
"""


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def upstream_pki(d):
    """A test CA the guest does not know, and a certificate from it for the upstream's names."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=kiln upstream test CA", "-keyout", d / "up-ca.key", "-out", d / "up-ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=api.upstream.test",
            "-keyout", d / "up.key", "-out", d / "up.csr")
    (d / "ext").write_text("subjectAltName=DNS:api.upstream.test,DNS:other.upstream.test,"
                           "DNS:upstream.test\n")
    openssl("x509", "-req", "-in", d / "up.csr", "-CA", d / "up-ca.pem", "-CAkey",
            d / "up-ca.key", "-CAcreateserial", "-days", "2", "-extfile", d / "ext",
            "-out", d / "up.pem")


def wait_listening(addr, port, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        r = subprocess.run(["ip", "netns", "exec", UP, "/usr/bin/python3", "-c",
                            f"import socket; socket.create_connection(('{addr}', {port}), 2)"],
                           capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail(f"{addr}:{port} never listened")


def guest_stream_holds(vm, script, needles, timeout=900):
    """Which of needles the stdout of script in the guest holds, searched here on the host:
    the search must not put what it looks for into the guest (even a grep pattern would leave
    the value in the guest's memory)."""
    p = subprocess.Popen([str(ROOT / "build" / "kiln"), "exec", "--dir", str(vm), "--timeout",
                          str(timeout), "--", "sh", "-c", script],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    keep = max(len(n) for n in needles)
    found, tail, total = set(), b"", 0
    while True:
        chunk = p.stdout.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        window = tail + chunk
        found |= {n for n in needles if n in window}
        tail = window[-keep:]
    err = p.stderr.read().decode(errors="replace")
    assert p.wait(timeout=60) == 0, f"after {total} bytes: {err}"
    return found, total


def file_holds(path, needle):
    """Whether the (sparse) file holds needle, reading only its data extents."""
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        off = 0
        while off < end:
            try:
                off = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                return False
            hole = os.lseek(fd, off, os.SEEK_HOLE)
            while off < hole:
                chunk = os.pread(fd, min(64 << 20, hole - off) + len(needle), off)
                if needle in chunk:
                    return True
                off += 64 << 20
            off = hole
        return False
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def sworld(upstream):
    base = ROOT / "build" / "images" / "base.ext4"
    if not base.exists():
        pytest.skip("image base not built (make images)")
    tmp = upstream
    upstream_pki(tmp)
    token = "ghp_" + secrets.token_hex(20)
    other = "key_" + secrets.token_hex(20)
    (tmp / "secrets").write_text(
        "# the guest gets placeholders in UPSTREAM_TOKEN and OTHER_KEY\n"
        f"secret upstream UPSTREAM_TOKEN Authorization api.upstream.test Bearer {token}\n"
        f"secret other OTHER_KEY X-Api-Key other.upstream.test {other}\n")
    (tmp / "spolicy").write_text(SECRET_POLICY)
    log = tmp / "https.log"
    log.write_text("")
    srv = subprocess.Popen(["ip", "netns", "exec", UP, "/usr/bin/python3", "-c", HTTPS_UPSTREAM,
                            tmp / "up.pem", tmp / "up.key", log],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vm = tmp / "svm"
    try:
        wait_listening("10.99.0.2", 443)
        kiln("up", "--image", "base", "--dir", vm, "--net-policy", tmp / "spolicy",
             "--net-secrets", tmp / "secrets", "--net-upstream-ca", tmp / "up-ca.pem")
        yield {"vm": vm, "token": token, "other": other, "log": log}
    finally:
        kiln("down", "--dir", vm, check=False)
        srv.terminate()
        srv.wait(timeout=10)


def curl(vm, url, *args, timeout=60):
    return gexec(vm, f"timeout {timeout} curl -sS --max-time {timeout} {' '.join(args)} {url}",
                 timeout=timeout + 60)


def placeholders(vm):
    status, out = gexec(vm, 'echo "$UPSTREAM_TOKEN $OTHER_KEY"')
    assert status == 0, out
    return out.split()


def upstream_requests(log):
    return [json.loads(l) for l in Path(log).read_text().splitlines() if l.strip()]


def test_secrets_the_guest_holds_placeholders_and_the_ca(sworld):
    vm = sworld["vm"]
    ph, other = placeholders(vm)
    assert re.fullmatch(r"KILN_PH_[0-9a-f]{32}", ph) and re.fullmatch(r"KILN_PH_[0-9a-f]{32}",
                                                                       other)
    assert ph != other
    status, out = gexec(vm, "env | grep -E '^(SSL_CERT_FILE|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|"
                            "NODE_EXTRA_CA_CERTS)=' | sort")
    assert out.split() == ["CURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
                           "NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/kiln-egress.crt",
                           "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
                           "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"], out
    # The image's own roots are still in the bundle, and the sandbox's CA once, at the end.
    ca = (Path(vm) / "egress-ca" / "ca.pem").read_text()
    status, bundle = gexec(vm, "cat /etc/ssl/certs/ca-certificates.crt")
    assert bundle.count("BEGIN CERTIFICATE") > 50 and bundle.count(ca.strip()) == 1
    status, alone = gexec(vm, "cat /usr/local/share/ca-certificates/kiln-egress.crt")
    assert alone.strip() == ca.strip()
    # The key never leaves the host.
    assert (Path(vm) / "egress-ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (Path(vm) / "egress.secrets").stat().st_mode & 0o777 == 0o600


def test_secrets_the_upstream_gets_the_real_value(sworld):
    vm, log = sworld["vm"], sworld["log"]
    # No -k, no --cacert: curl trusts the sandbox's CA through CURL_CA_BUNDLE ...
    status, out = curl(vm, "https://api.upstream.test/whoami",
                       "-H \"Authorization: $UPSTREAM_TOKEN\"")
    assert status == 0 and "hello over tls" in out, out
    # ... and through the system bundle alone, as an unprivileged user.
    status, out = gexec(vm, "env -u CURL_CA_BUNDLE -u SSL_CERT_FILE runuser -u user -- "
                            "curl -sS --max-time 60 https://api.upstream.test/as-user "
                            "-H \"Authorization: $UPSTREAM_TOKEN\"", timeout=120)
    assert status == 0 and "hello over tls" in out, out
    reqs = {r["path"]: r["headers"] for r in upstream_requests(log)}
    assert reqs["/whoami"]["Authorization"] == f"Bearer {sworld['token']}"
    assert reqs["/as-user"]["Authorization"] == f"Bearer {sworld['token']}"
    assert '"verdict": "injected"' in log_of(vm, "proxy", '"verdict": "injected"')
    # The guest really checks certificates: a host without secrets is not intercepted, so it
    # sees the upstream's own certificate from a CA it does not know, and refuses it.
    status, out = curl(vm, "https://upstream.test/plain")
    assert status != 0 and "hello" not in out and "certificate" in out.lower(), out


def test_secrets_a_placeholder_anywhere_else_is_refused(sworld):
    vm, log = sworld["vm"], sworld["log"]
    before = len(upstream_requests(log))
    # To another host with secrets (intercepted): refused, never forwarded.
    status, out = curl(vm, "https://other.upstream.test/steal",
                       "-H \"Authorization: $UPSTREAM_TOKEN\"")
    assert "hello" not in out and "kiln egress" in out, out
    # In another header of its own host.
    status, out = curl(vm, "https://api.upstream.test/wrong-header",
                       "-H \"X-Api-Key: $UPSTREAM_TOKEN\"")
    assert "hello" not in out and "kiln egress" in out, out
    # In clear text to an allowed host.
    status, out = gexec(vm, "timeout 60 curl -sS -w '%{http_code}' http://upstream.test/hello.txt "
                            "-H \"Authorization: $UPSTREAM_TOKEN\"", timeout=120)
    assert "hello from upstream" not in out and "403" in out, out
    paths = [r["path"] for r in upstream_requests(log)[before:]]
    assert "/steal" not in paths and "/wrong-header" not in paths
    text = log_of(vm, "proxy", '"verdict": "alert"')
    assert '"verdict": "alert"' in text and sworld["token"] not in text
    # The other secret goes where it belongs, in its own header.
    status, out = curl(vm, "https://other.upstream.test/key", "-H \"X-Api-Key: $OTHER_KEY\"")
    assert status == 0 and "hello over tls" in out, out
    reqs = {r["path"]: r["headers"] for r in upstream_requests(log)}
    assert reqs["/key"]["X-Api-Key"] == sworld["other"]


def test_secrets_the_value_is_nowhere_in_the_guest(sworld):
    vm = sworld["vm"]
    ph, other_ph = placeholders(vm)
    values = [sworld["token"].encode(), sworld["other"].encode()]
    # No process's environment (the placeholders are there: the search works) ...
    found, _ = guest_stream_holds(vm, "cat /proc/[0-9]*/environ 2>/dev/null; true",
                                  values + [ph.encode()])
    assert found == {ph.encode()}
    # ... and no file.  Every file of the guest is in one of three places: its root image
    # (read-only, on the host), its scratch disk (the overlay's upper layer, on the host) or a
    # tmpfs (in its RAM).  The first two are searched here byte for byte, deleted blocks
    # included; the files of every tmpfs are streamed out (the control: /run/kiln/env holds
    # the placeholders).
    found, total = guest_stream_holds(
        vm, "for m in $(awk '$3 == \"tmpfs\" {print $2}' /proc/mounts); do "
            "find $m -xdev -type f -print0 | xargs -0 cat 2>/dev/null; done; true",
        values + [ph.encode(), other_ph.encode()])
    assert found == {ph.encode(), other_ph.encode()}
    for disk in (Path(vm) / "scratch.ext4", (ROOT / "build" / "images" / "base.ext4").resolve()):
        for value in values:
            assert not file_holds(disk, value), f"{disk} holds a value"


def test_secrets_the_value_is_not_in_guest_memory_and_survives_resume(sworld):
    vm = sworld["vm"]
    ph, other_ph = placeholders(vm)
    kiln("pause", "--dir", vm)
    memory = Path(vm) / "paused" / "memory"
    assert memory.exists() and memory.stat().st_size >= 256 << 20
    # The search works: the placeholders are in the guest's memory ...
    assert file_holds(memory, ph.encode())
    # ... the values are not, in any form the proxy would send.
    for value in (sworld["token"], sworld["other"]):
        assert not file_holds(memory, value.encode())
        assert not file_holds(memory, value[4:].encode())
    kiln("resume", "--dir", vm)
    # After a resume the guest keeps its placeholders, and injection works as before.
    assert placeholders(vm) == [ph, other_ph]
    status, out = curl(vm, "https://api.upstream.test/after-resume",
                       "-H \"Authorization: $UPSTREAM_TOKEN\"")
    assert status == 0 and "hello over tls" in out, out
