"""scripts/setup.sh (what `make setup` runs): apt handling for non-root users, idempotence."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SETUP = ROOT / "scripts" / "setup.sh"
VENV = Path(sys.prefix)


def _as_non_root(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv to drop privileges")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]


def test_non_root_with_missing_debian_packages_gets_the_apt_command(tmp_path: Path) -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system")
    env = dict(os.environ, UNIHM_EXTRA_APT_PACKAGES="unihm-no-such-package",
               UNIHM_VENV=str(tmp_path / "venv"), HOME=str(tmp_path))
    out = subprocess.run(_as_non_root(["bash", str(SETUP)]), capture_output=True, text=True,
                         env=env, timeout=60, check=False, cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert ("sudo apt-get update && sudo apt-get install -y --no-install-recommends "
            "unihm-no-such-package") in out.stderr
    assert not (tmp_path / "venv").exists(), "setup went on after naming the missing packages"


def test_rerun_on_a_ready_machine_changes_nothing() -> None:
    if not (VENV / ".stamps" / "requirements").is_file():
        pytest.skip("this environment was not made by scripts/setup.sh")
    env = dict(os.environ, UNIHM_VENV=str(VENV))
    # byte code that test runs leave next to interface sources is not a source change
    cache = ROOT / "src" / "unihm_msgs" / "test" / "__pycache__"
    probe = cache / "unihm_setup_probe.cpython-311.pyc"
    cache.mkdir(exist_ok=True)
    probe.write_bytes(b"\0")
    try:
        out = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, env=env,
                             timeout=120, check=False)
    finally:
        probe.unlink()
    assert out.returncode == 0, out.stdout + out.stderr
    for step in ("installing", "building interfaces", "creating"):
        assert step not in out.stdout, f"a ready machine repeated a step:\n{out.stdout}"
    assert "ready in" in out.stdout


def test_another_workspaces_compat_control_msgs_is_not_a_ros_install(tmp_path: Path) -> None:
    """A shell that sourced another checkout's unihm.env carries its venv on AMENT_PREFIX_PATH;
    that venv's compatible control_msgs is not importable here and must not stop our build."""
    if not (VENV / ".stamps" / "requirements").is_file():
        pytest.skip("this environment was not made by scripts/setup.sh")
    other = tmp_path / "other-venv"
    (other / "share" / "control_msgs").mkdir(parents=True)
    (other / "share" / "control_msgs" / "package.xml").write_text("<package/>")
    (other / "share" / "control_msgs" / "unihm_compat").touch()
    env = dict(os.environ, UNIHM_VENV=str(VENV), AMENT_PREFIX_PATH=str(other))
    out = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "control_msgs found" not in out.stdout
