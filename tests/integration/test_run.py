"""`kiln run` end to end on the real images: boot a fresh microVM from an image, run one
command with the caller's stdio, return its status, and leave nothing behind."""
import glob
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

KILN = ROOT / "build" / "kiln"
IMAGES = ROOT / "build" / "images"


def need_image(name):
    if not (IMAGES / f"{name}.ext4").exists():
        pytest.skip(f"image {name} not built (make images)")


def kiln_run(*args, input=None, timeout=600):
    return subprocess.run([str(KILN), "run"] + [str(a) for a in args], input=input,
                          capture_output=True, timeout=timeout)


def vmm_processes():
    out = subprocess.run(["pgrep", "-x", "kiln-vmm"], capture_output=True, text=True).stdout
    return set(out.split())


def test_run_on_base_image_and_nothing_left_behind():
    need_image("base")
    before_dirs = set(glob.glob("/tmp/kiln-run-*"))
    before_vmms = vmm_processes()
    r = kiln_run("--image", "base", "-e", "WHO=kiln", "--", "bash", "-c",
                 'echo "hello $WHO from $(hostname)"; git --version; curl --version | head -n1;'
                 ' echo oops >&2; exit 3')
    assert r.returncode == 3, r.stderr
    out = r.stdout.decode()
    assert "hello kiln from kiln" in out
    assert "git version" in out and "curl" in out
    assert r.stderr == b"oops\n"
    assert set(glob.glob("/tmp/kiln-run-*")) == before_dirs
    assert vmm_processes() == before_vmms


def test_run_streams_stdin():
    need_image("base")
    r = kiln_run("--image", "base", "--", "tr", "a-z", "A-Z", input=b"quiet words\n")
    assert (r.returncode, r.stdout) == (0, b"QUIET WORDS\n")


def test_run_as_unprivileged_user_in_workdir():
    need_image("base")
    r = kiln_run("--image", "base", "-u", "user", "-w", "/tmp", "--", "sh", "-c",
                 "id -un; pwd; touch /root/x 2>/dev/null || echo denied")
    assert r.stdout.decode().split() == ["user", "/tmp", "denied"]


def test_run_python_data_stack():
    need_image("python")
    r = kiln_run("--image", "python", "--memory", "1024", "--", "python3", "-c",
                 "import numpy, pandas, matplotlib; "
                 "print(pandas.DataFrame({'a': [1, 2, 3]})['a'].sum())")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"6\n"


def test_run_reports_a_missing_image_and_command():
    r = kiln_run("--image", "no-such-image", "--", "true")
    assert r.returncode == 125 and b"no-such-image" in r.stderr
    need_image("base")
    r = kiln_run("--image", "base", "--", "no-such-command")
    assert r.returncode == 127 and b"no-such-command" in r.stderr
