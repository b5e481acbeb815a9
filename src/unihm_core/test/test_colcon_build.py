"""The workspace builds with colcon, as a ROS 2 engineer builds it in a sourced Jazzy shell.

Here the "sourced environment" is the venv's ROS 2 wheels (AMENT_PREFIX_PATH = the venv); the
build goes to a temporary folder so the developer's tree is untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_colcon_builds_every_package(tmp_path: Path) -> None:
    colcon = Path(sys.executable).with_name("colcon")
    if not colcon.exists():
        colcon = Path(shutil.which("colcon") or "")
    if not colcon.is_file():
        pytest.skip("colcon is not installed (make setup installs it)")
    env = dict(os.environ)
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    out = subprocess.run(
        [str(colcon), "--log-base", str(tmp_path / "log"), "build",
         "--base-paths", str(ROOT / "src"),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
         "--event-handlers", "console_direct-",
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        capture_output=True, text=True, env=env, timeout=600, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "6 packages finished" in out.stdout, out.stdout[-2000:]
    install = tmp_path / "install"
    assert not (install / "control_msgs").exists(), "colcon built the compat control_msgs"
    assert (install / "unihm_core" / "lib" / "unihm_core" / "unihm").is_file()
    site = next((install / "unihm_msgs" / "lib").glob("python3*/site-packages"))
    assert (site / "unihm_msgs" / "action" / "_manipulate.py").is_file()
    for pkg in ("unihm_core", "unihm_perception", "unihm_generator", "unihm_refiner",
                "unihm_bringup"):
        marker = install / pkg / "share" / "ament_index" / "resource_index" / "packages" / pkg
        assert marker.is_file(), f"{pkg} is not registered in the ament index"
