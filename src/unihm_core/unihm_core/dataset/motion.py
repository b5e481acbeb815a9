"""Hand motion records from (wrist poses, joints) and the object's trajectory: contact labels.

Every producer of sequences (synthesis, importers) labels contacts the same way, here: a
fingertip is in contact when its distance to the object surface, measured in the object frame
at that frame's object pose, is below a threshold. The surface is the object's watertight mesh
when there is one (signed distance) and its point cloud otherwise (point-to-plane).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from unihm_core.dataset.format import DatasetFormatError, HandMotion
from unihm_core.hands.kinematics import hand_kinematics
from unihm_core.object_model import ObjectModel
from unihm_core.se3 import FloatArray, invert

CONTACT_THRESHOLD_M = 0.005
"""Gap between the finger pad's surface and the object below which a fingertip touches."""


def fingertip_radii(hand_id: str) -> FloatArray:
    """(n_tips,) radius of each fingertip's contact sphere: keypoints sit inside the finger, so
    a touching fingertip's keypoint is this far from the surface (grasp synthesis fits them)."""
    from unihm_core.dataset.grasp_synthesis import hand_spheres

    spheres = hand_spheres(hand_id)
    return np.asarray(spheres.radii[spheres.tip_spheres], dtype=np.float64)


def fingertip_distances(hand_id: str, wrist_poses: ArrayLike, joints: ArrayLike,
                        object_poses: ArrayLike, obj: ObjectModel) -> FloatArray:
    """(T, n_tips) distance of each fingertip to the object surface (negative inside)."""
    kin = hand_kinematics(hand_id)
    wrist = np.asarray(wrist_poses, dtype=np.float64)
    objs = np.asarray(object_poses, dtype=np.float64)
    q = kin.check_q(joints, "joints")
    if q.ndim != 2 or wrist.shape != (len(q), 4, 4) or objs.shape != (len(q), 4, 4):
        raise DatasetFormatError(f"{hand_id}: wrist poses {wrist.shape}, joints {q.shape} and "
                                 f"object poses {objs.shape} must cover the same T frames")
    tips = kin.keypoints(wrist, q, "fingertips")  # (T, k, 3) world
    local = np.einsum("tij,tkj->tki", invert(objs)[:, :3, :3], tips) + \
        invert(objs)[:, None, :3, 3]
    flat = local.reshape(-1, 3)
    dist = obj.signed_distance(flat)  # point-to-plane when there is no closed mesh
    return np.asarray(dist, dtype=np.float64).reshape(local.shape[:2])


def hand_motion(hand_id: str, wrist_poses: ArrayLike, joints: ArrayLike,
                object_poses: ArrayLike, obj: ObjectModel, *,
                validation: Mapping[str, Any] | None = None,
                threshold: float = CONTACT_THRESHOLD_M) -> HandMotion:
    """A :class:`HandMotion` with contact labels from the object's trajectory: a fingertip
    touches when its pad surface (keypoint distance minus pad radius) is within ``threshold``."""
    kin = hand_kinematics(hand_id)
    dist = fingertip_distances(hand_id, wrist_poses, joints, object_poses, obj)
    return HandMotion(hand_id=hand_id, joint_names=kin.joint_names,
                      wrist_poses=np.asarray(wrist_poses, dtype=np.float64),
                      joints=np.asarray(joints, dtype=np.float64),
                      fingertips=tuple(k.name for k in kin.config.fingertips),
                      contacts=dist < fingertip_radii(hand_id) + threshold,
                      validation=dict(validation or {}))
