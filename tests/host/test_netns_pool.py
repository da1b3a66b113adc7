"""The network namespace pool (src/host/netns_pool.c) on this host, for real: namespaces made
ahead of time with the deny-everything policy, taken with the caller's policy loaded (read back
with `nft list ruleset` inside), never handed out twice (also to two processes sharing the
pool), refilled, destroyed when given back, and what a killed process left behind cleaned up or
adopted by the next one.  Every test checks that no namespace and no slot file is left over.
Root only (build/tests/netns-pool, driven over its stdin)."""
import fcntl
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "build" / "tests" / "netns-pool"
SLOTS = Path("/run/kiln/net")


def namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def slot_files():
    return {p.name for p in SLOTS.iterdir()} if SLOTS.is_dir() else set()


def ruleset(ns):
    return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"],
                          capture_output=True, text=True, check=True).stdout


def set_elements(rules, name):
    """The elements of nft set `name`, '' when it has none."""
    m = re.search(r"set %s \{(.*?)\n\t\}" % name, rules, re.S)
    assert m, (name, rules)
    e = re.search(r"elements = \{(.*?)\}", m.group(1), re.S)
    return " ".join(e.group(1).split()) if e else ""


class Pool:
    def __init__(self, d, size):
        self.dir = d
        # A session of its own, so kill() can take the ip and nft it runs down with it.
        self.p = subprocess.Popen([str(TOOL), str(d), str(size)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, start_new_session=True)

    def kill(self):
        """SIGKILL, as a crash under a service manager: the process and what it started (an
        `ip netns add` left running could create its namespace after the next pool's sweep)."""
        os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait()

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def wait(self, n, ms=60000):
        assert self.cmd(f"wait {n} {ms}") == "ok"

    def take(self, allow="-", services=False):
        r = self.cmd(f"take {allow}{' services' if services else ''}").split()
        assert r[0] == "ok", r
        return r[1], r[3]

    def stats(self):
        f = self.cmd("stats").split(maxsplit=7)
        assert f[0] == "ok", f
        return dict(zip(("size", "ready", "hits", "misses", "built", "failed"),
                        map(int, f[1:7])))

    def stop(self, drain=True):
        assert self.cmd("stop drain" if drain else "stop") == "ok"
        assert self.p.wait(timeout=60) == 0

    def entries(self):
        return sorted(os.listdir(self.dir))


@pytest.fixture
def clean(tmp_path):
    """The pool directory; the host's namespaces and slot files must be as they were after."""
    if os.geteuid() != 0 or subprocess.run(["ip", "netns", "add", "kiln-pool-probe"],
                                           capture_output=True).returncode:
        pytest.skip("cannot create network namespaces here")
    subprocess.run(["ip", "netns", "del", "kiln-pool-probe"], check=True)
    before_ns, before_slots = namespaces(), slot_files()
    d = tmp_path / "pool"
    d.mkdir()
    yield d
    assert namespaces() == before_ns, "namespaces leaked"
    assert slot_files() == before_slots, "slot files leaked"


def test_take_loads_the_policy_and_the_pool_refills(clean):
    pool = Pool(clean, 2)
    pool.wait(2)
    ready = pool.entries()
    assert len(ready) == 2 and all(e.isdigit() for e in ready)
    # A ready member has the deny-everything policy: nothing allowed, no redirects.
    idle = ruleset(f"kiln-{ready[0]}")
    assert set_elements(idle, "allow") == "" and set_elements(idle, "allow_private") == ""
    assert "redirect" not in idle and "policy drop" in idle

    a, how_a = pool.take("10.99.0.0/24,8.8.8.0/24", services=True)
    b, how_b = pool.take("-")
    assert (how_a, how_b) == ("hit", "hit")
    assert a != b and {a, b} == {f"kiln-{e}" for e in ready}
    ra, rb = ruleset(a), ruleset(b)
    assert set_elements(ra, "allow_private") == "10.99.0.0/24"
    assert set_elements(ra, "allow") == "8.8.8.0/24"
    assert "tcp dport 443 redirect to :8443" in ra
    assert set_elements(rb, "allow") == "" and "redirect" not in rb
    # Taken members are no longer in the pool; it makes new ones in their place.
    pool.wait(2)
    assert not {e for e in pool.entries()} & {a[5:], b[5:]}
    s = pool.stats()
    assert s["built"] == 4 and s["hits"] == 2 and s["ready"] == 2

    # Given back: destroyed, not reused.
    assert pool.cmd(f"put {a}") == "ok"
    assert a not in namespaces()
    c, _ = pool.take("-")
    assert c != a
    pool.cmd(f"put {b}")
    pool.cmd(f"put {c}")
    pool.stop()
    assert pool.entries() == []


def test_a_bad_policy_takes_nothing(clean):
    pool = Pool(clean, 1)
    pool.wait(1)
    ready = pool.entries()
    assert pool.cmd("take 10.0.0.0/8,1.2.3.4/32};flush_ruleset").startswith("err ")
    assert pool.entries() == ready
    pool.stop()


def test_two_processes_sharing_a_pool_never_get_the_same_namespace(clean):
    one = Pool(clean, 4)
    one.wait(4)
    two = Pool(clean, 1)            # adopts the same directory's members
    # Six takes at once, three from each process, before reading any answer.
    for p in (one, two) * 3:
        p.p.stdin.write("take -\n")
    for p in (one, two):
        p.p.stdin.flush()
    names = []
    for p in (one, two) * 3:
        r = p.p.stdout.readline().split()
        assert r[0] == "ok", r
        names.append(r[1])
    assert len(set(names)) == 6, names
    for n in names:
        assert n in namespaces()
        one.cmd(f"put {n}")
    two.stop(drain=False)
    one.stop()


def test_leftovers_of_a_killed_process_are_cleaned_up_or_adopted(clean):
    others = namespaces()
    pool = Pool(clean, 3)
    # Kill it in the middle of a build: a namespace half made, its lock file left behind.
    deadline = time.monotonic() + 60
    while not any(e.endswith(".building") for e in pool.entries()):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    pool.kill()
    left = pool.entries()
    building = [e for e in left if e.endswith(".building")]
    assert len(building) == 1

    # A live builder's lock is respected, a dead one's (unlocked) file is not.
    live = clean / ".tmp-live"
    held = open(live, "w")
    fcntl.flock(held, fcntl.LOCK_EX)
    (clean / ".tmp-dead").touch()
    # A ready entry whose namespace went away (deleted by hand): its slot is freed.
    (SLOTS / "16383").touch()
    (clean / "16383").touch()

    again = Pool(clean, 1)
    again.wait(1)
    e = again.entries()
    # The half-made namespace is gone (its slot may hold a fresh member by now): every
    # namespace not there before is a ready member of the pool.
    assert building[0] not in e
    assert namespaces() - others == {f"kiln-{x}" for x in e if x.isdigit()}
    assert ".tmp-dead" not in e and ".tmp-live" in e
    assert "16383" not in e and "16383" not in slot_files()
    # Ready members of the dead run are adopted, not rebuilt.
    adopted = [x for x in left if x.isdigit()]
    assert set(adopted) <= set(e)
    assert again.stats()["built"] == max(0, 1 - len(adopted))
    held.close()
    live.unlink()
    again.stop()
    assert again.entries() == []
