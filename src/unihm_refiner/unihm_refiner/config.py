"""Refiner parameters: one YAML file (``configs/default.yaml``), every field documented there.

Overrides are nested mappings with the same keys (``{"solver": {"fingers_only": True}}``), so a
ROS parameter file, a CLI flag and a test can each change one field without restating the rest.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unihm_core.config_folders import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"
PRIOR_GROUPS = ("finger", "wrist_translation", "wrist_rotation")


class RefinerConfigError(ConfigError):
    """A refiner config is malformed; the message names the file and the key."""

    kind = "refiner"


@dataclass(frozen=True)
class ContactParams:
    alpha: float
    k: float
    lambda_c: float
    epsilon: float
    attract_within: float | None
    penetration_points: str
    penetration_margin: float
    neighbours: int
    smoothing: float


@dataclass(frozen=True)
class PriorWeights:
    finger: float
    wrist_translation: float
    wrist_rotation: float

    def diagonal(self, joint_weights: np.ndarray) -> np.ndarray:
        """Diagonal of W over (wrist v, wrist w, fingers)."""
        return np.concatenate([np.full(3, self.wrist_translation),
                               np.full(3, self.wrist_rotation), self.finger * joint_weights])


@dataclass(frozen=True)
class SolverParams:
    max_iterations: int
    tolerance: float
    lambda_init: float
    lambda_up: float
    lambda_down: float
    lambda_max: float
    fingers_only: bool
    joint_limits: bool
    warm_start: bool
    compiled: bool = True


@dataclass(frozen=True)
class RefinerConfig:
    contact: ContactParams
    gen: PriorWeights
    vel: PriorWeights
    acc: PriorWeights
    solver: SolverParams
    source: str = str(DEFAULT_CONFIG)


def _merge(base: dict[str, Any], override: dict[str, Any], source: str, path: str = "") -> None:
    for key, value in override.items():
        where = f"{path}{key}"
        if key not in base:
            raise RefinerConfigError(source, where, f"unknown key (allowed: {', '.join(base)})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise RefinerConfigError(source, where, "expected a mapping")
            _merge(base[key], value, source, f"{where}.")
        else:
            base[key] = value


def _number(data: dict[str, Any], key: str, source: str, path: str, *, positive: bool = True,
            allow_zero: bool = False) -> float:
    value = data[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value > 0 or (allow_zero and value == 0) or not positive)
    if not ok:
        need = "a positive number" if positive and not allow_zero else "a number >= 0"
        raise RefinerConfigError(source, f"{path}{key}", f"expected {need}, got {value!r}")
    return float(value)


def _count(data: dict[str, Any], key: str, source: str, path: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RefinerConfigError(source, f"{path}{key}",
                                 f"expected a positive integer, got {value!r}")
    return value


def load_refiner_config(path: str | os.PathLike[str] | None = None,
                        overrides: dict[str, Any] | None = None) -> RefinerConfig:
    """The default config, optionally a user YAML on top, then ``overrides`` on top of that."""
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    source = str(DEFAULT_CONFIG)
    if path is not None:
        source = str(path)
        try:
            user = yaml.safe_load(Path(path).read_text())
        except OSError as e:
            raise RefinerConfigError(source, "", f"cannot read the file ({e.strerror})") from e
        except yaml.YAMLError as e:
            raise RefinerConfigError(source, "", f"not valid YAML: {e}") from e
        if not isinstance(user, dict):
            raise RefinerConfigError(source, "", "the file must hold one YAML mapping")
        _merge(data, user, source)
    if overrides:
        data = copy.deepcopy(data)
        _merge(data, overrides, "<overrides>")
    return _parse(data, source)


def _parse(data: dict[str, Any], source: str) -> RefinerConfig:
    c = data["contact"]
    attract = c["attract_within"]
    if attract is not None:
        attract = _number(c, "attract_within", source, "contact.", allow_zero=True)
    if c["penetration_points"] not in ("fingertips", "all"):
        raise RefinerConfigError(source, "contact.penetration_points",
                                 f"expected 'fingertips' or 'all', got {c['penetration_points']!r}")
    contact = ContactParams(
        alpha=_number(c, "alpha", source, "contact."), k=_number(c, "k", source, "contact."),
        lambda_c=_number(c, "lambda_c", source, "contact."),
        epsilon=_number(c, "epsilon", source, "contact."), attract_within=attract,
        penetration_points=c["penetration_points"],
        penetration_margin=_number(c, "penetration_margin", source, "contact."),
        neighbours=_count(c, "neighbours", source, "contact."),
        smoothing=_number(c, "smoothing", source, "contact."))
    priors = {}
    for name in ("gen", "vel", "acc"):
        group = data["prior"][name]
        missing = [g for g in PRIOR_GROUPS if g not in group]
        if missing:
            raise RefinerConfigError(source, f"prior.{name}.{missing[0]}", "missing weight")
        priors[name] = PriorWeights(*(_number(group, g, source, f"prior.{name}.",
                                              allow_zero=name != "gen")
                                      for g in PRIOR_GROUPS))
    s = data["solver"]
    iterations = _count(s, "max_iterations", source, "solver.")
    for flag in ("fingers_only", "joint_limits", "warm_start", "compiled"):
        if not isinstance(s[flag], bool):
            raise RefinerConfigError(source, f"solver.{flag}", f"expected true or false, got "
                                                               f"{s[flag]!r}")
    solver = SolverParams(
        max_iterations=iterations, tolerance=_number(s, "tolerance", source, "solver."),
        lambda_init=_number(s, "lambda_init", source, "solver."),
        lambda_up=_number(s, "lambda_up", source, "solver."),
        lambda_down=_number(s, "lambda_down", source, "solver."),
        lambda_max=_number(s, "lambda_max", source, "solver."),
        fingers_only=s["fingers_only"], joint_limits=s["joint_limits"],
        warm_start=s["warm_start"], compiled=s["compiled"])
    return RefinerConfig(contact, priors["gen"], priors["vel"], priors["acc"], solver, source)
