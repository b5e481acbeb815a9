"""Hand kinematics against pinocchio, finite differences and an independent URDF parser."""

from __future__ import annotations

import numpy as np
import pytest

from unihm_core.hands import hand_ids, hand_kinematics
from unihm_core.se3 import exp_local, pose_from_xyz_rpy

HANDS = hand_ids()
RNG_SEED = 7


def _random_wrists(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.stack([pose_from_xyz_rpy(rng.normal(size=3), rng.uniform(-np.pi, np.pi, 3))
                     for _ in range(n)])


@pytest.fixture(scope="module", params=HANDS)
def hand(request):
    return hand_kinematics(request.param)


def test_every_shipped_hand_is_registered() -> None:
    expected = {"shadow_right", "shadow_left", "allegro_right", "allegro_left", "leap_right",
                "ability_right", "ability_left", "schunk_svh_right", "schunk_svh_left",
                "inspire_right", "inspire_left", "xhand_right", "xhand_left", "panda_gripper"}
    assert expected <= set(HANDS)


def test_batched_matches_pinocchio_per_frame(hand) -> None:
    rng = np.random.default_rng(RNG_SEED)
    q = hand.random_configurations(40, rng)
    wrists = _random_wrists(40, rng)
    points, jac = hand.keypoints_and_jacobians(wrists, q, "all")
    ref_points, ref_jac = hand.keypoints_pinocchio(wrists, q, "all")
    np.testing.assert_allclose(points, ref_points, atol=1e-9)
    np.testing.assert_allclose(jac, ref_jac, atol=1e-9)
    np.testing.assert_allclose(hand.keypoints(wrists, q), points, atol=1e-12)


def test_jacobian_matches_finite_differences(hand) -> None:
    rng = np.random.default_rng(RNG_SEED + 1)
    q = hand.random_configurations(3, rng, margin=0.05)
    wrists = _random_wrists(3, rng)
    _, jac = hand.keypoints_and_jacobians(wrists, q, "all")
    eps = 1e-6
    ncol = 6 + hand.dof
    for n in range(3):
        fd = np.empty_like(jac[n])
        for c in range(ncol):
            step = np.zeros(ncol)
            step[c] = eps
            plus = hand.keypoints(exp_local(wrists[n], step[:6]), q[n] + step[6:])
            minus = hand.keypoints(exp_local(wrists[n], -step[:6]), q[n] - step[6:])
            fd[..., c] = (plus - minus) / (2 * eps)
        assert np.abs(fd - jac[n]).max() < 1e-6


def test_fk_matches_yourdfpy(hand) -> None:
    """An independent parser (its own mimic handling, its own transform chain) agrees."""
    yourdfpy = pytest.importorskip("yourdfpy")
    urdf = yourdfpy.URDF.load(str(hand.config.urdf_path), load_meshes=False,
                              build_scene_graph=True, build_collision_scene_graph=False,
                              load_collision_meshes=False)
    rng = np.random.default_rng(RNG_SEED + 2)
    root = urdf.base_link
    for q in hand.random_configurations(10, rng):
        q_full = dict(zip(hand.full_joint_names, hand.full_configuration(q), strict=True))
        urdf.update_cfg({name: q_full[name] for name in urdf.actuated_joint_names})
        local = hand.keypoints_local(q)
        for k, kp in enumerate(hand.config.keypoints):
            t_root_link = urdf.get_transform(kp.link, root)
            p_root = t_root_link[:3, :3] @ np.asarray(kp.offset) + t_root_link[:3, 3]
            expected = np.linalg.solve(hand.root_to_wrist, np.append(p_root, 1.0))[:3]
            assert np.linalg.norm(local[k] - expected) < 1e-6, (hand.hand_id, kp.name)


def test_mimic_map_round_trip(hand) -> None:
    q = hand.random_configurations(5, RNG_SEED)
    q_full = hand.full_configuration(q)
    assert q_full.shape == (5, len(hand.full_joint_names))
    np.testing.assert_array_equal(hand.actuated_from_full(q_full), q)


def test_limits_helpers(hand) -> None:
    q = hand.random_configurations(200, RNG_SEED)
    assert hand.within_limits(q).all()
    assert hand.within_limits(hand.open_pose)
    outside = hand.upper + 0.1
    assert not hand.within_limits(outside)
    np.testing.assert_allclose(hand.limit_violation(outside), 0.1)
    np.testing.assert_allclose(hand.clip(outside), hand.upper)


def test_open_pose_follows_the_canonical_frame(hand) -> None:
    """Fingers point along +z; on a right hand the thumb sits on +y, on a left hand on -y."""
    local = hand.keypoints_local(hand.open_pose)
    tips = local[list(hand.fingertip_indices)]
    assert tips[1:, 2].min() > 0.05, tips
    if hand.config.side != "none":
        thumb, others = tips[0], tips[1:]
        sign = 1.0 if hand.config.side == "right" else -1.0
        assert sign * (thumb[1] - others[:, 1].mean()) > 0.03


def test_batch_shapes_broadcast() -> None:
    hand = hand_kinematics("xhand_right")
    q = hand.random_configurations(6, 0).reshape(2, 3, hand.dof)
    points, jac = hand.keypoints_and_jacobians(np.eye(4), q)
    assert points.shape == (2, 3, 5, 3)
    assert jac.shape == (2, 3, 5, 3, 6 + hand.dof)
    assert hand.keypoints_local(q, [0, 3]).shape == (2, 3, 2, 3)


@pytest.mark.parametrize(("q", "message"), [
    (np.zeros(3), "must have shape"),
    (np.full(12, np.nan), "non-finite"),
])
def test_bad_configurations_are_rejected(q, message) -> None:
    with pytest.raises(ValueError, match=message):
        hand_kinematics("xhand_right").keypoints_and_jacobians(np.eye(4), q)


def test_bad_wrist_poses_and_selections_are_rejected() -> None:
    hand = hand_kinematics("xhand_right")
    with pytest.raises(ValueError, match="wrist poses"):
        hand.keypoints(np.eye(3), hand.open_pose)
    with pytest.raises(ValueError, match="keypoint indices"):
        hand.keypoints_local(hand.open_pose, [99])
    with pytest.raises(ValueError, match="unknown keypoint selection"):
        hand.keypoints_local(hand.open_pose, "knuckles")


def test_single_configuration_path_matches_batched(hand) -> None:
    rng = np.random.default_rng(RNG_SEED + 3)
    q = hand.random_configurations(1, rng)[0]
    wrist = _random_wrists(1, rng)[0]
    idx = np.arange(hand.num_keypoints)
    points, jac = hand.evaluate_one(wrist, q, idx)
    ref_points, ref_jac = hand.keypoints_and_jacobians(wrist, q, "all")
    np.testing.assert_allclose(points, ref_points, atol=1e-12)
    np.testing.assert_allclose(jac, ref_jac, atol=1e-12)
