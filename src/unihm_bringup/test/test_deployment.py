"""Deployment files (docker/): lint-clean, self-consistent, pointing at files that exist.

No Docker engine is needed: the Dockerfile is linted with hadolint and its COPY sources and the
compose service are checked against the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (make setup installs it)")
    out = subprocess.run([exe, "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_copies_existing_paths() -> None:
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            sources += parts[:-1]
    assert sources, "the Dockerfile copies nothing"
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"


def test_dockerfile_builds_on_ros_jazzy_with_real_control_msgs() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG ROS_DISTRO=jazzy$", text, re.M)
    assert "FROM ros:${ROS_DISTRO}" in text
    assert "ros-jazzy-control-msgs" in text and "ros-jazzy-moveit" in text
    assert "compat/" not in text, "the image must use the real control_msgs"
    torch_pin = next(line for line in (ROOT / "requirements" / "python.txt").read_text()
                     .splitlines() if line.startswith("torch=="))
    assert torch_pin == "torch==2.13.0"


def test_entrypoint_is_valid_bash() -> None:
    assert os.access(ENTRYPOINT, os.X_OK)
    out = subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert 'exec "$@"' in ENTRYPOINT.read_text()


def test_compose_service_for_the_real_robot() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    service = compose["services"]["unihm"]
    assert service["network_mode"] == "host"
    assert service["build"]["dockerfile"] == "docker/Dockerfile"
    assert (COMPOSE.parent / service["build"]["context"]).resolve() == ROOT
    assert any("/dev/ttyUSB0" in d for d in service["devices"]), "XHand serial device missing"
    assert any(v.endswith(":/assets:ro") for v in service["volumes"])
    assert service["command"][:3] == ["ros2", "launch", "unihm_bringup"]
