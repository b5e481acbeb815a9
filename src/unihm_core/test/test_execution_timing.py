"""Retiming and approach segments: limits hold, both ends at rest, jumps smoothed or refused."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.interpolate import BPoly

from unihm_core.execution import (
    DEFAULT_RAMP_FRACTION,
    DEFAULT_SCALE,
    Limits,
    TimingError,
    approach_segment,
    concatenate,
    interpolated_motion,
    plan_execution,
    retime,
)
from unihm_core.trajectory import min_jerk

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
    q = center + np.sum(amp[:, None] * np.sin(2 * np.pi * freq[:, None] * t[None, :, None]
                                              + phase[:, None]), axis=0)
    return t, q


def assert_within_by_differences(times: np.ndarray, q: np.ndarray, limits: Limits,
                                 slack: float = 1e-6) -> None:
    """Independent check: divided differences of the positions against the limits."""
    dt = np.diff(times)
    assert np.all(dt > 0)
    vel = np.diff(q, axis=0) / dt[:, None]
    acc = 2 * np.diff(vel, axis=0) / (times[2:] - times[:-2])[:, None]
    assert np.all(np.abs(vel) <= limits.velocity * (1 + slack))
    assert np.all(np.abs(acc) <= limits.acceleration * (1 + slack))


def test_retimed_path_within_limits_and_at_rest(arm: Limits) -> None:
    rng = np.random.default_rng(1)
    t, q = smooth_path(rng, 120, 2.0, 1.2)  # too fast for half the limits: must slow down
    out = retime(q, arm, t)
    run = arm.scaled(DEFAULT_SCALE)
    assert out.names == arm.names
    assert out.slowdown > 1.0
    assert out.times[0] == 0.0
    np.testing.assert_array_equal(out.positions, q)  # the plan's own points
    assert out.validate(run) == []
    assert_within_by_differences(out.times, out.positions, run)
    np.testing.assert_array_equal(out.velocities[[0, -1]], 0.0)
    np.testing.assert_array_equal(out.accelerations[[0, -1]], 0.0)
    # the limits set the pace: some joint is (nearly) at one of them
    ratios = [np.max(np.abs(out.velocities) / run.velocity),
              np.max(np.abs(out.accelerations) / run.acceleration)]
    _, (_, v, a, j) = interpolated_motion(out.times, out.positions, out.velocities,
                                          out.accelerations)
    ratios += [np.max(np.abs(v) / run.velocity), np.max(np.abs(a) / run.acceleration),
               np.max(np.abs(j) / run.jerk)]
    assert 0.9 < max(ratios) <= 1.0 + 1e-6


def test_dense_samples_of_the_curve_stay_within_limits(arm: Limits) -> None:
    rng = np.random.default_rng(2)
    t, q = smooth_path(rng, 60, 3.0, 1.0)
    out = retime(q, arm, t, sample_dt=0.004)
    assert np.max(np.diff(out.times)) <= 0.004 + 1e-12
    run = arm.scaled(DEFAULT_SCALE)
    assert_within_by_differences(out.times, out.positions, run)
    assert out.validate(run) == []
    np.testing.assert_allclose(out.positions[[0, -1]], q[[0, -1]])


def test_slow_plan_keeps_its_nominal_timing(arm: Limits) -> None:
    rng = np.random.default_rng(3)
    t, q = smooth_path(rng, 90, 6.0, 0.2)
    out = retime(q, arm, t)
    assert out.slowdown == 1.0
    # only the start/stop ramps add time: each covers its ramp at half speed
    assert out.duration == pytest.approx(6.0 * (1 + DEFAULT_RAMP_FRACTION))
    # away from the ramps, the plan's own time differences are kept
    mid = slice(30, 60)
    np.testing.assert_allclose(np.diff(out.times[mid]), np.diff(t[mid]), rtol=1e-9)


def test_without_nominal_times_runs_as_fast_as_the_limits_allow(arm: Limits) -> None:
    rng = np.random.default_rng(4)
    _, q = smooth_path(rng, 50, 1.0, 0.8)
    out = retime(q, arm)
    run = arm.scaled(DEFAULT_SCALE)
    assert out.validate(run) == []
    slower = retime(q, arm, scale=0.25)
    assert slower.duration > out.duration * 1.3
    assert slower.validate(arm.scaled(0.25)) == []


def test_small_jump_is_smoothed_within_limits(arm: Limits) -> None:
    rng = np.random.default_rng(5)
    t, q = smooth_path(rng, 100, 4.0, 0.4)
    q[50:, 3] += 0.3  # a step below max_step
    out = retime(q, arm, t)
    run = arm.scaled(DEFAULT_SCALE)
    assert out.slowdown > 1.0
    assert out.validate(run) == []
    assert_within_by_differences(out.times, out.positions, run)


def test_large_jump_is_refused_naming_joint_and_points(arm: Limits) -> None:
    rng = np.random.default_rng(6)
    t, q = smooth_path(rng, 100, 4.0, 0.4)
    q[70:, 5] += 1.0  # an IK branch switch
    with pytest.raises(TimingError, match=r"panda_joint6 jumps 1\.0\d* rad between points 69 "
                                          r"and 70"):
        retime(q, arm, t)
    out = retime(q, arm, t, max_step=None)  # explicitly allowed: still within limits
    assert out.validate(arm.scaled(DEFAULT_SCALE)) == []


@pytest.mark.parametrize("corrupt, message", [
    (lambda q: q.__setitem__((10, 1), 2.0), r"panda_joint2 position 2 rad at point 10 is "
                                             r"outside the limits \[-1\.763, 1\.763\]"),
    (lambda q: q.__setitem__((3, 0), np.nan), r"panda_joint1 position nan at point 3"),
])
def test_bad_paths_are_refused(arm: Limits, corrupt: Callable[[np.ndarray], None],
                               message: str) -> None:
    t, q = smooth_path(np.random.default_rng(7), 30, 2.0, 0.2)
    corrupt(q)
    with pytest.raises(TimingError, match=message):
        retime(q, arm, t)


def test_bad_inputs_are_refused(arm: Limits) -> None:
    t, q = smooth_path(np.random.default_rng(8), 30, 2.0, 0.2)
    with pytest.raises(TimingError, match="shape"):
        retime(q[:, :6], arm, t)
    with pytest.raises(TimingError, match="strictly increasing"):
        retime(q, arm, t[::-1])
    with pytest.raises(TimingError, match="at least 2 points"):
        retime(q[:1], arm, t[:1])


def test_two_and_three_point_paths(arm: Limits) -> None:
    for n in (2, 3):
        q = READY + np.linspace(0, 0.3, n)[:, None]
        out = retime(q, arm, max_step=None)
        assert out.validate(arm.scaled(DEFAULT_SCALE)) == []


def test_approach_segment_is_min_jerk_within_limits(arm: Limits) -> None:
    start = READY + np.array([0.5, -0.2, 0.1, 0.3, 0.0, -0.4, 1.0])
    seg = approach_segment(READY, start, arm)
    run = arm.scaled(DEFAULT_SCALE)
    assert seg.validate(run, READY) == []
    np.testing.assert_array_equal(seg.positions[0], READY)
    np.testing.assert_array_equal(seg.positions[-1], start)
    expected = READY + (start - READY) * min_jerk(seg.times / seg.duration)[:, None]
    np.testing.assert_allclose(seg.positions, expected, atol=1e-12)
    # the duration is the shortest the limits allow: the binding joint reaches its limit
    peak = max(np.max(np.abs(seg.velocities) / run.velocity),
               np.max(np.abs(seg.accelerations) / run.acceleration))
    assert 0.97 < peak <= 1.0 + 1e-9
    still = approach_segment(READY, READY, arm)
    assert still.duration == pytest.approx(0.1)
    assert still.validate(run, READY) == []


def test_plan_execution_starts_where_the_arm_is(arm: Limits) -> None:
    t, q = smooth_path(np.random.default_rng(9), 120, 4.0, 0.8)
    current = READY + 0.3
    plan = plan_execution(current, q, arm, t)
    np.testing.assert_array_equal(plan.positions[0], current)
    np.testing.assert_array_equal(plan.positions[-1], q[-1])
    assert plan.validate(arm.scaled(DEFAULT_SCALE), current) == []
    assert plan.validate(arm, current) == []  # and within the published limits
    # already there: no approach
    direct = plan_execution(q[0], q, arm, t)
    assert len(direct) == 120


def test_concatenate_refuses_parts_not_at_rest(arm: Limits) -> None:
    a = approach_segment(READY, READY + 0.1, arm)
    b = approach_segment(READY + 0.2, READY, arm)
    with pytest.raises(ValueError, match="do not join at rest"):
        concatenate(a, b)


def test_hand_limits_and_arm_with_hand_retimed_together(arm: Limits) -> None:
    hand = Limits.from_hand("allegro_right")
    assert hand.dof == 16 and hand.jerk is None
    np.testing.assert_allclose(hand.acceleration, hand.velocity / 0.25)
    gripper = Limits.from_hand("panda_gripper")
    assert gripper.units == ("m",)
    rng = np.random.default_rng(10)
    mid = 0.5 * (hand.lower + hand.upper)
    t, qh = smooth_path(rng, 80, 3.0, 0.3, center=mid)
    qh = np.clip(qh, hand.lower, hand.upper)
    _, qa = smooth_path(rng, 80, 3.0, 0.6)
    both = Limits.concat(arm, hand)
    out = retime(np.hstack([qa, qh]), both, t)
    arm_part, hand_part = out.select(arm.names), out.select(hand.names)
    assert arm_part.validate(arm.scaled(DEFAULT_SCALE)) == []
    assert hand_part.validate(hand.scaled(DEFAULT_SCALE)) == []
    np.testing.assert_array_equal(arm_part.times, hand_part.times)
    alone = retime(qh, hand, t)
    assert alone.validate(hand.scaled(DEFAULT_SCALE)) == []


def test_interpolated_motion_matches_scipy_quintic() -> None:
    rng = np.random.default_rng(11)
    t = np.cumsum(rng.uniform(0.01, 0.3, 25))
    q, v, a = rng.normal(size=(3, 25, 4))
    grid, values = interpolated_motion(t, q, v, a, samples=5)
    reference = BPoly.from_derivatives(t, np.stack([q, v, a], axis=1))
    for nu, value in enumerate(values):
        expected = reference(grid, nu)
        np.testing.assert_allclose(value, expected, rtol=1e-7, atol=1e-7 * np.abs(expected).max())


def test_benchmark_is_registered_and_runs() -> None:
    from unihm_core.bench import benchmarks
    from unihm_core.execution.benchmark import run

    assert "execution" in benchmarks()
    result = run(quick=True)
    assert result["violations"] == 0 and result["points"] == 120 and result["dof"] == 7
    assert result["retime_ms"] > 0 and result["baseline_naive_difference_check_ms"] > 0


def test_ik_path_of_a_wrist_trajectory_is_planned_within_limits(arm: Limits) -> None:
    from unihm_core.arm import ArmIK, arm_model

    model = arm_model("franka_panda")
    ik = ArmIK(model, hand="xhand_right")
    t = np.linspace(0.0, 3.0, 90)
    wave = np.sin(2 * np.pi * 0.3 * t)[:, None] * np.array([1, 0.5, -0.5, 0.4, 0.8, -0.6, 1])
    poses = np.stack([model.wrist_pose(q, hand="xhand_right")
                      for q in model.ready_posture + 0.3 * wave])
    result = ik.solve_trajectory(poses)
    assert result.all_reached
    plan = plan_execution(model.ready_posture, result.q, arm, t)
    assert plan.validate(arm.scaled(DEFAULT_SCALE), model.ready_posture) == []
    np.testing.assert_array_equal(plan.positions[-1], result.q[-1])
