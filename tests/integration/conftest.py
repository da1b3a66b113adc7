"""Shared helpers for the VM tests: build small guest disks and boot them with kiln-vmm.

Every test here boots a real guest (build/vmlinux) under build/kiln-vmm.  They run wherever
`tests/vmhost/maybe-run` put them: directly on a KVM host, or inside the VM test host, where a
boot takes seconds rather than milliseconds, hence the generous timeouts and quiet consoles.
"""
import os
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VMM = ROOT / "build" / "kiln-vmm"
KERNEL = ROOT / "build" / "vmlinux"
BUSYBOX = Path("/bin/busybox")
BOOT_TIMEOUT = int(os.environ.get("KILN_TEST_BOOT_TIMEOUT", "180"))
BASE_CMDLINE = "console=ttyS0 quiet reboot=k panic=-1"


@dataclass
class Run:
    status: int
    console: str
    stderr: str
    seconds: float


def run_vmm(args, timeout=BOOT_TIMEOUT, console_file=None):
    """Run kiln-vmm with args; the console goes to a file so a slow pipe never stalls the guest."""
    with tempfile.TemporaryDirectory() as tmp:
        console = console_file or os.path.join(tmp, "console")
        cmd = [str(VMM)] + [str(a) for a in args]
        if not any(str(a).startswith("--serial") for a in args):
            cmd += ["--serial", "file:" + console]
        start = time.monotonic()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, text=True)
        seconds = time.monotonic() - start
        out = Path(console).read_text(errors="replace") if os.path.exists(console) else p.stdout
        return Run(p.returncode, out, p.stderr, seconds)


def make_rootfs(directory, init_body):
    """A busybox root: /init runs init_body after mounting the pseudo-filesystems."""
    d = Path(directory)
    for sub in ("bin", "sbin", "proc", "sys", "dev", "mnt", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, d / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "busybox" and not (d / "bin" / a).exists():
            (d / "bin" / a).symlink_to("busybox")
    init = d / "init"
    init.write_text("#!/bin/busybox sh\n"
                    "export PATH=/bin\n"
                    "mount -t proc proc /proc\n"
                    "mount -t sysfs sysfs /sys\n"
                    "mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev\n"
                    + init_body + "\n")
    init.chmod(0o755)


def make_ext4(path, source_dir, size_mib=16):
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "kiln-test", "-d", str(source_dir),
                    str(path), f"{size_mib}M"], check=True, capture_output=True)


def read_ext4_file(image, name):
    """Read a file out of an ext4 image without mounting it (debugfs from e2fsprogs)."""
    p = subprocess.run(["debugfs", "-R", f"cat {name}", str(image)], capture_output=True,
                       check=True)
    return p.stdout.decode(errors="replace")


class Guest:
    """Builds a root disk whose /init runs a shell snippet, and boots it."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.n = 0

    def root_disk(self, init_body):
        self.n += 1
        src = self.workdir / f"rootfs{self.n}"
        make_rootfs(src, init_body)
        image = self.workdir / f"root{self.n}.ext4"
        make_ext4(image, src)
        return image

    def boot(self, init_body, cpus=1, memory=128, disks=(), extra=(), cmdline=""):
        root = self.root_disk(init_body)
        args = ["--kernel", KERNEL, "--cpus", cpus, "--memory", memory,
                "--disk", f"{root},id=root",
                "--cmdline", f"{BASE_CMDLINE} root=/dev/vda rw init=/init {cmdline}".strip()]
        for d in disks:
            args += ["--disk", d]
        run = run_vmm(args + list(extra))
        run.root = root
        return run


@pytest.fixture
def guest(tmp_path):
    return Guest(tmp_path)


def tiny_elf(code, paddr=0x1000000):
    """An ELF64 x86-64 executable with one PT_LOAD holding code at paddr, entry at its start."""
    ehsize, phsize = 64, 56
    offset = ehsize + phsize
    eh = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
                     2, 62, 1, paddr, ehsize, 0, 0, ehsize, phsize, 1, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 7, offset, paddr, paddr, len(code), len(code), 0x1000)
    return eh + ph + code


def busybox_image(tmp, files=None):
    """A tiny root image for kiln-init: busybox, memhog, a passwd with root and an unprivileged
    user, and files ({path in the image: text}) besides."""
    root = Path(tmp) / "rootfs"
    make_rootfs(root, "exit 0")
    shutil.copy(ROOT / "build" / "tests" / "guest" / "memhog", root / "bin" / "memhog")
    etc = root / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                "user:x:1000:1000:user:/home/user:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nuser:x:1000:\n")
    for d in ("root", "home/user", "tmp", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chown(root / "home/user", 1000, 1000)
    (root / "tmp").chmod(0o1777)
    for path, text in (files or {}).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    image = Path(tmp) / "busybox.ext4"
    make_ext4(image, root, size_mib=32)
    return image
