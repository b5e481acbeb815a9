"""Our messages <-> numpy, in one place, with the checks every node needs on the way in.

Every ``*_from_msg`` function raises :class:`MessageError` naming the field and the problem
(lengths that disagree, NaN, non-increasing times, a cloud without the expected fields), so a
node can turn any bad message into a failed request instead of a traceback. Poses are 4x4
homogeneous matrices; quaternions in messages are (x, y, z, w).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Pose
from numpy.typing import ArrayLike, NDArray
from sensor_msgs.msg import JointState, PointCloud2, PointField
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from unihm_core.se3 import pose_from_xyz_quat, xyz_quat_from_pose
from unihm_msgs.msg import HandTrajectory, Metric, ObjectObservation, TargetTrajectory

FloatArray = NDArray[np.float64]


class MessageError(ValueError):
    """A message that cannot be used as it is; the text names the field and the problem."""


# ---------------------------------------------------------------------------------- time
def duration_msg(seconds: float) -> Duration:
    if not np.isfinite(seconds) or seconds < 0.0:
        raise MessageError(f"duration must be finite and >= 0, got {seconds}")
    total = round(float(seconds) * 1e9)
    return Duration(sec=total // 1_000_000_000, nanosec=total % 1_000_000_000)


def seconds(duration: Duration) -> float:
    return duration.sec + 1e-9 * duration.nanosec


def check_times(times: ArrayLike, what: str) -> FloatArray:
    """Sample times that start at >= 0 and strictly increase."""
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1:
        raise MessageError(f"{what}: times must be a list, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise MessageError(f"{what}: times are not finite")
    if t.size and t[0] < 0.0:
        raise MessageError(f"{what}: the first time is negative ({t[0]:.3f} s)")
    steps = np.diff(t)
    if steps.size and steps.min() <= 0.0:
        i = int(np.argmin(steps)) + 1
        raise MessageError(f"{what}: times must strictly increase, but point {i} is at "
                           f"{t[i]:.4f} s after {t[i - 1]:.4f} s")
    return t


# --------------------------------------------------------------------------------- poses
def pose_msg(pose: ArrayLike) -> Pose:
    return pose_msgs(np.asarray(pose, dtype=np.float64)[None])[0]


def pose_msgs(poses: ArrayLike) -> list[Pose]:
    poses = np.asarray(poses, dtype=np.float64)
    xyz, quat = xyz_quat_from_pose(poses)
    out = []
    for p, q in zip(xyz, quat, strict=True):
        msg = Pose()
        msg.position.x, msg.position.y, msg.position.z = (float(v) for v in p)
        msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = (
            float(v) for v in q)
        out.append(msg)
    return out


def poses_from_msgs(msgs: Sequence[Pose], what: str) -> FloatArray:
    """(N, 4, 4) from Pose messages; rejects NaN and zero-length quaternions."""
    if not msgs:
        return np.zeros((0, 4, 4))
    xyz = np.array([[m.position.x, m.position.y, m.position.z] for m in msgs])
    quat = np.array([[m.orientation.x, m.orientation.y, m.orientation.z, m.orientation.w]
                     for m in msgs])
    bad = np.flatnonzero(~np.isfinite(np.hstack([xyz, quat])).all(axis=1))
    if bad.size:
        raise MessageError(f"{what}: pose {int(bad[0])} has NaN or infinite values")
    norm = np.linalg.norm(quat, axis=1)
    bad = np.flatnonzero(np.abs(norm - 1.0) > 1e-3)
    if bad.size:
        raise MessageError(f"{what}: pose {int(bad[0])} has a quaternion of length "
                           f"{norm[bad[0]]:.4f}, not a unit quaternion")
    return pose_from_xyz_quat(xyz, quat / norm[:, None])


def pose_from_msg(msg: Pose, what: str) -> FloatArray:
    return poses_from_msgs([msg], what)[0]


# ------------------------------------------------------------------------------- clouds
_FLOAT32 = PointField.FLOAT32
_XYZ = ("x", "y", "z")
_NORMALS = ("normal_x", "normal_y", "normal_z")


def cloud_msg(points: ArrayLike, normals: ArrayLike | None = None, *, frame_id: str = "",
              stamp: object | None = None) -> PointCloud2:
    """An unorganized float32 cloud: ``x y z`` and, when given, ``normal_x normal_y normal_z``."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    names = list(_XYZ)
    columns = [pts]
    if normals is not None:
        nrm = np.asarray(normals, dtype=np.float32).reshape(-1, 3)
        if len(nrm) != len(pts):
            raise MessageError(f"{len(nrm)} normals for {len(pts)} points")
        names += _NORMALS
        columns.append(nrm)
    data = np.ascontiguousarray(np.hstack(columns), dtype="<f4")
    msg = PointCloud2()
    msg.header = Header(frame_id=frame_id)
    if stamp is not None:
        msg.header.stamp = stamp
    msg.height, msg.width = 1, len(pts)
    msg.fields = [PointField(name=n, offset=4 * i, datatype=_FLOAT32, count=1)
                  for i, n in enumerate(names)]
    msg.is_bigendian = False
    msg.point_step = 4 * len(names)
    msg.row_step = msg.point_step * len(pts)
    msg.data = data.tobytes()
    msg.is_dense = True
    return msg


