"""The `unihm` console script: --version, doctor, and subcommands from entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unihm_core import cli

PACKAGE_XML = Path(__file__).resolve().parents[1] / "package.xml"


def _unihm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("unihm")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=180,
                          env=env, check=False)


def test_version_matches_package_xml() -> None:
    from catkin_pkg.package import parse_package

    out = _unihm("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"unihm {parse_package(str(PACKAGE_XML)).version}"


def test_no_command_prints_help_and_fails(capsys) -> None:
    assert cli.main([]) == 2
    assert "doctor" in capsys.readouterr().out


def test_unknown_command_is_an_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["fly"])
    assert exit_.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


def test_doctor_reports_everything_present_here() -> None:
    out = _unihm("doctor", "--json")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    failed = [c for c in report["checks"] if c["required"] and not c["ok"]]
    assert out.returncode == 0 and report["ok"], failed
    names = {c["name"] for c in report["checks"]}
    assert {"python", "torch", "rclpy", "unihm_msgs", "control_msgs", "assets"} <= names
    rclpy_check = next(c for c in report["checks"] if c["name"] == "rclpy")
    assert "rmw_" in rclpy_check["detail"]


def test_doctor_names_the_fix_for_missing_assets(tmp_path: Path) -> None:
    env = dict(os.environ, UNIHM_ASSETS=str(tmp_path / "nowhere"), HOME=str(tmp_path),
               UNIHM_WORKSPACE=str(tmp_path))
    out = _unihm("doctor", "--json", env=env)
    assert out.returncode == 1
    report = json.loads(out.stdout.strip().splitlines()[-1])
    check = next(c for c in report["checks"] if c["name"] == "assets")
    assert not check["ok"] and check["required"]
    assert "UNIHM_ASSETS" in check["fix"]
    assert str(tmp_path / "nowhere") in check["detail"]


def test_doctor_table_output(tmp_path: Path) -> None:
    out = _unihm("doctor")
    assert out.returncode == 0, out.stdout
    assert "everything required is present" in out.stdout
    assert "control_msgs" in out.stdout
