"""One YAML file per arm: URDF, joints, flange, published limits, ready posture, IK defaults.

The schema (version 1) is documented in ``docs/arm.md``. Any serial arm whose actuated joints
are one-DoF (revolute or prismatic) fits, so a second arm is a new YAML file rather than code.
Every problem raises :class:`ArmConfigError` naming the file and the key, like the hand configs.

Arm configs are searched, later folders overriding an id of earlier ones: the shipped
``unihm_core/arm/configs``, ``~/.config/unihm/arms``, then every folder of ``$UNIHM_ARM_CONFIGS``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unihm_core import config_folders as folders
from unihm_core.config_folders import ConfigError
from unihm_core.se3 import FloatArray

SCHEMA_VERSION = 1
ENV_VAR = "UNIHM_ARM_CONFIGS"
BUILTIN_DIR = Path(__file__).resolve().parent / "configs"
USER_DIR = Path("~/.config/unihm/arms")
DEFAULT_ARM = "franka_panda"

_REQUIRED = ("schema", "id", "name", "urdf", "base_link", "flange_link", "joints", "limits",
             "ready_posture")
_OPTIONAL = ("ik", "description", "urdf_rename", "limits_replace_urdf")
_LIMIT_KEYS = ("position_lower", "position_upper", "velocity", "acceleration", "jerk")


class ArmConfigError(ConfigError):
    """An arm config is malformed; the message names the file and the offending key."""

    kind = "arm"


@dataclass(frozen=True)
class IKParams:
    """Damped least squares settings; the YAML ``ik`` mapping overrides these defaults.

    Two pairs of tolerances: iteration stops once the error is below the tight pair, and a frame
    is *reported* reached below the loose pair, so a frame cut short by ``max_iterations`` a
    hair above the tight pair still counts as reached while a target out of the workspace never
    does.
    """

    damping: float = 1e-4
    max_iterations: int = 60
    max_step: float = 0.4
    position_tolerance: float = 1e-5
    rotation_tolerance: float = 1e-4
    reach_position_tolerance: float = 1e-3
    reach_rotation_tolerance: float = 1e-2
    nullspace_gain: float = 0.05
    limit_margin: float = 0.0
    restarts: int = 8

    def replace(self, **changes: Any) -> IKParams:
        """A copy with some fields changed (validated like the YAML values)."""
        return parse_ik_params({**dataclasses.asdict(self), **changes}, "<IKParams.replace>")


@dataclass(frozen=True)
class ArmConfig:
    """A validated arm config; arrays follow the order of ``joint_names``."""

    id: str
    name: str
    urdf_path: Path
    base_link: str
    flange_link: str
    joint_names: tuple[str, ...]
    position_lower: FloatArray
    position_upper: FloatArray
    velocity_limit: FloatArray
    acceleration_limit: FloatArray
    jerk_limit: FloatArray
    ready_posture: FloatArray
    ik: IKParams
    description: str = ""
    source: str = ""
    # name prefixes rewritten in the URDF before it is read ({"panda_": "fr3_"}): an arm that
    # shares another's kinematics under its own joint and link names
    urdf_rename: tuple[tuple[str, str], ...] = ()
    # the config's position limits replace the URDF's instead of having to lie within them
    limits_replace_urdf: bool = False

    @property
    def dof(self) -> int:
        return len(self.joint_names)


def _require(cond: bool, source: str, key: str, problem: str) -> None:
    if not cond:
        raise ArmConfigError(source, key, problem)


def _vector(value: Any, n: int, source: str, key: str) -> FloatArray:
    ok = isinstance(value, (list, tuple)) and len(value) == n
    if ok:
        try:
            out = np.array([float(v) for v in value])
        except (TypeError, ValueError):
            ok = False
        else:
            ok = bool(np.all(np.isfinite(out)))
    _require(ok, source, key, f"expected a list of {n} finite numbers, got {value!r}")
    return out


def parse_ik_params(data: Any, source: str, key: str = "ik") -> IKParams:
    """Validate an ``ik`` mapping; missing fields keep the :class:`IKParams` defaults."""
    if data is None:
        return IKParams()
    _require(isinstance(data, dict), source, key, "expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(IKParams)}
    values: dict[str, Any] = {}
    for name, raw in data.items():
        sub = f"{key}.{name}"
        _require(name in fields, source, sub, f"unknown key (allowed: {', '.join(fields)})")
        if fields[name].type == "int":
            _require(isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0, source,
                     sub, f"expected a non-negative integer, got {raw!r}")
            values[name] = int(raw)
        else:
            ok = isinstance(raw, (int, float)) and not isinstance(raw, bool)
            _require(ok and np.isfinite(raw) and raw >= 0, source, sub,
                     f"expected a non-negative number, got {raw!r}")
            values[name] = float(raw)
    params = IKParams(**values)
    _require(params.max_iterations >= 1, source, f"{key}.max_iterations", "must be at least 1")
    _require(params.max_step > 0, source, f"{key}.max_step", "must be positive")
    for name in ("position_tolerance", "rotation_tolerance"):
        _require(getattr(params, name) > 0, source, f"{key}.{name}", "must be positive")
    _require(params.reach_position_tolerance >= params.position_tolerance, source,
             f"{key}.reach_position_tolerance", "must not be below position_tolerance")
    _require(params.reach_rotation_tolerance >= params.rotation_tolerance, source,
             f"{key}.reach_rotation_tolerance", "must not be below rotation_tolerance")
    return params


def parse_arm_config(data: Any, source: str = "<dict>",
                     config_path: Path | None = None) -> ArmConfig:
    """Validate a parsed YAML mapping into an :class:`ArmConfig` (URDF checks come later)."""
    arm_id = folders.check_header(data, source, (_REQUIRED, _OPTIONAL), SCHEMA_VERSION,
                                  example_id="franka_panda", error=ArmConfigError)
    for key in ("urdf", "base_link", "flange_link"):
        _require(isinstance(data[key], str) and bool(data[key]), source, key,
                 "expected a non-empty string")
    joints = data["joints"]
    _require(isinstance(joints, list) and bool(joints)
             and all(isinstance(j, str) for j in joints), source, "joints",
             "expected a non-empty list of joint names")
    dupes = sorted({j for j in joints if joints.count(j) > 1})
    _require(not dupes, source, "joints", f"duplicate joint names: {dupes}")
    n = len(joints)

    limits = data["limits"]
    _require(isinstance(limits, dict), source, "limits",
             f"expected a mapping with {', '.join(_LIMIT_KEYS)}")
    for key in _LIMIT_KEYS:
        _require(key in limits, source, f"limits.{key}", "missing required key")
    extra = sorted(set(limits) - set(_LIMIT_KEYS))
    _require(not extra, source, f"limits.{extra[0]}" if extra else "limits",
             f"unknown key (allowed: {', '.join(_LIMIT_KEYS)})")
    vec = {k: _vector(limits[k], n, source, f"limits.{k}") for k in _LIMIT_KEYS}
    bad = np.flatnonzero(vec["position_lower"] >= vec["position_upper"])
    _require(bad.size == 0, source, "limits.position_lower",
             f"lower limit not below upper limit for joint {joints[bad[0]] if bad.size else ''}")
    for key in ("velocity", "acceleration", "jerk"):
        _require(bool(np.all(vec[key] > 0)), source, f"limits.{key}", "limits must be positive")

    ready = _vector(data["ready_posture"], n, source, "ready_posture")
    outside = np.flatnonzero((ready < vec["position_lower"]) | (ready > vec["position_upper"]))
    _require(outside.size == 0, source, "ready_posture",
             f"outside the position limits for joint {joints[outside[0]] if outside.size else ''}")

    rename = data.get("urdf_rename") or {}
    _require(isinstance(rename, dict) and all(isinstance(k, str) and k and isinstance(v, str)
                                              and v for k, v in rename.items()),
             source, "urdf_rename", "expected a mapping of non-empty name prefixes, "
                                    "e.g. {panda_: fr3_}")
    replace = data.get("limits_replace_urdf", False)
    _require(isinstance(replace, bool), source, "limits_replace_urdf", "expected true or false")

    try:
        urdf_path = folders.resolve_config_path(data["urdf"], config_path)
    except FileNotFoundError as e:
        raise ArmConfigError(source, "urdf", str(e)) from e
    _require(urdf_path.is_file(), source, "urdf", f"URDF file not found: {urdf_path}")

    return ArmConfig(
        id=arm_id, name=str(data["name"]), urdf_path=urdf_path, base_link=data["base_link"],
        flange_link=data["flange_link"], joint_names=tuple(joints),
        position_lower=vec["position_lower"], position_upper=vec["position_upper"],
        velocity_limit=vec["velocity"], acceleration_limit=vec["acceleration"],
        jerk_limit=vec["jerk"], ready_posture=ready,
        ik=parse_ik_params(data.get("ik"), source),
        description=str(data.get("description", "")).strip(), source=source,
        urdf_rename=tuple(sorted(rename.items())), limits_replace_urdf=replace)


def load_arm_config(path: str | os.PathLike[str]) -> ArmConfig:
    """Read and validate one arm YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ArmConfigError(path, "", f"cannot read the file ({e.strerror})") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ArmConfigError(path, "", f"not valid YAML: {e}") from e
    return parse_arm_config(data, str(path), path)


