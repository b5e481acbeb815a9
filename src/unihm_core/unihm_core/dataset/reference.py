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
