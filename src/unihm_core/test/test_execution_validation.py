"""Trajectory validation: every kind of violation is found and named; corrupted trajectories
never pass while clean retimed ones always do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from unihm_core.execution import (
    DEFAULT_SCALE,
    VIOLATION_KINDS,
    Limits,
    TimedTrajectory,
    TrajectoryValidationError,
    Violation,
    check_joint_trajectory,
    retime,
    validate_joint_trajectory,
)
from unihm_core.testing import assert_imports_without_ros

READY = np.array([0.0, -0.7853981634, 0.0, -2.3561944902, 0.0, 1.5707963268, 0.7853981634])


@pytest.fixture(scope="module")
def arm() -> Limits:
    return Limits.from_arm("franka_panda")


def smooth_path(rng: np.random.Generator, n: int, duration: float, amplitude: float,
                center: np.ndarray = READY) -> tuple[np.ndarray, np.ndarray]:
    """A generated-looking motion: a few sinusoids per joint around ``center``."""
    t = np.linspace(0.0, duration, n)
    freq = rng.uniform(0.1, 0.6, (3, center.size))
    phase = rng.uniform(0, 2 * np.pi, (3, center.size))
    amp = rng.uniform(0.2, 1.0, (3, center.size)) * amplitude / 3
    return t, center + np.sum(amp[:, None] * np.sin(2 * np.pi * freq[:, None]
                                                    * t[None, :, None] + phase[:, None]), axis=0)


@dataclass
class Traj:
    """A mutable copy of a trajectory plus the state it starts from."""

    names: list[str]
    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    accelerations: np.ndarray
    current: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def of(cls, tr: TimedTrajectory) -> Traj:
        return cls(list(tr.names), tr.times.copy(), tr.positions.copy(), tr.velocities.copy(),
                   tr.accelerations.copy(), tr.positions[0].copy())

    def validate(self, limits: Limits, **kwargs: object) -> list[Violation]:
        return validate_joint_trajectory(self.names, self.times, self.positions,
                                         self.velocities, self.accelerations, limits,
                                         self.current, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def clean(arm: Limits) -> TimedTrajectory:
    t, q = smooth_path(np.random.default_rng(0), 120, 4.0, 0.8)
    return retime(q, arm, t)


def kinds(violations: list[Violation]) -> set[str]:
    return {v.kind for v in violations}


def test_clean_trajectory_passes(clean: TimedTrajectory, arm: Limits) -> None:
    assert Traj.of(clean).validate(arm.scaled(DEFAULT_SCALE)) == []
    assert Traj.of(clean).validate(arm) == []
    check_joint_trajectory(clean.names, clean.times, clean.positions, clean.velocities,
                           clean.accelerations, arm, clean.positions[0])


def test_message_names_joint_point_value_and_limit(clean: TimedTrajectory, arm: Limits) -> None:
    tr = Traj.of(clean)
    tr.velocities[37, 3] = 2.61
    (violation, *_) = tr.validate(arm)
    assert violation.kind == "velocity"
    assert violation.message == (f"panda_joint4 velocity 2.61 rad/s at point 37 "
                                 f"(t={clean.times[37]:.3f} s) exceeds the limit 2.175 rad/s")
    assert (violation.joint, violation.point, violation.value, violation.limit) == (
        "panda_joint4", 37, 2.61, 2.175)
    assert violation.time == pytest.approx(clean.times[37])


def _set(name: str, index: tuple[int, ...], value: float) -> Callable[[Traj, Limits], None]:
    def corrupt(tr: Traj, arm: Limits) -> None:
        getattr(tr, name)[index] = value
    return corrupt


def _jump(tr: Traj, arm: Limits) -> None:
    tr.positions[60:, 2] += 0.3


def _spike(tr: Traj, arm: Limits) -> None:
    tr.positions[40, 1] += 0.2


def _lying_velocities(tr: Traj, arm: Limits) -> None:
    tr.velocities[:] = 0.0
    tr.accelerations[:] = 0.0


def _decreasing(tr: Traj, arm: Limits) -> None:
    tr.times[50] = tr.times[48]


def _negative_start(tr: Traj, arm: Limits) -> None:
    tr.times -= 0.5


def _unknown_name(tr: Traj, arm: Limits) -> None:
    tr.names[2] = "panda_joint_3"


def _duplicate_name(tr: Traj, arm: Limits) -> None:
    tr.names[6] = "panda_joint1"


def _missing_joint(tr: Traj, arm: Limits) -> None:
    tr.names = tr.names[:6]
    tr.positions, tr.velocities = tr.positions[:, :6], tr.velocities[:, :6]
    tr.accelerations, tr.current = tr.accelerations[:, :6], tr.current[:6]


def _away_from_current(tr: Traj, arm: Limits) -> None:
    tr.current = tr.current.copy()
    tr.current[4] += 0.05


def _wrong_shape(tr: Traj, arm: Limits) -> None:
    tr.velocities = tr.velocities[:-1]


# case -> kind expected, corruption, words the messages must contain
CASES = {
    "nan_position": ("non_finite", _set("positions", (12, 0), np.nan),
                     ["panda_joint1", "point 12", "nan"]),
    "inf_time": ("non_finite", _set("times", (5,), np.inf), ["point 5", "inf"]),
    "decreasing_time": ("time", _decreasing, ["point 50", "not strictly increasing"]),
    "negative_time": ("time", _negative_start, ["point 0", "-0.5 s", ">= 0"]),
    "position": ("position", _set("positions", (30, 3), -0.02),
                 ["panda_joint4", "point 30", "above the upper limit -0.0698 rad"]),
    "acceleration": ("acceleration", _set("accelerations", (20, 1), -8.0),
                     ["panda_joint2", "point 20", "-8 rad/s^2", "limit 7.5 rad/s^2"]),
    "jump": ("velocity_fd", _jump, ["panda_joint3", "implied by the positions",
                                    "points 59 and 60", "limit 2.175 rad/s"]),
    "spike": ("acceleration_fd", _spike, ["panda_joint2", "acceleration implied by the "
                                          "positions", "point 40", "limit 7.5 rad/s^2"]),
    "lying_fields": ("acceleration_interpolated", _lying_velocities,
                     ["acceleration of the interpolated motion", "limit"]),
    "current": ("start", _away_from_current, ["panda_joint5", "point 0",
                                              "from the current position", "limit 0.001 rad"]),
    "end_velocity": ("end_velocity", _set("velocities", (119, 6), 0.01),
                     ["panda_joint7", "point 119", "0.01 rad/s", "not zero"]),
    "end_acceleration": ("end_acceleration", _set("accelerations", (119, 0), 0.5),
                         ["panda_joint1", "point 119", "0.5 rad/s^2"]),
    "start_velocity": ("start_velocity", _set("velocities", (0, 2), -0.2),
                       ["panda_joint3", "point 0"]),
    "unknown_name": ("names", _unknown_name, ["unknown joint panda_joint_3",
                                              "joint panda_joint3 missing"]),
    "duplicate_name": ("names", _duplicate_name, ["panda_joint1 appears 2 times"]),
    "missing_joint": ("names", _missing_joint, ["joint panda_joint7 missing"]),
    "shape": ("shape", _wrong_shape, ["velocities", "expected shape (120, 7)"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_violation_kind_is_found_and_named(case: str, clean: TimedTrajectory,
                                                 arm: Limits) -> None:
    kind, corrupt, words = CASES[case]
    tr = Traj.of(clean)
    corrupt(tr, arm)
    violations = tr.validate(arm)
    assert kind in kinds(violations), violations
    text = "\n".join(v.message for v in violations)
    for word in words:
        assert word in text, text
    assert all(v.kind in VIOLATION_KINDS for v in violations)


def test_velocity_field_and_position_limits_on_both_sides(clean: TimedTrajectory,
                                                         arm: Limits) -> None:
    tr = Traj.of(clean)
    tr.velocities[10, 5] = -3.0
    tr.positions[80, 0] = -3.0
    found = tr.validate(arm)
    assert "velocity" in kinds(found)
    text = "\n".join(v.message for v in found)
    assert "panda_joint6 velocity -3 rad/s at point 10" in text
    assert "panda_joint1 position -3 rad at point 80" in text
    assert "below the lower limit -2.897 rad" in text


def test_lying_velocity_field_cannot_hide_a_jump(clean: TimedTrajectory, arm: Limits) -> None:
    tr = Traj.of(clean)
    tr.positions[70:, 3] += 0.25  # a jump with velocity and acceleration fields left smooth
    found = kinds(tr.validate(arm.scaled(DEFAULT_SCALE)))
    assert {"velocity_fd", "velocity_interpolated"} <= found


def test_reordered_names_and_mapping_state_are_accepted(clean: TimedTrajectory,
                                                        arm: Limits) -> None:
    order = [6, 0, 5, 1, 4, 2, 3]
    names = [clean.names[k] for k in order]
    current = dict(zip(clean.names, clean.positions[0], strict=True))
    assert validate_joint_trajectory(names, clean.times, clean.positions[:, order],
                                     clean.velocities[:, order], clean.accelerations[:, order],
                                     arm, current) == []
    del current["panda_joint2"]
    found = validate_joint_trajectory(names, clean.times, clean.positions[:, order],
                                      clean.velocities[:, order],
                                      clean.accelerations[:, order], arm, current)
    assert [v.kind for v in found] == ["start"] and found[0].joint == "panda_joint2"


def test_missing_fields_and_too_few_points(clean: TimedTrajectory, arm: Limits) -> None:
    found = validate_joint_trajectory(clean.names, clean.times, clean.positions, None, None, arm)
    assert [v.kind for v in found] == ["shape", "shape"]
    assert "interpolate without them" in found[0].message
    found = validate_joint_trajectory(clean.names, clean.times[:1], clean.positions[:1],
                                      clean.velocities[:1], clean.accelerations[:1], arm)
    assert [v.kind for v in found] == ["shape"]


def test_check_raises_with_every_violation(clean: TimedTrajectory, arm: Limits) -> None:
    tr = Traj.of(clean)
    tr.velocities[-1, 0] = 0.3
    tr.positions[5, 1] = np.nan
    with pytest.raises(TrajectoryValidationError) as info:
        check_joint_trajectory(tr.names, tr.times, tr.positions, tr.velocities,
                               tr.accelerations, arm, tr.current)
    assert {"end_velocity", "non_finite"} <= kinds(info.value.violations)
    assert "panda_joint1 velocity 0.3 rad/s at the last point" in str(info.value)


def test_many_failing_points_are_summarised(clean: TimedTrajectory, arm: Limits) -> None:
    tr = Traj.of(clean)
    tr.velocities[10:20, 0] = 5.0
    tr.velocities[15, 0] = 6.0
    (v,) = [v for v in tr.validate(arm) if v.kind == "velocity"]
    assert v.count == 10 and v.point == 15 and v.value == 6.0
    assert "(10 points exceed it, the first at point 10" in v.message


# ------------------------------------------------------------------------------------- flood
_MOTION = {"velocity_fd", "acceleration_fd", "position_interpolated", "velocity_interpolated",
           "acceleration_interpolated", "jerk_interpolated"}
# corruption -> the checks that must catch it (others may fire too)
FLOOD_KINDS = {"nan": {"non_finite"}, "jump": _MOTION | {"position"},
               "spike": _MOTION | {"position"}, "position": {"position"},
               "velocity": {"velocity"}, "acceleration": {"acceleration"}, "stamps": {"time"},
               "names": {"names"}, "end_velocity": {"end_velocity"},
               "end_acceleration": {"end_acceleration"}, "current": {"start"},
               "lying": _MOTION}


def _corrupt(tr: Traj, limits: Limits, what: str,  # noqa: PLR0912
             rng: np.random.Generator) -> None:
    """One random corruption of a kind that an unsafe trajectory has."""
    n, dof = tr.positions.shape
    i, j = int(rng.integers(0, n)), int(rng.integers(0, dof))
    sign = rng.choice([-1.0, 1.0])
    if what == "nan":
        target = [tr.times[:, None], tr.positions, tr.velocities, tr.accelerations][
            rng.integers(0, 4)]
        target[i, min(j, target.shape[1] - 1)] = rng.choice([np.nan, np.inf, -np.inf])
    elif what in ("jump", "spike"):
        i = max(i, 1)
        h = tr.times[i] - tr.times[i - 1]
        delta = sign * max(3 * limits.velocity[j] * h, rng.uniform(0.05, 0.5))
        if what == "jump":
            tr.positions[i:, j] += delta
        else:
            tr.positions[i, j] += delta
    elif what == "position":
        tr.positions[i, j] = (limits.upper[j] + rng.uniform(1e-3, 0.5) if sign > 0
                              else limits.lower[j] - rng.uniform(1e-3, 0.5))
    elif what == "velocity":
        tr.velocities[i, j] = sign * limits.velocity[j] * rng.uniform(1.01, 3.0)
    elif what == "acceleration":
        tr.accelerations[i, j] = sign * limits.acceleration[j] * rng.uniform(1.01, 3.0)
    elif what == "stamps":
        i = max(i, 1)
        choice = rng.integers(0, 3)
        if choice == 0:
            tr.times[i] = tr.times[i - 1]
        elif choice == 1:
            tr.times[i] = tr.times[i - 1] - rng.uniform(1e-6, 0.1)
        else:
            tr.times -= rng.uniform(1e-3, 1.0)  # starts before 0
    elif what == "names":
        choice = rng.integers(0, 3)
        other = (j + int(rng.integers(1, dof))) % dof
        if choice == 0:
            tr.names[j] = tr.names[j] + "_x"
        elif choice == 1:
            tr.names[j] = tr.names[other]
        else:
            keep = [k for k in range(dof) if k != j]
            tr.names = [tr.names[k] for k in keep]
            tr.positions, tr.velocities = tr.positions[:, keep], tr.velocities[:, keep]
            tr.accelerations, tr.current = tr.accelerations[:, keep], tr.current[keep]
    elif what == "end_velocity":
        tr.velocities[-1, j] = sign * rng.uniform(2e-4, 0.5)
    elif what == "end_acceleration":
        tr.accelerations[-1, j] = sign * rng.uniform(2e-3, 2.0)
    elif what == "current":
        tr.current = tr.current.copy()
        tr.current[j] += sign * rng.uniform(2e-3, 0.5)
    elif what == "lying":  # fields that say "standing still" on a moving path
        tr.velocities[1:-1] = 0.0
        tr.accelerations[1:-1] = 0.0


def test_flood_of_corrupted_trajectories_never_passes(arm: Limits) -> None:
    rng = np.random.default_rng(2024)
    hand = Limits.from_hand("allegro_right")
    hand_mid = 0.5 * (hand.lower + hand.upper)
    clean: list[tuple[TimedTrajectory, Limits]] = []
    for k in range(24):
        duration = float(rng.uniform(1.0, 5.0))
        n = int(duration * rng.uniform(25.0, 40.0))  # sampled like generated motions
        if k % 4 == 3:
            t, q = smooth_path(rng, n, duration, 0.4, center=hand_mid)
            clean.append((retime(np.clip(q, hand.lower, hand.upper), hand, t),
                          hand.scaled(DEFAULT_SCALE)))
        else:
            t, q = smooth_path(rng, n, duration, float(rng.uniform(0.1, 0.7)))
            timed = retime(q, arm, t if k % 3 else None)
            clean.append((timed, arm.scaled(DEFAULT_SCALE)))
    for timed, limits in clean:
        assert Traj.of(timed).validate(limits) == []
    passed, missed, seen = [], [], dict.fromkeys(FLOOD_KINDS, 0)
    for _ in range(2400):
        timed, limits = clean[int(rng.integers(0, len(clean)))]
        what = list(FLOOD_KINDS)[int(rng.integers(0, len(FLOOD_KINDS)))]
        tr = Traj.of(timed)
        _corrupt(tr, limits, what, rng)
        seen[what] += 1
        found = kinds(tr.validate(limits))
        if not found:
            passed.append(what)
        elif not found & FLOOD_KINDS[what]:
            missed.append((what, found))
    assert min(seen.values()) > 150, seen
    assert passed == [], f"corrupted trajectories that passed: {passed}"
    assert missed == [], f"caught, but not by the expected check: {missed}"


def test_imports_without_ros() -> None:
    assert_imports_without_ros("unihm_core.execution")
