"""Code contexts in a real guest booted from the python image: `kiln cp` a CSV, load it with
pandas in one `kiln code` call and aggregate it in the next, charts come back as PNGs without
plt.show(), DataFrames as HTML.  One VM and one context serve the module (imports are slow in
the VM test host); the tests run in order and build on each other's state, as a user would."""
import struct
import subprocess

import pytest

from conftest import ROOT

KILN = ROOT / "build" / "kiln"
IMAGE = ROOT / "build" / "images" / "python.ext4"
SLOW = 900      # pandas and matplotlib imports take tens of seconds under emulation


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    if not IMAGE.exists():
        pytest.skip("python image not built (make image-python)")
    tmp = tmp_path_factory.mktemp("ctxvm")
    vmdir = tmp / "vm"
    r = subprocess.run([str(KILN), "up", "--image", "python", "--cold", "--dir", str(vmdir),
                        "--cpus", "1", "--memory", "1024"], capture_output=True, timeout=SLOW)
    assert r.returncode == 0, r.stderr
    yield vmdir
    subprocess.run([str(KILN), "down", "--dir", str(vmdir)], timeout=120)


def kiln(vm, *args, input=None):
    cmd = [str(KILN), args[0], "--dir", str(vm)] + [str(a) for a in args[1:]]
    return subprocess.run(cmd, input=input, capture_output=True, timeout=SLOW)


def code(vm, *args, input=None):
    return kiln(vm, "code", *args, input=input)


@pytest.fixture(scope="module")
def ctx(vm):
    r = code(vm, "contexts", "create")
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().strip()


CSV = "city,month,sales\nOslo,1,10\nLima,1,7\nOslo,2,5\nLima,2,1\nPune,1,4\n"


def test_context_runs_as_user_in_its_own_cgroup(vm, ctx):
    r = code(vm, "--context", ctx, "import os; print(os.getuid(), os.getcwd())\n"
                                   "open('/proc/self/cgroup').read().strip()")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode().splitlines()
    assert out[0] == "1000 /home/user"
    assert f"/user/ctx-{ctx}" in out[1]


