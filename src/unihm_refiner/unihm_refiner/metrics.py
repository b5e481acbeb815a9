"""Physical-plausibility and faithfulness numbers for a hand trajectory around an object.

The refiner trades contact and penetration against smoothness and staying close to the
generated motion, so the summary reports all of them, before and after refinement, on the same
footing. Object poses ``T_tar`` are world-from-object: a world point ``s`` is ``T_tar^-1 s`` in
the object frame, where the :class:`ObjectModel` lives. Distances use the model's
``signed_distance`` (exact on a closed mesh, point-to-plane otherwise); negative is inside.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

from unihm_core import se3
from unihm_core.hands import HandKinematics, hand_kinematics
from unihm_core.object_model import ObjectModel

FloatArray = NDArray[np.float64]

# A fingertip this close to the surface (either side) counts as touching it.
CONTACT_THRESHOLD_M = 0.005

Hand = str | HandKinematics


def _kinematics(hand: Hand) -> HandKinematics:
    """A hand id is resolved once per call: the registry re-reads the config folders each time."""
    return hand if isinstance(hand, HandKinematics) else hand_kinematics(hand)


def _check_trajectory(kin: HandKinematics, wrist_poses: ArrayLike,
                      joints: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(T, 4, 4) wrist poses and (T, dof) joints of the same length, or a ValueError."""
    hand_id = kin.hand_id
    q = kin.check_q(joints, "joints")
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValueError(f"{hand_id}: joints must have shape (T, {kin.dof}) with T >= 1, "
                         f"got {q.shape}")
    wrist = np.asarray(wrist_poses, dtype=np.float64)
    if wrist.shape != (q.shape[0], 4, 4):
        raise ValueError(f"{hand_id}: wrist poses must have shape ({q.shape[0]}, 4, 4) to "
                         f"match the joints, got {wrist.shape}")
    if not np.all(np.isfinite(wrist)):
        raise ValueError(f"{hand_id}: wrist poses have non-finite values")
    return wrist, q


def _check_object_poses(object_poses: ArrayLike, frames: int) -> FloatArray:
    """(T, 4, 4) world-from-object poses; a single (4, 4) pose means a static object."""
    poses = np.asarray(object_poses, dtype=np.float64)
    if poses.shape == (4, 4):
        poses = np.broadcast_to(poses, (frames, 4, 4))
    if poses.shape != (frames, 4, 4):
        raise ValueError(f"object poses must have shape ({frames}, 4, 4) or (4, 4), "
                         f"got {poses.shape}")
    if not np.all(np.isfinite(poses)):
        raise ValueError("object poses have non-finite values")
    return poses


def keypoints_in_object_frame(hand: Hand, wrist_poses: ArrayLike, joints: ArrayLike,
                              object_poses: ArrayLike, which: str = "fingertips") -> FloatArray:
    """Hand keypoints (T, K, 3) expressed in the object frame of each frame."""
    kin = _kinematics(hand)
    wrist, q = _check_trajectory(kin, wrist_poses, joints)
    poses = _check_object_poses(object_poses, q.shape[0])
    world = kin.keypoints(wrist, q, which)
    return se3.transform_points(se3.invert(poses), world)


def fingertip_distances(hand: Hand, wrist_poses: ArrayLike, joints: ArrayLike,
                        model: ObjectModel, object_poses: ArrayLike) -> FloatArray:
    """Signed fingertip-to-surface distances (T, n_fingertips), metres, negative inside."""
    tips = keypoints_in_object_frame(hand, wrist_poses, joints, object_poses, "fingertips")
    return model.signed_distance(tips)


def penetration_depth_mm(hand: Hand, wrist_poses: ArrayLike, joints: ArrayLike,
                         model: ObjectModel, object_poses: ArrayLike) -> FloatArray:
    """Per frame (T,), the deepest keypoint inside the object, in millimetres (0 if none).

    Every keypoint of the hand's config is checked (the fingertips are among them); the hand's
    links between keypoints are not, so this is a lower bound on the true penetration.
    """
    points = keypoints_in_object_frame(hand, wrist_poses, joints, object_poses, "all")
    depth = np.maximum(0.0, -model.signed_distance(points))
    return 1000.0 * depth.max(axis=1)


