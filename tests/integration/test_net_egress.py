"""A networked sandbox's egress through kiln-dns and kiln-proxy (docs/egress.md), end to end:
a real guest whose only resolver is the policy resolver and whose web traffic the namespace's
nftables hand to the proxy.  The upstream is test_net's (an HTTP server in its own namespace
at 10.99.0.2), named upstream.test by a policy rewrite; the sandbox has no direct CIDRs at
all.  The guest reaches the allowed name; a denied name does not resolve, whichever resolver
it asks; lying in Host or in /etc/hosts gets it nowhere else; replacing the policy live takes
the name away; both services log what they saw.  One VM."""
import os
import tempfile
import time
from pathlib import Path

import pytest

from conftest import busybox_image
from test_net import MODULES, gexec, kiln, setup_upstream, sh, teardown_upstream, wait_http

POLICY = "rewrite upstream.test 10.99.0.2\nallow-cidr 10.99.0.0/24\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
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
    vm = tmp / "vm"
    policy = tmp / "policy"
    policy.write_text(POLICY)
    try:
        wait_http("http://10.99.0.2/hello.txt")
        image = busybox_image(tmp_path_factory.mktemp("egressimg"))
        kiln("up", "--rootfs", image, "--dir", vm, "--net-policy", policy)
        yield {"vm": vm, "tmp": tmp}
    finally:
        kiln("down", "--dir", vm, check=False)
        teardown_upstream(procs)


def get(vm, url, *wget_args, timeout=10):
    return gexec(vm, f"timeout {timeout} wget -O - {' '.join(wget_args)} {url}")


def log_of(vm, name, want=None):
    """The service's log, once it holds want (a connection is logged when it ends)."""
    path = Path(vm) / f"{name}.log"
    for _ in range(100):
        text = path.read_text() if path.exists() else ""
        if want is None or want in text:
            break
        time.sleep(0.1)
    return text


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
    status, out = gexec(vm, "timeout 10 nslookup upstream.test 8.8.8.8")
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
    time.sleep(1)
    status, out = get(vm, "http://upstream.test/hello.txt")
    assert status != 0 and "hello" not in out, out
    status, out = get(vm, "http://10.99.0.2/hello.txt")      # by address, which it lists
    assert status == 0 and "hello from upstream" in out, out
