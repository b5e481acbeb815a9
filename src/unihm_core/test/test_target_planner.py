"""Target trajectories: start/end poses, min-jerk rest at the ends, obstacle clearance."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from unihm_core.se3 import make_pose
from unihm_core.target_planner import (
    Obstacle,
    PlannedTrajectory,
    PlanningError,
    PlanRequest,
    TaskPlanner,
    validate_trajectory,
)

EXTENT = np.array([0.12, 0.08, 0.08])
START = make_pose(Rotation.from_rotvec([0, 0, 0.4]).as_matrix(), [0.5, 0.3, 0.04])
BOWL = Obstacle((0.5, -0.2, 0.03), (0.16, 0.16, 0.06), "bowl")
TALL = Obstacle((0.5, 0.05, 0.15), (0.10, 0.10, 0.30), "tall box")
PLANNER = TaskPlanner()


def _check_common(traj: PlannedTrajectory) -> None:
    assert traj.poses.shape == (len(traj.times), 4, 4)
    assert traj.times[0] == 0.0 and np.all(np.diff(traj.times) > 0)
    # one uniform grid at the planner's rate (datasets and the generator use fixed-rate steps)
    np.testing.assert_allclose(np.diff(traj.times), 1.0 / PLANNER.params.rate_hz, atol=1e-9)
    np.testing.assert_allclose(traj.poses[0], START, atol=1e-9)
    dt = np.diff(traj.times)
    speed = np.linalg.norm(np.diff(traj.poses[:, :3, 3], axis=0), axis=1) / dt
    peak = max(float(speed.max()), 1e-9)
    assert speed[0] < 0.05 * peak + 1e-6 and speed[-1] < 0.05 * peak + 1e-6
    report = traj.validate()
    assert report.ok, report.problems


def test_pick_and_place_into_bowl_over_an_obstacle() -> None:
    goal = np.array([0.5, -0.2, 0.01 + 0.04])
    traj = PLANNER.plan(PlanRequest("pick_and_place", START, EXTENT, goal, [TALL], support=BOWL))
    _check_common(traj)
    np.testing.assert_allclose(traj.poses[-1, :3, 3], goal, atol=1e-9)
    # carried above the tall box on the way
    assert traj.poses[:, 2, 3].max() >= 0.30 + 0.04
    assert traj.validate(goal=goal).ok


def test_pick_and_place_detours_when_too_high() -> None:
    tower = Obstacle((0.5, 0.05, 0.45), (0.10, 0.10, 0.90), "tower")
    goal = np.array([0.5, -0.2, 0.04])
    traj = PLANNER.plan(PlanRequest("pick_and_place", START, EXTENT, goal, [tower]))
    _check_common(traj)
    assert np.abs(traj.waypoints[:, 0, 3] - 0.5).max() > 0.05  # went around


def test_impossible_is_reported() -> None:
    wall = Obstacle((0.5, 0.05, 0.5), (1.5, 0.05, 1.0), "wall")
    with pytest.raises(PlanningError, match="wall"):
        PLANNER.plan(PlanRequest("pick_and_place", START, EXTENT, np.array([0.5, -0.2, 0.04]),
                                 [wall]))


def test_lift_rotate_handover() -> None:
    traj = PLANNER.plan(PlanRequest("lift", START, EXTENT, obstacles=[BOWL]))
    _check_common(traj)
    assert traj.poses[-1, 2, 3] == pytest.approx(0.04 + 0.15)
    traj = PLANNER.plan(PlanRequest("lift", START, EXTENT, height=0.3))
    assert traj.poses[-1, 2, 3] == pytest.approx(0.34)

    for angle in (np.pi / 2, -np.pi / 4, np.pi):
        traj = PLANNER.plan(PlanRequest("rotate", START, EXTENT, obstacles=[BOWL], angle=angle))
        _check_common(traj)
        yaw = Rotation.from_matrix(START[:3, :3].T @ traj.poses[-1, :3, :3]).as_rotvec()[2]
        assert abs(np.angle(np.exp(1j * (yaw - angle)))) < 1e-6
        np.testing.assert_allclose(traj.poses[:, :3, 3], np.broadcast_to(START[:3, 3], (len(
            traj.times), 3)))

    traj = PLANNER.plan(PlanRequest("handover", START, EXTENT, obstacles=[TALL, BOWL]))
    _check_common(traj)
    np.testing.assert_allclose(traj.poses[-1, :3, 3], PLANNER.params.handover_point)


def test_push_keeps_contact_height_and_goes_around() -> None:
    goal = np.array([0.5, -0.4, 0.04])
    traj = PLANNER.plan(PlanRequest("push", START, EXTENT, goal, [TALL, BOWL]))
    _check_common(traj)
    np.testing.assert_allclose(traj.poses[:, 2, 3], 0.04)
    np.testing.assert_allclose(traj.poses[-1, :3, 3], goal, atol=1e-9)


def test_validate_catches_problems() -> None:
    poses = np.stack([START, make_pose(None, [0.5, 0.05, 0.04]),
                      make_pose(None, [0.5, -0.2, -0.1])])
    report = validate_trajectory(poses, [0.0, 1.0, 1.0], EXTENT, np.array([0.5, -0.3, 0.04]),
                                 [TALL])
    text = " ".join(report.problems)
    assert not report.ok
    for needle in ("increase", "from the destination", "below the table", "tall box"):
        assert needle in text


def test_bad_requests() -> None:
    with pytest.raises(ValueError, match="destination"):
        PLANNER.plan(PlanRequest("pick_and_place", START, EXTENT))
    with pytest.raises(ValueError, match="unknown task"):
        PLANNER.plan(PlanRequest("juggle", START, EXTENT))
