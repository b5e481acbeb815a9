"""The last gate before a joint trajectory goes to a controller: every check, every violation.

A trajectory sent to franka_ros2's ``joint_trajectory_controller`` (or a hand driver) is
executed as the controller interpolates it: with positions, velocities and accelerations at
every point it runs one quintic polynomial per segment through those values. A jump at the
start, a non-zero velocity at the end or a velocity field that does not match the positions
then becomes a velocity/acceleration discontinuity, which the Franka answers with a reflex
(franka_ros2 issues #70, #168, #174). :func:`validate_joint_trajectory` therefore checks the
values as given *and* what they imply: finite differences of the positions and the peaks of
the interpolated segments, so that a field that lies cannot hide a jump.

Limits come from :class:`Limits` (arm config or hand URDF); the message of every violation
names the joint, the point (index and time), the value and the limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.interpolate import BPoly

if TYPE_CHECKING:
    from unihm_core.arm.config import ArmConfig

FloatArray = NDArray[np.float64]

# Hand URDFs publish velocity limits but no acceleration limits. A finger joint may reach its
# velocity limit in HAND_ACCELERATION_TIME seconds (servo-driven fingers get up to speed in
# about 0.1-0.3 s), which keeps revolute (rad) and prismatic (m) joints in their own units.
HAND_ACCELERATION_TIME = 0.25  # s
# Used where a hand URDF gives no usable (positive, finite) velocity limit for a joint.
HAND_DEFAULT_VELOCITY = {"rad": 1.0, "m": 0.05}  # rad/s, m/s

DEFAULT_START_TOLERANCE = 1e-3  # rad (or m): first point vs the current joint state
DEFAULT_REST_VELOCITY_TOLERANCE = 1e-4  # rad/s: "zero" velocity at the ends
DEFAULT_REST_ACCELERATION_TOLERANCE = 1e-3  # rad/s^2: "zero" acceleration at the ends
DEFAULT_RELATIVE_TOLERANCE = 1e-6  # on every limit, for rounding
DEFAULT_INTERPOLATION_SAMPLES = 12  # per segment, where the interpolated motion is checked

VIOLATION_KINDS = (
    "shape",  # arrays of the wrong shape, missing velocity/acceleration fields, < 2 points
    "names",  # unknown, missing or duplicate joint names
    "non_finite",  # NaN or infinity in a time stamp, position, velocity or acceleration
    "time",  # first stamp below 0 or stamps not strictly increasing
    "position",  # a point outside the position limits
    "velocity", "acceleration",  # the given fields above the limits
    "velocity_fd", "acceleration_fd",  # finite differences of the positions above the limits
    "position_interpolated", "velocity_interpolated", "acceleration_interpolated",
    "jerk_interpolated",  # the controller's quintic interpolation between points
    "start",  # first point too far from the current joint state
    "start_velocity", "start_acceleration",  # not at rest at the first point
    "end_velocity", "end_acceleration",  # not at rest at the last point
)


@dataclass(frozen=True, eq=False)
class Limits:
    """Per-joint limits in the order of ``names``; ``units`` is "rad" or "m" per joint.

    These are the published (hard) limits; :meth:`scaled` gives the fraction that planning
    uses. ``jerk`` is optional (hand URDFs have none) and then not checked.
    """

    names: tuple[str, ...]
    lower: FloatArray
    upper: FloatArray
    velocity: FloatArray
    acceleration: FloatArray
    jerk: FloatArray | None = None
    units: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        n = len(names)
        if n == 0:
            raise ValueError("Limits: no joints")
        dupes = sorted({j for j in names if names.count(j) > 1})
        if dupes:
            raise ValueError(f"Limits: duplicate joint names {dupes}")
        object.__setattr__(self, "names", names)
        for key in ("lower", "upper", "velocity", "acceleration", "jerk"):
            value = getattr(self, key)
            if value is None:
                continue
            arr = np.array(value, dtype=np.float64).reshape(-1)
            if arr.shape != (n,):
                raise ValueError(f"Limits.{key}: expected {n} values, got {arr.size}")
            if key in ("lower", "upper"):
                ok = not np.any(np.isnan(arr))
            else:
                ok = bool(np.all(np.isfinite(arr) & (arr > 0)))
            if not ok:
                raise ValueError(f"Limits.{key}: invalid values {arr.tolist()}")
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)
        bad = np.flatnonzero(self.lower > self.upper)
        if bad.size:
            raise ValueError(f"Limits: lower above upper for joint {names[bad[0]]}")
        units = tuple(self.units) or ("rad",) * n
        if len(units) != n or not set(units) <= {"rad", "m"}:
            raise ValueError(f"Limits.units: expected {n} of 'rad'/'m', got {units}")
        object.__setattr__(self, "units", units)

    @property
    def dof(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    @classmethod
    def from_arm(cls, arm: str | ArmConfig = "franka_panda") -> Limits:
        """The published limits of an arm config (an id or a loaded :class:`ArmConfig`)."""
        from unihm_core.arm.config import get_arm_config

        config = get_arm_config(arm) if isinstance(arm, str) else arm
        return cls(config.joint_names, config.position_lower, config.position_upper,
                   config.velocity_limit, config.acceleration_limit, config.jerk_limit,
                   source=f"arm {config.id}")

    @classmethod
    def from_hand(cls, hand_id: str) -> Limits:
        """Limits of a hand's actuated joints: positions and velocities from its URDF (and the
        config's ``joint_limits``), accelerations derived as documented above."""
        from unihm_core.hands.kinematics import hand_kinematics

        kin = hand_kinematics(hand_id)
        model = kin.model
        units = []
        for name in kin.config.joint_names:
            joint = model.joints[kin.full_joint_names.index(name) + 1]  # 0 is the universe
            units.append("m" if joint.shortname().startswith(("JointModelP", "JointModelPrismatic"))
                         else "rad")
        velocity = np.array(kin.velocity_limits, dtype=np.float64)
        for k, unit in enumerate(units):
            if not (np.isfinite(velocity[k]) and velocity[k] > 0):
                velocity[k] = HAND_DEFAULT_VELOCITY[unit]
        return cls(kin.config.joint_names, kin.lower, kin.upper, velocity,
                   velocity / HAND_ACCELERATION_TIME, None, tuple(units),
                   source=f"hand {hand_id}")

    def scaled(self, scale: float) -> Limits:
        """Velocity, acceleration and jerk limits times ``scale`` (positions unchanged)."""
        if not (np.isfinite(scale) and 0 < scale <= 1):
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        jerk = None if self.jerk is None else self.jerk * scale
        return Limits(self.names, self.lower, self.upper, self.velocity * scale,
                      self.acceleration * scale, jerk, self.units,
                      source=f"{self.source} x{scale:g}".strip())

    def select(self, names: Sequence[str]) -> Limits:
        """The limits of ``names``, in that order (KeyError for an unknown name)."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise KeyError(f"no limits for joints {missing} (known: {', '.join(self.names)})")
        idx = [self.names.index(n) for n in names]
        return Limits(tuple(names), self.lower[idx], self.upper[idx], self.velocity[idx],
                      self.acceleration[idx], None if self.jerk is None else self.jerk[idx],
                      tuple(self.units[i] for i in idx), self.source)

    @staticmethod
    def concat(*parts: Limits) -> Limits:
        """Several joint groups as one (arm + hand retimed together share their time stamps).
        Jerk is kept only when every part has it."""
        jerk = (None if any(p.jerk is None for p in parts)
                else np.concatenate([p.jerk for p in parts]))  # type: ignore[misc]
        return Limits(tuple(n for p in parts for n in p.names),
                      np.concatenate([p.lower for p in parts]),
                      np.concatenate([p.upper for p in parts]),
                      np.concatenate([p.velocity for p in parts]),
                      np.concatenate([p.acceleration for p in parts]), jerk,
                      tuple(u for p in parts for u in p.units),
                      " + ".join(p.source for p in parts if p.source))


@dataclass(frozen=True)
class Violation:
    """One failed check. ``joint``/``point``/``time``/``value``/``limit`` are None where they
    do not apply; ``count`` is how many points (or segments) fail the same check on the same
    joint (the message reports the worst one)."""

    kind: str
    message: str
    joint: str | None = None
    point: int | None = None
    time: float | None = None
    value: float | None = None
    limit: float | None = None
    count: int = 1

    def __str__(self) -> str:
        return self.message


class TrajectoryValidationError(ValueError):
    """A trajectory failed validation; ``violations`` holds every failed check."""

    def __init__(self, violations: Sequence[Violation], what: str = "trajectory") -> None:
        self.violations = list(violations)
        lines = "\n  ".join(v.message for v in self.violations)
        super().__init__(f"{what} rejected, {len(self.violations)} violation(s):\n  {lines}")


# ------------------------------------------------------------------------------------ helpers
@dataclass
class _Checked:
    """The checkable part of a trajectory: columns with a known, unique joint name."""

    t: FloatArray
    q: FloatArray
    v: FloatArray
    a: FloatArray
    names: list[str]
    lim: Limits
    rtol: float
    out: list[Violation]

    def at(self, i: int) -> str:
        return f"at point {i} (t={self.t[i]:.3f} s)"

    def between(self, i: int) -> str:
        return f"between points {i} and {i + 1} (t={self.t[i]:.3f}..{self.t[i + 1]:.3f} s)"

    def unit(self, j: int, power: int = 0) -> str:
        return self.lim.units[j] + ("" if power == 0 else "/s" if power == 1 else f"/s^{power}")

    def over_limit(self, kind: str, quantity: str, values: FloatArray, *, limit: FloatArray,
                   power: int, where: Callable[[int], str],
                   locate: Callable[[int], tuple[int, float]], word: str = "points") -> None:
        """One violation per joint whose |values| (rows: points, segments or samples) exceed
        ``limit``, reporting the worst row and how many points/segments fail; ``locate`` gives
        a row's point index and time."""
        if values.size == 0:
            return
        with np.errstate(invalid="ignore", divide="ignore"):
            excess = np.abs(values) / limit - (1.0 + self.rtol)
        bad = np.nan_to_num(excess, nan=-1.0) > 0
        for j in np.flatnonzero(bad.any(axis=0)):
            rows = np.flatnonzero(bad[:, j])
            worst = int(rows[np.argmax(excess[rows, j])])
            count = int(np.unique([locate(int(r))[0] for r in rows]).size)
            unit = self.unit(j, power)
            self.out.append(Violation(
                kind, f"{self.names[j]} {quantity} {values[worst, j]:.4g} {unit} {where(worst)} "
                f"exceeds the limit {limit[j]:.4g} {unit}"
                + _count_suffix(count, where(int(rows[0])), word),
                self.names[j], *locate(worst), float(values[worst, j]), float(limit[j]),
                count))


