"""``unihm hands``: list the known hand types and show one (config, limits, a PNG).

``show`` is the check a user runs after writing a config for a new hand (docs/hands.md): it
loads the YAML, builds the kinematics against the URDF (which validates joints and links) and
draws the open pose, so every mistake surfaces here with the file and key it comes from.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unihm_core.hands.config import HandConfig, HandConfigError, Keypoint
from unihm_core.hands.registry import UnknownHandError
from unihm_core.se3 import xyz_rpy_from_pose

if TYPE_CHECKING:
    from unihm_core.hands.kinematics import HandKinematics

# Errors a user can fix (a config, a path, an asset): printed as one message, exit code 1.
_USER_ERRORS: tuple[type[Exception], ...] = (HandConfigError, UnknownHandError,
                                             FileNotFoundError)


def _fail(exc: BaseException) -> int:
    print(f"unihm hands: error: {exc}", file=sys.stderr)
    return 1


def _pose_dict(pose: np.ndarray) -> dict[str, list[float]]:
    xyz, rpy = xyz_rpy_from_pose(pose)
    return {"xyz": [round(v, 6) for v in xyz], "rpy": [round(v, 6) for v in rpy]}


def _keypoint_dict(kp: Keypoint) -> dict[str, Any]:
    return {"name": kp.name, "link": kp.link, "offset": list(kp.offset)}


def summary(cfg: HandConfig) -> dict[str, Any]:
    """What ``hands list`` reports about one config (no URDF parsing: fast)."""
    return {"id": cfg.id, "name": cfg.name, "side": cfg.side, "dof": cfg.dof,
            "joints": list(cfg.joint_names), "fingers": list(cfg.finger_names),
            "fingertips": [kp.link for kp in cfg.fingertips], "urdf": str(cfg.urdf_path),
            "source": cfg.source}


def details(kin: HandKinematics) -> dict[str, Any]:
    """Everything ``hands show`` reports: the config, checked against its URDF."""
    cfg = kin.config
    actuated = set(cfg.joint_names)
    mimics = []
    for j, name in enumerate(kin.full_joint_names):
        if name in actuated:
            continue
        row = kin.mimic_matrix[j]
        leader = int(np.argmax(np.abs(row)))
        mimics.append({"joint": name, "leader": cfg.joint_names[leader],
                       "multiplier": float(row[leader]), "offset": float(kin.mimic_offset[j])})
    joints = [{"name": name, "lower": float(kin.lower[k]), "upper": float(kin.upper[k]),
               "open": float(kin.open_pose[k]), "weight": float(kin.weights[k]),
               "limits_from": "config" if name in cfg.joint_limit_overrides else "urdf"}
              for k, name in enumerate(cfg.joint_names)]
    local = kin.keypoints_local(kin.open_pose)
    return {
        **summary(cfg), "description": cfg.description, "base_link": cfg.base_link,
        "joint_limits": joints, "mimic": mimics,
        "finger_keypoints": {f: [_keypoint_dict(kp) for kp in pts]
                             for f, pts in cfg.fingers.items()},
        "palm": _keypoint_dict(cfg.palm),
        "wrist_from_base": _pose_dict(cfg.wrist_from_base),
        "mount": _pose_dict(cfg.flange_to_wrist),
        "open_pose": {name: float(v) for name, v in
                      zip(cfg.joint_names, kin.open_pose, strict=True)},
        "keypoints_open": {name: [round(float(c), 5) for c in p]
                           for name, p in zip(kin.keypoint_names, local, strict=True)},
        "retargeting": bool(cfg.retargeting),
    }


def _list(args: argparse.Namespace) -> int:
    from unihm_core.hands.registry import config_files, get_hand_config

    try:
        files = config_files()
    except _USER_ERRORS as e:
        return _fail(e)
    rows, errors = [], []
    for hand_id in sorted(files):
        try:
            rows.append(summary(get_hand_config(hand_id)))
        except _USER_ERRORS as e:
            errors.append({"id": hand_id, "source": str(files[hand_id]), "error": str(e)})
    if args.json:
        print(json.dumps(rows + errors))
    else:
        _print_list(rows, errors)
    return 1 if errors else 0


def _print_list(rows: list[dict[str, Any]], errors: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Hand types (unihm hands show ID for details)")
    for column in ("id", "name", "side", "dof", "fingertips (thumb first)", "joints"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["id"], row["name"], row["side"], str(row["dof"]),
                      "\n".join(f"{f}: {t}" for f, t in zip(row["fingers"], row["fingertips"],
                                                            strict=True)),
                      ", ".join(row["joints"]))
    console = Console(width=max(Console().width, 140))
    console.print(table)
    for err in errors:
        console.print(f"[red]{err['id']}[/red] ({err['source']}): {err['error']}",
                      markup=True, highlight=False)


def _show(args: argparse.Namespace) -> int:
    from unihm_core.hands.kinematics import HandKinematics
    from unihm_core.hands.registry import get_hand_config

    try:
        # Not the id-keyed cache: a config edited since it was first loaded must show as it is now.
        kin = HandKinematics(get_hand_config(args.id))
        info = details(kin)
    except _USER_ERRORS as e:
        return _fail(e)
    png = None
    if not args.no_png:
        from unihm_core.hands.render import HandRenderError, render_hand

        path = Path(args.png) if args.png else Path.cwd() / f"{args.id}.png"
        try:
            result = render_hand(kin, path)
        except (HandRenderError, OSError) as e:
            return _fail(e)
        png = {"path": str(result.path), "geometry": result.geometry, "faces": result.faces,
               "seconds": round(result.seconds, 2), "notes": list(result.notes)}
    info["png"] = png
    if args.json:
        print(json.dumps(info))
    else:
        _print_show(info)
    return 0


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def _print_show(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 120), highlight=False)
    console.print(f"[bold]{info['id']}[/bold]: {info['name']} (side: {info['side']}, "
                  f"{info['dof']} DoF)")
    if info["description"]:
        console.print(info["description"])
    console.print(f"config:      {info['source']}")
    console.print(f"urdf:        {info['urdf']}")
    console.print(f"base_link:   {info['base_link']}")
    for key in ("wrist_from_base", "mount"):
        pose = info[key]
        console.print(f"{key + ':':<12} xyz {_fmt(pose['xyz'])} m, rpy {_fmt(pose['rpy'])} rad")
    joints = Table(title="actuated joints (config order)")
    for column in ("#", "joint", "lower", "upper", "open", "weight", "limits from"):
        joints.add_column(column)
    for k, j in enumerate(info["joint_limits"]):
        joints.add_row(str(k), j["name"], f"{j['lower']:.4f}", f"{j['upper']:.4f}",
                       f"{j['open']:.4f}", f"{j['weight']:g}", j["limits_from"])
    console.print(joints)
    if info["mimic"]:
        mimic = Table(title="mimic joints (from the URDF): joint = multiplier * leader + offset")
        for column in ("joint", "leader", "multiplier", "offset"):
            mimic.add_column(column)
        for m in info["mimic"]:
            mimic.add_row(m["joint"], m["leader"], f"{m['multiplier']:g}", f"{m['offset']:g}")
        console.print(mimic)
    else:
        console.print("mimic joints: none")
    fingers = Table(title="keypoints (base to tip; last = fingertip), open pose in the wrist frame")
    for column in ("keypoint", "link", "offset (m)", "open pose xyz (m)"):
        fingers.add_column(column)
    for kp in [info["palm"], *(p for pts in info["finger_keypoints"].values() for p in pts)]:
        fingers.add_row(kp["name"], kp["link"], _fmt(kp["offset"]),
                        _fmt(info["keypoints_open"][kp["name"]]))
    console.print(fingers)
    png = info["png"]
    if png:
        console.print(f"wrote {png['path']} ({png['geometry']} geometry, {png['faces']} faces, "
                      f"{png['seconds']} s)")
        for note in png["notes"]:
            console.print(f"note: {note}")


def register_hands(subparsers: argparse._SubParsersAction) -> None:
    """Entry point of the ``unihm.commands`` group: adds ``unihm hands list|show``."""
    parser = subparsers.add_parser(
        "hands", help="list the known hand types, show one and draw it",
        description="Hand types come from YAML configs (docs/hands.md): the shipped ones, "
                    "~/.config/unihm/hands and the folders in $UNIHM_HAND_CONFIGS.")
    sub = parser.add_subparsers(title="hands commands", metavar="SUBCOMMAND")
    list_parser = sub.add_parser("list", help="every known hand type, one row each")
    list_parser.add_argument("--json", action="store_true",
                             help="print one JSON array instead of a table")
    list_parser.set_defaults(func=_list)
    show = sub.add_parser(
        "show", help="one hand type in full, and a PNG of its open pose",
        description="Print a hand's config checked against its URDF (joints with limits, "
                    "mimic couplings, keypoints, frames) and draw its open pose.")
    show.add_argument("id", help="hand type id, e.g. xhand_right")
    show.add_argument("--png", metavar="PATH", help="where to write the picture "
                      "(default: ./<id>.png)")
    show.add_argument("--no-png", action="store_true", help="do not draw")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=_show)

    def _usage(_: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_usage)
