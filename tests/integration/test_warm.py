"""Warm snapshots, clones and pause to disk, through the kiln CLI on real guests.

`kiln warm` boots a busybox image whose /etc/kiln/warmup leaves a mark in guest memory and on
the scratch disk, and snapshots it; `kiln up` then clones it.  The snapshots go to a cache of
the module's own (KILN_CACHE), so nothing here touches the machine's warm snapshots.
"""
import os
import select
import shutil
import subprocess
import threading
import time

import pytest

from conftest import ROOT, busybox_image

KILN = ROOT / "build" / "kiln"
SHAPE = ["--cpus", "1", "--memory", "256"]
# The mark in memory is a process the warm-up leaves running; the one on disk, a file.
WARMUP = "echo warmed > /home/user/mark\nsetsid sleep 100000 </dev/null >/dev/null 2>&1 &\n"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warm")
    return {**os.environ, "KILN_CACHE": str(tmp / "cache")}


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return busybox_image(tmp_path_factory.mktemp("warmimg"), {"etc/kiln/warmup": WARMUP})


@pytest.fixture(scope="module")
def snapshot(image, env):
    r = subprocess.run([str(KILN), "warm", "--rootfs", str(image)] + SHAPE, env=env,
                       capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().strip()


def kiln(env, *args, timeout=300):
    return subprocess.run([str(KILN)] + [str(a) for a in args], env=env, capture_output=True,
                          timeout=timeout)


def sh(env, vm, script):
    r = kiln(env, "exec", "--dir", vm, "--", "sh", "-c", script)
    assert r.returncode == 0, r
    return r.stdout.decode().strip()


def wait_until(what, seconds=120, every=0.5):
    """Poll what() until it returns something true, and return that; fail after seconds.  The
    test host's speed varies too much for a fixed sleep to be enough."""
    deadline = time.monotonic() + seconds
    while True:
        got = what()
        if got:
            return got
        assert time.monotonic() < deadline, f"still {got!r} after {seconds} s"
        time.sleep(every)


def count(env, vm):
    """The guest counter's value, 0 before its first write."""
    return int(sh(env, vm, "cat /tmp/count 2>/dev/null || echo 0"))


@pytest.fixture
def vms(tmp_path, env):
    """Directories for VMs; whatever runs in them is stopped afterwards."""
    made = []

    def new(name):
        made.append(tmp_path / name)
        return made[-1]
    yield new
    for d in made:
        kiln(env, "down", "--dir", d, timeout=60)


def test_warm_snapshot_directory(snapshot):
    files = set(os.listdir(snapshot))
    assert {"state", "memory", "key", "disk1"} <= files
    st = os.stat(os.path.join(snapshot, "memory"))
    assert st.st_size == 256 << 20
    assert st.st_blocks * 512 < st.st_size // 2     # untouched pages are holes


def test_ten_clones_are_distinct_machines(snapshot, image, env, vms):
    names = [f"clone-{i}" for i in range(10)]
    dirs = [vms(n) for n in names]
    procs = [subprocess.Popen([str(KILN), "up", "-v", "--rootfs", str(image), "--dir", str(d),
                               "--hostname", n] + SHAPE, env=env, stderr=subprocess.PIPE)
             for d, n in zip(dirs, names)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert b"cloned warm snapshot" in err, err

    seen = []
    for d, name in zip(dirs, names):
        before = time.time()
        out = sh(env, d, "cat /home/user/mark; hostname;"
                 " cat /proc/[0-9]*/comm | grep -qx sleep && echo up;"
                 " head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo;"
                 " . /run/kiln/env; echo $KILN_SANDBOX_ID; date +%s").split()
        # The template's memory (its process) and disk (the mark) are in every clone.
        assert out[:3] == ["warmed", name, "up"], out
        # A clock within a second or so of the host's (the exec itself takes time here).
        assert before - 1.5 <= float(out[5]) <= time.time() + 1.5, out
        seen.append(out[3:5])
    assert len({r for r, _ in seen}) == 10, "clones share RNG output"
    assert len({i for _, i in seen}) == 10 and all(i.startswith("sbx-") for _, i in seen)
    sh(env, dirs[0], "echo only-0 > /home/user/own")
    for d in dirs[1:]:
        assert sh(env, d, "cat /home/user/own 2>/dev/null || echo absent") == "absent"


def test_cold_flag_boots(snapshot, image, env, vms):
    vm = vms("cold")
    r = kiln(env, "up", "-v", "--cold", "--rootfs", image, "--dir", vm, *SHAPE)
    assert r.returncode == 0 and b"booted" in r.stderr, r
    # A booted VM never ran the warm-up.
    assert sh(env, vm, "cat /home/user/mark 2>/dev/null || echo none") == "none"


def test_other_shapes_boot(snapshot, image, env, vms):
    r = kiln(env, "up", "-v", "--rootfs", image, "--dir", vms("big"), "--cpus", "1",
             "--memory", "320")
    assert r.returncode == 0 and b"booted" in r.stderr, r


def test_stale_and_broken_snapshots_are_not_used(snapshot, image, env, vms, tmp_path):
    # A rebuilt image (here: a new modification time) makes the snapshot stale.
    other = tmp_path / "img" / "busybox.ext4"
    other.parent.mkdir()
    shutil.copy(image, other)
    envb = {**env, "KILN_CACHE": str(tmp_path / "cache")}
    assert kiln(envb, "warm", "--rootfs", other, *SHAPE).returncode == 0
    later = time.time() + 10
    os.utime(other, (later, later))
    r = kiln(envb, "up", "-v", "--rootfs", other, "--dir", vms("stale"), *SHAPE)
    assert r.returncode == 0 and b"booted" in r.stderr, r
    # A damaged state file: the clone fails with kiln-vmm's reason and kiln boots instead.
    snap = kiln(envb, "warm", "--rootfs", other, *SHAPE).stdout.decode().strip()
    state = bytearray(open(os.path.join(snap, "state"), "rb").read())
    state[100] ^= 0xFF
    open(os.path.join(snap, "state"), "wb").write(state)
    vm = vms("broken")
    r = kiln(envb, "up", "-v", "--rootfs", other, "--dir", vm, *SHAPE)
    assert r.returncode == 0, r
    assert b"booting instead" in r.stderr and b"checksum" in r.stderr, r.stderr
    assert b"booted" in r.stderr
    assert sh(env, vm, "echo ok") == "ok"


def test_pause_to_disk_and_resume(snapshot, image, env, vms):
    vm = vms("paused")
    assert kiln(env, "up", "--rootfs", image, "--dir", vm, *SHAPE).returncode == 0
    # A counter in a shell's memory, published to a file every 0.1 s (renamed into place, so
    # a reader never sees it half written).
    r = kiln(env, "exec", "--dir", vm, "--background", "--", "sh", "-c",
             "i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; "
             "mv /tmp/count.new /tmp/count; sleep 0.1; done")
    assert r.returncode == 0, r
    sh(env, vm, "echo kept > /home/user/file")
    before = wait_until(lambda: count(env, vm))

    r = kiln(env, "pause", "--dir", vm)
    assert r.returncode == 0, r
    assert (vm / "paused" / "state").exists() and not (vm / "vmm.pid").exists()
    r = kiln(env, "exec", "--dir", vm, "--", "true")
    assert r.returncode == 125
    assert kiln(env, "pause", "--dir", vm).returncode == 125       # nothing runs
    time.sleep(3)

    r = kiln(env, "resume", "--dir", vm)
    assert r.returncode == 0, r
    assert not (vm / "paused").exists()
    after = count(env, vm)
    assert after >= before            # the same shell, its memory intact: no restart from 1
    wait_until(lambda: count(env, vm) > after)      # and it runs on
    assert sh(env, vm, "cat /home/user/file") == "kept"
    # The 3 s away are not missing: within 2 s of the host's clock, taken before and after
    # the exec so that however long the exec takes here does not count.
    start = time.time()
    clock = int(sh(env, vm, "date +%s"))
    assert start - 2 <= clock <= time.time() + 2, (start, clock)
    r = kiln(env, "resume", "--dir", vm)
    assert r.returncode == 125 and b"running" in r.stderr


def test_pause_while_a_command_streams(snapshot, image, env, vms):
    vm = vms("streaming")
    assert kiln(env, "up", "--rootfs", image, "--dir", vm, *SHAPE).returncode == 0
    stream = subprocess.Popen([str(KILN), "exec", "--dir", str(vm), "--", "sh", "-c",
                               "while true; do echo line; done"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Pause only once the command streams (its first line is here), however slow the start;
    # then keep its output drained so the client is never stuck writing to us.
    ready, _, _ = select.select([stream.stdout], [], [], 300)
    if not ready:
        stream.kill()
    first = stream.stdout.readline() if ready else b""
    assert first == b"line\n", stream.stderr.read()
    drain = threading.Thread(target=lambda: stream.stdout.read(), daemon=True)
    drain.start()
    assert stream.poll() is None
    assert kiln(env, "pause", "--dir", vm).returncode == 0
    # The stream's connection went with the VMM: its client says so instead of hanging.
    stream.wait(timeout=60)
    drain.join(60)
    err = stream.stderr.read()
    assert stream.returncode == 125 and b"lost" in err, err
    assert kiln(env, "resume", "--dir", vm).returncode == 0
    assert sh(env, vm, "echo alive") == "alive"