def _count_suffix(count: int, first: str, word: str = "points") -> str:
    return "" if count <= 1 else f" ({count} {word} exceed it, the first {first})"


def _as_array(value: ArrayLike, field: str, out: list[Violation]) -> FloatArray | None:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        out.append(Violation("shape", f"{field}: not a numeric array ({e})"))
        return None


@cache
def _quintic_basis(samples: int) -> tuple[FloatArray, ...]:
    """Degree-5 Bernstein basis and its first three derivatives at the sample fractions of a
    unit segment, each (samples, 6), from scipy's BPoly."""
    frac = (np.arange(samples) + 0.5) / samples
    basis = BPoly(np.eye(6)[:, None, :], [0.0, 1.0])
    return tuple(np.ascontiguousarray(basis(frac, nu)) for nu in range(4))


def interpolated_motion(times: FloatArray, positions: FloatArray, velocities: FloatArray,
                        accelerations: FloatArray, samples: int = DEFAULT_INTERPOLATION_SAMPLES,
                        ) -> tuple[FloatArray, list[FloatArray]]:
    """What the controller executes between points: the quintic through position, velocity and
    acceleration at both ends of every segment, sampled ``samples`` times inside each segment.

    Returns the sample times (S,) and [position, velocity, acceleration, jerk], each (S, dof);
    sample ``m`` lies in segment ``m // samples``. Same polynomials as
    ``BPoly.from_derivatives(times, [[q, v, a], ...])``, built for all segments at once (the
    Bernstein control points of a quintic from its end values, derivatives and length h).
    """
    h = np.diff(times)[:, None]
    q0, q1 = positions[:-1], positions[1:]
    v0, v1 = velocities[:-1] * h, velocities[1:] * h
    a0, a1 = accelerations[:-1] * h**2, accelerations[1:] * h**2
    ctrl = np.stack([q0, q0 + v0 / 5, q0 + 2 * v0 / 5 + a0 / 20,
                     q1 - 2 * v1 / 5 + a1 / 20, q1 - v1 / 5, q1])  # (6, segments, dof)
    frac = (np.arange(samples) + 0.5) / samples
    grid = (times[:-1, None] + h * frac[None, :]).reshape(-1)
    out = []
    for nu, basis in enumerate(_quintic_basis(samples)):
        vals = np.einsum("sk,kmj->msj", basis, ctrl) / h[:, :, None] ** nu
        out.append(vals.reshape(grid.size, -1))
    return grid, out


