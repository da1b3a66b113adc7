"""Networking at the host boundary, end to end (docs/network.md): real guests with a virtio-net
NIC in their own network namespaces, and upstream servers in a namespace of their own that the
host routes to.

    upstream netns kt-up: 10.99.0.2/24 (allowed), 10.98.0.2/24 (not allowed), 93.184.216.34
        (a "public" address), 169.254.169.254 (the metadata address); HTTP on port 80, a UDP
        listener on 5353 that records what reaches it
    host: 10.99.0.1 and 10.98.0.1 (its ends of the upstream veths), an HTTP server on 8080

Sandbox A allows a hostile list (0.0.0.0/0, the metadata address, the transit range and the
upstream's /24); B allows only the upstream's /24 and is rate-limited; C has no network.
Everything must behave as the policy says, whatever A asked for.  Few VMs: each boots once.
"""
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT, busybox_image

KILN = ROOT / "build" / "kiln"
UP = "kt-up"
RATE_KIB = 128
BIG_MIB = 1
LONG_MIB = 16               # a download that lasts two minutes at RATE_KIB
MODULES = ["tun", "veth", "nf_tables", "nf_conntrack", "nft_ct", "nf_nat", "nft_nat",
           "nft_masq", "nft_chain_nat", "nf_defrag_ipv4", "nf_defrag_ipv6", "nf_reject_ipv4",
           "nf_reject_ipv6", "nft_reject", "nft_reject_inet"]

UDP_RECORDER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
while True:
    data, peer = s.recvfrom(2048)
    with open(sys.argv[1], "ab") as f:
        f.write(data + b"\n")
