"""The python template's warm snapshot through kilnd, the way an agent platform uses it (issue 7,
"Warm"): an admin warms the template with POST /v1/templates/python/warm, then an agent's
create of that shape is a clone of the snapshot (kiln-vmm --restore, and much faster than a
boot) whose first cell runs in the snapshot's warm Python context, where numpy, pandas and
matplotlib.pyplot are already imported as np, pd and plt.  A second create clones too and gets
its own random seeds; a create of another shape boots and still runs code.

One kilnd, one warm job and three sandboxes (two clones, one boot) for the module: the pandas
imports of the warm-up take minutes in the VM test host."""
import os
import re
import subprocess
import time

import pytest

from conftest import ROOT
from kilnd_helpers import PYTHON_IMAGE as IMAGE, python_kilnd, stop_kilnd, wait_job

WARM = {"cpus": 1, "memory_mib": 1024}
OTHER = {"cpus": 1, "memory_mib": 768}     # not warmed: boots
SLOW = 900          # warm-up imports and a python boot take minutes under emulation
TIMES = {}          # seconds from a create request to its first cell's answer, by kind


@pytest.fixture(scope="module")
def kilnd(tmp_path_factory):
    k = python_kilnd(tmp_path_factory, "kilnd-warm-code")
    yield k
    stop_kilnd(k)


@pytest.fixture(scope="module")
def key(kilnd):
    return kilnd.agent(name="warm-coder", max_sandboxes=4)["api_key"]


@pytest.fixture(scope="module")
def warmed(kilnd):
    status, job = kilnd.request("POST", "/v1/templates/python/warm", WARM, key=kilnd.admin)
    assert status == 202, job
    job = wait_job(kilnd, "python", "warm", timeout=SLOW)
    assert job["state"] == "succeeded", (job, kilnd.log_tail())
    return job


def vmm_restored(kilnd, sb_id):
    """Whether the sandbox's VMM was started from a snapshot (kiln-vmm --restore)."""
    pid = int((kilnd.data / "sandboxes" / sb_id / "vmm.pid").read_text())
    return b"--restore" in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")


def create(kilnd, key, shape):
    t0 = time.monotonic()
    status, sb = kilnd.request("POST", "/v1/sandboxes",
                               {"template": "python", "timeout_s": 7200, **shape}, key=key,
                               timeout=SLOW)
    assert status == 201, (sb, kilnd.log_tail())
    return sb["id"], time.monotonic() - t0


def run(kilnd, key, sb, code):
    status, r = kilnd.request("POST", f"/v1/sandboxes/{sb}/code",
                              {"code": code, "timeout": SLOW}, key=key, timeout=SLOW)
    assert status == 200, (r, kilnd.log_tail())
    return r


@pytest.fixture(scope="module")
def clones(kilnd, key, warmed):
    """Two creates of the warmed shape, and how long each took."""
    return [create(kilnd, key, WARM) for _ in range(2)]


def test_warm_job_makes_a_snapshot_of_the_shape(kilnd, key, warmed):
    status, t = kilnd.request("GET", "/v1/templates/python", key=key)
    assert status == 200, t
    shapes = [(s["cpus"], s["memory_mib"]) for s in t["warm_snapshots"]]
    assert shapes == [(WARM["cpus"], WARM["memory_mib"])], t
    assert t["warm_snapshots"][0]["path"] == warmed["result"]
    # Named after the template, as `kiln warm --image python` names it (kilnd's --template
    # path is the real path, .../root.ext4, which used to name it "root-...").
    assert os.path.basename(warmed["result"]).startswith("python-1x1024-"), warmed
    # The snapshot holds the warm context made by /etc/kiln/warm-context.py.
    assert re.fullmatch("[0-9a-f]{16}", open(warmed["result"] + "/context").read().strip())


def test_creates_of_the_warm_shape_clone(kilnd, clones):
    for sb, _ in clones:
        assert vmm_restored(kilnd, sb), kilnd.log_tail()
    assert "booting instead" not in kilnd.log_tail()


def test_first_cell_runs_in_the_warm_context(kilnd, key, warmed, clones):
    sb, create_s = clones[0]
    warm_ctx = open(warmed["result"] + "/context").read().strip()
    # No import: the warm context has pandas as pd already.
    t0 = time.monotonic()
    r = run(kilnd, key, sb, 'pd.DataFrame({"a": [1, 2]}).a.sum()')
    TIMES["clone"] = create_s + time.monotonic() - t0
    assert (r["status"], r["error"], r["value"]) == ("ok", None, "3"), r
    assert r["context_id"] == warm_ctx
    # The warm-up's own cells ran first (warm-context.py, then the clone's reseed), so this
    # is not the first cell of a fresh interpreter.
    assert r["execution_count"] >= 3, r
    r = run(kilnd, key, sb, "(np.__name__, pd.__name__, plt.__name__, "
                            "__import__('matplotlib').get_backend())")
    assert r["value"] == "('numpy', 'pandas', 'matplotlib.pyplot', 'agg')", r
    # Runs as the image's unprivileged user, like a context made on demand.
    assert run(kilnd, key, sb, "__import__('getpass').getuser()")["value"] == "'user'"


def test_second_clone_has_its_own_interpreter_and_seeds(kilnd, key, clones):
    (a, _), (b, _) = clones
    run(kilnd, key, a, "only_in_a = 1")
    r = run(kilnd, key, b, "'only_in_a' in globals(), pd.Series([4, 5]).mean()")
    assert r["value"] == "(False, 4.5)", r
    draw = "(np.random.randint(0, 2**31), __import__('random').getrandbits(62))"
    assert run(kilnd, key, a, draw)["value"] != run(kilnd, key, b, draw)["value"]


def test_other_shape_boots_and_still_runs_code(kilnd, key, clones):
    sb, boot_s = create(kilnd, key, OTHER)
    assert not vmm_restored(kilnd, sb)
    # A boot has no warm context: its first cell makes a fresh one, and imports pandas.
    t0 = time.monotonic()
    r = run(kilnd, key, sb, "import pandas as pd\n'np' in globals(), pd.Series([1, 2]).sum()")
    TIMES["boot"] = boot_s + time.monotonic() - t0
    assert (r["status"], r["value"], r["execution_count"]) == ("ok", "(False, 3)", 1), r
    clone_s = max(s for _, s in clones)
    print(f"create: clone {clone_s:.2f} s (slowest of 2), boot {boot_s:.2f} s; "
          f"create to first pandas answer: clone {TIMES['clone']:.2f} s, "
          f"boot {TIMES['boot']:.2f} s")
    assert clone_s < boot_s, (clone_s, boot_s)
    assert TIMES["clone"] < TIMES["boot"] / 3, TIMES


def test_cli_clones_the_snapshot_kilnd_made(kilnd, warmed):
    # `kiln run --rootfs` names the image by its file, root.ext4 here, kilnd by the template:
    # the snapshot is found by its key, so either one's warm serves the other.
    real = os.path.realpath(IMAGE)
    r = subprocess.run([str(ROOT / "build" / "kiln"), "run", "--rootfs", real, "--cpus", "1",
                        "--memory", "1024", "-v", "--", "true"], capture_output=True, text=True,
                       env={**os.environ, "KILN_CACHE": str(kilnd.tmp / "cache")}, timeout=SLOW)
    assert r.returncode == 0, r.stderr
    assert f"cloned warm snapshot {warmed['result']}" in r.stderr, r.stderr
