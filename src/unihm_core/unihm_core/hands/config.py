"""One YAML file per hand: what every stage needs to know about a hand type.

The schema (version 1) is documented in ``docs/hands.md``. Loading validates what can be checked
without the URDF (types, names, shapes); :class:`~unihm_core.hands.kinematics.HandKinematics`
checks the rest against the URDF. Every problem raises :class:`HandConfigError` naming the file
and the key, so that a user writing a config for a new hand sees where it went wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unihm_core.config_folders import ConfigError, check_header, resolve_config_path
from unihm_core.se3 import FloatArray, pose_from_xyz_rpy

SCHEMA_VERSION = 1
FINGER_NAMES = ("thumb", "index", "middle", "ring", "pinky")
SIDES = ("right", "left", "none")
_REQUIRED = ("schema", "id", "name", "side", "urdf", "base_link", "joints", "fingers", "palm")
_OPTIONAL = ("wrist_from_base", "joint_limits", "joint_weights", "open_pose", "mount",
             "retargeting", "description")


class HandConfigError(ConfigError):
    """A hand config is malformed; the message names the file and the offending key."""

    kind = "hand"


@dataclass(frozen=True)
class Keypoint:
    """A point rigidly attached to a URDF link (``offset`` in that link's frame, metres)."""

    name: str
    link: str
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class HandConfig:
    """A validated hand config. Poses are 4x4 matrices; see docs/hands.md for the frames."""

    id: str
    name: str
    side: str
    urdf_path: Path
    base_link: str
    joint_names: tuple[str, ...]
    fingers: dict[str, tuple[Keypoint, ...]]
    palm: Keypoint
    wrist_from_base: FloatArray
    joint_limit_overrides: dict[str, tuple[float, float]] = field(default_factory=dict)
    joint_weights: dict[str, float] = field(default_factory=dict)
    open_pose: dict[str, float] = field(default_factory=dict)
    flange_to_wrist: FloatArray = field(default_factory=lambda: np.eye(4))
    retargeting: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    @property
    def finger_names(self) -> tuple[str, ...]:
        return tuple(self.fingers)

    @property
    def fingertips(self) -> tuple[Keypoint, ...]:
        """The last keypoint of every finger, thumb first."""
        return tuple(points[-1] for points in self.fingers.values())

    @property
    def keypoints(self) -> tuple[Keypoint, ...]:
        """Palm, then every finger's keypoints from its base to its tip (thumb first)."""
        return (self.palm, *(p for points in self.fingers.values() for p in points))

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keypoints)

    @property
    def fingertip_indices(self) -> tuple[int, ...]:
        """Indices of the fingertips in :attr:`keypoints`."""
        names = self.keypoint_names
        return tuple(names.index(tip.name) for tip in self.fingertips)


def _require(cond: bool, source: str, key: str, problem: str) -> None:
    if not cond:
        raise HandConfigError(source, key, problem)


def _floats(value: Any, n: int, source: str, key: str) -> tuple[float, ...]:
    ok = isinstance(value, (list, tuple)) and len(value) == n
    if ok:
        try:
            out = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            ok = False
        else:
            ok = all(np.isfinite(out))
    _require(ok, source, key, f"expected a list of {n} finite numbers, got {value!r}")
    return out


def _pose(value: Any, source: str, key: str) -> FloatArray:
    if value is None:
        return np.eye(4)
    _require(isinstance(value, dict) and set(value) <= {"xyz", "rpy"}, source, key,
             f"expected a mapping with 'xyz' and 'rpy' (metres, radians), got {value!r}")
    xyz = _floats(value.get("xyz", [0, 0, 0]), 3, source, f"{key}.xyz")
    rpy = _floats(value.get("rpy", [0, 0, 0]), 3, source, f"{key}.rpy")
    return pose_from_xyz_rpy(xyz, rpy)


def _keypoint(value: Any, name: str, source: str, key: str) -> Keypoint:
    if isinstance(value, str) and value:
        return Keypoint(name, value)
    _require(isinstance(value, dict) and isinstance(value.get("link"), str)
             and set(value) <= {"link", "offset"}, source, key,
             f"expected a link name or {{link: NAME, offset: [x, y, z]}}, got {value!r}")
    offset = _floats(value.get("offset", [0, 0, 0]), 3, source, f"{key}.offset")
    return Keypoint(name, value["link"], offset)  # type: ignore[arg-type]