def jitter(joints: ArrayLike, fps: float | None = None) -> FloatArray:
    """Per interior frame (T-2,), the mean over joints of |q[t+1] - 2 q[t] + q[t-1]|.

    Units: rad/frame^2 (m/frame^2 for prismatic joints); with ``fps`` the second difference
    is divided by dt^2, giving rad/s^2. Fewer than three frames give an empty array.
    """
    q = np.asarray(joints, dtype=np.float64)
    if q.ndim != 2:
        raise ValueError(f"joints must have shape (T, dof), got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("joints have non-finite values")
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if q.shape[0] < 3:
        return np.zeros(0)
    acc = np.abs(q[2:] - 2.0 * q[1:-1] + q[:-2]).mean(axis=1)
    return acc * fps**2 if fps is not None else acc


def deviation(joints: ArrayLike, reference_joints: ArrayLike,
              wrist_poses: ArrayLike | None = None,
              reference_wrist_poses: ArrayLike | None = None) -> dict[str, float]:
    """How far a trajectory moved from its reference (the generated one).

    Joints: mean and max absolute difference (rad). Wrist, when both pose sequences are given:
    mean/max translation (mm) and mean/max rotation angle (rad).
    """
    q = np.asarray(joints, dtype=np.float64)
    ref = np.asarray(reference_joints, dtype=np.float64)
    if q.shape != ref.shape or q.ndim != 2:
        raise ValueError(f"joints {q.shape} and reference joints {ref.shape} must have the same "
                         "(T, dof) shape")
    diff = np.abs(q - ref)
    out = {"joint_dev_mean_rad": float(diff.mean()) if diff.size else 0.0,
           "joint_dev_max_rad": float(diff.max()) if diff.size else 0.0}
    if wrist_poses is None and reference_wrist_poses is None:
        return out
    if wrist_poses is None or reference_wrist_poses is None:
        raise ValueError("wrist deviation needs both wrist poses and reference wrist poses")
    w = np.asarray(wrist_poses, dtype=np.float64)
    w_ref = np.asarray(reference_wrist_poses, dtype=np.float64)
    if w.shape != w_ref.shape or w.shape != (q.shape[0], 4, 4):
        raise ValueError(f"wrist poses {w.shape} and reference {w_ref.shape} must both be "
                         f"({q.shape[0]}, 4, 4)")
    trans_mm = 1000.0 * np.linalg.norm(w[:, :3, 3] - w_ref[:, :3, 3], axis=1)
    rel = np.swapaxes(w_ref[:, :3, :3], 1, 2) @ w[:, :3, :3]
    angle = Rotation.from_matrix(rel).magnitude() if len(rel) else np.zeros(0)
    out.update({"wrist_trans_dev_mean_mm": _mean(trans_mm),
                "wrist_trans_dev_max_mm": _max(trans_mm),
                "wrist_rot_dev_mean_rad": _mean(angle),
                "wrist_rot_dev_max_rad": _max(angle)})
    return out


def joint_limit_violations(hand: Hand, joints: ArrayLike,
                           tol: float = 1e-6) -> dict[str, float]:
    """Count of (frame, joint) entries outside the limits by more than ``tol`` and the worst
    excess (rad, or m for prismatic joints)."""
    excess = _kinematics(hand).limit_violation(joints)
    return {"limit_violations": float(np.count_nonzero(excess > tol)),
            "limit_violation_max": float(excess.max()) if excess.size else 0.0}


def _mean(x: FloatArray) -> float:
    return float(np.mean(x)) if x.size else 0.0


def _max(x: FloatArray) -> float:
    return float(np.max(x)) if x.size else 0.0


def trajectory_metrics(hand: Hand, wrist_poses: ArrayLike, joints: ArrayLike,
                       model: ObjectModel, object_poses: ArrayLike, *,
                       reference_joints: ArrayLike | None = None,
                       reference_wrist_poses: ArrayLike | None = None,
                       fps: float | None = None,
                       contact_threshold: float = CONTACT_THRESHOLD_M) -> dict[str, Any]:
    """One flat summary (plain floats, JSON-ready) to print before and after refinement.

    Keys: frames; contact_dist_mean/min_mm (over frames of the closest fingertip, signed);
    contact_ratio (share of fingertip-frames within ``contact_threshold`` of the surface);
    penetration_mean/max_mm; penetrating_frames; jitter_mean/max (rad/frame^2, or rad/s^2
    when ``fps`` is given);
    limit_violations, limit_violation_max; and, with a reference, the :func:`deviation` keys.
    """
    kin = _kinematics(hand)
    wrist, q = _check_trajectory(kin, wrist_poses, joints)
    tips = fingertip_distances(kin, wrist, q, model, object_poses)
    closest = tips.min(axis=1)
    depth = penetration_depth_mm(kin, wrist, q, model, object_poses)
    jit = jitter(q, fps)
    out: dict[str, Any] = {
        "frames": float(q.shape[0]),
        "contact_dist_mean_mm": _mean(1000.0 * closest),
        "contact_dist_min_mm": float(1000.0 * closest.min()),
        "contact_ratio": float(np.mean(np.abs(tips) <= contact_threshold)),
        "penetration_mean_mm": _mean(depth),
        "penetration_max_mm": _max(depth),
        "penetrating_frames": float(np.count_nonzero(depth > 0.0)),
        "jitter_mean": _mean(jit),
        "jitter_max": _max(jit),
    }
    out.update(joint_limit_violations(kin, q))
    if reference_joints is not None:
        out.update(deviation(q, reference_joints, wrist if reference_wrist_poses is not None
                             else None, reference_wrist_poses))
    return out
