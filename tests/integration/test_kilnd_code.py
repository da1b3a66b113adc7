"""The code interpreter through kilnd's HTTP API (/v1/sandboxes/{id}/code and /contexts), in a
real guest booted from the python image, the way an agent platform uses it: a CSV uploaded,
loaded with pandas in one request and aggregated in the next; a matplotlib chart back as a PNG;
exceptions, timeouts and interrupts that leave the context's variables alone; two contexts
apart; restart; output streamed while the cell still runs.

One kilnd and one booted sandbox serve the module (imports are slow in the VM test host); the
tests run in order and build on each other's state, as a user's requests would."""
import base64
import json
import re
import struct
import time

import pytest

from kilnd_helpers import UnixHTTPConnection, error_of, python_kilnd, stop_kilnd

SLOW = 900          # pandas and matplotlib imports take tens of seconds under emulation
CSV = "city,month,sales\nOslo,1,10\nLima,1,7\nOslo,2,5\nLima,2,1\nPune,1,4\n"


@pytest.fixture(scope="module")
def kilnd(tmp_path_factory):
    k = python_kilnd(tmp_path_factory, "kilndcode")
    yield k
    stop_kilnd(k)


@pytest.fixture(scope="module")
def key(kilnd):
    return kilnd.agent(name="coder")["api_key"]


@pytest.fixture(scope="module")
def sb(kilnd, key):
    status, sb = kilnd.request("POST", "/v1/sandboxes", {"template": "python", "cpus": 1,
                                                          "memory_mib": 1024,
                                                          "timeout_s": 7200}, key=key)
    assert status == 201, (sb, kilnd.log_tail())
    return sb["id"]


def run(kilnd, key, sb, code, **kw):
    status, r = kilnd.request("POST", f"/v1/sandboxes/{sb}/code",
                              {"code": code, "timeout": kw.pop("timeout", SLOW), **kw}, key=key)
    assert status == 200, (r, kilnd.log_tail())
    return r


def test_first_cell_makes_the_default_context_which_keeps_state(kilnd, key, sb):
    r = run(kilnd, key, sb, "x = 41\nprint('hi')\nx + 1")
    assert r["status"] == "ok" and r["error"] is None, r
    assert (r["stdout"], r["stderr"], r["value"]) == ("hi\n", "", "42")
    assert r["results"] == [{"text/plain": "42"}]
    assert re.fullmatch("[0-9a-f]{16}", r["context_id"])
    ctx = r["context_id"]
    # Remembered where `kiln code --dir` looks for a VM's default context.
    assert (kilnd.data / "sandboxes" / sb / "context").read_text().strip() == ctx
    r2 = run(kilnd, key, sb, "x")
    assert (r2["context_id"], r2["value"]) == (ctx, "41")
    assert r2["execution_count"] == r["execution_count"] + 1


def test_csv_loaded_in_one_request_and_aggregated_in_the_next(kilnd, key, sb):
    status, up = kilnd.request("PUT", f"/v1/sandboxes/{sb}/files?path=/home/user/sales.csv",
                               raw=CSV.encode(), key=key)
    assert status == 201, up
    r = run(kilnd, key, sb, "import pandas as pd\n"
                            "df = pd.read_csv('/home/user/sales.csv')\nlen(df)")
    assert (r["status"], r["value"]) == ("ok", "5"), r
    r = run(kilnd, key, sb, "totals = df.groupby('city')['sales'].sum()\n"
                            "{k: int(v) for k, v in totals.items()}")
    assert r["status"] == "ok", r
    assert r["results"][-1]["application/json"] == {"Lima": 8, "Oslo": 15, "Pune": 4}
    assert r["value"] == "{'Lima': 8, 'Oslo': 15, 'Pune': 4}"
    # A DataFrame also comes back as HTML.
    r = run(kilnd, key, sb, "df.head(2)")
    html = r["results"][-1]["text/html"]
    assert "<table" in html and "<td>Lima</td>" in html


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def test_matplotlib_chart_comes_back_as_a_png(kilnd, key, sb):
    r = run(kilnd, key, sb, "import matplotlib\nmatplotlib.use('Agg')\n"
                            "import matplotlib.pyplot as plt\n"
                            "fig = plt.figure(figsize=(4, 3), dpi=50)\n"
                            "_ = plt.bar(totals.index, totals.values)")
    assert r["status"] == "ok", r
    pngs = [res["image/png"] for res in r["results"] if "image/png" in res]
    assert len(pngs) == 1 and r["value"] is None
    assert png_size(base64.b64decode(pngs[0])) == (200, 150)


def test_exception_returns_name_and_traceback_and_keeps_variables(kilnd, key, sb):
    r = run(kilnd, key, sb, "y = 5\ndef f():\n    return 1 / 0\nf()")
    assert r["status"] == "error", r
    assert r["error"]["name"] == "ZeroDivisionError"
    assert r["error"]["value"] == "division by zero"
    tb = r["error"]["traceback"]
    assert tb.startswith("Traceback") and "return 1 / 0" in tb and "in f" in tb
    assert run(kilnd, key, sb, "y + x")["value"] == "46"


