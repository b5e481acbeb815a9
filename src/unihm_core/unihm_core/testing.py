"""Test support shared by every package's tests (loaded as a pytest plugin).

Registered under the ``pytest11`` entry point, so ``make test`` and ``colcon test`` both get it:
every pytest process talks DDS on loopback only, on a domain of its own, with its ROS home and
logs in a temporary folder, so parallel test runs and other ROS users never see each other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_DOMAIN_ENV = "UNIHM_TEST_DOMAIN_ID"


def isolated_ros_environment(pid: int | None = None) -> dict[str, str]:
    """Environment variables that confine ROS 2 traffic of one test process to itself."""
    pid = os.getpid() if pid is None else pid
    domain = os.environ.get(_DOMAIN_ENV) or str(1 + pid % 100)  # 1..100: valid for Fast DDS
    home = Path(tempfile.mkdtemp(prefix=f"unihm-ros-home-{pid}-"))
    return {
        "ROS_DOMAIN_ID": domain,
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_HOME": str(home),
        "ROS_LOG_DIR": str(home / "log"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def pytest_configure(config: object) -> None:  # pytest hook
    from unihm_core.process import limit_malloc_arenas

    limit_malloc_arenas()  # as early as possible: before torch and the nodes start threads
    os.environ.update(isolated_ros_environment())
    os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated in Jazzy, conflicts with the range


def pytest_unconfigure(config: object) -> None:  # pytest hook
    home = os.environ.get("ROS_HOME", "")
    if Path(home).name.startswith("unihm-ros-home-"):
        shutil.rmtree(home, ignore_errors=True)


def assert_imports_without_ros(module: str) -> None:
    """Fail unless `module` imports in a fresh interpreter without pulling in rclpy.

    Library cores must stay usable (and testable) with numpy/torch alone; only nodes import ROS.
    """
    code = (f"import sys, {module}\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'rosidl_runtime_py', 'launch', 'launch_ros'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, f"import {module} failed:\n{out.stderr}"
    assert out.stdout.strip() == "", f"{module} imports ROS modules: {out.stdout.strip()}"
