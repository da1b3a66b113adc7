"""Networks through kilnd's API (docs/kilnd.md "Network"), with real guests: a sandbox created
with a policy reaches the allowed name through its own resolver and proxy and nothing else;
its logs and capture come back through the API; replacing the policy live takes the name away;
the bytes it moves are metered and billed; a guest port is exposed on the host and withdrawn;
a sandbox created without a network has no NIC; a secret reaches the upstream while the
guest and kilnd's records hold only its placeholder.  The upstreams are test_net's HTTP server
and test_net_egress's HTTPS server in their own namespace (10.99.0.2).  Four VMs."""
import json
import os
import re
import secrets
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, busybox_image
from kilnd_helpers import Kilnd, error_of, exec_, stop_kilnd, wait_job
from test_net import MODULES, UP, setup_upstream, sh, teardown_upstream, wait_http
from test_net_egress import HTTPS_UPSTREAM, upstream_pki, wait_listening

NETWORK_PRICE = 10**9      # micro-units per GiB: a few MiB cost well over a run's vCPU time
BIG = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for m in MODULES + ["nft_redir"]:
        sh("modprobe", m, check=False)
    tmp = Path(tempfile.mkdtemp(prefix="kiln-knet-"))
    www = tmp / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello from upstream\n")
    (www / "big.bin").write_bytes(os.urandom(BIG))
    procs = setup_upstream(www, tmp / "udp.log")
    k = Kilnd(tmp_path_factory.mktemp("knet"),
              busybox_image(tmp_path_factory.mktemp("knetimg")))
    with open(k.prices, "a") as f:
        f.write(f"network_gib = {NETWORK_PRICE}\n")
    try:
        wait_http("http://10.99.0.2/hello.txt")
        k.start()
        agent = k.agent(name="net")
        yield {"k": k, "key": agent["api_key"]}
    finally:
        stop_kilnd(k)
        teardown_upstream(procs)


@pytest.fixture(scope="module")
def sb(world):
    k, key = world["k"], world["key"]
    status, sb = k.request("POST", "/v1/sandboxes", {
        "timeout_s": 3600,
        "network": {"allow_domains": ["Upstream.TEST."],
                    "dns_rewrites": {"upstream.test": "10.99.0.2"},
                    "allow_cidrs": ["10.99.0.0/24"], "capture": True}}, key=key)
    assert status == 201, sb
    return sb


def sh_in(world, sb, script, timeout=60):
    r = exec_(world["k"], world["key"], sb, cmd=["sh", "-c", script], timeout_s=timeout)
    return r["exit_code"], r["stdout"] + r["stderr"]


def fetch(world, sb, url):
    return sh_in(world, sb, f"timeout 20 wget -O - {url}")


def fetch_until_refused(world, sb, url, seconds=60):
    """Fetch until refused, or for seconds: kiln-dns and kiln-proxy take a new policy on a
    SIGHUP, which a fixed second's sleep need not see done in a stalled test host."""
    deadline = time.monotonic() + seconds
    while True:
        status, out = fetch(world, sb, url)
        if status != 0 or time.monotonic() > deadline:
            return status, out
        time.sleep(1)


def test_the_policy_is_what_the_sandbox_shows(world, sb):
    net = sb["network"]
    assert net["allow_domains"] == ["upstream.test"]
    assert net["allow_cidrs"] == ["10.99.0.0/24"] and net["capture"] is True
    status, got = world["k"].request("GET", f"/v1/sandboxes/{sb['id']}/network",
                                     key=world["key"])
    assert status == 200 and got["dns_rewrites"] == {"upstream.test": "10.99.0.2"}, got


def test_allowed_name_reached_and_nothing_else(world, sb):
    status, out = fetch(world, sb, "http://upstream.test/hello.txt")
    assert status == 0 and "hello from upstream" in out, out
    status, out = fetch(world, sb, "http://evil.test/hello.txt")
    assert status != 0 and "hello" not in out, out
    # The host's own server and the metadata address stay out of reach.
    status, out = fetch(world, sb, "http://10.0.2.1:8080/hello.txt")
    assert status != 0 and "hello" not in out, out
    status, out = fetch(world, sb, "http://169.254.169.254/hello.txt")
    assert status != 0 and "hello" not in out, out


