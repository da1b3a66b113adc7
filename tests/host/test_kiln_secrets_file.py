"""A sandbox's secrets file (kiln up|run --net-secrets, src/host/egress_secrets.c), checked by
the CLI before anything starts: every bad line is refused with its number and why, and the
message never holds a value.  No VM: a file that fails the check never gets that far, and
--rootfs may be any readable file for it (kiln checks the image only for being readable)."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KILN = ROOT / "build" / "kiln"
VALUE = "Bearer ghp_do_not_print_me_0123456789"


def up(tmp, secrets, *extra):
    (tmp / "policy").write_text("allow api.test\n")
    (tmp / "secrets").write_text(secrets)
    return subprocess.run([str(KILN), "up", "--rootfs", "/etc/hostname", "--dir",
                           str(tmp / "vm"), "--net-policy", str(tmp / "policy"),
                           "--net-secrets", str(tmp / "secrets"), *extra],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("text, why", [
    (f"secret gh GH Authorization api.test {VALUE}\nsecret x GH X-Key api.test {VALUE}2\n",
     "line 2: ENV is used by another secret"),
    (f"# comment\n\nsecret gh 9GH Authorization api.test {VALUE}\n",
     "line 3: ENV must be a variable name"),
    (f"secret gh GH-X Authorization api.test {VALUE}\n", "line 1: ENV must be a variable name"),
    (f"secret gh SSL_CERT_FILE Authorization api.test {VALUE}\n",
     "line 1: ENV names a variable kiln sets itself"),
    (f"secret gh GH Authorization bad..name {VALUE}\n", "line 1: a host is not a name"),
    (f"secret gh GH Authorization 10.0.0.1/8 {VALUE}\n", "line 1: a host is not a name"),
    ("secret gh GH Authorization\n", "line 1: expected: secret NAME ENV HEADER"),
    ("secret gh GH Authorization api.test\n", "line 1: no value"),
    ("secret gh GH Authorization api.test   \n", "line 1: no value"),
    (f"secret gh GH Auth:orization api.test {VALUE}\n", "line 1: bad header name"),
    (f"secret g/h GH Authorization api.test {VALUE}\n", "line 1: bad name"),
    (f"token gh GH Authorization api.test {VALUE}\n", "line 1: unknown directive"),
    (f"secret gh GH Authorization api.test {'x' * 5000}\n", "line 1: value too long"),
    ("# nothing but a comment\n", "no secrets in the file"),
])
def test_bad_secrets_files_are_refused_with_the_line(tmp_path, text, why):
    r = up(tmp_path, text)
    assert r.returncode != 0
    assert why in r.stderr, r.stderr
    assert "ghp_do_not_print_me" not in r.stderr + r.stdout
    assert not (tmp_path / "vm").exists()


def test_secrets_need_a_policy_and_upstream_ca_needs_secrets(tmp_path):
    (tmp_path / "secrets").write_text(f"secret gh GH Authorization api.test {VALUE}\n")
    r = subprocess.run([str(KILN), "up", "--rootfs", "/etc/hostname", "--dir",
                        str(tmp_path / "vm"), "--net-secrets", str(tmp_path / "secrets")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--net-secrets needs --net-policy" in r.stderr
    r = subprocess.run([str(KILN), "up", "--rootfs", "/etc/hostname", "--dir",
                        str(tmp_path / "vm"), "--net-upstream-ca", "/etc/hostname"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--net-upstream-ca needs --net-secrets" in r.stderr
