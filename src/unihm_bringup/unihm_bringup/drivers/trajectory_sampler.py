"""Joint trajectory checking, interpolation and tolerance monitoring, free of ROS.

The FollowJointTrajectory servers in this package (the simulated driver and the XHand adapter)
share this module so that what a goal means (which goals are valid, how the motion between
waypoints is interpolated, when a goal counts as reached) is defined once, follows
ros2_control's joint_trajectory_controller, and is unit-testable without rclpy.

Interpolation, as joint_trajectory_controller does it: positions only -> linear, positions and
velocities -> cubic Hermite, positions, velocities and accelerations -> quintic Hermite. A
trajectory whose first point lies after t = 0 starts from the state the joints are in when it
begins (position and, for splines, velocity), so a new goal continues smoothly from a running one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.interpolate import BPoly, CubicHermiteSpline, make_interp_spline

FloatArray = NDArray[np.float64]


class ErrorCode(IntEnum):
    """control_msgs/action/FollowJointTrajectory result codes (same values on the wire)."""

    SUCCESSFUL = 0
    INVALID_GOAL = -1
    INVALID_JOINTS = -2
    OLD_HEADER_TIMESTAMP = -3
    PATH_TOLERANCE_VIOLATED = -4
    GOAL_TOLERANCE_VIOLATED = -5


class TrajectoryError(ValueError):
    """A goal that cannot be executed; `code` is the result code to report it with."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Waypoint:
    """One trajectory point in the goal's joint order; empty sequences mean "not given"."""

    time: float
    positions: Sequence[float]
    velocities: Sequence[float] = ()
    accelerations: Sequence[float] = ()


@dataclass(frozen=True)
class CheckedTrajectory:
    """A validated trajectory in the controller's joint order.

    `indices[k]` is the controller index of the goal's k-th joint (a partial goal names a subset).
    Arrays are (points, goal joints); `velocities`/`accelerations` are None when not given.
    """

    indices: tuple[int, ...]
    times: FloatArray
    positions: FloatArray
    velocities: FloatArray | None
    accelerations: FloatArray | None

    @property
    def duration(self) -> float:
        return float(self.times[-1])


