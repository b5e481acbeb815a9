"""The reference hand's poses as human-like 21-keypoint hands, and their retargeting.

Synthesis optimizes grasps for one anthropomorphic reference hand (Shadow). Its 21 keypoints
(palm origin + four per finger, thumb first; docs/hands.md) sit where a human hand's MANO joints
sit, so scaled down to human size they form the reference human-like hand of the dataset. Every
other hand is reached from those keypoints through the same retargeting that imports real human
data (:mod:`unihm_core.hands.retargeting`), so synthetic and captured data pass one path.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree

from unihm_core.hands.kinematics import hand_kinematics
from unihm_core.hands.retargeting import Retargeter, parse_retargeting
from unihm_core.se3 import FloatArray

REFERENCE_HAND = "shadow_right"


@cache
def _retargeter(hand_id: str) -> Retargeter:
    return Retargeter(hand_id, low_pass=False)


def human_like_local(q: ArrayLike, hand_id: str = REFERENCE_HAND) -> FloatArray:
    """(..., 21, 3) wrist-local human-size keypoints of the reference hand at joints ``q``."""
    kin = hand_kinematics(hand_id)
    if kin.num_keypoints != 21:
        raise ValueError(f"{hand_id} has {kin.num_keypoints} keypoints; a reference hand needs "
                         "21 (palm + 4 per finger)")
    points = kin.keypoints_local(q)
    points[..., 0, :] = 0.0  # the human wrist joint is the canonical wrist origin
    return points / parse_retargeting(kin.config).scaling_factor


def human_like_world(wrist_poses: ArrayLike, q: ArrayLike,
                     hand_id: str = REFERENCE_HAND) -> FloatArray:
    """(T, 21, 3) human-like keypoints placed at the reference hand's wrist poses (world)."""
    local = human_like_local(q, hand_id)
    wrist = np.asarray(wrist_poses, dtype=np.float64)
    return np.einsum("tij,tkj->tki", wrist[:, :3, :3], local) + wrist[:, None, :3, 3]


def retarget_keyframes(hand_id: str, reference_q: ArrayLike,
                       reference_hand: str = REFERENCE_HAND) -> FloatArray:
    """Each reference pose (K, dof_ref) as ``hand_id`` joints (K, dof), solved in order with a
    warm start (pass open -> pre-shape -> grasp so that each solve starts near its answer)."""
    q_ref = np.atleast_2d(np.asarray(reference_q, dtype=np.float64))
    if hand_id == reference_hand:
        return q_ref.copy()
    side = hand_kinematics(reference_hand).config.side
    retargeter = _retargeter(hand_id)
    retargeter.reset()
    local, _, _ = retargeter.to_hand_frame(human_like_local(q_ref, reference_hand),
                                           frame="wrist", human_side=side)
    return np.stack([retargeter.solve_frame(frame) for frame in local])


_MIRROR_Y = np.diag([1.0, -1.0, 1.0, 1.0])


def mirrors_reference(hand_id: str, reference_hand: str = REFERENCE_HAND) -> bool:
    """True when ``hand_id`` is of the other side than the reference hand (a left hand from a
    right reference): the retargeting mirrors its keypoints, so its grasp must be mirrored
    too (:func:`mirror_wrist`)."""
    side = hand_kinematics(hand_id).config.side
    ref_side = hand_kinematics(reference_hand).config.side
    return side in ("right", "left") and ref_side in ("right", "left") and side != ref_side


def symmetry_plane(points: ArrayLike, steps: int = 36) -> FloatArray:
    """The reflection (4x4, object frame) across the vertical plane that maps the object's
    surface samples best onto themselves: normals every ``180 / steps`` degrees in the
    horizontal plane, each plane through the middle of the object's extent along its normal,
    scored by the mean distance of reflected samples to their nearest sample (KD-tree).
    Boxes and cans are mapped onto themselves exactly; a mug by the plane through its handle.
    Vertical planes only: the mirrored object still stands on the table."""
    pts = np.asarray(points, dtype=np.float64)
    tree = cKDTree(pts)
    sub = pts[:: max(1, len(pts) // 512)]
    best: tuple[float, FloatArray] | None = None
    for angle in np.arange(steps) * np.pi / steps:
        n = np.array([np.cos(angle), np.sin(angle), 0.0])
        proj = pts @ n
        offset = 0.5 * (proj.min() + proj.max())
        reflect = np.eye(4)
        reflect[:3, :3] -= 2.0 * np.outer(n, n)
        reflect[:3, 3] = 2.0 * offset * n
        moved = sub @ reflect[:3, :3].T + reflect[:3, 3]
        err = float(tree.query(moved)[0].mean())
        if best is None or err < best[0]:
            best = (err, reflect)
    assert best is not None
    return best[1]


def mirror_wrist(wrist_in_object: ArrayLike, reflection: ArrayLike) -> FloatArray:
    """The wrist pose of the mirror-image hand of a grasp: the reference hand's grasp
    reflected by ``reflection`` (object frame, :func:`symmetry_plane`), expressed in the
    mirrored hand's canonical wrist frame, whose y axis is the mirror of the reference's
    (docs/hands.md). A hand of the other side at this pose with the retargeted (x-z mirrored)
    joints puts every fingertip at the reflection of the reference fingertip, so the thumb
    opposes the fingers as in the reference grasp; at the unmirrored wrist pose it would
    sit on the far side of the wrist's x-z plane from where the object is."""
    return np.asarray(reflection, dtype=np.float64) @ np.asarray(wrist_in_object,
                                                                  dtype=np.float64) @ _MIRROR_Y