# --------------------------------------------------------------------------------- validation
def _structure(names: list[str], arrays: dict[str, ArrayLike | None], out: list[Violation]
               ) -> list[FloatArray] | None:
    """times, positions, velocities, accelerations as float arrays of consistent shapes."""
    got: list[FloatArray] = []
    for field, value in arrays.items():
        if value is None:
            out.append(Violation("shape", f"{field} missing: joint_trajectory_controller would "
                                 "then interpolate without them (velocity jumps at every point)"))
            continue
        arr = _as_array(value, field, out)
        if arr is not None:
            got.append(arr)
    if out:
        return None
    t = got[0]
    if t.ndim != 1 or t.size < 2:
        out.append(Violation("shape", f"times: expected a 1-D array of at least 2 stamps, got "
                             f"shape {t.shape}"))
        return None
    for field, arr in zip(list(arrays)[1:], got[1:], strict=True):
        if arr.shape != (t.size, len(names)):
            out.append(Violation("shape", f"{field}: expected shape ({t.size}, {len(names)}) for "
                                 f"{t.size} points of {len(names)} joints, got {arr.shape}"))
    return None if out else got


def _check_names(names: list[str], limits: Limits, out: list[Violation]) -> list[int]:
    """Report unknown, missing and duplicate names; the columns that can be checked."""
    dupes = sorted({j for j in names if names.count(j) > 1})
    for j in dupes:
        out.append(Violation("names", f"joint {j} appears {names.count(j)} times", j))
    for j in names:
        if j not in limits:
            out.append(Violation("names", f"unknown joint {j}: not one of "
                                 f"{', '.join(limits.names)} ({limits.source})", j))
    for j in limits.names:
        if j not in names:
            out.append(Violation("names", f"joint {j} missing from the trajectory "
                                 f"({limits.source})", j))
    return [k for k, j in enumerate(names) if j in limits and j not in dupes]