class UnknownArmError(KeyError):
    """No config defines the requested arm id."""

    def __init__(self, arm_id: str, known: list[str], searched: list[Path]) -> None:
        self.arm_id = arm_id
        close = difflib.get_close_matches(arm_id, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        folders = ", ".join(str(p) for p in searched)
        super().__init__(f"unknown arm '{arm_id}'.{hint} Known arms: {', '.join(known)}. "
                         f"Configs are read from: {folders} (add a YAML file there, see "
                         "docs/arm.md).")

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def config_dirs() -> list[Path]:
    return folders.config_dirs(BUILTIN_DIR, USER_DIR, ENV_VAR)


def config_files() -> dict[str, Path]:
    """Arm id -> config file; a later folder overrides an id of an earlier one."""
    return folders.index_configs(config_dirs(), ArmConfigError)


def arm_ids() -> list[str]:
    """Every known arm id, sorted."""
    return sorted(config_files())


def get_arm_config(arm_id: str = DEFAULT_ARM) -> ArmConfig:
    """The validated config of an arm id."""
    files = config_files()
    if arm_id not in files:
        raise UnknownArmError(arm_id, sorted(files), config_dirs())
    return _load_cached(files[arm_id], files[arm_id].stat().st_mtime_ns)


@cache
def _load_cached(path: Path, _mtime_ns: int) -> ArmConfig:
    return load_arm_config(path)