def test_logs_and_capture_through_the_api(world, sb):
    k, key = world["k"], world["key"]
    fetch(world, sb, "http://upstream.test/hello.txt")
    fetch(world, sb, "http://evil.test/hello.txt")     # its own, not an earlier test's
    deadline = time.monotonic() + 60       # the proxy logs a connection when it ends
    while True:
        status, log = k.request("GET", f"/v1/sandboxes/{sb['id']}/network/log?kind=proxy",
                                key=key)
        if status == 200 and b'"verdict": "allowed"' in log or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200 and b'"name": "upstream.test"' in log, log
    status, log = k.request("GET", f"/v1/sandboxes/{sb['id']}/network/log?kind=dns", key=key)
    assert status == 200 and b'"name": "evil.test"' in log and b'"deny"' in log, log
    error_of(k.request("GET", f"/v1/sandboxes/{sb['id']}/network/log?kind=all", key=key),
             400, "invalid_argument", "kind")
    status, pcap = k.request("GET", f"/v1/sandboxes/{sb['id']}/network/capture", key=key)
    assert status == 200 and len(pcap) > 24
    assert struct.unpack("<I", pcap[:4])[0] == 0xa1b2c3d4       # libpcap, microseconds
    assert b"upstream.test" in pcap                              # the DNS query, in clear


def test_bytes_are_metered_and_billed(world, sb):
    k, key = world["k"], world["key"]
    status, out = sh_in(world, sb, "timeout 60 wget -O /tmp/big http://10.99.0.2/big.bin "
                                   "&& wc -c < /tmp/big", timeout=90)
    assert status == 0 and str(BIG) in out, out
    deadline = time.monotonic() + 60       # metered on kilnd's next ticks
    while True:
        status, net = k.request("GET", f"/v1/sandboxes/{sb['id']}/network", key=key)
        if net["in_bytes"] >= BIG or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert BIG <= net["in_bytes"] < 2 * BIG and 0 < net["out_bytes"] < BIG, net
    status, usage = k.request("GET", "/v1/usage", key=key)
    mine = [s for s in usage["sandboxes"] if s["id"] == sb["id"]][0]
    assert mine["network_in_bytes"] >= BIG
    # The network's price alone: 3 MiB at 10^9 a GiB is ~2.9 * 10^6.
    assert mine["cost_micro"] >= BIG * NETWORK_PRICE // 2**30, mine


def test_a_guest_port_on_the_host(world, sb):
    k, key = world["k"], world["key"]
    sh_in(world, sb, "mkdir -p /www && echo preview-page > /www/index.html && "
                     "busybox httpd -p 8000 -h /www")
    status, port = k.request("POST", f"/v1/sandboxes/{sb['id']}/ports", {"port": 8000},
                             key=key)
    assert status == 201 and port["host"] == "127.0.0.1" and port["host_port"] > 0, port
    body = urllib.request.urlopen(port["url"] + "/index.html", timeout=30).read()
    assert body == b"preview-page\n"
    # Asking again gives the same; the list shows it; a second port is independent.
    assert k.request("POST", f"/v1/sandboxes/{sb['id']}/ports", {"port": 8000},
                     key=key)[1] == port
    status, ports = k.request("GET", f"/v1/sandboxes/{sb['id']}/ports", key=key)
    assert ports == {"ports": [port]}
    cli = subprocess.run([str(ROOT / "build" / "kiln"), "sandbox", "expose", "--kilnd", k.sock,
                          "--key", key, sb["id"], "8000"], capture_output=True, text=True)
    assert cli.returncode == 0 and cli.stdout.strip() == port["url"], cli
    error_of(k.request("POST", f"/v1/sandboxes/{sb['id']}/ports", {"port": 0}, key=key),
             400, "invalid_argument", "port")
    error_of(k.request("POST", f"/v1/sandboxes/{sb['id']}/ports", {"port": "80"}, key=key),
             400, "invalid_argument", "port")
    assert k.request("DELETE", f"/v1/sandboxes/{sb['id']}/ports/8000", key=key)[0] == 200
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(port["url"] + "/index.html", timeout=10)
    error_of(k.request("DELETE", f"/v1/sandboxes/{sb['id']}/ports/8000", key=key), 404,
             "not_found")


