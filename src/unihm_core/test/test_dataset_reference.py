"""Mirrored grasps for hands of the other side than the reference hand."""

from __future__ import annotations

import numpy as np
import trimesh

from unihm_core.dataset.reference import (
    mirror_wrist,
    mirrors_reference,
    retarget_keyframes,
    symmetry_plane,
)
from unihm_core.hands.kinematics import hand_kinematics
from unihm_core.se3 import make_pose


def test_symmetry_plane_maps_a_box_and_a_mug_like_shape_onto_themselves() -> None:
    box = trimesh.creation.box([0.08, 0.05, 0.04])
    box.apply_translation([0.01, -0.02, 0.02])
    pts = np.asarray(box.sample(3000, seed=0))
    reflect = symmetry_plane(pts)
    moved = pts @ reflect[:3, :3].T + reflect[:3, 3]
    from scipy.spatial import cKDTree

    assert cKDTree(pts).query(moved)[0].mean() < 2e-3
    assert np.isclose(np.linalg.det(reflect[:3, :3]), -1.0)
    assert abs(reflect[2, 2] - 1.0) < 1e-9  # vertical plane: z is kept
    # a cylinder with a handle on +x: only the x-z plane through the axis is a symmetry
    cup = trimesh.util.concatenate([trimesh.creation.cylinder(0.04, 0.1, sections=64),
                                    trimesh.creation.box([0.04, 0.01, 0.05],
                                                         make_pose(None, [0.05, 0.0, 0.0]))])
    pts = np.asarray(cup.sample(4000, seed=1))
    reflect = symmetry_plane(pts)
    assert abs(abs(reflect[1, 1]) - 1.0) < 1e-6 and reflect[1, 1] < 0  # normal along y


def test_mirrored_wrist_puts_the_left_hand_fingertips_at_the_reflected_ones() -> None:
    assert mirrors_reference("shadow_left") and not mirrors_reference("xhand_right")
    assert not mirrors_reference("panda_gripper")
    right, left = hand_kinematics("shadow_right"), hand_kinematics("shadow_left")
    q_right = right.open_pose + 0.4 * (np.clip(right.upper, -3, 3) - right.open_pose)
    wrist = make_pose(np.array([[0.0, 0.0, 1.0], [0.6, -0.8, 0.0], [0.8, 0.6, 0.0]]).T,
                      [0.03, -0.12, 0.05])
    reflect = symmetry_plane(np.random.default_rng(0).uniform(-0.05, 0.05, (2000, 3)) *
                             [1.0, 0.5, 1.0])  # a box: some vertical plane through the origin
    q_left = retarget_keyframes("shadow_left", np.stack([right.open_pose, q_right]))[-1]
    tips_right = right.keypoints(wrist[None], q_right[None], "fingertips")[0]
    tips_left = left.keypoints(mirror_wrist(wrist, reflect)[None], q_left[None],
                               "fingertips")[0]
    expected = tips_right @ reflect[:3, :3].T + reflect[:3, 3]
    assert np.linalg.norm(tips_left - expected, axis=1).max() < 0.01
    # without the mirror the thumb lands far from the reflected (or the original) thumb
    unmirrored = left.keypoints(wrist[None], q_left[None], "fingertips")[0]
    assert np.linalg.norm(unmirrored[0] - tips_right[0]) > 0.02
