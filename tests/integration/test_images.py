"""Root images (images/build, docs/images.md), checked from the host without booting them.

Reads build/images/NAME.ext4 with debugfs (e2fsprogs), so no mount and no VM.  An image that
has not been built (`make images`) is skipped; one that is there but is not the image of the
current recipe and build script fails, naming the command that rebuilds it.
"""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "images" / "build"
BUILT = ROOT / "build" / "images"
NAMES = ["base", "python"]

# Present in every image: base's packages (python is built on base).
BASE_FILES = ["/usr/bin/bash", "/usr/bin/git", "/usr/bin/curl", "/usr/bin/ps", "/usr/bin/less",
              "/usr/bin/tar", "/usr/bin/gzip", "/usr/bin/xz", "/usr/bin/ip", "/usr/bin/apt-get",
              "/etc/ssl/certs/ca-certificates.crt"]
DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def cache_key(name):
    return subprocess.run([str(BUILD_SCRIPT), "--hash", name], capture_output=True, text=True,
                          check=True).stdout.strip()


def built_image(name):
    """build/images/NAME.ext4, skipping when it was never built and failing when it is stale."""
    link = BUILT / f"{name}.ext4"
    if not link.exists():
        pytest.skip(f"{link} not built (make image-{name})")
    key = cache_key(name)
    target = link.resolve()
    assert target.parent.name == f"{name}-{key}", \
        f"{link} -> {target} is stale: the recipe wants {name}-{key}; run make image-{name}"
    return target


@pytest.fixture(params=NAMES)
def image(request):
    return request.param, built_image(request.param)


def debugfs(img, command):
    return subprocess.run(["debugfs", "-R", command, str(img)], capture_output=True, text=True,
                          check=True).stdout


def stat(img, path):
    """(type, mode, uid) of path in the image, or None if it is not there."""
    out = debugfs(img, f"stat {path}")
    m = re.search(r"Type: (\S+)\s+Mode:\s+(\d+)", out)
    if not m:
        return None
    uid = int(re.search(r"User:\s+(\d+)", out).group(1))
    return m.group(1), int(m.group(2), 8), uid


def cat(img, path):
    return debugfs(img, f"cat {path}")


def listdir(img, path):
    # `ls -p` lines: /inode/mode/uid/gid/name/size/
    lines = debugfs(img, f"ls -p {path}").splitlines()
    return {line.split("/")[5] for line in lines if line.count("/") >= 6} - {".", ".."}


def superblock(img):
    out = subprocess.run(["dumpe2fs", "-h", str(img)], capture_output=True, text=True,
                         check=True).stdout
    return dict(re.findall(r"^([^:\n]+):\s+(.*)$", out, re.M))


def test_stamp_names_image_and_key(image):
    name, img = image
    stamp = dict(line.split("=", 1) for line in cat(img, "/etc/kiln-image").splitlines())
    assert stamp["NAME"] == name
    assert stamp["HASH"] == cache_key(name)
    assert stamp["SUITE"] == "bookworm"


def test_python_is_built_on_current_base():
    img = built_image("python")
    stamp = cat(img, "/etc/kiln-image")
    assert f"PARENT=base-{cache_key('base')}" in stamp.splitlines()


def test_base_tools_present(image):
    _, img = image
    missing = [f for f in BASE_FILES if stat(img, f) is None]
    assert not missing, f"missing from the image: {missing}"


def test_accounts_and_home(image):
    _, img = image
    passwd = cat(img, "/etc/passwd").splitlines()
    assert any(line.startswith("root:x:0:0:") for line in passwd)
    user = [line for line in passwd if line.startswith("user:")]
    assert user, "no user account"
    fields = user[0].split(":")
    assert fields[2:4] == ["1000", "1000"]
    assert fields[5:7] == ["/home/user", "/bin/bash"]
    assert stat(img, "/home/user")[0::2] == ("directory", 1000)


def test_files_a_sandbox_relies_on(image):
    _, img = image
    assert stat(img, "/tmp")[:2] == ("directory", 0o1777)
    assert stat(img, "/")[:2] == ("directory", 0o755)
    assert stat(img, "/etc/resolv.conf")[0] == "regular"
    assert re.search(r"^127\.0\.0\.1\s+localhost", cat(img, "/etc/hosts"), re.M)
    assert cat(img, "/etc/hostname").strip() == "kiln"
    for d in ("/proc", "/sys", "/dev", "/run", "/mnt"):
        assert stat(img, d)[0] == "directory", d


def test_no_init_system_and_no_build_leftovers(image):
    _, img = image
    # PID 1 is kiln-init from kiln's initramfs; the image must not bring one of its own.
    for path in ("/usr/sbin/init", "/usr/lib/systemd/systemd", "/usr/sbin/policy-rc.d",
                 "/etc/machine-id"):
        assert stat(img, path) is None, path
    assert listdir(img, "/var/lib/apt/lists") <= {"partial", "auxfiles", "lock"}
    assert not [f for f in listdir(img, "/var/cache/apt/archives") if f.endswith(".deb")]


def test_size_leaves_some_free_and_no_journal(image):
    _, img = image
    sb = superblock(img)
    free = int(sb["Free blocks"]) / int(sb["Block count"])
    assert 0.10 <= free <= 0.20, f"{free:.0%} free"
    assert "has_journal" not in sb["Filesystem features"]


def test_python_stack():
    img = built_image("python")
    assert stat(img, "/usr/bin/python3")[0] in ("symlink", "regular")
    assert stat(img, "/usr/bin/python3.11")[0] == "regular"
    assert stat(img, "/usr/bin/pip3") is not None
    have = listdir(img, DIST_PACKAGES)
    for pkg in ("numpy", "pandas", "matplotlib", "pip"):
        assert pkg in have, f"{pkg} missing from {DIST_PACKAGES}"
    assert stat(img, "/usr/lib/python3.11/EXTERNALLY-MANAGED") is None
    # matplotlib's font cache, built at image build time for both accounts.
    for home in ("/root", "/home/user"):
        assert any(f.startswith("fontlist-") for f in listdir(img, f"{home}/.cache/matplotlib"))
