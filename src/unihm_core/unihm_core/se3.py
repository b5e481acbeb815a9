"""SE(3) helpers shared by every stage (batched, numpy).

Poses are 4x4 homogeneous matrices ``T_a_b`` (the pose of frame b expressed in frame a, so
``p_a = T_a_b @ p_b``). Quaternions in this module are always (x, y, z, w), the order of ROS
messages and of scipy; rotations go through :mod:`scipy.spatial.transform` rather than being
re-derived here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

FloatArray = NDArray[np.float64]


def make_pose(rotation: ArrayLike | None = None,
              translation: ArrayLike | None = None) -> FloatArray:
    """Homogeneous matrices from rotation matrices (..., 3, 3) and translations (..., 3)."""
    r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    t = np.zeros(3) if translation is None else np.asarray(translation, dtype=np.float64)
    batch = np.broadcast_shapes(r.shape[:-2], t.shape[:-1])
    pose = np.zeros((*batch, 4, 4))
    pose[..., :3, :3] = r
    pose[..., :3, 3] = t
    pose[..., 3, 3] = 1.0
    return pose


def pose_from_xyz_rpy(xyz: Sequence[float], rpy: Sequence[float]) -> FloatArray:
    """URDF-style origin (fixed-axis roll, pitch, yaw in radians) to a 4x4 pose."""
    rotation = Rotation.from_euler("xyz", np.asarray(rpy, dtype=np.float64)).as_matrix()
    return make_pose(rotation, xyz)


def xyz_rpy_from_pose(pose: ArrayLike) -> tuple[list[float], list[float]]:
    """Inverse of :func:`pose_from_xyz_rpy` (for writing configs)."""
    pose = np.asarray(pose, dtype=np.float64)
    rpy = Rotation.from_matrix(pose[:3, :3]).as_euler("xyz")
    return pose[:3, 3].tolist(), rpy.tolist()


def pose_from_xyz_quat(xyz: ArrayLike, quat_xyzw: ArrayLike) -> FloatArray:
    """Poses from positions (..., 3) and quaternions (..., 4) in (x, y, z, w) order."""
    quat = np.asarray(quat_xyzw, dtype=np.float64)
    rotation = Rotation.from_quat(quat.reshape(-1, 4)).as_matrix().reshape(*quat.shape[:-1], 3, 3)
    return make_pose(rotation, xyz)


def pose_from_param(values: Sequence[float], name: str) -> FloatArray:
    """A pose given as a parameter list [x, y, z, qx, qy, qz, qw]; ValueError naming ``name``
    for anything else (wrong length, NaN, a quaternion that is not unit length)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.shape != (7,) or not np.isfinite(v).all() or abs(np.linalg.norm(v[3:]) - 1) > 1e-3:
        raise ValueError(f"{name} must be [x, y, z, qx, qy, qz, qw] with a unit quaternion, "
                         f"got {list(values)}")
    return pose_from_xyz_quat(v[:3], v[3:] / np.linalg.norm(v[3:]))


def xyz_quat_from_pose(pose: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Positions (..., 3) and quaternions (..., 4, x y z w) of poses (..., 4, 4)."""
    pose = np.asarray(pose, dtype=np.float64)
    quat = Rotation.from_matrix(pose[..., :3, :3].reshape(-1, 3, 3)).as_quat()
    return pose[..., :3, 3].copy(), quat.reshape(*pose.shape[:-2], 4)


def invert(pose: ArrayLike) -> FloatArray:
    """Inverse of rigid transforms (..., 4, 4) without a general matrix inverse."""
    pose = np.asarray(pose, dtype=np.float64)
    r_t = np.swapaxes(pose[..., :3, :3], -1, -2)
    return make_pose(r_t, -np.einsum("...ij,...j->...i", r_t, pose[..., :3, 3]))


def transform_points(pose: ArrayLike, points: ArrayLike) -> FloatArray:
    """Apply poses (..., 4, 4) to points (..., K, 3): returns (..., K, 3)."""
    pose = np.asarray(pose, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    return np.einsum("...ij,...kj->...ki", pose[..., :3, :3], points) + pose[..., None, :3, 3]


def skew(v: ArrayLike) -> FloatArray:
    """Cross-product matrices [v]x of vectors (..., 3)."""
    v = np.asarray(v, dtype=np.float64)
    out = np.zeros((*v.shape[:-1], 3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def exp_local(pose: ArrayLike, twist: ArrayLike) -> FloatArray:
    """Right-perturb poses by body-frame twists (v, w): ``T @ exp([v, w])``.

    This is the wrist parametrization the hand Jacobians use (the same as pinocchio's
    free-flyer ``integrate``): the first three columns move the wrist along its own axes, the
    last three rotate it about its own origin.
    """
    import pinocchio as pin

    pose = np.asarray(pose, dtype=np.float64)
    twist = np.asarray(twist, dtype=np.float64)
    flat_pose = pose.reshape(-1, 4, 4)
    flat_twist = np.broadcast_to(twist, (*pose.shape[:-2], 6)).reshape(-1, 6)
    out = np.empty_like(flat_pose)
    for i, (t, xi) in enumerate(zip(flat_pose, flat_twist, strict=True)):
        out[i] = t @ pin.exp6(pin.Motion(xi[:3], xi[3:])).homogeneous
    return out.reshape(pose.shape)


def rotation_angle(rotation: ArrayLike) -> FloatArray:
    """Rotation angles (rad) of rotation matrices (..., 3, 3), robust near 0 and pi."""
    r = np.asarray(rotation, dtype=np.float64)
    return Rotation.from_matrix(r.reshape(-1, 3, 3)).magnitude().reshape(r.shape[:-2])
