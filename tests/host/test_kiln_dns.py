"""kiln-dns, the DNS policy resolver (src/net/kiln_dns.c), on this host: real UDP queries
against a real kiln-dns, with names this host resolves offline (localhost, from /etc/hosts)
and rewrites.  Allowed, denied, rewritten and malformed queries; answers that would rebind
onto loopback dropped unless the policy allows the range; rate limiting; a live policy reload
(SIGHUP); the query log; and binding inside a network namespace, which the host side cannot
reach."""
import json
import os
import random
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KILN_DNS = ROOT / "build" / "kiln-dns"
NOERROR, FORMERR, NXDOMAIN, REFUSED = 0, 1, 3, 5
A, AAAA, MX = 1, 28, 15


def build_query(name, qtype, qid=None):
    qid = random.randrange(65536) if qid is None else qid
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return qid, q + b"\0" + struct.pack(">HH", qtype, 1)


def parse_answer(data):
    qid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    off = 12
    for _ in range(qd):
        while data[off]:
            off += data[off] + 1
        off += 5
    addrs = []
    for _ in range(an):
        off += 2                                    # name pointer
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[off:off + 10])
        off += 10
        rdata = data[off:off + rdlen]
        off += rdlen
        addrs.append(socket.inet_ntop(socket.AF_INET if rtype == A else socket.AF_INET6,
                                      rdata))
    return qid, flags & 0xf, addrs


def ask(port, name, qtype=A, host="127.0.0.1", raw=None, timeout=5):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    qid, q = build_query(name, qtype) if raw is None else (None, raw)
    s.sendto(q, (host, port))
    data, _ = s.recvfrom(4096)
    s.close()
    got = parse_answer(data)
    if qid is not None:
        assert got[0] == qid
    return got[1], got[2]


class Dns:
    def __init__(self, tmp, policy, *extra, netns=None, port=None):
        self.policy = tmp / "policy"
        self.policy.write_text(policy)
        self.log = tmp / "dns.log"
        self.port = port or random.randrange(20000, 60000)
        cmd = [str(KILN_DNS), "--listen", f"127.0.0.1:{self.port}", "--policy",
               str(self.policy), "--log", str(self.log)] + list(extra)
        if netns:
            cmd += ["--netns", netns]
        self.p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        assert "serving" in self.p.stderr.readline()

    def entries(self):
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self):
        self.p.kill()
        self.p.wait()


@pytest.fixture
def dns(tmp_path):
    made = []

    def start(policy, *extra, **kw):
        d = Dns(tmp_path, policy, *extra, **kw)
        made.append(d)
        return d

    yield start
    for d in made:
        d.stop()


def test_allowed_denied_rewritten_and_logged(dns):
    d = dns("allow localhost\nallow-cidr 127.0.0.0/8\nrewrite db.internal.test 10.1.2.3\n"
            "allow *.internal.test\ndeny secret.internal.test\n")
    assert ask(d.port, "localhost") == (NOERROR, ["127.0.0.1"])
    assert ask(d.port, "LocalHost") == (NOERROR, ["127.0.0.1"])
    assert ask(d.port, "example.com") == (NXDOMAIN, [])
    assert ask(d.port, "db.internal.test") == (NOERROR, ["10.1.2.3"])
    assert ask(d.port, "db.internal.test", AAAA) == (NOERROR, [])   # no AAAA for it
    assert ask(d.port, "secret.internal.test") == (NXDOMAIN, [])     # deny wins
    assert ask(d.port, "localhost", MX) == (NOERROR, [])             # other types: no data
    log = d.entries()
    assert [e["verdict"] for e in log] == ["allow", "allow", "deny", "rewrite", "rewrite",
                                           "deny", "allow"]
    assert log[0]["name"] == "localhost" and log[0]["answers"] == ["127.0.0.1"]
    assert log[2]["name"] == "example.com" and log[3]["answers"] == ["10.1.2.3"]


def test_an_allowed_name_cannot_rebind_onto_loopback(dns):
    d = dns("allow localhost\n")
    rcode, addrs = ask(d.port, "localhost")
    assert (rcode, addrs) == (NOERROR, [])
    assert d.entries()[-1]["verdict"] == "allow-filtered"


def test_malformed_queries_get_formerr_and_the_resolver_goes_on(dns):
    d = dns("allow localhost\nallow-cidr 127.0.0.0/8\n")
    qid, q = build_query("x.localhost", A, qid=0x4242)
    bad = bytearray(q)
    bad[13] = ord(".")                              # a dot inside a label
    assert ask(d.port, "", raw=bytes(bad)) == (FORMERR, [])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for junk in (b"", b"\x01", os.urandom(11), os.urandom(300)):
        s.sendto(junk, ("127.0.0.1", d.port))
    s.close()
    assert ask(d.port, "localhost") == (NOERROR, ["127.0.0.1"])
    assert d.p.poll() is None


def test_rate_limit_refuses_a_flood(dns):
    d = dns("allow localhost\nallow-cidr 127.0.0.0/8\n", "--rate", "5")
    codes = [ask(d.port, "localhost")[0] for _ in range(30)]
    assert codes.count(REFUSED) >= 10 and codes[0] == NOERROR
    # Refusals are logged once a second, with a count, not once each.
    limited = [e for e in d.entries() if e["verdict"].startswith("rate-limited")]
    assert 1 <= len(limited) <= 3, limited
    time.sleep(1.2)
    assert ask(d.port, "localhost")[0] == NOERROR


def test_sighup_replaces_the_policy_and_a_bad_one_is_kept_out(dns):
    d = dns("deny localhost\n")
    assert ask(d.port, "localhost")[0] == NXDOMAIN
    d.policy.write_text("allow localhost\nallow-cidr 127.0.0.0/8\n")
    d.p.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert ask(d.port, "localhost") == (NOERROR, ["127.0.0.1"])
    d.policy.write_text("allow bad..name\n")
    d.p.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert ask(d.port, "localhost") == (NOERROR, ["127.0.0.1"])     # the old one stands
    d.p.kill()
    assert "line 1" in d.p.stderr.read()


def test_bad_policy_refuses_to_start(tmp_path):
    (tmp_path / "p").write_text("allow ok.test\npermit x.test\n")
    r = subprocess.run([str(KILN_DNS), "--listen", "127.0.0.1:5399", "--policy",
                        str(tmp_path / "p")], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "line 2: unknown directive" in r.stderr


def test_bound_inside_a_network_namespace(dns):
    ns = f"kiln-dnstest-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode:
        pytest.skip("cannot create network namespaces here")
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        d = dns("allow localhost\nallow-cidr 127.0.0.0/8\n", netns=ns)
        client = ("import sys; sys.path.insert(0, %r); import test_kiln_dns as t; "
                  "print(t.ask(%d, 'localhost'))" % (str(Path(__file__).parent), d.port))
        r = subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", client],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout.strip() == "(0, ['127.0.0.1'])", r.stderr
        # The host's own loopback has nothing there: the socket lives in the namespace.
        with pytest.raises(socket.timeout):
            ask(d.port, "localhost", timeout=1)
    finally:
        subprocess.run(["ip", "netns", "del", ns])