def test_replacing_the_policy_live(world, sb):
    k, key = world["k"], world["key"]
    error_of(k.request("PUT", f"/v1/sandboxes/{sb['id']}/network",
                       {"allow_domains": ["a b"]}, key=key), 400, "invalid_argument",
             "allow_domains")
    error_of(k.request("PUT", f"/v1/sandboxes/{sb['id']}/network",
                       {"capture": False}, key=key), 400, "invalid_argument", "capture")
    status, net = k.request("PUT", f"/v1/sandboxes/{sb['id']}/network",
                            {"allow_cidrs": ["10.99.0.0/24"]}, key=key)
    assert status == 200 and net["allow_domains"] == [] and net["capture"] is True, net
    status, out = fetch_until_refused(world, sb, "http://upstream.test/hello.txt")
    assert status != 0 and "hello" not in out, out
    status, out = fetch(world, sb, "http://10.99.0.2/hello.txt")      # listed by address
    assert status == 0 and "hello from upstream" in out, out
    cli = subprocess.run([str(ROOT / "build" / "kiln"), "sandbox", "network", "--kilnd", k.sock,
                          "--key", key, "--set", "{}", sb["id"]], capture_output=True, text=True)
    assert cli.returncode == 0 and json.loads(cli.stdout)["allow_cidrs"] == [], cli
    status, out = fetch_until_refused(world, sb, "http://10.99.0.2/hello.txt")
    assert status != 0 and "hello" not in out, out


def vmm_restored(k, sb_id):
    """Whether the sandbox's VMM was started from a snapshot (kiln-vmm --restore)."""
    pid = int((k.data / "sandboxes" / sb_id / "vmm.pid").read_text())
    return b"--restore" in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")