def _check_times(t: FloatArray, out: list[Violation]) -> bool:
    """Finite, starting at >= 0, strictly increasing; True when segments can be used."""
    finite = np.isfinite(t)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        out.append(Violation("non_finite", f"time stamp {t[bad[0]]} at point {bad[0]}"
                             + ("" if bad.size == 1 else f" ({bad.size} stamps not finite)"),
                             None, int(bad[0]), None, float(t[bad[0]]), None, int(bad.size)))
        return False
    if t[0] < 0:
        out.append(Violation("time", f"time stamp of point 0 is {t[0]:.4g} s; stamps must start "
                             "at >= 0", None, 0, float(t[0]), float(t[0]), 0.0))
    dt = np.diff(t)
    if np.all(dt > 0):
        return True
    bad = np.flatnonzero(dt <= 0) + 1
    i = int(bad[0])
    out.append(Violation(
        "time", f"time stamps not strictly increasing at point {i}: t={t[i]:.6g} s after "
        f"t={t[i - 1]:.6g} s at point {i - 1}"
        + ("" if bad.size == 1 else f" ({bad.size} such points)"),
        None, i, float(t[i]), float(dt[i - 1]), 0.0, int(bad.size)))
    return False


def _check_finite(c: _Checked) -> bool:
    for field, arr in (("position", c.q), ("velocity", c.v), ("acceleration", c.a)):
        finite = np.isfinite(arr)
        for j in np.flatnonzero(~finite.all(axis=0)):
            bad = np.flatnonzero(~finite[:, j])
            i = int(bad[0])
            c.out.append(Violation(
                "non_finite", f"{c.names[j]} {field} {arr[i, j]} {c.at(i)}"
                + ("" if bad.size == 1 else f" ({bad.size} points not finite)"),
                c.names[j], i, float(c.t[i]), float(arr[i, j]), None, int(bad.size)))
    return bool(np.isfinite(c.q).all() and np.isfinite(c.v).all() and np.isfinite(c.a).all())