"""


def sh(*cmd, check=True):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=check)


def kiln(*args, timeout=600, check=True):
    r = subprocess.run([str(KILN)] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout)
    if check:
        assert r.returncode == 0, f"kiln {' '.join(map(str, args))}: {r.stdout}{r.stderr}"
    return r


def gexec(vm, script, timeout=300):
    """Run a shell script in the guest; (status, stdout)."""
    r = kiln("exec", "--dir", vm, "--timeout", timeout, "--", "sh", "-c", script,
             timeout=timeout + 60, check=False)
    return r.returncode, r.stdout + r.stderr


def fetch(vm, url, timeout=60):
    # busybox-static's wget crashes (SIGSEGV) with -q or -T here: bound it with timeout(1).
    # The default is for fetches that must succeed, which a stalled test host can make slow;
    # fetches that must fail pass a short one.
    return gexec(vm, f"timeout {timeout} wget -O - {url} 2>/dev/null")


def setup_upstream(www, udp_log):
    sh("ip", "netns", "add", UP)
    sh("ip", "-n", UP, "link", "set", "lo", "up")
    for i, net in enumerate(("10.99.0", "10.98.0")):
        host_if = f"kt-up{i}"
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", f"eth{i}", "netns", UP)
        sh("ip", "addr", "add", f"{net}.1/24", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", UP, "addr", "add", f"{net}.2/24", "dev", f"eth{i}")
        sh("ip", "-n", UP, "link", "set", f"eth{i}", "up")
    sh("ip", "-n", UP, "route", "add", "default", "via", "10.99.0.1")
    for extra in ("93.184.216.34/32", "169.254.169.254/32"):
        sh("ip", "-n", UP, "addr", "add", extra, "dev", "lo")
        sh("ip", "route", "add", extra, "via", "10.99.0.2")
    http = subprocess.Popen(["ip", "netns", "exec", UP, "/usr/bin/python3", "-m", "http.server",
                             "--bind", "0.0.0.0", "--directory", www, "80"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    udp = subprocess.Popen(["ip", "netns", "exec", UP, "/usr/bin/python3", "-c", UDP_RECORDER,
                            udp_log], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # A server on the host itself, which no sandbox may reach.
    host_http = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", "--bind", "0.0.0.0",
                                  "--directory", www, "8080"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [http, udp, host_http]


def wait_http(url, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        r = subprocess.run(["ip", "netns", "exec", UP, "/usr/bin/python3", "-c",
                            f"import urllib.request; urllib.request.urlopen('{url}', timeout=2)"],
                           capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail(f"upstream {url} never came up")


def teardown_upstream(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    for extra in ("93.184.216.34/32", "169.254.169.254/32"):
        sh("ip", "route", "del", extra, check=False)
    sh("ip", "netns", "del", UP, check=False)
    for i in range(2):
        sh("ip", "link", "del", f"kt-up{i}", check=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for m in MODULES:
        sh("modprobe", m, check=False)
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun in this kernel")
    if sh("nft", "--version", check=False).returncode != 0:
        pytest.skip("nft not installed (scripts/install-deps)")
    tmp = tempfile.mkdtemp(prefix="kiln-net-")
    www = Path(tmp) / "www"
    www.mkdir()
    (www / "hello.txt").write_text("hello from upstream\n")
    (www / "big.bin").write_bytes(os.urandom(BIG_MIB << 20))
    udp_log = Path(tmp) / "udp.log"
    procs = setup_upstream(www, udp_log)
    vms = []
    try:
        wait_http("http://10.99.0.2/hello.txt")
        image = busybox_image(tmp_path_factory.mktemp("netimg"))
        a, b = Path(tmp) / "vm-a", Path(tmp) / "vm-b"
        kiln("up", "--rootfs", image, "--dir", a, "--net-allow",
             "10.99.0.0/24,0.0.0.0/0,169.254.169.254/32,10.200.0.0/16")
        vms.append(a)
        kiln("up", "--rootfs", image, "--dir", b, "--net-allow", "10.99.0.0/24",
             "--net-rate", RATE_KIB, "--net-pcap", Path(tmp) / "b.pcap")
        vms.append(b)
        yield {"a": a, "b": b, "image": image, "udp_log": udp_log, "tmp": Path(tmp)}
    finally:
        for vm in vms:
            kiln("down", "--dir", vm, check=False)
        teardown_upstream(procs)


def netns_of(vm):
    return (Path(vm) / "netns").read_text().strip()


def test_guest_fetches_from_allowed_upstream(world):
    for vm in (world["a"], world["b"]):
        status, out = fetch(vm, "http://10.99.0.2/hello.txt")
        assert (status, out) == (0, "hello from upstream\n")


def test_public_address_only_where_allowed(world):
    status, out = fetch(world["a"], "http://93.184.216.34/hello.txt")
    assert (status, out) == (0, "hello from upstream\n")
    status, out = fetch(world["b"], "http://93.184.216.34/hello.txt", timeout=8)
    assert status != 0 and "hello" not in out


@pytest.mark.parametrize("url", [
    "http://10.98.0.2/hello.txt",            # private, not allowed (A allows 0.0.0.0/0)
    "http://10.99.0.1:8080/hello.txt",       # the host, inside an allowed /24
    "http://10.200.0.1:8080/hello.txt",      # the host's end of A's veth
    "http://169.254.169.254/hello.txt",      # metadata, even though A listed it
    "http://127.0.0.1:8080/hello.txt",       # the guest's own loopback: nothing listens
])
def test_blocked_destinations(world, url):
    status, out = fetch(world["a"], url, timeout=5)
    assert status != 0, out
    assert "hello" not in out


def test_udp_icmp_and_ipv6_blocked(world):
    a = world["a"]
    status, out = gexec(a, "for i in 1 2 3; do echo leak-$i | nc -u -w 1 10.99.0.2 5353; done;"
                           " ping -c 2 -W 2 10.99.0.2")
    assert status != 0, out          # ping got no answer
    time.sleep(2)
    log = world["udp_log"]
    assert not log.exists() or "leak" not in log.read_text()
    # No IPv6 address on eth0, so nothing can even be attempted.
    status, out = gexec(a, "cat /proc/net/if_inet6 2>/dev/null | grep eth0 || echo none")
    assert out.strip() == "none"


def test_spoofed_source_dropped(world):
    """The guest moves eth0 to another address of the /30: its packets are dropped."""
    a = world["a"]
    get = ("printf 'GET /hello.txt HTTP/1.0\\r\\n\\r\\n' | timeout {} nc 10.99.0.2 80;"
           " ip route get 10.99.0.2")
    answered, dropped = get.format(60), get.format(8)
    readdress = ("ifconfig eth0 {} netmask 255.255.255.252 && "
                 "{{ route add default gw 10.0.2.1 2>/dev/null; true; }}")
    status, out = gexec(a, answered)
    assert "hello from upstream" in out and "src 10.0.2.2" in out, out     # the control
    try:
        status, out = gexec(a, readdress.format("10.0.2.3") + " && " + dropped)
        assert "src 10.0.2.3" in out, out          # the guest really sent from 10.0.2.3
        assert "hello" not in out, out
    finally:
        gexec(a, readdress.format("10.0.2.2"))
    status, out = gexec(a, answered)
    assert "hello from upstream" in out and "src 10.0.2.2" in out, out


def test_every_sandbox_has_the_same_address_and_mac(world):
    seen = []
    for vm in (world["a"], world["b"]):
        status, out = gexec(vm, "cat /sys/class/net/eth0/address; "
                                "grep -c '10.0.2.2' /proc/net/fib_trie; ip route 2>/dev/null |"
                                " grep default || route -n | grep '^0.0.0.0'")
        assert status == 0, out
        lines = out.split("\n")
        seen.append(lines[0])
        assert int(lines[1]) >= 1
        assert "10.0.2.1" in out
    assert seen[0] == seen[1] == "02:6b:69:6c:6e:01"
    assert netns_of(world["a"]) != netns_of(world["b"])


def test_sandboxes_cannot_reach_each_other(world):
    a, b = world["a"], world["b"]
    status, out = gexec(b, "mkdir -p /tmp/w && echo from-b > /tmp/w/x && "
                           "httpd -p 8000 -h /tmp/w && echo started")
    assert "started" in out, out
    status, out = fetch(b, "http://127.0.0.1:8000/x")
    assert (status, out) == (0, "from-b\n")        # it does serve, inside B
    # B's namespace end of its veth: its slot's transit address.
    slot = int(netns_of(b).split("-")[1])
    b_transit = f"10.200.{(slot * 4) >> 8}.{((slot * 4) & 255) + 2}"
    for url in (f"http://{b_transit}:8000/x", "http://10.200.0.6:8000/x"):
        status, out = fetch(a, url, timeout=5)
        assert status != 0 and "from-b" not in out, (url, out)
    # Nor from the host: nothing may connect into a sandbox.
    r = subprocess.run(["/usr/bin/python3", "-c",
                        f"import urllib.request; urllib.request.urlopen('http://{b_transit}:8000/x',"
                        " timeout=5)"], capture_output=True)
    assert r.returncode != 0


def test_no_network_means_no_nic(world):
    # sit0 is the kernel's own IPv6-in-IPv4 pseudo-device; no interface has a device behind it,
    # and no virtio device of type 1 (network) exists.
    r = kiln("run", "--rootfs", world["image"], "--", "sh", "-c",
             "ls /sys/class/net; echo devices: $(ls -d /sys/class/net/*/device 2>/dev/null);"
             " echo types: $(cat /sys/bus/virtio/devices/*/device)")
    lines = r.stdout.split("\n")
    assert "eth0" not in r.stdout.split()
    assert "devices: \n" in r.stdout or any(l == "devices:" for l in lines), r.stdout
    types = [l for l in lines if l.startswith("types:")][0].split()[1:]
    assert types and "0x0001" not in types, r.stdout


def kiln_links():
    netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    links = set(sh("ip", "-o", "link").stdout.split())
    slots = set(os.listdir("/run/kiln/net")) if os.path.isdir("/run/kiln/net") else set()
    return ({n for n in netns if n.startswith("kiln-")}, {l for l in links if l.startswith("kv-")},
            slots)


def test_run_with_network_leaves_nothing_behind(world):
    before = kiln_links()
    r = kiln("run", "--rootfs", world["image"], "--net-allow", "10.99.0.0/24", "--", "sh", "-c",
             "timeout 60 wget -O - http://10.99.0.2/hello.txt 2>/dev/null; exit 7", check=False)
    assert r.returncode == 7, r.stderr
    assert r.stdout == "hello from upstream\n"
    assert kiln_links() == before


def test_up_with_a_network_clones_a_snapshot_warmed_with_a_nic(world, tmp_path, monkeypatch):
    """`kiln warm --net` warms with a NIC (in a namespace that lets nothing out); `kiln up`
    with a network then clones it into its own namespace, with its own policy and limit."""
    monkeypatch.setenv("KILN_CACHE", str(tmp_path / "cache"))   # not the machine's snapshots
    kiln("warm", "--rootfs", world["image"], "--net")
    vm = tmp_path / "vm"
    r = kiln("up", "-v", "--rootfs", world["image"], "--dir", vm, "--net-allow", "10.99.0.0/24",
             "--net-rate", RATE_KIB)
    try:
        assert "cloned warm snapshot" in r.stderr, r.stderr
        assert fetch(vm, "http://10.99.0.2/hello.txt") == (0, "hello from upstream\n")
        assert fetch(vm, "http://10.98.0.2/hello.txt", timeout=10)[0] != 0
        assert f"rx_bps={RATE_KIB * 1024}," in (vm / "vmm.net").read_text()   # its own limit
    finally:
        kiln("down", "--dir", vm, check=False)
    # Without a network, the NIC-warmed snapshot is not the one: it boots.
    r = kiln("run", "-v", "--rootfs", world["image"], "--", "true")
    assert "booted" in r.stderr, r.stderr


def test_rate_limit_caps_throughput(world):
    script = ("a=$(cut -d' ' -f1 /proc/uptime); wget -O /tmp/big http://10.99.0.2/big.bin 2>/dev/null"
              " && b=$(cut -d' ' -f1 /proc/uptime) && echo $a $b $(wc -c < /tmp/big); rm -f /tmp/big")
    rates = {}
    for name in ("a", "b"):
        status, out = gexec(world[name], script)
        assert status == 0, out
        t0, t1, size = out.split()
        assert int(size) == BIG_MIB << 20
        rates[name] = int(size) / (float(t1) - float(t0)) / 1024
    print(f"\nthroughput KiB/s: unlimited {rates['a']:.0f}, limited to {RATE_KIB}: "
          f"{rates['b']:.0f}")
    # The first 1/10 s of budget comes at once; the rest at the rate.
    assert rates["b"] <= RATE_KIB * 1.25
    assert rates["b"] >= RATE_KIB * 0.5


def test_policy_replacement_cuts_open_connections(world):
    """`kiln net-policy` replaces B's policy live: a download in flight (B is rate-limited, so it
    takes seconds) is cut, new connections are refused, and the old policy restores access."""
    b = world["b"]
    # At B's rate this lasts minutes (big.bin would take 8 s): it must still be in flight when
    # the policy changes, however slow the test host is to get there.
    (world["tmp"] / "www" / "long.bin").write_bytes(os.urandom(LONG_MIB << 20))
    progress = ("cat /tmp/rc 2>/dev/null || echo running;"
                " [ -f /tmp/dl ] && wc -c < /tmp/dl || echo 0")
    r = kiln("exec", "--dir", b, "--background", "--", "sh", "-c",
             "wget -O /tmp/dl http://10.99.0.2/long.bin 2>/dev/null; echo $? > /tmp/rc")
    try:
        deadline = time.monotonic() + 120
        while True:                             # until the first bytes are in
            status, out = gexec(b, progress)
            rc, size = out.split()[:2]
            if rc != "running" or int(size) > 0:
                break
            assert time.monotonic() < deadline, out
            time.sleep(0.5)
        assert rc == "running", out             # still downloading
        kiln("net-policy", "--dir", b)          # nothing allowed any more
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, out = gexec(b, progress)
            if not out.startswith("running"):
                break
            time.sleep(2)
        rc, size = out.split()[:2]
        assert rc != "0" and int(size) < LONG_MIB << 20, out
        status, out = fetch(b, "http://10.99.0.2/hello.txt", timeout=5)
        assert status != 0 and "hello" not in out
    finally:
        kiln("net-policy", "--dir", b, "--net-allow", "10.99.0.0/24")
    status, out = fetch(b, "http://10.99.0.2/hello.txt")
    assert (status, out) == (0, "hello from upstream\n")
    # A sandbox without a network has no policy to replace.
    r = kiln("net-policy", "--dir", world["tmp"] / "no-such-vm", check=False)
    assert r.returncode != 0 and "no network" in r.stderr


def test_pcap_records_the_frames(world):
    """B captures every frame: the upstream's answer is in the file, whole, after a header."""
    status, out = fetch(world["b"], "http://10.99.0.2/hello.txt")
    assert status == 0, out
    data = (world["tmp"] / "b.pcap").read_bytes()
    assert data[:4] == bytes.fromhex("d4c3b2a1")          # libpcap, microseconds, LE
    assert int.from_bytes(data[20:24], "little") == 1     # Ethernet
    assert b"hello from upstream" in data
    assert b"GET /hello.txt" in data
    # Records chain exactly to the end of the file.
    off, frames = 24, 0
    while off < len(data):
        incl = int.from_bytes(data[off + 8:off + 12], "little")
        assert 14 <= incl <= 1518
        off += 16 + incl
        frames += 1
    assert off == len(data) and frames > 4


