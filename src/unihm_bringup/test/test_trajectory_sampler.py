"""Trajectory checking, interpolation and tolerance monitoring of the drivers, without ROS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unihm_bringup.drivers.trajectory_sampler import (
    ErrorCode,
    JointToleranceSpec,
    Tolerances,
    TrajectoryError,
    TrajectoryMonitor,
    TrajectorySampler,
    Waypoint,
    check_trajectory,
    resolve_tolerances,
)
from unihm_core.testing import assert_imports_without_ros

JOINTS = ["j1", "j2", "j3"]


def _error(joint_names, points, **kw) -> TrajectoryError:
    with pytest.raises(TrajectoryError) as info:
        check_trajectory(JOINTS, joint_names, points, **kw)
    return info.value


def test_module_is_ros_free() -> None:
    assert_imports_without_ros("unihm_bringup.drivers.trajectory_sampler")


def test_error_codes_match_control_msgs_values() -> None:
    assert [c.value for c in ErrorCode] == [0, -1, -2, -3, -4, -5]


@pytest.mark.parametrize(("names", "needle"), [
    ([], "names no joints"),
    (["j1", "j1", "j2"], "repeated"),
    (["j1", "j2", "elbow"], "unknown joints elbow"),
    (["j1", "j2"], "missing j3"),
])
def test_bad_joint_names(names: list[str], needle: str) -> None:
    err = _error(names, [Waypoint(1.0, [0.0] * len(names))])
    assert err.code == ErrorCode.INVALID_JOINTS
    assert needle in str(err)


def test_partial_goal_allowed_when_asked() -> None:
    checked = check_trajectory(JOINTS, ["j3", "j1"], [Waypoint(1.0, [3.0, 1.0])],
                               allow_partial_joints=True)
    assert checked.indices == (2, 0)


@pytest.mark.parametrize(("points", "needle"), [
    ([], "no points"),
    ([Waypoint(1.0, [0.0, 0.0])], "point 0 has 2 positions, expected 3"),
    ([Waypoint(1.0, [0.0, math.nan, 0.0])], "non-finite positions for j2"),
    ([Waypoint(1.0, [0.0] * 3, [0.0, math.inf, 0.0])], "non-finite velocities for j2"),
    ([Waypoint(1.0, [0.0] * 3), Waypoint(1.0, [1.0] * 3)], "must increase strictly"),
    ([Waypoint(2.0, [0.0] * 3), Waypoint(1.0, [1.0] * 3)], "point 1 at 1 s follows point 0"),
    ([Waypoint(-1.0, [0.0] * 3)], ">= 0"),
    ([Waypoint(1.0, [0.0] * 3, [0.0] * 3), Waypoint(2.0, [1.0] * 3)], "some points but not"),
    ([Waypoint(1.0, [0.0] * 3, [], [0.0] * 3)], "without velocities"),
])
def test_bad_points(points: list[Waypoint], needle: str) -> None:
    err = _error(JOINTS, points)
    assert err.code == ErrorCode.INVALID_GOAL
    assert needle in str(err)


def test_linear_from_start_state_and_hold_at_end() -> None:
    checked = check_trajectory(JOINTS, ["j2", "j1", "j3"],
                               [Waypoint(1.0, [1.0, 2.0, 3.0]), Waypoint(2.0, [3.0, 2.0, 1.0])])
    sampler = TrajectorySampler(checked, [0.0, 0.0, 0.0])
    assert sampler.kind == "linear"
    p, v, a = sampler.sample(0.5)  # halfway from the start state to the first point
    np.testing.assert_allclose(p, [1.0, 0.5, 1.5])
    np.testing.assert_allclose(v, [2.0, 1.0, 3.0])
    np.testing.assert_allclose(a, 0.0)
    np.testing.assert_allclose(sampler.sample(1.5)[0], [2.0, 2.0, 2.0])
    p, v, _ = sampler.sample(10.0)
    np.testing.assert_allclose(p, [2.0, 3.0, 1.0])
    np.testing.assert_allclose(v, 0.0)
    np.testing.assert_allclose(sampler.final_positions, [2.0, 3.0, 1.0])
    np.testing.assert_allclose(sampler.sample(-1.0)[0], 0.0)


def test_cubic_hits_waypoints_with_their_velocities() -> None:
    points = [Waypoint(1.0, [1.0] * 3, [0.5] * 3), Waypoint(2.0, [2.0] * 3, [0.0] * 3)]
    sampler = TrajectorySampler(check_trajectory(JOINTS, JOINTS, points), np.zeros(3),
                                np.full(3, 0.2))
    assert sampler.kind == "cubic"
    np.testing.assert_allclose(sampler.sample(0.0)[1], 0.2, atol=1e-12)  # start velocity kept
    p, v, _ = sampler.sample(1.0)
    np.testing.assert_allclose(p, 1.0)
    np.testing.assert_allclose(v, 0.5)
    np.testing.assert_allclose(sampler.sample(2.0 - 1e-9)[0], 2.0, atol=1e-6)


def test_quintic_matches_accelerations() -> None:
    points = [Waypoint(0.0, [0.0] * 3, [0.0] * 3, [0.0] * 3),
              Waypoint(1.0, [1.0] * 3, [0.0] * 3, [0.0] * 3)]
    sampler = TrajectorySampler(check_trajectory(JOINTS, JOINTS, points), np.full(3, 9.0))
    assert sampler.kind == "quintic"
    p, v, a = sampler.sample(0.5)
    np.testing.assert_allclose(p, 0.5)  # the minimum-jerk profile is symmetric
    np.testing.assert_allclose(v, 1.875)
    np.testing.assert_allclose(a, 0.0, atol=1e-9)
    # a first point at t = 0 is the start: the state the joints were in is ignored
    np.testing.assert_allclose(sampler.sample(0.0)[0], 0.0)


def test_partial_goal_holds_unnamed_joints() -> None:
    checked = check_trajectory(JOINTS, ["j2"], [Waypoint(1.0, [4.0])], allow_partial_joints=True)
    sampler = TrajectorySampler(checked, [7.0, 0.0, -1.0])
    np.testing.assert_allclose(sampler.sample(0.5)[0], [7.0, 2.0, -1.0])
    np.testing.assert_allclose(sampler.final_positions, [7.0, 4.0, -1.0])


def test_tolerance_parameters_and_goal_overrides() -> None:
    defaults = Tolerances.from_defaults(3, path_position=[0.1], goal_position=[0.0, 0.2, 0.3],
                                        goal_time=0.5)
    assert defaults.path_position.tolist() == [0.1] * 3
    assert defaults.goal_position.tolist() == [math.inf, 0.2, 0.3]  # 0 means unchecked
    with pytest.raises(ValueError, match="one per joint"):
        Tolerances.from_defaults(3, path_position=[0.1, 0.2])
    tol = resolve_tolerances(defaults, JOINTS,
                             path=[JointToleranceSpec("j2", position=0.05),
                                   JointToleranceSpec("j3", position=-1.0)],
                             goal=[JointToleranceSpec("j1", position=0.01, velocity=0.02)],
                             goal_time=2.0)
    assert tol.path_position.tolist() == [0.1, 0.05, math.inf]
    assert tol.goal_position.tolist() == [0.01, 0.2, 0.3]
    assert tol.goal_velocity[0] == 0.02 and tol.goal_time == 2.0
    assert resolve_tolerances(defaults, JOINTS).goal_time == 0.5  # 0 in the goal: default
    with pytest.raises(TrajectoryError) as info:
        resolve_tolerances(defaults, JOINTS, goal=[JointToleranceSpec("nope", 0.1)])
    assert info.value.code == ErrorCode.INVALID_JOINTS


def _monitor(path: float = 0.0, goal: float = 0.01, goal_time: float = 0.5):
    checked = check_trajectory(JOINTS, JOINTS, [Waypoint(1.0, [1.0] * 3)])
    tol = Tolerances.from_defaults(3, [path], [goal], goal_time=goal_time)
    return TrajectoryMonitor(TrajectorySampler(checked, np.zeros(3)), tol, JOINTS)


def test_monitor_success_path_and_goal_violations() -> None:
    monitor = _monitor(path=0.1)
    assert monitor.check(0.5, [0.5] * 3) is None
    outcome = monitor.check(0.5, [0.5, 0.8, 0.5])
    assert outcome is not None and outcome.code == ErrorCode.PATH_TOLERANCE_VIOLATED
    assert "joint j2 off by 0.3" in outcome.message
    done = monitor.check(1.0, [1.0, 1.005, 1.0], [0.0] * 3)
    assert done is not None and done.success
    assert monitor.check(1.2, [0.9] * 3) is None  # late but within goal_time_tolerance
    late = monitor.check(1.6, [0.9] * 3)
    assert late is not None and late.code == ErrorCode.GOAL_TOLERANCE_VIOLATED
    assert "goal_time_tolerance" in late.message
    assert _monitor(goal_time=0.0).check(100.0, [0.9] * 3) is None  # 0: wait without limit
