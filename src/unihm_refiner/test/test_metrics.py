"""Metrics on hand-made trajectories whose answers are known in closed form."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from unihm_core import se3
from unihm_core.hands import HandKinematics, hand_kinematics
from unihm_core.object_model import ObjectModel
from unihm_refiner.metrics import (
    deviation,
    fingertip_distances,
    jitter,
    joint_limit_violations,
    keypoints_in_object_frame,
    penetration_depth_mm,
    trajectory_metrics,
)

HAND = "allegro_right"
RADIUS = 0.01
CENTRE_IN_OBJECT = np.array([0.02, 0.0, 0.0])  # off the object origin, so the pose matters


@pytest.fixture(scope="module")
def kin() -> HandKinematics:
    return hand_kinematics(HAND)


@pytest.fixture(scope="module")
def ball() -> ObjectModel:
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=RADIUS)
    mesh.apply_translation(CENTRE_IN_OBJECT)
    return ObjectModel.from_mesh(mesh, 1000, name="ball")


def _hand_and_ball_poses(kin: HandKinematics, depths: list[float]) -> tuple[np.ndarray, ...]:
    """A still hand and ball poses that put the first fingertip ``depth`` inside the ball
    (negative: outside), the ball lying beyond the fingertip, away from the palm."""
    frames = len(depths)
    q = np.tile(np.clip(np.zeros(kin.dof), kin.lower, kin.upper), (frames, 1))
    wrist = np.tile(se3.make_pose(Rotation.from_euler("xyz", [0.3, -0.2, 0.5]).as_matrix(),
                                  [0.1, 0.2, 0.3]), (frames, 1, 1))
    points = kin.keypoints(wrist[0], q[0], "all")
    tip = points[kin.fingertip_indices[0]]
    out = (tip - points.mean(axis=0)) / np.linalg.norm(tip - points.mean(axis=0))
    rotation = Rotation.from_rotvec([0.4, 0.1, -0.7]).as_matrix()
    poses = np.empty((frames, 4, 4))
    for t, depth in enumerate(depths):
        centre = tip + (RADIUS - depth) * out
        poses[t] = se3.make_pose(rotation, centre - rotation @ CENTRE_IN_OBJECT)
    return wrist, q, poses


def test_fingertip_five_mm_inside_reports_five_mm(kin: HandKinematics,
                                                  ball: ObjectModel) -> None:
    wrist, q, poses = _hand_and_ball_poses(kin, [0.005, 0.0, -0.003])
    # the analytic depth of every keypoint, to be sure only the chosen tip is inside
    local = keypoints_in_object_frame(kin, wrist, q, poses, "all")
    analytic = np.maximum(0.0, RADIUS - np.linalg.norm(local - CENTRE_IN_OBJECT, axis=-1))
    np.testing.assert_allclose(analytic.max(axis=1) * 1000.0, [5.0, 0.0, 0.0], atol=1e-9)

    depth = penetration_depth_mm(HAND, wrist, q, ball, poses)
    np.testing.assert_allclose(depth, [5.0, 0.0, 0.0], atol=0.02)
    tips = fingertip_distances(kin, wrist, q, ball, poses)
    assert tips.shape == (3, len(kin.fingertip_indices))
    np.testing.assert_allclose(tips[:, 0], [-0.005, 0.0, 0.003], atol=2e-5)
    assert np.all(tips[:, 1:] > 0.003)

    summary = trajectory_metrics(HAND, wrist, q, ball, poses)
    assert summary["penetration_max_mm"] == pytest.approx(5.0, abs=0.02)
    assert summary["penetrating_frames"] == 1.0
    assert summary["contact_dist_min_mm"] == pytest.approx(-5.0, abs=0.02)
    # within 5 mm: the touching and the 3 mm-away tip; the 5 mm-deep one sits on the threshold
    assert summary["contact_ratio"] * tips.size == pytest.approx(np.sum(np.abs(tips) <= 0.005))


def test_static_object_pose_broadcasts(kin: HandKinematics, ball: ObjectModel) -> None:
    wrist, q, poses = _hand_and_ball_poses(kin, [0.004, 0.004])
    np.testing.assert_allclose(penetration_depth_mm(kin, wrist, q, ball, poses[0]), [4.0, 4.0],
                               atol=0.02)


def test_jitter() -> None:
    constant = np.ones((10, 4))
    np.testing.assert_array_equal(jitter(constant), np.zeros(8))
    ramp = np.linspace(0.0, 1.0, 10)[:, None] * np.ones(4)
    np.testing.assert_allclose(jitter(ramp), 0.0, atol=1e-12)
    t = np.arange(6, dtype=float)[:, None]
    quadratic = 0.01 * t**2 * np.array([1.0, -1.0])
    np.testing.assert_allclose(jitter(quadratic), 0.02)
    np.testing.assert_allclose(jitter(quadratic, fps=30.0), 0.02 * 900.0)
    assert jitter(constant[:2]).shape == (0,)
    with pytest.raises(ValueError, match="fps"):
        jitter(constant, fps=0.0)


def test_deviation() -> None:
    q = np.random.default_rng(0).normal(size=(5, 3))
    wrist = np.tile(np.eye(4), (5, 1, 1))
    same = deviation(q, q, wrist, wrist)
    assert all(value == 0.0 for value in same.values()) and len(same) == 6
    moved = wrist.copy()
    moved[:, :3, :3] = Rotation.from_rotvec([0.0, 0.0, 0.1]).as_matrix()
    moved[:, :3, 3] = [0.002, 0.0, 0.0]
    shifted = deviation(q + 0.1, q, moved, wrist)
    assert shifted["joint_dev_mean_rad"] == pytest.approx(0.1)
    assert shifted["joint_dev_max_rad"] == pytest.approx(0.1)
    assert shifted["wrist_trans_dev_max_mm"] == pytest.approx(2.0)
    assert shifted["wrist_rot_dev_mean_rad"] == pytest.approx(0.1)
    assert set(deviation(q, q)) == {"joint_dev_mean_rad", "joint_dev_max_rad"}
    with pytest.raises(ValueError, match="same"):
        deviation(q, q[:4])
    with pytest.raises(ValueError, match="both"):
        deviation(q, q, wrist)


def test_joint_limit_violations(kin: HandKinematics) -> None:
    q = np.tile((kin.lower + kin.upper) / 2.0, (4, 1))
    assert joint_limit_violations(kin, q) == {"limit_violations": 0.0,
                                              "limit_violation_max": 0.0}
    q[2, 0] = kin.upper[0] + 0.2
    q[3, 1] = kin.lower[1] - 0.05
    found = joint_limit_violations(HAND, q)
    assert found["limit_violations"] == 2.0
    assert found["limit_violation_max"] == pytest.approx(0.2)


def test_summary_is_json_and_zero_for_the_reference(kin: HandKinematics,
                                                    ball: ObjectModel) -> None:
    wrist, q, poses = _hand_and_ball_poses(kin, [-0.01] * 6)
    summary = trajectory_metrics(kin, wrist, q, ball, poses, reference_joints=q,
                                 reference_wrist_poses=wrist, fps=30.0)
    assert all(isinstance(value, float) for value in summary.values())
    json.dumps(summary)
    for key in ("jitter_mean", "jitter_max", "joint_dev_max_rad", "wrist_trans_dev_max_mm",
                "wrist_rot_dev_max_rad", "penetration_max_mm", "limit_violations"):
        assert summary[key] == 0.0, key
    assert summary["frames"] == 6.0


def test_bad_trajectories_raise(kin: HandKinematics, ball: ObjectModel) -> None:
    wrist, q, poses = _hand_and_ball_poses(kin, [0.0, 0.0])
    with pytest.raises(ValueError, match="wrist poses"):
        trajectory_metrics(kin, wrist[:1], q, ball, poses)
    with pytest.raises(ValueError, match="joints"):
        trajectory_metrics(kin, wrist, q[:, :3], ball, poses)
    with pytest.raises(ValueError, match="object poses"):
        trajectory_metrics(kin, wrist, q, ball, poses[:, :3])
    bad = poses.copy()
    bad[0, 0, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        trajectory_metrics(kin, wrist, q, ball, bad)
