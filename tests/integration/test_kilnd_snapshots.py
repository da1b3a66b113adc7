"""Snapshots of sandboxes through kilnd's API: a running sandbox is snapshotted and keeps
running; a new sandbox created from the snapshot has the files and the running process the
original had at that moment, its own identity, and writes of its own; another agent cannot
see, use or delete the snapshot; a deleted snapshot creates nothing; bad requests name the
field.  Reuses test_kilnd's Kilnd harness; three small VMs in all."""
import time

import pytest

from conftest import busybox_image
from kilnd_helpers import Kilnd, error_of, exec_, stop_kilnd


@pytest.fixture(scope="module")
def kilnd(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kilnds")
    k = Kilnd(tmp, busybox_image(tmp_path_factory.mktemp("kilndsimg")))
    k.start()
    yield k
    stop_kilnd(k)


@pytest.fixture(scope="module")
def erin(kilnd):
    return kilnd.agent(name="erin", max_sandboxes=4)


@pytest.fixture(scope="module")
def frank(kilnd):
    return kilnd.agent(name="frank")


def sh(kilnd, key, sb, script):
    r = exec_(kilnd, key, sb, cmd=["sh", "-c", script], timeout_s=120)
    assert r["exit_code"] == 0, r
    return r["stdout"]


def count(kilnd, key, sb):
    """The counter's value in sb, 0 before its first write."""
    return int(sh(kilnd, key, sb, "cat /tmp/count 2>/dev/null || echo 0"))


def wait_until(what, seconds=120):
    """Poll what() to a deadline (the test host's speed varies too much for a fixed sleep)."""
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, f"not so after {seconds} s"
        time.sleep(0.5)


def test_snapshot_and_create_from_it(kilnd, erin, frank):
    key = erin["api_key"]
    status, sb = kilnd.request("POST", "/v1/sandboxes", {"cpus": 1, "memory_mib": 128,
                                                         "timeout_s": 3600}, key=key)
    assert status == 201, sb
    # A file on disk, and a process that counts in memory.
    sh(kilnd, key, sb, "echo before > /root/marker; "
                       "(i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; "
                       "mv /tmp/count.new /tmp/count; sleep 0.2; done) "
                       ">/dev/null 2>&1 &")
    wait_until(lambda: count(kilnd, key, sb) > 0)      # it counts before the snapshot
    status, snap = kilnd.request("POST", f"/v1/sandboxes/{sb['id']}/snapshots", key=key)
    assert status == 201, snap
    assert snap["id"].startswith("snap-") and snap["sandbox_id"] == sb["id"]
    assert (snap["cpus"], snap["memory_mib"], snap["template"]) == (1, 128, "base")
    assert snap["network"] is False
    # The original keeps running, and goes on changing.
    sh(kilnd, key, sb, "echo after > /root/marker")
    assert sh(kilnd, key, sb, "cat /root/marker") == "after\n"

    status, listed = kilnd.request("GET", "/v1/snapshots", key=key)
    assert status == 200 and [s["id"] for s in listed["snapshots"]] == [snap["id"]]
    assert kilnd.request("GET", f"/v1/snapshots/{snap['id']}", key=key) == (200, snap)

    status, clone = kilnd.request("POST", "/v1/sandboxes", {"snapshot": snap["id"],
                                                            "timeout_s": 3600}, key=key)
    assert status == 201, clone
    assert clone["id"] != sb["id"] and (clone["cpus"], clone["memory_mib"]) == (1, 128)
    # The clone has the disk as it was at the snapshot, and the counting process runs on.
    assert sh(kilnd, key, clone, "cat /root/marker") == "before\n"
    first = int(sh(kilnd, key, clone, "cat /tmp/count"))
    assert first > 0
    wait_until(lambda: count(kilnd, key, clone) > first)
    assert sh(kilnd, key, clone, "hostname").strip() == clone["id"]
    sh(kilnd, key, clone, "echo clone > /root/marker")
    assert sh(kilnd, key, sb, "cat /root/marker") == "after\n"

    # Another agent sees nothing of it.
    fk = frank["api_key"]
    assert kilnd.request("GET", "/v1/snapshots", key=fk) == (200, {"snapshots": []})
    error_of(kilnd.request("GET", f"/v1/snapshots/{snap['id']}", key=fk), 404, "not_found")
    error_of(kilnd.request("DELETE", f"/v1/snapshots/{snap['id']}", key=fk), 404, "not_found")
    error_of(kilnd.request("POST", "/v1/sandboxes", {"snapshot": snap["id"]}, key=fk), 404,
             "not_found", "snapshot")
    error_of(kilnd.request("POST", f"/v1/sandboxes/{sb['id']}/snapshots", key=fk), 404,
             "not_found")

    # Bad requests name the field.
    error_of(kilnd.request("POST", "/v1/sandboxes", {"snapshot": snap["id"], "cpus": 2},
                           key=key), 400, "invalid_argument", "snapshot")
    error_of(kilnd.request("POST", "/v1/sandboxes", {"snapshot": 5}, key=key), 400,
             "invalid_argument", "snapshot")
    # Its guest has no NIC, and cannot gain one.
    error_of(kilnd.request("POST", "/v1/sandboxes", {"snapshot": snap["id"], "network": {
        "allow_domains": ["example.com"]}}, key=key), 400, "invalid_argument", "network")
    error_of(kilnd.request("POST", f"/v1/sandboxes/{sb['id']}/snapshots", {"x": 1}, key=key),
             400, "invalid_argument", "x")

    # A paused sandbox cannot be snapshotted (its VM is on disk already).
    assert kilnd.request("POST", f"/v1/sandboxes/{clone['id']}/pause", key=key)[0] == 200
    error_of(kilnd.request("POST", f"/v1/sandboxes/{clone['id']}/snapshots", key=key), 409,
             "invalid_state")

    # Deleted: gone from the list and creates nothing; its record stays in the database.
    status, gone = kilnd.request("DELETE", f"/v1/snapshots/{snap['id']}", key=key)
    assert status == 200 and gone["id"] == snap["id"]
    assert kilnd.request("GET", "/v1/snapshots", key=key) == (200, {"snapshots": []})
    error_of(kilnd.request("POST", "/v1/sandboxes", {"snapshot": snap["id"]}, key=key), 404,
             "not_found", "snapshot")
    assert not (kilnd.data / "snapshots" / snap["id"]).exists()
    with kilnd.db() as db:
        assert db.execute("SELECT state FROM snapshots WHERE id = ?",
                          (snap["id"],)).fetchone() == ("deleted",)
    for s in (sb, clone):
        assert kilnd.request("DELETE", f"/v1/sandboxes/{s['id']}", key=key)[0] == 200