def arrays_from_cloud(msg: PointCloud2, what: str = "cloud", *, need_normals: bool = False
                      ) -> tuple[FloatArray, FloatArray | None]:
    """(N, 3) points and (N, 3) normals (None when the cloud has none); NaN points dropped."""
    fields = {f.name: f for f in msg.fields}
    missing = [n for n in _XYZ + (_NORMALS if need_normals else ()) if n not in fields]
    if missing:
        raise MessageError(f"{what}: PointCloud2 lacks the field(s) {', '.join(missing)} "
                           f"(has {', '.join(fields) or 'none'})")
    if msg.is_bigendian:
        raise MessageError(f"{what}: big-endian PointCloud2 is not supported")
    n = msg.width * msg.height
    if n == 0:
        raise MessageError(f"{what}: the cloud is empty")
    if len(msg.data) < n * msg.point_step:
        raise MessageError(f"{what}: {len(msg.data)} bytes of data for {n} points of "
                           f"{msg.point_step} bytes")
    names = _XYZ + (_NORMALS if all(k in fields for k in _NORMALS) else ())
    for name in names:
        if fields[name].datatype != _FLOAT32:
            raise MessageError(f"{what}: field {name} must be FLOAT32")
    dtype = np.dtype({"names": list(names), "formats": ["<f4"] * len(names),
                      "offsets": [fields[k].offset for k in names],
                      "itemsize": msg.point_step})
    raw = np.frombuffer(bytes(msg.data), dtype=dtype, count=n)
    pts = np.stack([raw[k] for k in _XYZ], axis=1).astype(np.float64)
    nrm = (np.stack([raw[k] for k in _NORMALS], axis=1).astype(np.float64)
           if len(names) == 6 else None)
    keep = np.isfinite(pts).all(axis=1)
    if nrm is not None:
        keep &= np.isfinite(nrm).all(axis=1)
    if not keep.any():
        raise MessageError(f"{what}: every point is NaN or infinite")
    return pts[keep], (nrm[keep] if nrm is not None else None)


# ------------------------------------------------------------------------ joint motions
def joint_trajectory_msg(names: Sequence[str], times: ArrayLike, positions: ArrayLike,
                         velocities: ArrayLike | None = None, *,
                         accelerations: ArrayLike | None = None,
                         header: Header | None = None) -> JointTrajectory:
    t = check_times(times, "joint trajectory")
    q = np.asarray(positions, dtype=np.float64)
    if q.shape != (len(t), len(names)):
        raise MessageError(f"joint trajectory: positions of shape {q.shape} for {len(t)} "
                           f"times and {len(names)} joints")
    qd = None if velocities is None else np.asarray(velocities, dtype=np.float64)
    qdd = None if accelerations is None else np.asarray(accelerations, dtype=np.float64)
    msg = JointTrajectory()
    if header is not None:
        msg.header = header
    msg.joint_names = list(names)
    for i, ti in enumerate(t):
        point = JointTrajectoryPoint(positions=q[i].tolist(),
                                     time_from_start=duration_msg(float(ti)))
        if qd is not None:
            point.velocities = qd[i].tolist()
        if qdd is not None:
            point.accelerations = qdd[i].tolist()
        msg.points.append(point)
    return msg


