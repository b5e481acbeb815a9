"""`unihm doctor`: is this machine ready to run UniHM, and if not, what to run.

Each check imports or looks up one thing and, when it is missing, says the command that
brings it. Checks never raise: a broken library is a failed check, not a crashed doctor.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from unihm_core import assets

SETUP_HINT = "run `make setup` in the workspace root"
SUPPORTED_PYTHON = ((3, 10), (3, 13))  # the range the ROS 2 Jazzy wheels are built for
PINNED_TORCH = "2.13.0"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _python() -> Check:
    lo, hi = SUPPORTED_PYTHON
    ver = sys.version_info[:2]
    ok = lo <= ver <= hi
    return Check(
        "python", ok, f"{sys.version.split()[0]} at {sys.executable}",
        "" if ok else f"use CPython {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]} (PYTHON=python3.11 make setup)",
    )


def _torch() -> Check:
    import torch

    cuda = "available" if torch.cuda.is_available() else "not available"
    detail = f"{torch.__version__}, CUDA {cuda}"
    if not torch.__version__.startswith(PINNED_TORCH):
        return Check("torch", True, detail + f" (project pins {PINNED_TORCH})", required=False)
    return Check("torch", True, detail)


def _rclpy() -> Check:
    import rclpy
    from rclpy.utilities import get_rmw_implementation_identifier

    domain = os.environ.get("ROS_DOMAIN_ID", "0")
    scope = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET (default)")
    return Check(
        "rclpy", True,
        f"{Path(rclpy.__file__).parent}, RMW {get_rmw_implementation_identifier()}, "
        f"ROS_DOMAIN_ID={domain}, discovery {scope}",
    )


def _unihm_msgs() -> Check:
    from unihm_msgs.action import Manipulate
    from unihm_msgs.msg import HandTrajectory, Metric, ObjectObservation, TargetTrajectory
    from unihm_msgs.srv import Generate, Perceive, Refine

    names = [t.__name__ for t in (Manipulate, HandTrajectory, TargetTrajectory,
                                  ObjectObservation, Metric, Perceive, Generate, Refine)]
    return Check("unihm_msgs", True, ", ".join(names))


def _control_msgs() -> Check:
    import control_msgs
    from control_msgs.action import FollowJointTrajectory  # noqa: F401
    from unihm_core.interface_hashes import control_msgs_hash_mismatches, package_prefix_of_module

    prefix = package_prefix_of_module(control_msgs.__file__)
    compat = (prefix / "share" / "control_msgs" / "unihm_compat").exists()
    origin = "wire-compatible build from compat/" if compat else "ROS install"
    try:
        mismatches = control_msgs_hash_mismatches(prefix)
    except FileNotFoundError:
        return Check("control_msgs", True, f"{origin} at {prefix} (no type hashes to compare)")
    if mismatches:
        return Check(
            "control_msgs", False,
            f"{origin} at {prefix}; type hashes differ from ROS 2 Jazzy: " + "; ".join(mismatches),
            "install ros-jazzy-control-msgs, or remove it from the environment and "
            + SETUP_HINT,
        )
    return Check("control_msgs", True, f"{origin} at {prefix}, type hashes match Jazzy")


_ASSET_FOLDERS = ("dex_urdf_hands", "xhand", "franka_panda_urdf", "ycb_objects",
                  "human_hand_sequences", "menagerie_hands")


def _assets() -> Check:
    try:
        root = assets.assets_root()
    except assets.AssetNotFoundError as e:
        return Check("assets", False, str(e).splitlines()[0] + " " + ", ".join(
            str(p) for p in e.searched), f"set {assets.ENV_VAR}=/path/to/assets")
    missing = [name for name in _ASSET_FOLDERS if not (root / name).is_dir()]
    if missing:
        return Check("assets", False, f"{root} lacks {', '.join(missing)}",
                     f"copy them into {root} or set {assets.ENV_VAR}")
    return Check("assets", True, str(root))


def _library(module: str, distribution: str | None = None) -> Callable[[], Check]:
    def check() -> Check:
        mod = importlib.import_module(module)
        ver = getattr(mod, "__version__", None) or metadata.version(distribution or module)
        return Check(module, True, str(ver))

    return check


def _moveit() -> Check:
    try:
        import moveit  # noqa: F401
    except ImportError:
        return Check("moveit_py", True, "not installed; the built-in IK is used", required=False)
    return Check("moveit_py", True, "present", required=False)


@dataclass(frozen=True)
class Probe:
    """One check and what to tell the user when it raises."""

    name: str
    run: Callable[[], Check]
    fix: str = SETUP_HINT
    required: bool = True


PROBES: list[Probe] = [
    Probe("python", _python),
    Probe("torch", _torch),
    Probe("rclpy", _rclpy),
    Probe("unihm_msgs", _unihm_msgs),
    Probe("control_msgs", _control_msgs,
          "install ros-jazzy-control-msgs (ROS install) or " + SETUP_HINT),
    Probe("assets", _assets, f"set {assets.ENV_VAR}=/path/to/assets"),
    Probe("pinocchio", _library("pinocchio")),
    Probe("open3d", _library("open3d"),
          "apt-get install libusb-1.0-0 (open3d needs it), then " + SETUP_HINT),
    Probe("mujoco", _library("mujoco")),
    Probe("transformers", _library("transformers")),
    Probe("safetensors", _library("safetensors")),
    Probe("dex_retargeting", _library("dex_retargeting", "dex-retargeting")),
    Probe("rosbags", _library("rosbags")),
    Probe("scipy", _library("scipy")),
    Probe("trimesh", _library("trimesh")),
    Probe("moveit_py", _moveit, required=False),
]


def run_checks() -> list[Check]:
    results = []
    for probe in PROBES:
        try:
            results.append(probe.run())
        except Exception as e:  # noqa: BLE001 - any failure to import is a finding
            results.append(Check(probe.name, False, f"{type(e).__name__}: {e}", probe.fix,
                                 probe.required))
    return results


def report(results: list[Check], as_json: bool) -> int:
    """Print the results; return the process exit code (1 when a required check failed)."""
    failed = [c for c in results if c.required and not c.ok]
    if as_json:
        import json

        print(json.dumps({"ok": not failed, "checks": [asdict(c) for c in results]}))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="unihm doctor", show_lines=False)
        for col in ("check", "status", "detail", "to fix"):
            table.add_column(col, overflow="fold")
        for c in results:
            if c.ok:
                status = "[green]ok[/]"
            else:
                status = "[red]MISSING[/]" if c.required else "[yellow]optional[/]"
            table.add_row(c.name, status, c.detail, "" if c.ok else c.fix)
        console = Console(width=max(120, Console().width))
        console.print(table)
        console.print(f"[red]{len(failed)} required check(s) failed[/]" if failed
                      else "[green]everything required is present[/]")
    return 1 if failed else 0