def test_runaway_cell_times_out_and_the_context_keeps_its_state(kilnd, key, sb):
    start = time.monotonic()
    r = run(kilnd, key, sb, "import time\ny = 6\nwhile True:\n    time.sleep(0.05)", timeout=3)
    assert r["status"] == "timeout", r
    assert r["error"]["name"] == "KeyboardInterrupt"
    assert time.monotonic() - start < 120
    assert run(kilnd, key, sb, "y")["value"] == "6"


def lines_of(resp):
    buf = b""
    while True:
        chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(1)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line)


def test_streamed_output_arrives_before_the_cell_ends_and_interrupt_stops_it(kilnd, key, sb):
    ctx = run(kilnd, key, sb, "1")["context_id"]
    c = UnixHTTPConnection(kilnd.sock, timeout=SLOW)
    c.request("POST", f"/v1/sandboxes/{sb}/code",
              body=json.dumps({"code": "import time\nprint('started', flush=True)\n"
                                       "z = 7\ntime.sleep(600)\nprint('never')",
                               "stream": True, "timeout": SLOW}),
              headers={"Authorization": "Bearer " + key})
    resp = c.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/x-ndjson"
    events = lines_of(resp)
    out = ""
    while out != "started\n":     # print() may write the text and the newline apart
        e = next(events)
        assert e["type"] == "stdout", e
        out += e["text"]
    # The cell is still sleeping: interrupt it from another request.
    status, ack = kilnd.request("POST", f"/v1/sandboxes/{sb}/contexts/{ctx}/interrupt",
                                key=key)
    assert status == 200, ack
    rest = list(events)
    c.close()
    assert rest[-1]["type"] == "done" and rest[-1]["status"] == "interrupted", rest
    assert rest[-1]["context_id"] == ctx
    errors = [e for e in rest if e["type"] == "error"]
    assert errors and errors[0]["name"] == "KeyboardInterrupt"
    assert not any(e.get("text") == "never\n" for e in rest)
    assert run(kilnd, key, sb, "z")["value"] == "7"


def test_two_contexts_are_isolated_and_restart_clears_state(kilnd, key, sb):
    status, c2 = kilnd.request("POST", f"/v1/sandboxes/{sb}/contexts",
                               {"language": "python", "cwd": "/tmp", "env": {"MARK": "two"}},
                               key=key)
    assert status == 201, c2
    assert c2["cwd"] == "/tmp" and c2["default"] is False
    other = c2["id"]
    r = run(kilnd, key, sb, "import os\nw = os.environ['MARK']\n(w, os.getcwd())",
            context_id=other)
    assert r["value"] == "('two', '/tmp')", r
    r = run(kilnd, key, sb, "y", context_id=other)
    assert r["error"]["name"] == "NameError"            # the default context's y
    assert run(kilnd, key, sb, "w")["error"]["name"] == "NameError"
    status, listed = kilnd.request("GET", f"/v1/sandboxes/{sb}/contexts", key=key)
    assert status == 200
    by_id = {c["id"]: c for c in listed["contexts"]}
    assert by_id[other]["running"] and not by_id[other]["default"]
    assert sum(c["default"] for c in listed["contexts"]) == 1
    status, r = kilnd.request("POST", f"/v1/sandboxes/{sb}/contexts/{other}/restart", key=key)
    assert status == 200 and r["id"] == other, r
    r = run(kilnd, key, sb, "w", context_id=other)
    assert r["error"]["name"] == "NameError" and r["execution_count"] == 1
    assert kilnd.request("DELETE", f"/v1/sandboxes/{sb}/contexts/{other}", key=key)[0] == 200
    error_of(kilnd.request("POST", f"/v1/sandboxes/{sb}/code",
                           {"code": "1", "context_id": other}, key=key),
             404, "context_not_found", "context_id")
    error_of(kilnd.request("POST", f"/v1/sandboxes/{sb}/code",
                           {"code": "1", "context_id": other, "stream": True}, key=key),
             404, "context_not_found", "context_id")


def test_bad_requests_and_other_agents(kilnd, key, sb):
    error_of(kilnd.request("POST", f"/v1/sandboxes/{sb}/code", {}, key=key), 400,
             "invalid_argument", "code")
    error_of(kilnd.request("POST", f"/v1/sandboxes/{sb}/code", {"code": "1", "timeout": 0},
                           key=key), 400, "invalid_argument", "timeout")
    error_of(kilnd.request("POST", f"/v1/sandboxes/{sb}/contexts", {"language": "cobol"},
                           key=key), 400, "invalid_argument")
    error_of(kilnd.request("POST", f"/v1/sandboxes/{sb}/contexts/0123456789abcdef/restart",
                           key=key), 404, "context_not_found")
    mallory = kilnd.agent(name="mallory")["api_key"]
    for method, path, body in (("POST", "code", {"code": "1"}), ("GET", "contexts", None),
                               ("POST", "contexts", {})):
        error_of(kilnd.request(method, f"/v1/sandboxes/{sb}/{path}", body, key=mallory),
                 404, "not_found")