def test_pause_and_resume_keep_the_network(world):
    b = world["b"]
    kiln("pause", "--dir", b)
    kiln("resume", "--dir", b)
    status, out = fetch(b, "http://10.99.0.2/hello.txt")
    assert (status, out) == (0, "hello from upstream\n")


def test_a_sandbox_in_a_namespace_from_the_pool(world):
    """The namespace pool (src/host/netns_pool.c) as kilnd will use it: a namespace made ahead
    of time is taken with the sandbox's policy, handed to vm_up (vm_spec.net_ns), enforces that
    policy for a real guest, and goes when the sandbox does; the pool leaves nothing behind."""
    tool = ROOT / "build" / "tests" / "netns-pool"
    before = kiln_links()
    pool_dir, vm = world["tmp"] / "pool", world["tmp"] / "vm-pooled"
    pool_dir.mkdir()
    env = dict(os.environ, KILN_VMM=str(ROOT / "build" / "kiln-vmm"),
               KILN_KERNEL=str(ROOT / "build" / "vmlinux"),
               KILN_INITRD=str(ROOT / "build" / "kiln-initrd.cpio"))
    p = subprocess.Popen([str(tool), str(pool_dir), "1"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env)

    def cmd(line):
        p.stdin.write(line + "\n")
        p.stdin.flush()
        return p.stdout.readline().split()

    try:
        assert cmd("wait 1 120000") == ["ok"]
        r = cmd("take 10.99.0.0/24")
        assert r[0] == "ok" and r[3] == "hit", r
        ns = r[1]
        assert cmd(f"up {vm} {world['image']} {ns}") == ["ok"]
        assert netns_of(vm) == ns
        assert fetch(vm, "http://10.99.0.2/hello.txt") == (0, "hello from upstream\n")
        status, _ = fetch(vm, "http://10.98.0.2/hello.txt", timeout=5)
        assert status != 0                                  # not in this policy
        kiln("down", "--dir", vm)
        assert ns not in kiln_links()[0]
        assert cmd("stop drain") == ["ok"]
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        kiln("down", "--dir", vm, check=False)
    assert kiln_links() == before


@pytest.mark.parametrize("arg, why", [
    ("mac=02:00:00:00:00:01", "exactly one of tap=NAME and fd=N"),
    ("tap=a,fd=3", "exactly one of tap=NAME and fd=N"),
    ("tap=this-name-is-too-long", "unknown option"),
    ("tap=t0,mac=01:00:00:00:00:01", "multicast"),
    ("tap=t0,mac=02:00:00:00:00", "not a MAC address"),
    ("tap=t0,rx_bps=-1", "not a number"),
    ("tap=t0,pcap_max=10", "out of range"),
    ("tap=t0,bogus=1", "unknown option"),
])
def test_vmm_refuses_bad_net_options(arg, why):
    """Bad --net arguments end kiln-vmm with status 2 and a reason, before any guest runs."""
    r = subprocess.run([str(ROOT / "build" / "kiln-vmm"), "--kernel", str(ROOT / "build" /
                        "vmlinux"), "--net", arg], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert why in r.stderr