def test_csv_loaded_in_one_call_and_aggregated_in_the_next(vm, ctx, tmp_path):
    src = tmp_path / "sales.csv"
    src.write_text(CSV)
    assert kiln(vm, "cp", src, ":/home/user/sales.csv").returncode == 0
    r = code(vm, "--context", ctx, "import pandas as pd\n"
                                   "df = pd.read_csv('/home/user/sales.csv')\nlen(df)")
    assert (r.returncode, r.stdout) == (0, b"5\n"), r.stderr
    r = code(vm, "--context", ctx, "totals = df.groupby('city')['sales'].sum()\n"
                                   "print(totals.to_dict())\nint(totals.sum())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["{'Lima': 8, 'Oslo': 15, 'Pune': 4}", "27"]


def test_dataframe_comes_back_as_text_and_html(vm, ctx):
    r = code(vm, "--context", ctx, "--rich", "df.head(2)")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "Oslo" in out.split("[text/html]")[0]           # text/plain first
    html = out.split("[text/html]\n", 1)[1]
    assert "<table" in html and "<td>Lima</td>" in html


def png_size(data):
    """(width, height) from a PNG's signature and IHDR chunk; fails if they are not valid."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def test_matplotlib_chart_comes_back_as_png_without_show(vm, ctx, tmp_path):
    r = code(vm, "--context", ctx, "--png-dir", tmp_path,
             "import matplotlib.pyplot as plt\n"
             "fig, ax = plt.subplots(figsize=(4, 3), dpi=50)\n"
             "ax.bar(totals.index, totals.values)\n"
             "ax.set_title('sales')")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    pngs = [line for line in lines if line.endswith(".png")]
    assert len(pngs) == 1, lines
    assert png_size(open(pngs[0], "rb").read()) == (200, 150)
    assert "Text(" in lines[-1]                             # the value of set_title(...)
    # Figures are closed once sent: the next cell returns none.
    r = code(vm, "--context", ctx, "--png-dir", tmp_path, "len(plt.get_fignums())")
    assert r.stdout == b"0\n"


def test_exception_keeps_the_dataframe(vm, ctx):
    r = code(vm, "--context", ctx, "df['no_such_column']")
    assert r.returncode == 1 and b"KeyError: 'no_such_column'" in r.stderr
    r = code(vm, "--context", ctx, "--timeout", "5", "import time\nwhile True: time.sleep(0.1)")
    assert r.returncode == 124, r.stderr
    r = code(vm, "--context", ctx, "df.shape")
    assert (r.returncode, r.stdout) == (0, b"(5, 3)\n")


def test_restart_and_delete(vm, ctx):
    assert code(vm, "contexts", "restart", ctx).returncode == 0
    r = code(vm, "--context", ctx, "'df' in dir()")
    assert r.stdout == b"False\n"
    assert ctx.encode() in code(vm, "contexts", "ls").stdout
    assert code(vm, "contexts", "rm", ctx).returncode == 0
    assert ctx.encode() not in code(vm, "contexts", "ls").stdout


def test_bash_context_in_the_guest_and_a_missing_interpreter_named(vm):
    r = code(vm, "--language", "bash", "contexts", "create")
    assert r.returncode == 0, r.stderr
    sh = r.stdout.decode().strip()
    assert code(vm, "--context", sh, "x=5; cd /tmp").returncode == 0
    r = code(vm, "--context", sh, 'echo $((x * 2)) "$(pwd)" "$(id -u)"')
    assert (r.returncode, r.stdout) == (0, b"10 /tmp 1000\n"), r.stderr
    r = code(vm, "--context", sh, "ls /no/such/path")
    assert r.returncode == 1 and b"No such file" in r.stderr
    assert code(vm, "contexts", "rm", sh).returncode == 0
    # The python image has no Node.js: the error says so rather than failing obscurely.
    r = code(vm, "--language", "node", "contexts", "create")
    assert r.returncode != 0 and b"node is not installed in this image" in r.stderr


def test_warm_snapshot_gives_every_clone_a_ready_context(tmp_path):
    """kiln warm starts a context with the stack imported (/etc/kiln/warm-context.py); each
    clone's `kiln code --dir` runs in it at once, with random generators of its own."""
    if not IMAGE.exists():
        pytest.skip("python image not built (make image-python)")
    import os
    env = {**os.environ, "KILN_CACHE": str(tmp_path / "cache")}
    shape = ["--image", "python", "--cpus", "1", "--memory", "512"]

    def cli(*args):
        return subprocess.run([str(KILN)] + [str(a) for a in args], env=env,
                              capture_output=True, timeout=SLOW)
    r = cli("warm", *shape)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / r.stdout.decode().strip() / "context").exists()
    dirs = [tmp_path / "a", tmp_path / "b"]
    try:
        for d in dirs:
            r = cli("up", "-v", *shape, "--dir", d)
            assert r.returncode == 0 and b"cloned warm snapshot" in r.stderr, r.stderr
        draws = []
        for d in dirs:
            # No imports: pd, np and plt come from the warm context.
            r = cli("code", "--dir", d, "x = pd.DataFrame({'v': np.arange(4)}).v.sum(); x")
            assert (r.returncode, r.stdout.decode().strip()) == (0, "6"), r.stderr
            r = cli("code", "--dir", d, "import random; print(x + 1, random.random(),"
                    " np.random.rand())")
            assert r.returncode == 0, r.stderr
            out = r.stdout.decode().split()
            assert out[0] == "7"            # the context kept x between calls
            draws.append(out[1:])
        assert draws[0][0] != draws[1][0] and draws[0][1] != draws[1][1]
    finally:
        for d in dirs:
            cli("down", "--dir", d)