def _beyond_position(c: _Checked, values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """How far each value is beyond its joint's range (<= 0 inside), and the bound crossed."""
    lim = c.lim
    mid, half = 0.5 * (lim.upper + lim.lower), 0.5 * (lim.upper - lim.lower)
    slack = c.rtol * np.maximum(1.0, np.maximum(np.abs(lim.lower), np.abs(lim.upper)))
    with np.errstate(invalid="ignore"):
        beyond = np.nan_to_num(np.abs(values - mid) - half - slack, nan=-1.0)
        bound = np.where(values > mid, lim.upper, lim.lower)
    return beyond, bound


def _check_positions(c: _Checked) -> None:
    beyond, bound = _beyond_position(c, c.q)
    for j in np.flatnonzero((beyond > 0).any(axis=0)):
        rows = np.flatnonzero(beyond[:, j] > 0)
        i = int(rows[np.argmax(beyond[rows, j])])
        side = "above the upper" if bound[i, j] == c.lim.upper[j] else "below the lower"
        c.out.append(Violation(
            "position", f"{c.names[j]} position {c.q[i, j]:.4g} {c.unit(j)} {c.at(i)} is "
            f"{side} limit {bound[i, j]:.4g} {c.unit(j)}"
            + _count_suffix(rows.size, c.at(int(rows[0]))),
            c.names[j], i, float(c.t[i]), float(c.q[i, j]), float(bound[i, j]), int(rows.size)))


def _check_derivatives(c: _Checked, segments_ok: bool, finite: bool, samples: int) -> None:
    """The given fields, the finite differences of the positions, and the interpolated motion."""
    t, lim = c.t, c.lim

    def at_point(i: int) -> tuple[int, float]:
        return i, float(t[i])

    def at_next(i: int) -> tuple[int, float]:
        return i + 1, float(t[i + 1])

    c.over_limit("velocity", "velocity", c.v, limit=lim.velocity, power=1, where=c.at,
                 locate=at_point)
    c.over_limit("acceleration", "acceleration", c.a, limit=lim.acceleration, power=2,
                 where=c.at, locate=at_point)
    if not segments_ok:
        return
    dt = np.diff(t)
    with np.errstate(invalid="ignore"):
        v_fd = np.diff(c.q, axis=0) / dt[:, None]
        a_fd = np.diff(v_fd, axis=0) / (0.5 * (dt[:-1] + dt[1:]))[:, None]
    c.over_limit("velocity_fd", "velocity implied by the positions", v_fd, limit=lim.velocity,
                 power=1, where=c.between, locate=at_next, word="segments")
    c.over_limit("acceleration_fd", "acceleration implied by the positions", a_fd,
                 limit=lim.acceleration, power=2,
                 where=lambda i: f"around point {i + 1} (t={t[i + 1]:.3f} s)", locate=at_next)
    if not finite:
        return
    grid, (qi, vi, ai, ji) = interpolated_motion(t, c.q, c.v, c.a, samples)

    def seg_where(m: int) -> str:
        return f"{c.between(m // samples)}, peak near t={grid[m]:.3f} s"

    def seg_locate(m: int) -> tuple[int, float]:
        return m // samples + 1, float(grid[m])

    beyond, bound = _beyond_position(c, qi)
    for j in np.flatnonzero((beyond > 0).any(axis=0)):
        rows = np.flatnonzero(beyond[:, j] > 0)
        m = int(rows[np.argmax(beyond[rows, j])])
        count = int(np.unique(rows // samples).size)
        c.out.append(Violation(
            "position_interpolated", f"{c.names[j]} position of the interpolated motion "
            f"{qi[m, j]:.4g} {c.unit(j)} {seg_where(m)} is beyond the limit "
            f"{bound[m, j]:.4g} {c.unit(j)}"
            + _count_suffix(count, seg_where(int(rows[0])), "segments"),
            c.names[j], *seg_locate(m), float(qi[m, j]), float(bound[m, j]), count))
    for kind, quantity, values, limit, power in (
            ("velocity_interpolated", "velocity", vi, lim.velocity, 1),
            ("acceleration_interpolated", "acceleration", ai, lim.acceleration, 2),
            ("jerk_interpolated", "jerk", ji, lim.jerk, 3)):
        if limit is not None:
            c.over_limit(kind, f"{quantity} of the interpolated motion", values, limit=limit,
                         power=power, where=seg_where, locate=seg_locate, word="segments")


def _check_start(c: _Checked, current: ArrayLike | Mapping[str, float], all_names: list[str],
                 tolerance: float) -> None:
    """The first point must be where the joints are now, or the controller jumps there."""
    if isinstance(current, Mapping):
        now = np.array([float(current.get(j, np.nan)) for j in c.names])
    else:
        cur = np.asarray(current, dtype=np.float64).reshape(-1)
        if cur.size != len(all_names):
            c.out.append(Violation("start", f"current joint state has {cur.size} values for "
                                   f"{len(all_names)} joints"))
            return
        now = cur[[all_names.index(j) for j in c.names]]
    for j, name in enumerate(c.names):
        gap = abs(c.q[0, j] - now[j])
        if not np.isfinite(now[j]):
            c.out.append(Violation("start", f"{name}: no finite current position ({now[j]}) to "
                                   "check the first point against", name, 0, float(c.t[0])))
        elif not gap <= tolerance:
            c.out.append(Violation(
                "start", f"{name} position {c.q[0, j]:.4g} {c.unit(j)} {c.at(0)} is {gap:.4g} "
                f"{c.unit(j)} from the current position {now[j]:.4g} {c.unit(j)}, more than the "
                f"limit {tolerance:g} {c.unit(j)} (the joint would jump)",
                name, 0, float(c.t[0]), float(c.q[0, j]), float(now[j])))


def _check_rest(c: _Checked, which: str, i: int, velocity_tol: float, accel_tol: float) -> None:
    """Zero velocity and acceleration at the first or last point."""
    label = "the first point" if which == "start" else "the last point"
    for quantity, arr, tol, power in (("velocity", c.v, velocity_tol, 1),
                                      ("acceleration", c.a, accel_tol, 2)):
        for j, name in enumerate(c.names):
            value = arr[i, j]
            if np.isfinite(value) and abs(value) > tol:
                unit = c.unit(j, power)
                c.out.append(Violation(
                    f"{which}_{quantity}", f"{name} {quantity} {value:.4g} {unit} at {label}, "
                    f"point {i} (t={c.t[i]:.3f} s), is not zero: the limit is {tol:g} {unit} "
                    f"(the motion must {which} at rest)",
                    name, i, float(c.t[i]), float(value), tol))


def validate_joint_trajectory(  # noqa: PLR0917
    names: Sequence[str], times: ArrayLike, positions: ArrayLike,
    velocities: ArrayLike | None, accelerations: ArrayLike | None, limits: Limits,
    current: ArrayLike | Mapping[str, float] | None = None, *,
    start_tolerance: float = DEFAULT_START_TOLERANCE,
    rest_velocity_tolerance: float = DEFAULT_REST_VELOCITY_TOLERANCE,
    rest_acceleration_tolerance: float = DEFAULT_REST_ACCELERATION_TOLERANCE,
    relative_tolerance: float = DEFAULT_RELATIVE_TOLERANCE,
    require_start_at_rest: bool = True,
    interpolation_samples: int = DEFAULT_INTERPOLATION_SAMPLES,
) -> list[Violation]:
    """Every violation of a joint trajectory (an empty list: safe to send).

    ``times`` (N,) are seconds from the trajectory start, ``positions``/``velocities``/
    ``accelerations`` (N, len(names)) in the order of ``names`` (any order of the limits'
    joints). ``current`` is the joint state now: an array in ``names`` order or a mapping
    name -> position; when given, the first point must be within ``start_tolerance`` of it.
    Limits are compared with a ``relative_tolerance`` for rounding; the ends must be at rest
    within the ``rest_*`` tolerances.
    """
    out: list[Violation] = []
    names = [str(n) for n in names]
    arrays = _structure(names, {"times": times, "positions": positions,
                                "velocities": velocities, "accelerations": accelerations}, out)
    if arrays is None:
        return out
    t, q, v, a = arrays
    cols = _check_names(names, limits, out)
    segments_ok = _check_times(t, out)
    if not cols:
        return out
    cnames = [names[k] for k in cols]
    c = _Checked(t, q[:, cols], v[:, cols], a[:, cols], cnames, limits.select(cnames),
                 relative_tolerance, out)
    finite = _check_finite(c)
    _check_positions(c)
    _check_derivatives(c, segments_ok, finite, interpolation_samples)
    if current is not None:
        _check_start(c, current, names, start_tolerance)
    if require_start_at_rest:
        _check_rest(c, "start", 0, rest_velocity_tolerance, rest_acceleration_tolerance)
    _check_rest(c, "end", t.size - 1, rest_velocity_tolerance, rest_acceleration_tolerance)
    return out


def check_joint_trajectory(*args: object, what: str = "trajectory", **kwargs: object) -> None:
    """:func:`validate_joint_trajectory`, raising :class:`TrajectoryValidationError` with every
    violation when there is any."""
    violations = validate_joint_trajectory(*args, **kwargs)  # type: ignore[arg-type]
    if violations:
        raise TrajectoryValidationError(violations, what)