def _fmt(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _check_names(controller_joints: list[str], names: list[str],
                 allow_partial_joints: bool) -> None:
    if not names:
        raise TrajectoryError(ErrorCode.INVALID_JOINTS, "trajectory names no joints")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TrajectoryError(ErrorCode.INVALID_JOINTS,
                              f"joint names repeated in the trajectory: {_fmt(duplicates)}")
    unknown = [n for n in names if n not in controller_joints]
    if unknown:
        raise TrajectoryError(ErrorCode.INVALID_JOINTS,
                              f"unknown joints {_fmt(unknown)}; this controller drives "
                              f"{_fmt(controller_joints)}")
    missing = [n for n in controller_joints if n not in names]
    if missing and not allow_partial_joints:
        raise TrajectoryError(ErrorCode.INVALID_JOINTS,
                              f"trajectory must name all {len(controller_joints)} joints "
                              f"(allow_partial_joints_goal is off); missing {_fmt(missing)}")


def _check_point(i: int, point: Waypoint, names: list[str], previous_time: float | None) -> float:
    """Validate one point; returns its time."""
    n = len(names)
    for field in ("positions", "velocities", "accelerations"):
        values = getattr(point, field)
        if field != "positions" and len(values) == 0:
            continue
        if len(values) != n:
            raise TrajectoryError(ErrorCode.INVALID_GOAL,
                                  f"point {i} has {len(values)} {field}, expected {n} "
                                  "(one per joint name)")
        bad = [names[j] for j, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            raise TrajectoryError(ErrorCode.INVALID_GOAL,
                                  f"point {i} has non-finite {field} for {_fmt(bad)}")
    t = float(point.time)
    if not math.isfinite(t) or t < 0.0:
        raise TrajectoryError(ErrorCode.INVALID_GOAL,
                              f"point {i} has time_from_start {t}; it must be >= 0")
    if previous_time is not None and t <= previous_time:
        raise TrajectoryError(ErrorCode.INVALID_GOAL,
                              f"time_from_start must increase strictly: point {i} at {t:g} s "
                              f"follows point {i - 1} at {previous_time:g} s")
    return t


def check_trajectory(controller_joints: Sequence[str], joint_names: Sequence[str],
                     points: Sequence[Waypoint], *,
                     allow_partial_joints: bool = False) -> CheckedTrajectory:
    """Validate a goal the way joint_trajectory_controller does, or raise TrajectoryError.

    Checks: joint names known, unique and (unless partial goals are allowed) complete; at least
    one point; every point sized like the joint list; all numbers finite; times non-negative and
    strictly increasing; velocities and accelerations given for every point or for none.
    """
    controller_joints = list(controller_joints)
    names = list(joint_names)
    _check_names(controller_joints, names, allow_partial_joints)
    if not points:
        raise TrajectoryError(ErrorCode.INVALID_GOAL, "trajectory has no points")
    has_vel = [len(p.velocities) > 0 for p in points]
    has_acc = [len(p.accelerations) > 0 for p in points]
    if any(has_vel) and not all(has_vel):
        raise TrajectoryError(ErrorCode.INVALID_GOAL,
                              "velocities are given for some points but not for all")
    if any(has_acc) and not all(has_acc):
        raise TrajectoryError(ErrorCode.INVALID_GOAL,
                              "accelerations are given for some points but not for all")
    if all(has_acc) and not all(has_vel):
        raise TrajectoryError(ErrorCode.INVALID_GOAL, "accelerations given without velocities")
    times = np.empty(len(points))
    for i, point in enumerate(points):
        times[i] = _check_point(i, point, names, float(times[i - 1]) if i else None)

    n = len(names)

    def stack(field: str) -> FloatArray:
        return np.array([list(getattr(p, field)) for p in points], dtype=np.float64).reshape(-1, n)

    return CheckedTrajectory(
        indices=tuple(controller_joints.index(name) for name in names), times=times,
        positions=stack("positions"), velocities=stack("velocities") if all(has_vel) else None,
        accelerations=stack("accelerations") if all(has_acc) else None)


class TrajectorySampler:
    """Desired position, velocity and acceleration of every controller joint at time t.

    t is seconds since the trajectory's start. Before 0 it gives the start, after the last point
    it holds the last point at rest. Joints a partial goal does not name hold their start position.
    """

    def __init__(self, trajectory: CheckedTrajectory, start_positions: ArrayLike,
                 start_velocities: ArrayLike | None = None) -> None:
        start_p = np.asarray(start_positions, dtype=np.float64).copy()
        start_v = (np.zeros_like(start_p) if start_velocities is None
                   else np.asarray(start_velocities, dtype=np.float64))
        if start_p.shape != start_v.shape or start_p.ndim != 1:
            raise ValueError("start positions and velocities must be vectors of the same size")
        self._start = start_p
        self._indices = np.asarray(trajectory.indices, dtype=np.intp)
        if self._indices.size and self._indices.max() >= start_p.size:
            raise ValueError("trajectory joints index past the start state")
        self.duration = trajectory.duration

        times, pos = trajectory.times, trajectory.positions
        vel, acc = trajectory.velocities, trajectory.accelerations
        if times[0] > 0.0:  # begin at the current state, as joint_trajectory_controller does
            sub_p, sub_v = start_p[self._indices], start_v[self._indices]
            times = np.concatenate([[0.0], times])
            pos = np.vstack([sub_p, pos])
            vel = None if vel is None else np.vstack([sub_v, vel])
            acc = None if acc is None else np.vstack([np.zeros_like(sub_p), acc])
        self._t0 = float(times[0])
        self._final = pos[-1].copy()
        self._pos_fn = None
        self._splines: list[BPoly] = []
        if len(times) == 1:
            self._kind = "constant"
        elif acc is not None and vel is not None:
            self._kind = "quintic"
            self._splines = [BPoly.from_derivatives(times, np.stack([pos[:, j], vel[:, j],
                                                                     acc[:, j]], axis=1))
                             for j in range(pos.shape[1])]
        elif vel is not None:
            self._kind = "cubic"
            self._pos_fn = CubicHermiteSpline(times, pos, vel, axis=0)
        else:
            self._kind = "linear"
            self._pos_fn = make_interp_spline(times, pos, k=1, axis=0)
        self._vel_fn = None if self._pos_fn is None else self._pos_fn.derivative(1)
        self._acc_fn = (None if self._pos_fn is None or self._kind == "linear"
                        else self._pos_fn.derivative(2))

    @property
    def kind(self) -> str:
        """'constant', 'linear', 'cubic' or 'quintic': the interpolation this goal gets."""
        return self._kind

    @property
    def final_positions(self) -> FloatArray:
        """Every controller joint's position at the end of the trajectory."""
        out = self._start.copy()
        out[self._indices] = self._final
        return out

    def sample(self, t: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(positions, velocities, accelerations) of every controller joint at time t."""
        n = len(self._indices)
        if self._kind == "constant" or t >= self.duration:
            sub = (self._final, np.zeros(n), np.zeros(n))
        else:
            tc = max(float(t), self._t0)
            if self._kind == "quintic":
                sub = tuple(np.array([float(s(tc, nu)) for s in self._splines])
                            for nu in (0, 1, 2))
            else:
                assert self._pos_fn is not None and self._vel_fn is not None
                a = np.zeros(n) if self._acc_fn is None else np.asarray(self._acc_fn(tc))
                sub = (np.asarray(self._pos_fn(tc)), np.asarray(self._vel_fn(tc)), a)
        p = self._start.copy()
        v = np.zeros_like(p)
        a = np.zeros_like(p)
        p[self._indices], v[self._indices], a[self._indices] = sub
        return p, v, a


@dataclass(frozen=True)
class JointToleranceSpec:
    """One control_msgs/JointTolerance: > 0 sets the tolerance, 0 keeps the default, < 0 turns
    the check off for that joint."""

    name: str
    position: float = 0.0
    velocity: float = 0.0
    acceleration: float = 0.0


@dataclass(frozen=True)
class Tolerances:
    """Per-joint tolerances in controller order; inf means unchecked. goal_time 0 = no limit."""

    path_position: FloatArray
    path_velocity: FloatArray
    goal_position: FloatArray
    goal_velocity: FloatArray
    goal_time: float

    @staticmethod
    def from_defaults(n_joints: int, path_position: Sequence[float] = (0.0,),
                      goal_position: Sequence[float] = (0.0,),
                      goal_velocity: Sequence[float] = (0.0,),
                      goal_time: float = 0.0) -> Tolerances:
        """Build from parameter values: one value for all joints or one per joint; 0 = off."""
        return Tolerances(path_position=_per_joint(path_position, n_joints, "path_tolerance"),
                          path_velocity=np.full(n_joints, np.inf),
                          goal_position=_per_joint(goal_position, n_joints, "goal_tolerance"),
                          goal_velocity=_per_joint(goal_velocity, n_joints,
                                                   "stopped_velocity_tolerance"),
                          goal_time=_non_negative(goal_time, "goal_time_tolerance"))


def _non_negative(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _per_joint(values: Sequence[float], n: int, name: str) -> FloatArray:
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 1:
        arr = np.full(n, arr[0])
    if arr.shape != (n,):
        raise ValueError(f"{name} needs one value or one per joint ({n}), got {arr.size}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0.0):
        raise ValueError(f"{name} values must be finite and >= 0 (0 turns the check off)")
    return np.where(arr > 0.0, arr, np.inf)


def resolve_tolerances(defaults: Tolerances, controller_joints: Sequence[str],
                       path: Sequence[JointToleranceSpec] = (),
                       goal: Sequence[JointToleranceSpec] = (),
                       goal_time: float = 0.0) -> Tolerances:
    """Apply a goal's tolerances over the defaults (control_msgs/JointTolerance semantics)."""
    joints = list(controller_joints)
    arrays = {k: getattr(defaults, k).copy() for k in
              ("path_position", "path_velocity", "goal_position", "goal_velocity")}
    for prefix, specs in (("path", path), ("goal", goal)):
        for spec in specs:
            if spec.name not in joints:
                raise TrajectoryError(ErrorCode.INVALID_JOINTS,
                                      f"{prefix}_tolerance names unknown joint '{spec.name}'")
            j = joints.index(spec.name)
            for field in ("position", "velocity"):
                value = float(getattr(spec, field))
                if not math.isfinite(value):
                    raise TrajectoryError(ErrorCode.INVALID_GOAL,
                                          f"{prefix}_tolerance {field} of '{spec.name}' is "
                                          f"{value}")
                if value > 0.0:
                    arrays[f"{prefix}_{field}"][j] = value
                elif value < 0.0:
                    arrays[f"{prefix}_{field}"][j] = np.inf
    goal_time = float(goal_time)
    if not math.isfinite(goal_time) or goal_time < 0.0:
        raise TrajectoryError(ErrorCode.INVALID_GOAL, f"goal_time_tolerance is {goal_time}")
    return Tolerances(goal_time=goal_time if goal_time > 0.0 else defaults.goal_time, **arrays)


@dataclass(frozen=True)
class Outcome:
    """How a goal ended."""

    code: ErrorCode
    message: str

    @property
    def success(self) -> bool:
        return self.code == ErrorCode.SUCCESSFUL


def _worst(joints: Sequence[str], error: FloatArray, tol: FloatArray) -> str:
    j = int(np.argmax(np.abs(error) - tol))
    return f"joint {joints[j]} off by {abs(error[j]):.4g} (tolerance {tol[j]:.4g})"


class TrajectoryMonitor:
    """Samples the desired state of one goal and decides when it succeeded or failed.

    Path tolerances are checked while the trajectory runs; once its time is up, the goal
    succeeds as soon as every joint is within the goal tolerances, and fails if that has not
    happened within goal_time (0: wait as long as it takes, like joint_trajectory_controller).
    """

    def __init__(self, sampler: TrajectorySampler, tolerances: Tolerances,
                 joints: Sequence[str]) -> None:
        self.sampler = sampler
        self.tolerances = tolerances
        self.joints = list(joints)

    def desired(self, t: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        return self.sampler.sample(t)

    def check(self, t: float, actual_positions: ArrayLike,
              actual_velocities: ArrayLike | None = None) -> Outcome | None:
        """None while the goal is still running, else its outcome."""
        pos = np.asarray(actual_positions, dtype=np.float64)
        vel = None if actual_velocities is None else np.asarray(actual_velocities, np.float64)
        if t < 0.0:  # start time in the future: nothing to check yet
            return None
        if t < self.sampler.duration:
            return self._check_path(t, pos, vel)
        return self._check_goal(t, pos, vel)

    def _check_path(self, t: float, pos: FloatArray, vel: FloatArray | None) -> Outcome | None:
        tol = self.tolerances
        desired_p, desired_v, _ = self.sampler.sample(t)
        err = desired_p - pos
        if np.any(np.abs(err) > tol.path_position):
            return Outcome(ErrorCode.PATH_TOLERANCE_VIOLATED,
                           f"path tolerance violated at t={t:.3f} s: "
                           f"{_worst(self.joints, err, tol.path_position)}")
        if vel is not None and np.any(np.abs(desired_v - vel) > tol.path_velocity):
            return Outcome(ErrorCode.PATH_TOLERANCE_VIOLATED,
                           f"path velocity tolerance violated at t={t:.3f} s: "
                           f"{_worst(self.joints, desired_v - vel, tol.path_velocity)}")
        return None

    def _check_goal(self, t: float, pos: FloatArray, vel: FloatArray | None) -> Outcome | None:
        tol = self.tolerances
        err = self.sampler.final_positions - pos
        pos_ok = bool(np.all(np.abs(err) <= tol.goal_position))
        vel_ok = vel is None or bool(np.all(np.abs(vel) <= tol.goal_velocity))
        if pos_ok and vel_ok:
            return Outcome(ErrorCode.SUCCESSFUL, "goal reached")
        if tol.goal_time > 0.0 and t - self.sampler.duration > tol.goal_time:
            detail = (_worst(self.joints, err, tol.goal_position) if not pos_ok or vel is None
                      else f"still moving: {_worst(self.joints, vel, tol.goal_velocity)}")
            return Outcome(ErrorCode.GOAL_TOLERANCE_VIOLATED,
                           f"goal not reached {tol.goal_time:g} s (goal_time_tolerance) after "
                           f"the trajectory's end: {detail}")
        return None