def metric(k, name):
    status, text = k.request("GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def test_later_networks_come_from_the_pool(world):
    """The first networked sandbox started the pool; a later one takes a namespace from it."""
    k, key = world["k"], world["key"]
    deadline = time.monotonic() + 120
    while metric(k, "kilnd_netns_pool_ready") < 1 and time.monotonic() < deadline:
        time.sleep(1)
    hits = metric(k, 'kilnd_netns_pool_takes_total{from="pool"}')
    status, other = k.request("POST", "/v1/sandboxes", {"network": {}}, key=key)
    assert status == 201, other
    assert metric(k, 'kilnd_netns_pool_takes_total{from="pool"}') == hits + 1
    status, out = sh_in(world, other, "timeout 20 wget -O - http://10.99.0.2/hello.txt")
    assert status != 0 and "hello" not in out, out                # its own, empty policy
    assert k.request("DELETE", f"/v1/sandboxes/{other['id']}", key=key)[0] == 200


def nic_warmed(k, key):
    status, tmpl = k.request("GET", "/v1/templates/base", key=key)
    return {"cpus": 1, "memory_mib": 256, "network": True} in [
        {f: w[f] for f in ("cpus", "memory_mib", "network")} for w in tmpl["warm_snapshots"]]


def warm_with_nic(k, key):
    status, job = k.request("POST", "/v1/templates/base/warm", {"network": True}, key=k.admin)
    assert status == 202 and job["network"] is True, job
    job = wait_job(k, "base", "warm")
    assert job["state"] == "succeeded", job
    assert nic_warmed(k, key)


def test_a_network_clones_a_snapshot_warmed_with_a_nic(world):
    """Warmed with a NIC (in a namespace of its own), the snapshot restores into the new
    sandbox's namespace: same address and MACs everywhere, its own policy."""
    k, key = world["k"], world["key"]
    warm_with_nic(k, key)
    status, sb = k.request("POST", "/v1/sandboxes", {"network": {
        "allow_domains": ["upstream.test"], "dns_rewrites": {"upstream.test": "10.99.0.2"},
        "allow_cidrs": ["10.99.0.0/24"]}}, key=key)
    assert status == 201, sb
    assert vmm_restored(k, sb["id"]), k.log_tail()
    status, out = fetch(world, sb, "http://upstream.test/hello.txt")
    assert status == 0 and "hello from upstream" in out, out
    status, out = fetch(world, sb, "http://evil.test/hello.txt")
    assert status != 0 and "hello" not in out, out
    # Its own snapshot keeps the NIC and nothing of the network: a sandbox made from it
    # needs a network of its own, and gets only that one's policy.
    assert sh_in(world, sb, "echo original > /root/marker")[0] == 0
    status, snap = k.request("POST", f"/v1/sandboxes/{sb['id']}/snapshots", {}, key=key)
    assert status == 201 and snap["network"] is True, snap
    error_of(k.request("POST", "/v1/sandboxes", {"snapshot": snap["id"]}, key=key), 400,
             "invalid_argument", "network")
    status, fork = k.request("POST", "/v1/sandboxes", {"snapshot": snap["id"], "network": {
        "allow_domains": ["other.test"], "dns_rewrites": {"other.test": "10.99.0.2"},
        "allow_cidrs": ["10.99.0.0/24"]}}, key=key)
    assert status == 201, fork
    assert fork["network"]["allow_domains"] == ["other.test"], fork
    assert sh_in(world, fork, "cat /root/marker") == (0, "original\n")
    status, out = fetch(world, fork, "http://other.test/hello.txt")
    assert status == 0 and "hello from upstream" in out, out
    status, out = fetch(world, fork, "http://upstream.test/hello.txt")
    assert status != 0 and "hello" not in out, out
    status, out = fetch(world, sb, "http://upstream.test/hello.txt")   # the original's own
    assert status == 0 and "hello from upstream" in out, out
    for path in (f"/v1/sandboxes/{fork['id']}", f"/v1/sandboxes/{sb['id']}",
                 f"/v1/snapshots/{snap['id']}"):
        assert k.request("DELETE", path, key=key)[0] == 200, path


def test_rate_limit_and_capture_on_a_clone_and_across_a_pause(world):
    """The snapshot's NIC has no rate limit and no capture: the clone's restored NIC gets the
    sandbox's own.  The limit holds (3 MiB at 512 KiB/s cannot take under 5 s: the bucket
    holds at most a second's worth), and the capture goes on in the same file across a pause
    and resume (the query before and the one after are both in it)."""
    k, key = world["k"], world["key"]
    if not nic_warmed(k, key):
        warm_with_nic(k, key)
    rate = 512 * 1024
    status, slow = k.request("POST", "/v1/sandboxes", {"network": {
        "allow_cidrs": ["10.99.0.0/24"], "rate_limit_kib": rate // 1024, "capture": True}},
        key=key)
    assert status == 201, slow
    assert vmm_restored(k, slow["id"]), k.log_tail()
    t0 = time.monotonic()
    status, out = sh_in(world, slow, "timeout 120 wget -O /tmp/big http://10.99.0.2/big.bin "
                                     "&& wc -c < /tmp/big", timeout=150)
    took = time.monotonic() - t0
    assert status == 0 and str(BIG) in out, out
    assert took >= (BIG - rate) / rate * 0.95, took
    fetch(world, slow, "http://before-pause.test/")
    status, paused = k.request("POST", f"/v1/sandboxes/{slow['id']}/pause", key=key)
    assert status == 200 and paused["state"] == "paused", paused
    status, resumed = k.request("POST", f"/v1/sandboxes/{slow['id']}/resume", key=key)
    assert status == 200 and resumed["state"] == "running", resumed
    fetch(world, slow, "http://after-resume.test/")
    status, pcap = k.request("GET", f"/v1/sandboxes/{slow['id']}/network/capture", key=key)
    assert status == 200 and struct.unpack("<I", pcap[:4])[0] == 0xa1b2c3d4
    assert b"before-pause" in pcap and b"after-resume" in pcap
    at = 24                                      # one file: whole records to its very end
    while at < len(pcap):
        at += 16 + struct.unpack_from("<IIII", pcap, at)[2]
    assert at == len(pcap), (at, len(pcap))
    assert k.request("DELETE", f"/v1/sandboxes/{slow['id']}", key=key)[0] == 200


def test_no_network_means_no_nic(world):
    k, key = world["k"], world["key"]
    status, plain = k.request("POST", "/v1/sandboxes", {"network": None}, key=key)
    assert status == 201 and plain["network"] is None, plain
    status, out = sh_in(world, plain, "ls /sys/class/net")
    assert "eth0" not in out, out
    error_of(k.request("GET", f"/v1/sandboxes/{plain['id']}/network", key=key), 409,
             "no_network")
    error_of(k.request("POST", f"/v1/sandboxes/{plain['id']}/ports", {"port": 80}, key=key),
             409, "no_network")
    assert k.request("DELETE", f"/v1/sandboxes/{plain['id']}", key=key)[0] == 200


def test_deleting_removes_the_namespace_and_services(world, sb):
    k, key = world["k"], world["key"]
    ns = (k.data / "sandboxes" / sb["id"] / "netns").read_text().strip()
    assert ns in sh("ip", "netns", "list").stdout
    assert k.request("POST", f"/v1/sandboxes/{sb['id']}/ports", {"port": 8000},
                     key=key)[0] == 201
    assert k.request("DELETE", f"/v1/sandboxes/{sb['id']}", key=key)[0] == 200
    assert ns not in sh("ip", "netns", "list").stdout
    for prog in ("kiln-dns", "kiln-proxy", "kiln-ingress"):
        assert ns not in sh("pgrep", "-af", prog, check=False).stdout


# ---- secrets through the API -------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_world(world, tmp_path_factory):
    """An HTTPS upstream (test_net_egress's, its own test CA) and a kilnd that trusts that CA
    for upstreams, with the base image (curl) as template "tls"."""
    base = ROOT / "build" / "images" / "base.ext4"
    if not base.exists():
        pytest.skip("image base not built (make images)")
    tmp = tmp_path_factory.mktemp("ktls")
    upstream_pki(tmp)
    log = tmp / "https.log"
    log.write_text("")
    srv = subprocess.Popen(["ip", "netns", "exec", UP, "/usr/bin/python3", "-c", HTTPS_UPSTREAM,
                            tmp / "up.pem", tmp / "up.key", log],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    k = Kilnd(tmp, busybox_image(tmp_path_factory.mktemp("ktlsimg")),
              extra_args=["--template", f"tls={base}", "--upstream-ca", str(tmp / "up-ca.pem")])
    try:
        wait_listening("10.99.0.2", 443)
        k.start()
        yield {"k": k, "key": k.agent(name="tls")["api_key"], "log": log}
    finally:
        stop_kilnd(k)
        srv.terminate()
        srv.wait(timeout=10)


def curl_upstream(k, key, sb, path, auth="$UPSTREAM_TOKEN"):
    """GET https://api.upstream.test{path} from the guest with that Authorization header."""
    return exec_(k, key, sb, cmd=["sh", "-c", f"curl -sS --max-time 60 "
                                              f"https://api.upstream.test{path} "
                                              f"-H \"Authorization: {auth}\""], timeout_s=120)


def auth_seen(log, *paths):
    """The Authorization headers the HTTPS upstream received for those paths, in order."""
    reqs = [json.loads(l) for l in log.read_text().splitlines() if l.strip()]
    return [q["headers"].get("Authorization", "") for q in reqs if q["path"] in paths]


def test_secrets_through_the_api(tls_world):
    k, key, log = tls_world["k"], tls_world["key"], tls_world["log"]
    token = "ghp_" + secrets.token_hex(20)
    status, sb = k.request("POST", "/v1/sandboxes", {
        "template": "tls", "memory_mib": 512, "env": {"MINE": "kept"},
        "network": {"allow_domains": ["api.upstream.test"],
                    "dns_rewrites": {"api.upstream.test": "10.99.0.2"},
                    "allow_cidrs": ["10.99.0.0/24"],      # the upstream's private address
                    "secrets": [{"name": "upstream", "env": "UPSTREAM_TOKEN",
                                 "header": "Authorization", "hosts": ["api.upstream.test"],
                                 "value": f"Bearer {token}"}]}}, key=key)
    assert status == 201, sb
    assert token not in json.dumps(sb) and sb["network"]["secrets"][0]["env"] == "UPSTREAM_TOKEN"
    r = exec_(k, key, sb, cmd=["sh", "-c", 'echo "$MINE $UPSTREAM_TOKEN"'])
    mine, ph = r["stdout"].split()
    assert mine == "kept" and re.fullmatch(r"KILN_PH_[0-9a-f]{32}", ph), r
    # curl verifies the proxy's certificate through the sandbox's CA, no -k.
    r = curl_upstream(k, key, sb, "/k")
    assert r["exit_code"] == 0 and "hello over tls" in r["stdout"], r
    assert auth_seen(log, "/k") == [f"Bearer {token}"]
    # Nowhere in what kilnd keeps or shows: its database, the sandbox's record and network.
    assert token.encode() not in (k.data / "kilnd.db").read_bytes()
    for path in ("", "/network"):
        assert token not in json.dumps(k.request("GET", f"/v1/sandboxes/{sb['id']}{path}",
                                                 key=key)[1])

    # Its snapshot holds no value either (memory, disk, state); a sandbox made from it gets
    # its own CA (the original's replaced in the trust store), placeholder and value, and the
    # original's placeholder means nothing there.
    status, snap = k.request("POST", f"/v1/sandboxes/{sb['id']}/snapshots", {}, key=key)
    assert status == 201 and snap["network"] is True, snap
    found = subprocess.run(["grep", "-rlF", token, k.data / "snapshots" / snap["id"]],
                           capture_output=True)
    assert found.returncode == 1, found
    token2 = "ghp_" + secrets.token_hex(20)
    status, fork = k.request("POST", "/v1/sandboxes", {
        "snapshot": snap["id"],
        "network": {"allow_domains": ["api.upstream.test"],
                    "dns_rewrites": {"api.upstream.test": "10.99.0.2"},
                    "allow_cidrs": ["10.99.0.0/24"],
                    "secrets": [{"name": "upstream", "env": "UPSTREAM_TOKEN",
                                 "header": "Authorization", "hosts": ["api.upstream.test"],
                                 "value": f"Bearer {token2}"}]}}, key=key)
    assert status == 201, fork
    ph2 = exec_(k, key, fork, cmd=["sh", "-c", 'echo "$UPSTREAM_TOKEN"'])["stdout"].strip()
    assert re.fullmatch(r"KILN_PH_[0-9a-f]{32}", ph2) and ph2 != ph, ph2
    r = exec_(k, key, fork, cmd=["sh", "-c", "grep -c 'kiln egress CA: begin' "
                                             "/etc/ssl/certs/ca-certificates.crt"])
    assert r["stdout"].strip() == "1", r
    curl_upstream(k, key, fork, "/k2")
    curl_upstream(k, key, fork, "/k3", auth=ph)
    assert auth_seen(log, "/k2") == [f"Bearer {token2}"]
    assert [a for a in auth_seen(log, "/k", "/k3") if token in a] == [f"Bearer {token}"]
    for path in (f"/v1/sandboxes/{fork['id']}", f"/v1/sandboxes/{sb['id']}",
                 f"/v1/snapshots/{snap['id']}"):
        assert k.request("DELETE", path, key=key)[0] == 200, path


def test_agent_secrets_registered_once(tls_world):
    """A secret the agent registers (PUT /v1/secrets/NAME, here through `kiln secret set`) is
    in every networked sandbox it creates afterwards, unless the sandbox picks others; its
    value is never answered, and other agents neither see nor get it."""
    k, log = tls_world["k"], tls_world["log"]
    key, other = k.agent(name="registers")["api_key"], k.agent(name="other")["api_key"]
    token = "ghp_" + secrets.token_hex(20)
    env = {**os.environ, "KILN_SOCKET": str(k.sock), "KILN_API_KEY": key}
    r = subprocess.run([ROOT / "build" / "kiln", "secret", "set", "upstream", "--env",
                        "UPSTREAM_TOKEN", "--header", "Authorization", "--hosts",
                        "API.upstream.test"], input=f"Bearer {token}\n", env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    r = subprocess.run([ROOT / "build" / "kiln", "secret", "ls"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "UPSTREAM_TOKEN" in r.stdout and token not in r.stdout, r
    status, shown = k.request("GET", "/v1/secrets/upstream", key=key)
    assert status == 200 and shown["hosts"] == ["api.upstream.test"], shown
    assert "value" not in shown and token not in json.dumps(k.request("GET", "/v1/secrets",
                                                                      key=key)[1])
    # Bad secrets are refused and named; another agent has none of these.
    error_of(k.request("PUT", "/v1/secrets/x", {"env": "X", "header": "H", "hosts": ["a.b"],
                                                "value": "v\r\nEvil: 1"}, key=key),
             400, "invalid_argument")
    error_of(k.request("PUT", "/v1/secrets/bad%20name", {"env": "X", "header": "H",
                                                        "hosts": ["a.b"], "value": "v"},
                       key=key), 400, "invalid_argument")
    assert k.request("GET", "/v1/secrets", key=other)[1] == {"secrets": []}
    error_of(k.request("GET", "/v1/secrets/upstream", key=other), 404, "not_found")
    error_of(k.request("DELETE", "/v1/secrets/upstream", key=other), 404, "not_found")

    net = {"allow_domains": ["api.upstream.test"],
           "dns_rewrites": {"api.upstream.test": "10.99.0.2"}, "allow_cidrs": ["10.99.0.0/24"]}
    status, sb = k.request("POST", "/v1/sandboxes", {"template": "tls", "memory_mib": 512,
                                                     "network": net}, key=key)
    assert status == 201, sb
    assert [s["name"] for s in sb["network"]["secrets"]] == ["upstream"]
    r = curl_upstream(k, key, sb, "/a")
    assert r["exit_code"] == 0 and "hello over tls" in r["stdout"], r
    assert auth_seen(log, "/a") == [f"Bearer {token}"]
    r = exec_(k, key, sb, cmd=["sh", "-c", 'echo "$UPSTREAM_TOKEN"'])
    assert re.fullmatch(r"KILN_PH_[0-9a-f]{32}\n", r["stdout"]), r

    # A sandbox that names none of them gets none; an unknown name is refused.
    error_of(k.request("POST", "/v1/sandboxes", {"network": {**net, "agent_secrets": ["nope"]}},
                       key=key), 400, "invalid_argument")
    status, bare = k.request("POST", "/v1/sandboxes", {"template": "tls", "memory_mib": 512,
                                                       "network": {**net, "agent_secrets": []}},
                             key=key)
    assert status == 201 and bare["network"]["secrets"] == [], bare
    r = exec_(k, key, bare, cmd=["sh", "-c", 'echo "[$UPSTREAM_TOKEN]"'])
    assert r["stdout"] == "[]\n", r

    # Deleted, it is gone for later sandboxes; the CLI says so for a second delete.
    r = subprocess.run([ROOT / "build" / "kiln", "secret", "rm", "upstream"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    r = subprocess.run([ROOT / "build" / "kiln", "secret", "rm", "upstream"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 125 and "not_found" in r.stderr, r
    for s in (sb, bare):
        assert k.request("DELETE", f"/v1/sandboxes/{s['id']}", key=key)[0] == 200