@dataclass
class JointMotion:
    """A joint trajectory as arrays; velocities/accelerations are None when absent."""

    names: list[str]
    times: FloatArray
    positions: FloatArray
    velocities: FloatArray | None = None
    accelerations: FloatArray | None = None


def motion_from_joint_trajectory(msg: JointTrajectory, what: str) -> JointMotion:
    names = list(msg.joint_names)
    if len(set(names)) != len(names):
        raise MessageError(f"{what}: duplicate joint names")
    times = check_times([seconds(p.time_from_start) for p in msg.points], what)
    rows: dict[str, list[list[float]]] = {"positions": [], "velocities": [],
                                          "accelerations": []}
    for i, p in enumerate(msg.points):
        for key, column in rows.items():
            values = list(getattr(p, key))
            if key == "positions" and len(values) != len(names):
                raise MessageError(f"{what}: point {i} has {len(values)} positions for "
                                   f"{len(names)} joints")
            if key != "positions" and values and len(values) != len(names):
                raise MessageError(f"{what}: point {i} has {len(values)} {key} for "
                                   f"{len(names)} joints")
            column.append(values)
    q = np.array(rows["positions"], dtype=np.float64).reshape(len(times), len(names))
    bad = np.argwhere(~np.isfinite(q))
    if bad.size:
        i, j = bad[0]
        raise MessageError(f"{what}: {names[j]} position is not finite at point {i}")

    def optional(key: str) -> FloatArray | None:
        if not rows[key] or any(not r for r in rows[key]):
            return None
        return np.array(rows[key], dtype=np.float64)

    return JointMotion(names, times, q, optional("velocities"), optional("accelerations"))


def joint_state_positions(msg: JointState, names: Sequence[str], what: str) -> FloatArray:
    """Positions of ``names`` (in that order) from a JointState that may list others too."""
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise MessageError(f"{what}: no state for joint(s) {', '.join(missing)}")
    if len(msg.position) != len(msg.name):
        raise MessageError(f"{what}: {len(msg.position)} positions for {len(msg.name)} names")
    q = np.array([msg.position[index[n]] for n in names], dtype=np.float64)
    if not np.isfinite(q).all():
        raise MessageError(f"{what}: joint state is not finite")
    return q


# ------------------------------------------------------------------ hand trajectories
@dataclass
class HandMotion:
    """One hand's motion: wrist poses in the planning frame and actuated joints per sample."""

    hand_id: str
    times: FloatArray
    wrist_poses: FloatArray
    joints: FloatArray
    joint_names: list[str]
    frame_id: str = ""
    wrist_frame: str = ""
    tokens: list[int] = field(default_factory=list)
    frames_per_token: int = 0


def hand_trajectory_msg(motion: HandMotion, *, request_id: str, source: int,
                        stamp: object | None = None) -> HandTrajectory:
    if len(motion.wrist_poses) != len(motion.times):
        raise MessageError(f"{motion.hand_id}: {len(motion.wrist_poses)} wrist poses for "
                           f"{len(motion.times)} times")
    msg = HandTrajectory()
    msg.header.frame_id = motion.frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.request_id = request_id
    msg.hand_id = motion.hand_id
    msg.source = source
    msg.wrist_frame = motion.wrist_frame
    msg.wrist_poses = pose_msgs(motion.wrist_poses)
    msg.joint_trajectory = joint_trajectory_msg(motion.joint_names, motion.times, motion.joints)
    msg.tokens = [int(t) for t in motion.tokens]
    msg.frames_per_token = int(motion.frames_per_token)
    return msg