def parse_hand_config(data: Any, source: str = "<dict>",
                      config_path: Path | None = None) -> HandConfig:
    """Validate a parsed YAML mapping into a :class:`HandConfig`."""
    hand_id = check_header(data, source, (_REQUIRED, _OPTIONAL), SCHEMA_VERSION,
        example_id="xhand_right", error=HandConfigError)
    _require(data["side"] in SIDES, source, "side",
             f"expected one of {', '.join(SIDES)}, got {data['side']!r}")
    _require(isinstance(data["urdf"], str) and data["urdf"], source, "urdf",
             "expected a path string")
    _require(isinstance(data["base_link"], str), source, "base_link", "expected a link name")

    joints = data["joints"]
    _require(isinstance(joints, list) and joints and all(isinstance(j, str) for j in joints),
             source, "joints", "expected a non-empty list of joint names")
    dupes = sorted({j for j in joints if joints.count(j) > 1})
    _require(not dupes, source, "joints", f"duplicate joint names: {dupes}")

    fingers_raw = data["fingers"]
    _require(isinstance(fingers_raw, dict) and fingers_raw, source, "fingers",
             f"expected a mapping finger -> list of keypoints; fingers are {FINGER_NAMES}")
    fingers: dict[str, tuple[Keypoint, ...]] = {}
    for finger, points in fingers_raw.items():
        key = f"fingers.{finger}"
        _require(finger in FINGER_NAMES, source, key,
                 f"unknown finger (allowed: {', '.join(FINGER_NAMES)})")
        _require(isinstance(points, list) and points, source, key,
                 "expected a list of keypoints from the finger's base to its tip")
        names = [f"{finger}_{i}" for i in range(len(points) - 1)] + [f"{finger}_tip"]
        fingers[finger] = tuple(_keypoint(p, n, source, f"{key}[{i}]")
                                for i, (p, n) in enumerate(zip(points, names, strict=True)))
    order = [f for f in FINGER_NAMES if f in fingers]
    _require(list(fingers) == order, source, "fingers",
             f"fingers must be listed thumb first, in the order {', '.join(order)}")

    limits: dict[str, tuple[float, float]] = {}
    for name, value in (data.get("joint_limits") or {}).items():
        lo, hi = _floats(value, 2, source, f"joint_limits.{name}")
        _require(lo <= hi, source, f"joint_limits.{name}", f"lower {lo} > upper {hi}")
        _require(name in joints, source, f"joint_limits.{name}", "not an actuated joint")
        limits[name] = (lo, hi)
    weights: dict[str, float] = {}
    for name, value in (data.get("joint_weights") or {}).items():
        (w,) = _floats([value], 1, source, f"joint_weights.{name}")
        _require(w > 0, source, f"joint_weights.{name}", "weights must be positive")
        _require(name in joints, source, f"joint_weights.{name}", "not an actuated joint")
        weights[name] = w
    open_pose: dict[str, float] = {}
    for name, value in (data.get("open_pose") or {}).items():
        (v,) = _floats([value], 1, source, f"open_pose.{name}")
        _require(name in joints, source, f"open_pose.{name}", "not an actuated joint")
        open_pose[name] = v
    retargeting = data.get("retargeting") or {}
    _require(isinstance(retargeting, dict), source, "retargeting", "expected a mapping")

    try:
        urdf_path = resolve_config_path(data["urdf"], config_path)
    except FileNotFoundError as e:
        raise HandConfigError(source, "urdf", str(e)) from e
    _require(urdf_path.is_file(), source, "urdf", f"URDF file not found: {urdf_path}")

    return HandConfig(
        id=hand_id, name=str(data["name"]), side=data["side"], urdf_path=urdf_path,
        base_link=data["base_link"], joint_names=tuple(joints), fingers=fingers,
        palm=_keypoint(data["palm"], "palm", source, "palm"),
        wrist_from_base=_pose(data.get("wrist_from_base"), source, "wrist_from_base"),
        joint_limit_overrides=limits, joint_weights=weights, open_pose=open_pose,
        flange_to_wrist=_pose(data.get("mount"), source, "mount"),
        retargeting=retargeting, description=str(data.get("description", "")).strip(),
        source=source)


def load_hand_config(path: str | os.PathLike[str]) -> HandConfig:
    """Read and validate one hand YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise HandConfigError(path, "", f"cannot read the file ({e.strerror})") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise HandConfigError(path, "", f"not valid YAML: {e}") from e
    return parse_hand_config(data, str(path), path)
