"""kilnd's process and file routes, list filters, on-timeout pause and memory quota.

Reuses test_kilnd's Kilnd harness: one kilnd for the module and two VMs in all, one long-lived
sandbox for processes and files and one short-lived sandbox that pauses when its timeout runs
out.  Everything goes through the HTTP API, the way an agent platform would use it.
"""
import calendar
import json
import os
import subprocess
import time

import pytest

from conftest import ROOT, busybox_image
from kilnd_helpers import Kilnd, UnixHTTPConnection, error_of, exec_, stop_kilnd

STREAM_TIMEOUT = 300
RESUMED_TIMEOUT = 120      # s: the timeout a resumed sandbox gets, long enough to change it
DISK_PRICE = 1000000        # micro-USDC per GiB-second of scratch disk: big enough to see


@pytest.fixture(scope="module")
def kilnd(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kilndp")
    k = Kilnd(tmp, busybox_image(tmp_path_factory.mktemp("kilndpimg")))
    # Only the disk is priced, so a sandbox's cost is its disk GiB-seconds times the price.
    k.prices.write_text(f"vcpu_second = 0\ngib_second = 0\ndisk_gib_second = {DISK_PRICE}\n")
    k.start()
    yield k
    stop_kilnd(k)


@pytest.fixture(scope="module")
def carol(kilnd):
    return kilnd.agent(name="carol", max_sandboxes=4, max_total_memory_mib=512)


@pytest.fixture(scope="module")
def dave(kilnd):
    return kilnd.agent(name="dave")


@pytest.fixture(scope="module")
def box(kilnd, carol):
    status, sb = kilnd.request("POST", "/v1/sandboxes",
                               {"cpus": 1, "memory_mib": 256, "timeout_s": 3600,
                                "metadata": {"team": "red", "run": "1"}},
                               key=carol["api_key"])
    assert status == 201, sb
    return sb


def ndjson(kilnd, method, path, key, body=None):
    """Open a streamed request; yield (arrival time, event) as each line arrives."""
    c = UnixHTTPConnection(kilnd.sock, timeout=STREAM_TIMEOUT)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Authorization": "Bearer " + key})
    r = c.getresponse()
    assert r.status == 200, r.read()
    assert r.getheader("Content-Type") == "application/x-ndjson"
    try:
        while True:
            line = r.readline()
            if not line:
                return
            yield time.monotonic(), json.loads(line)
    finally:
        c.close()


def start(kilnd, key, sb, **body):
    status, r = kilnd.request("POST", f"/v1/sandboxes/{sb['id']}/processes", body, key=key)
    assert status in (200, 201), r
    return r


def output_of(events):
    out = "".join(e["data"] for _, e in events if e["type"] == "stdout")
    return out, events[-1][1]


# -- processes ------------------------------------------------------------------------------

def test_streamed_output_arrives_as_it_happens(kilnd, carol, box):
    events = list(ndjson(kilnd, "POST", f"/v1/sandboxes/{box['id']}/processes",
                         carol["api_key"],
                         {"shell": "for i in 1 2 3; do echo $i; sleep 1; done; echo e >&2",
                          "stream": True}))
    assert events[0][1]["type"] == "start" and events[0][1]["pid"] > 1
    out, last = output_of(events)
    assert out == "1\n2\n3\n"
    assert last == {"type": "exit", "exit_code": 0, "signal": None, "signal_name": None,
                    "timed_out": False}
    assert any(e["type"] == "stderr" and e["data"] == "e\n" for _, e in events)
    first = next(t for t, e in events if e["type"] == "stdout")
    # "1" left the guest two sleeps before the exit: it must not have waited for it.
    assert last_time(events) - first >= 1.5, events
    print(f"\nstream: first stdout {first - events[0][0]:.3f} s after start, "
          f"exit {last_time(events) - first:.3f} s after it")


def last_time(events):
    return events[-1][0]


def test_foreground_result_and_stdin(kilnd, carol, box):
    key = carol["api_key"]
    r = start(kilnd, key, box, cmd=["cat"], stdin="through cat\n")
    assert r["exit_code"] == 0 and r["stdout"] == "through cat\n" and r["pid"] > 1
    r = start(kilnd, key, box, shell="exit 7")
    assert r["exit_code"] == 7 and r["stdout"] == ""
    times = []
    for _ in range(10):
        t = time.monotonic()
        assert start(kilnd, key, box, cmd=["true"])["exit_code"] == 0
        times.append(time.monotonic() - t)
    print(f"\nPOST /processes of `true`, median of 10: {sorted(times)[5] * 1000:.1f} ms")


def test_background_reattach_gets_all_output(kilnd, carol, box):
    key, sid = carol["api_key"], box["id"]
    # It runs until the test lets it go (a fixed 'sleep 3' could be over before the listing
    # below, on a slow host).
    r = start(kilnd, key, box, shell="echo early; while [ ! -e /tmp/reattach-go ]; do sleep 0.1;"
                                     " done; echo late; exit 4", background=True)
    pid = r["pid"]
    assert r["background"] is True
    status, ps = kilnd.request("GET", f"/v1/sandboxes/{sid}/processes", key=key)
    assert status == 200
    assert any(p["pid"] == pid and p["running"] for p in ps["processes"]), ps
    exec_(kilnd, key, box, shell="touch /tmp/reattach-go")
    events = list(ndjson(kilnd, "GET", f"/v1/sandboxes/{sid}/processes/{pid}/output", key))
    out, last = output_of(events)
    assert out == "early\nlate\n" and last["exit_code"] == 4
    # A second reader still sees everything (kilnd keeps the log, not just the guest's ring).
    out2, last2 = output_of(list(ndjson(
        kilnd, "GET", f"/v1/sandboxes/{sid}/processes/{pid}/output", key)))
    assert (out2, last2["exit_code"]) == (out, 4)
    status, ps = kilnd.request("GET", f"/v1/sandboxes/{sid}/processes", key=key)
    mine = next(p for p in ps["processes"] if p["pid"] == pid)
    assert mine["running"] is False and mine["exit_code"] == 4


def test_signal_kills_with_that_signal(kilnd, carol, box):
    key, sid = carol["api_key"], box["id"]
    pid = start(kilnd, key, box, cmd=["sleep", "600"], background=True)["pid"]
    status, r = kilnd.request("POST", f"/v1/sandboxes/{sid}/processes/{pid}/signal",
                              {"signal": "USR1"}, key=key)
    assert status == 200 and r["signal"] == 10, r
    _, last = output_of(list(ndjson(
        kilnd, "GET", f"/v1/sandboxes/{sid}/processes/{pid}/output", key)))
    assert last["signal"] == 10 and last["signal_name"] == "USR1" and last["exit_code"] is None
    error_of(kilnd.request("POST", f"/v1/sandboxes/{sid}/processes/{pid}/signal",
                           {"signal": "TERM"}, key=key), 404, "process_not_found")
    error_of(kilnd.request("POST", f"/v1/sandboxes/{sid}/processes/1/signal",
                           {"signal": 9}, key=key), 404, "process_not_found")


def test_stdin_round_trips_through_cat(kilnd, carol, box):
    key, sid = carol["api_key"], box["id"]
    pid = start(kilnd, key, box, cmd=["cat"], background=True, stdin=True)["pid"]
    base = f"/v1/sandboxes/{sid}/processes/{pid}"
    status, r = kilnd.request("POST", base + "/stdin", raw=b"one\n", key=key)
    assert status == 200 and r["bytes"] == 4, r
    status, r = kilnd.request("POST", base + "/stdin?close=1", raw=b"two\n", key=key)
    assert status == 200 and r["stdin_open"] is False, r
    out, last = output_of(list(ndjson(kilnd, "GET", base + "/output", key)))
    assert out == "one\ntwo\n" and last["exit_code"] == 0
    error_of(kilnd.request("POST", base + "/stdin", raw=b"x", key=key), 409, "process_exited")


def test_background_survives_a_kilnd_restart(kilnd, carol, box):
    key, sid = carol["api_key"], box["id"]
    pid = start(kilnd, key, box, shell="echo before; sleep 6; echo after; exit 3",
                background=True)["pid"]
    base = f"/v1/sandboxes/{sid}/processes/{pid}"
    for _, e in ndjson(kilnd, "GET", base + "/output", key):
        assert e == {"type": "stdout", "data": "before\n", "encoding": "utf-8"}, e
        break
    kilnd.kill()
    kilnd.start()
    # The new kilnd knows nothing of it: it attaches to the guest's process again, which kept
    # what came while no one was attached, and the exit.
    out, last = output_of(list(ndjson(kilnd, "GET", base + "/output", key)))
    assert out == "after\n" and last["exit_code"] == 3, (out, last)


def test_process_requests_are_checked(kilnd, carol, box):
    key, sid = carol["api_key"], box["id"]
    path = f"/v1/sandboxes/{sid}/processes"
    for body, field in (({"cmd": ["true"], "background": "yes"}, "background"),
                        ({"cmd": ["true"], "stream": 1}, "stream"),
                        ({"cmd": ["true"], "stdin": True}, "stdin"),
                        ({"cmd": ["true"], "stdin": 5}, "stdin"),
                        ({"cmd": ["true"], "background": True, "stream": True}, "stream"),
                        ({"cmd": "true"}, "cmd"),
                        ({"cmd": ["true"], "timeout_s": 0}, "timeout_s"),
                        ({"cmd": ["true"], "bogus": 1}, "bogus")):
        error_of(kilnd.request("POST", path, body, key=key), 400, "invalid_argument", field)
    error_of(kilnd.request("POST", path, raw=b'{"cmd": [', key=key), 400, "invalid_json",
             "body")
    error_of(kilnd.request("POST", path, {"cmd": ["/no/such"]}, key=key), 400, "exec_failed",
             "cmd")
    for sig in ("NOPE", 0, 65, "9x", True):
        error_of(kilnd.request("POST", path + "/5/signal", {"signal": sig}, key=key), 400,
                 "invalid_argument", "signal")
    error_of(kilnd.request("POST", path + "/5/stdin?close=maybe", raw=b"", key=key), 400,
             "invalid_argument", "close")
    error_of(kilnd.request("GET", path + "/999999/output", key=key), 404, "process_not_found")
    for bad in ("0", "01", "-1", "2147483648", "abc"):
        error_of(kilnd.request("GET", f"{path}/{bad}/output", key=key), 404, "not_found")


# -- files ----------------------------------------------------------------------------------

def test_stat_mkdir_rename_remove(kilnd, carol, box):
    key, sid = carol["api_key"], box["id"]
    f = f"/v1/sandboxes/{sid}/files"
    status, r = kilnd.request("POST", f + "/mkdir", {"path": "/tmp/a/b/c"}, key=key)
    assert status == 200, r
    exec_(kilnd, key, box, shell="echo data > /tmp/a/b/c/file")
    status, st = kilnd.request("GET", f + "/stat?path=/tmp/a/b/c/file", key=key)
    assert status == 200 and st["type"] == "file" and st["size"] == 5, st
    status, st = kilnd.request("GET", f + "/stat?path=/tmp/a/b", key=key)
    assert status == 200 and st["type"] == "directory", st
    status, r = kilnd.request("POST", f + "/rename",
                              {"from": "/tmp/a/b/c/file", "to": "/tmp/a/moved"}, key=key)
    assert status == 200, r
    r = exec_(kilnd, key, box, shell="cat /tmp/a/moved; ls /tmp/a/b/c | wc -l")
    assert r["stdout"] == "data\n0\n"
    error_of(kilnd.request("DELETE", f + "?path=/tmp/a", key=key), 409, "directory_not_empty",
             "path")
    status, r = kilnd.request("DELETE", f + "?path=/tmp/a/moved", key=key)
    assert status == 200, r
    status, r = kilnd.request("DELETE", f + "?path=/tmp/a&recursive=1", key=key)
    assert status == 200, r
    assert exec_(kilnd, key, box, shell="test -e /tmp/a; echo $?")["stdout"] == "1\n"
    error_of(kilnd.request("GET", f + "/stat?path=/tmp/a", key=key), 404, "file_not_found",
             "path")
    error_of(kilnd.request("POST", f + "/rename", {"from": "/tmp/none", "to": "/tmp/x"},
                           key=key), 404, "file_not_found", "from")
    exec_(kilnd, key, box, shell="mkdir -p /tmp/d1/sub /tmp/d2 && touch /tmp/d2/f")
    error_of(kilnd.request("POST", f + "/rename", {"from": "/tmp/d2", "to": "/tmp/d1"},
                           key=key), 409, "directory_not_empty", "to")
    error_of(kilnd.request("POST", f + "/mkdir", {"path": "/tmp/d2/f"}, key=key), 409,
             "file_exists", "path")
    error_of(kilnd.request("POST", f + "/mkdir", {"path": "rel"}, key=key), 400,
             "invalid_argument", "path")
    error_of(kilnd.request("POST", f + "/mkdir", {"path": 3}, key=key), 400,
             "invalid_argument", "path")
    error_of(kilnd.request("POST", f + "/rename", {"from": "/tmp/d2"}, key=key), 400,
             "invalid_argument", "to")
    error_of(kilnd.request("DELETE", f + "?path=/tmp/d1&recursive=2", key=key), 400,
             "invalid_argument", "recursive")
    error_of(kilnd.request("GET", f + "/stat", key=key), 400, "invalid_argument", "path")


def test_foreign_agent_gets_404_on_new_routes(kilnd, dave, box):
    key, sid = dave["api_key"], box["id"]
    for method, path, body in (
            ("POST", "/processes", {"cmd": ["true"]}),
            ("GET", "/processes", None),
            ("POST", "/processes/1/signal", {"signal": "KILL"}),
            ("POST", "/processes/1/stdin", {}),
            ("GET", "/processes/1/output", None),
            ("GET", "/files/stat?path=/etc", None),
            ("POST", "/files/mkdir", {"path": "/tmp/x"}),
            ("DELETE", "/files?path=/tmp", None),
            ("POST", "/files/rename", {"from": "/tmp", "to": "/x"})):
        error_of(kilnd.request(method, f"/v1/sandboxes/{sid}{path}", body, key=key), 404,
                 "not_found")


# -- list filters, pagination, metadata -----------------------------------------------------

@pytest.fixture(scope="module")
def tbox(kilnd, carol):
    """A sandbox that pauses when its timeout runs out."""
    status, sb = kilnd.request("POST", "/v1/sandboxes",
                               {"cpus": 1, "memory_mib": 256, "timeout_s": 3600,
                                "on_timeout": "pause", "metadata": {"team": "blue"}},
                               key=carol["api_key"])
    assert status == 201, sb
    assert sb["on_timeout"] == "pause" and sb["timeout_s"] == 3600
    return sb


def ids(kilnd, key, query):
    status, r = kilnd.request("GET", "/v1/sandboxes" + query, key=key)
    assert status == 200, r
    return [s["id"] for s in r["sandboxes"]], r["next"]


def test_list_filters_and_pages(kilnd, carol, dave, box, tbox):
    key = carol["api_key"]
    assert box["metadata"] == {"team": "red", "run": "1"} and box["on_timeout"] == "kill"
    assert ids(kilnd, key, "") == ([box["id"], tbox["id"]], None)
    assert ids(kilnd, key, "?metadata.team=red") == ([box["id"]], None)
    assert ids(kilnd, key, "?metadata.team=red&metadata.run=1") == ([box["id"]], None)
    assert ids(kilnd, key, "?metadata.team=red&metadata.run=2") == ([], None)
    assert ids(kilnd, key, "?metadata.team=blue&state=running") == ([tbox["id"]], None)
    assert ids(kilnd, key, "?metadata.nokey=x") == ([], None)
    page1, cursor = ids(kilnd, key, "?limit=1")
    assert page1 == [box["id"]] and cursor == box["id"]
    assert ids(kilnd, key, f"?limit=1&after={cursor}") == ([tbox["id"]], None)
    assert ids(kilnd, dave["api_key"], "?metadata.team=red") == ([], None)
    error_of(kilnd.request("GET", "/v1/sandboxes?metadata.b%27ad=1", key=key), 400,
             "invalid_argument", "metadata")
    error_of(kilnd.request("GET", "/v1/sandboxes?limit=0", key=key), 400,
             "invalid_argument", "limit")
    for md in ({"k": 1}, {"k": None}, {"bad key": "v"}, {"k": "v" * 513}, ["k"],
               {f"k{i}": "v" for i in range(33)}):
        error_of(kilnd.request("POST", "/v1/sandboxes", {"metadata": md}, key=key), 400,
                 "invalid_argument", "metadata")
    error_of(kilnd.request("POST", "/v1/sandboxes", {"on_timeout": "stop"}, key=key), 400,
             "invalid_argument", "on_timeout")
    # The CLI passes the filters (encoded) and the new create options.
    env = {**os.environ, "KILN_SOCKET": kilnd.sock, "KILN_API_KEY": key}
    kiln = [str(ROOT / "build" / "kiln"), "sandbox"]
    r = subprocess.run(kiln + ["ls", "--json", "--metadata", "team=red", "--state", "running"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and [s["id"] for s in json.loads(r.stdout)] == [box["id"]], r
    r = subprocess.run(kiln + ["ls", "--json", "--metadata", "team=r&d"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout) == [], r
    r = subprocess.run(kiln + ["create", "--on-timeout", "stop"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 125 and "on_timeout" in r.stderr, r


def test_total_memory_quota(kilnd, carol, box, tbox):
    # box and tbox hold 512 MiB of carol's 512: not even 64 more fit.
    msg = error_of(kilnd.request("POST", "/v1/sandboxes", {"memory_mib": 64},
                                 key=carol["api_key"]), 429, "quota_exceeded",
                   "max_total_memory_mib")
    assert "512" in msg
    status, a = kilnd.request("POST", "/v1/agents", {"max_total_memory_mib": "1"},
                              key=kilnd.admin)
    assert status == 400 and a["error"]["field"] == "max_total_memory_mib"


def usage_of(kilnd, key, sid):
    status, u = kilnd.request("GET", "/v1/usage", key=key)
    assert status == 200, u
    return u, next(s for s in u["sandboxes"] if s["id"] == sid)


def test_disk_is_metered(kilnd, carol, box):
    key = carol["api_key"]
    exec_(kilnd, key, box, shell="dd if=/dev/urandom of=/tmp/fill bs=1M count=8 && sync")
    time.sleep(2)
    _, u1 = usage_of(kilnd, key, box["id"])
    time.sleep(6)
    u, u2 = usage_of(kilnd, key, box["id"])
    scratch = os.stat(kilnd.data / "sandboxes" / box["id"] / "scratch.ext4")
    gib_now = scratch.st_blocks * 512 / 2**30
    assert gib_now > 8 / 1024
    # Between two readings the disk's allocated size times the time passed is what accrued.
    rate = (u2["disk_gib_seconds"] - u1["disk_gib_seconds"]) / \
        (u2["run_seconds"] - u1["run_seconds"])
    assert 0.8 * gib_now <= rate <= 1.2 * gib_now, (rate, gib_now, u1, u2)
    assert abs(u2["cost_micro"] - u2["disk_gib_seconds"] * DISK_PRICE) <= 2, u2
    assert u["disk_gib_seconds"] >= u2["disk_gib_seconds"] > 0


# -- on_timeout: pause ----------------------------------------------------------------------

def wait_state(kilnd, key, sid, state, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, sb = kilnd.request("GET", f"/v1/sandboxes/{sid}", key=key)
        if sb["state"] == state:
            return sb
        time.sleep(1)
    raise AssertionError(f"{sid} still {sb['state']} after {seconds} s\n{kilnd.log_tail()}")


def counter_lines(kilnd, key, sid, pid, above):
    """Read the counter's output until it passes above; the number reached."""
    for _, e in ndjson(kilnd, "GET", f"/v1/sandboxes/{sid}/processes/{pid}/output", key):
        assert e["type"] == "stdout", e
        n = int(e["data"].split()[-1])
        if n > above:
            return n
    raise AssertionError("the counter's output ended")


def test_timeout_pauses_and_resume_continues(kilnd, carol, tbox):
    key, sid = carol["api_key"], tbox["id"]
    pid = start(kilnd, key, tbox, shell="i=0; while :; do i=$((i+1)); echo $i; "
                "echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 1; done", background=True)["pid"]
    before = counter_lines(kilnd, key, sid, pid, 2)
    status, sb = kilnd.request("POST", f"/v1/sandboxes/{sid}/timeout", {"timeout_s": 5},
                               key=key)
    assert status == 200 and sb["timeout_s"] == 5, sb
    sb = wait_state(kilnd, key, sid, "paused", 240)
    assert sb["reason"] == "timeout"
    assert (kilnd.data / "sandboxes" / sid / "paused").is_dir()
    _, u1 = usage_of(kilnd, key, sid)
    time.sleep(3)   # still paused: the timeout does not stop or delete it
    status, sb = kilnd.request("GET", f"/v1/sandboxes/{sid}", key=key)
    assert sb["state"] == "paused"
    # Paused, it runs no more but still holds its disk: only the disk is metered.
    _, u2 = usage_of(kilnd, key, sid)
    assert u2["run_seconds"] == u1["run_seconds"], (u1, u2)
    assert u2["disk_gib_seconds"] > u1["disk_gib_seconds"], (u1, u2)
    # A new timeout, set while paused, is the one the resume starts again.  Not 5 s again: in
    # the test host the next request may well come more than 5 s after the resume, and the
    # sandbox would be paused under it.
    status, sb = kilnd.request("POST", f"/v1/sandboxes/{sid}/timeout",
                               {"timeout_s": RESUMED_TIMEOUT}, key=key)
    assert status == 200 and sb["state"] == "paused", sb
    status, sb = kilnd.request("POST", f"/v1/sandboxes/{sid}/resume", key=key)
    resumed = time.time()
    assert status == 200 and sb["state"] == "running", sb
    # Its timeout started again at the resume (give the answer a few seconds to arrive).
    expires = calendar.timegm(time.strptime(sb["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert resumed + RESUMED_TIMEOUT - 15 <= expires <= resumed + RESUMED_TIMEOUT + 1, \
        (sb, resumed)
    status, sb = kilnd.request("POST", f"/v1/sandboxes/{sid}/timeout", {"timeout_s": 3600},
                               key=key)
    assert status == 200, sb
    # The same process, with its count, carries on; kilnd attaches to it again.
    status, ps = kilnd.request("GET", f"/v1/sandboxes/{sid}/processes", key=key)
    assert any(p["pid"] == pid and p["running"] for p in ps["processes"]), ps
    after = counter_lines(kilnd, key, sid, pid, before + 1)
    assert after > before + 1
    n = int(exec_(kilnd, key, tbox, cmd=["cat", "/tmp/n"])["stdout"])
    assert n >= after
    status, r = kilnd.request("POST", f"/v1/sandboxes/{sid}/processes/{pid}/signal",
                              {"signal": "KILL"}, key=key)
    assert status == 200, r