def motion_from_hand_trajectory(msg: HandTrajectory) -> HandMotion:
    what = f"hand trajectory {msg.hand_id or '(no hand_id)'}"
    if not msg.hand_id:
        raise MessageError("hand trajectory: hand_id is empty")
    joints = motion_from_joint_trajectory(msg.joint_trajectory, what)
    wrist = poses_from_msgs(msg.wrist_poses, f"{what} wrist_poses")
    if len(wrist) != len(joints.times):
        raise MessageError(f"{what}: {len(wrist)} wrist poses for {len(joints.times)} "
                           f"joint points")
    if len(joints.times) < 2:
        raise MessageError(f"{what}: needs at least 2 points, got {len(joints.times)}")
    return HandMotion(msg.hand_id, joints.times, wrist, joints.positions, joints.names,
                      msg.header.frame_id, msg.wrist_frame, list(msg.tokens),
                      int(msg.frames_per_token))


# --------------------------------------------------------------------- target / object
@dataclass
class Target:
    """The object's planned motion T_tar(t) in the planning frame."""

    times: FloatArray
    poses: FloatArray
    task: str = ""
    object_id: str = ""
    object_label: str = ""
    frame_id: str = ""


def target_msg(target: Target, *, request_id: str, stamp: object | None = None
               ) -> TargetTrajectory:
    msg = TargetTrajectory()
    msg.header.frame_id = target.frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.request_id = request_id
    msg.object_id = target.object_id
    msg.object_label = target.object_label
    msg.task = target.task
    msg.poses = pose_msgs(target.poses)
    msg.time_from_start = [duration_msg(float(t))
                           for t in check_times(target.times, "target trajectory")]
    return msg


def target_from_msg(msg: TargetTrajectory) -> Target:
    times = check_times([seconds(d) for d in msg.time_from_start], "target trajectory")
    poses = poses_from_msgs(msg.poses, "target trajectory poses")
    if len(poses) != len(times):
        raise MessageError(f"target trajectory: {len(poses)} poses for {len(times)} times")
    if len(poses) < 2:
        raise MessageError(f"target trajectory: needs at least 2 poses, got {len(poses)}")
    return Target(times, poses, msg.task, msg.object_id, msg.object_label, msg.header.frame_id)


@dataclass
class ObservedObject:
    """The instructed object: identity, pose in the planning frame, cloud in its own frame."""

    object_id: str
    label: str
    pose: FloatArray
    fitness: float
    points: FloatArray
    normals: FloatArray | None
    frame_id: str = ""


def observation_msg(obj: ObservedObject, *, request_id: str, stamp: object | None = None
                    ) -> ObjectObservation:
    msg = ObjectObservation()
    msg.header.frame_id = obj.frame_id
    if stamp is not None:
        msg.header.stamp = stamp
    msg.request_id = request_id
    msg.object_id = obj.object_id
    msg.label = obj.label
    msg.pose = pose_msg(obj.pose)
    msg.fitness = float(obj.fitness)
    msg.cloud = cloud_msg(obj.points, obj.normals, frame_id=obj.object_id or "object")
    return msg


def observation_from_msg(msg: ObjectObservation) -> ObservedObject:
    pts, nrm = arrays_from_cloud(msg.cloud, "object cloud")
    return ObservedObject(msg.object_id, msg.label, pose_from_msg(msg.pose, "object pose"),
                          float(msg.fitness), pts, nrm, msg.header.frame_id)


# ------------------------------------------------------------------------------ metrics
def metric_msgs(values: dict[str, float], hand_id: str = "",
                units: dict[str, str] | None = None) -> list[Metric]:
    """Metric messages; the unit is taken from ``units`` or from a ``_mm``/``_rad``/``_s``
    suffix of the name."""
    units = units or {}
    out = []
    for name, value in values.items():
        unit = units.get(name, "")
        if not unit:
            for suffix in ("mm", "rad", "s", "m", "deg"):
                if name.endswith("_" + suffix):
                    unit = suffix
                    break
        out.append(Metric(name=name, hand_id=hand_id, value=float(value), unit=unit))
    return out
