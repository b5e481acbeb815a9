"""``unihm_npz``: the per-capture ``.npz`` files published with the UniHM paper.

UniHM's preprocessing retargets DexYCB (and OakInk) with dex-retargeting's position retargeting
on hands given a 6-DoF dummy free joint, and saves per capture (docs/dataset_importers.md):

* ``capture_name``, ``start_frame`` (first frame with a hand; everything below starts there)
* ``object_pose`` (T, n_obj, 7): per object ``[qx, qy, qz, qw, x, y, z]`` in the camera frame
  (DexYCB ``pose_y``), ``extrinsics`` (4, 4): world -> camera (the DexYCB AprilTag frame)
* ``ycb_ids`` (n_obj,), ``grasped_ycb_id``, ``grasped_ycb_name``, ``object_mesh_file``
* ``hand_shape`` (10,), ``hand_pose`` (T, 51): MANO parameters
* one entry per robot, named by dex-retargeting (``allegro_hand``, ``shadow_hand``,
  ``schunk_svh_hand``, ``leap_hand``, ``ability_hand``, ``inspire_hand``, ``panda_gripper``):
  a dict ``{"robot_name", "robot_qpos": (T, 6 + n)}`` stored as an object array (read with the
  restricted unpickler), or a plain ``<robot>_qpos`` array. The first six columns are the dummy
  joints (x, y, z translation, then x, y, z rotation, chained in that order: the URDF root's
  pose in the world is ``Trans(x, y, z) Rx Ry Rz``); the rest are every movable URDF joint.

The files carry no joint names: the columns are in the order SAPIEN lists the articulation's
active joints (depth-first over the URDF in file order), which UniHM's script asked for; use
``column_order="pinocchio"`` for files written in dex-retargeting's own (pinocchio) order, or
store ``<robot>_joint_names`` (or ``joint_names`` in the dict) to name the columns. Columns are
picked by name into our config order (mimic joints dropped) and the wrist is the root pose from
the dummy joints composed with the hand's root -> canonical wrist transform.

Without the MANO model (licensed separately, not shipped) the human joints cannot be rebuilt
from ``hand_pose``, so the robot motion is taken as given rather than re-retargeted, and the
record has human joints only when the file has them (``mano_joint_3d``, in the world frame).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from unihm_core.dataset.format import DatasetFormatError, SequenceRecord
from unihm_core.dataset.importers.common import (
    GRIPPER,
    SIDES,
    ImportOptions,
    ImportReport,
    ImportSession,
    ImportSkip,
    ObjectRef,
    ProgressFn,
    as_str,
    fill_poses,
    find_files,
    float_array,
    frame_ranges,
    hold_fill,
    mesh_object,
    resample_poses,
    resample_positions,
    resample_values,
    rigid_or_nan,
    sequence_id,
    ycb_object,
)
from unihm_core.dataset.importers.dexycb import DEXYCB_FPS, YCB_CLASSES
from unihm_core.dataset.importers.safe_pickle import load_npz
from unihm_core.dataset.motion import hand_motion
from unihm_core.hands.kinematics import HandKinematics, hand_kinematics
from unihm_core.hands.registry import get_hand_config, hand_ids
from unihm_core.se3 import FloatArray, invert, make_pose, pose_from_xyz_quat
from unihm_core.tasks import TASK_LIFT

FORMAT = "unihm_npz"
ROBOT_HANDS = {"allegro_hand": "allegro", "shadow_hand": "shadow",
               "schunk_svh_hand": "schunk_svh", "leap_hand": "leap", "ability_hand": "ability",
               "inspire_hand": "inspire", "panda_gripper": GRIPPER}
"""dex-retargeting robot names -> our hand ids without the side (``allegro`` -> allegro_right)."""
DUMMY_JOINTS = tuple(f"dummy_{a}_translation_joint" for a in "xyz") + tuple(
    f"dummy_{a}_rotation_joint" for a in "xyz")
COLUMN_ORDERS = ("sapien", "pinocchio")
REQUIRED = ("object_pose", "ycb_ids", "grasped_ycb_id")
_MISSING_POSE = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])  # DexYCB's "no pose" marker


def hand_for_robot(name: str, side: str = "right") -> str | None:
    """Our hand id for a robot entry name (``allegro_hand``, ``allegro_hand_right_qpos``, ...);
    None for robots we have no config for."""
    base = name[:-5] if name.endswith("_qpos") else name
    for suffix in SIDES:
        if base.endswith(f"_{suffix}"):
            base, side = base[: -len(suffix) - 1], suffix
    hand = ROBOT_HANDS.get(base)
    if hand is None:
        return None
    hand = hand if hand == GRIPPER else f"{hand}_{side}"
    return hand if hand in hand_ids() else None


@cache
def urdf_joint_order(hand_id: str, order: str = "sapien") -> tuple[str, ...]:
    """Movable joints of the hand's URDF in SAPIEN's order (depth-first from the root, children
    in file order) or pinocchio's (depth-first, children sorted by joint name)."""
    if order == "pinocchio":
        return hand_kinematics(hand_id).full_joint_names
    if order != "sapien":
        raise DatasetFormatError(f"column order must be one of {COLUMN_ORDERS}, got {order!r}")
    root = ET.fromstring(get_hand_config(hand_id).urdf_path.read_text())
    joints = list(root.iter("joint"))
    children: dict[str, list[ET.Element]] = {}
    for joint in joints:
        children.setdefault(joint.find("parent").attrib["link"], []).append(joint)
    moved = {j.find("child").attrib["link"] for j in joints}
    roots = [link.attrib["name"] for link in root.iter("link") if link.attrib["name"] not in moved]
    return _preorder(children, roots[0])


def _preorder(children: dict[str, list[ET.Element]], link: str) -> tuple[str, ...]:
    out: list[str] = []
    for joint in children.get(link, []):
        if joint.attrib.get("type") not in ("fixed", "floating"):
            out.append(joint.attrib["name"])
        out += _preorder(children, joint.find("child").attrib["link"])
    return tuple(out)


def wrist_from_dummy(dummy: FloatArray, kin: HandKinematics) -> FloatArray:
    """(T, 4, 4) canonical wrist poses from the six dummy joint values per frame."""
    rot = Rotation.from_euler("XYZ", dummy[:, 3:6]).as_matrix()  # intrinsic: Rx @ Ry @ Rz
    return make_pose(rot, dummy[:, :3]) @ kin.root_to_wrist


def robot_entries(data: dict[str, Any], where: str) -> dict[str, tuple[Any, Any]]:
    """Robot name -> (qpos, joint names or None), from dict entries or ``<robot>_qpos``."""
    out: dict[str, tuple[Any, Any]] = {}
    for key, value in data.items():
        if key.endswith("_qpos") and isinstance(value, np.ndarray) and value.dtype != object:
            out[key[:-5]] = (value, data.get(f"{key[:-5]}_joint_names"))
        elif isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
            entry = value.item()
            if isinstance(entry, dict) and "robot_qpos" in entry:
                names = entry.get("joint_names", data.get(f"{key}_joint_names"))
                out[key] = (entry["robot_qpos"], names)
    if not out:
        raise DatasetFormatError(f"{where}: no robot motion (expected entries such as "
                                 "'allegro_hand' holding {robot_qpos} or 'allegro_hand_qpos')")
    return out


def _columns(hand: str, qpos: FloatArray, names: Any, order: str, where: str) -> FloatArray:
    """(T, 6 + dof): the dummy columns then the config joints, picked by name."""
    kin = hand_kinematics(hand)
    if names is None:
        names = DUMMY_JOINTS + urdf_joint_order(hand, order)
        if qpos.shape[1] != len(names):
            raise DatasetFormatError(
                f"{where}: {hand}: {qpos.shape[1]} qpos columns, expected {len(names)} (6 dummy "
                f"joints + {len(names) - 6} URDF joints); store the column names as "
                "'<robot>_joint_names' if the file uses another layout")
    names = [str(n) for n in np.asarray(names).reshape(-1)]
    if len(names) != qpos.shape[1]:
        raise DatasetFormatError(f"{where}: {hand}: {len(names)} joint names for "
                                 f"{qpos.shape[1]} qpos columns")
    wanted = (*DUMMY_JOINTS, *kin.joint_names)
    missing = [n for n in wanted if n not in names]
    if missing:
        raise DatasetFormatError(f"{where}: {hand}: the qpos columns lack {missing[:4]} (a wrist "
                                 "needs the six dummy joints of dex-retargeting)")
    return qpos[:, [names.index(n) for n in wanted]]


def object_trajectory(data: dict[str, Any], where: str, frames: int
                      ) -> tuple[FloatArray, int, str]:
    """(T_world_object (T, 4, 4) with NaN where unknown, grasped index, frame name)."""
    ids = [str(i) for i in np.asarray(data["ycb_ids"]).reshape(-1).tolist()]
    grasped = str(np.asarray(data["grasped_ycb_id"]).reshape(-1)[0])
    if grasped in ids:
        index = ids.index(grasped)
    elif len(ids) == 1:
        index = 0  # OakInk captures in this layout keep a placeholder id for their one object
    else:
        raise DatasetFormatError(f"{where}: grasped_ycb_id {grasped} is not in ycb_ids {ids}")
    key = "object_pose_world" if "object_pose_world" in data else "object_pose"
    raw = np.asarray(data[key], dtype=np.float64)
    if raw.ndim >= 2 and raw.shape[-1] == 7 and raw.ndim in (2, 3):
        vec = raw[:, index] if raw.ndim == 3 else raw
        vec = float_array(vec, f"{where}: {key}", (frames, 7))
        norms = np.linalg.norm(vec[:, :4], axis=1)
        bad = (norms < 1e-6) | np.all(np.isclose(vec, _MISSING_POSE), axis=1)
        quat = np.where(bad[:, None], (0.0, 0.0, 0.0, 1.0), vec[:, :4])
        poses = pose_from_xyz_quat(vec[:, 4:], quat)  # DexYCB: quaternion (x, y, z, w) first
        poses[bad] = np.nan
    elif raw.ndim in (3, 4) and raw.shape[-2:] == (4, 4):
        poses = float_array(raw[:, index] if raw.ndim == 4 else raw, f"{where}: {key}",
                            (frames, 4, 4))
    else:
        raise DatasetFormatError(f"{where}: {key}: expected (T, n_obj, 7), (T, 7) or "
                                 f"(T[, n_obj], 4, 4) with T = {frames}, got {raw.shape}")
    if len(poses) != frames:
        raise DatasetFormatError(f"{where}: {key} has {len(poses)} frames, the robot motion "
                                 f"{frames}")
    if key == "object_pose_world" or "extrinsics" not in data:
        return poses, index, "world" if key == "object_pose_world" else "camera"
    extr = float_array(data["extrinsics"], f"{where}: extrinsics", (None, 4))
    if extr.shape not in ((3, 4), (4, 4)):
        raise DatasetFormatError(f"{where}: extrinsics: expected (4, 4), got {extr.shape}")
    world_to_cam = np.eye(4)
    world_to_cam[: len(extr)] = extr
    return invert(rigid_or_nan(world_to_cam[None])[0]) @ poses, index, "world"


def _object(data: dict[str, Any], path: Path, index: int,
            mesh_root: Path | None) -> ObjectRef:
    where = str(path)
    grasped = np.asarray(data["grasped_ycb_id"]).reshape(-1)[0]
    ycb_name = YCB_CLASSES.get(int(grasped)) if np.asarray(grasped).dtype.kind in "iu" else None
    given: Path | None = None
    if "object_mesh_file" in data:
        files = [str(f) for f in np.asarray(data["object_mesh_file"]).reshape(-1).tolist()]
        pick = files[index] if len(files) > index else files[0] if len(files) == 1 else None
        given = Path(pick) if pick else None
    object_id = ycb_name or (given.parent.name if given is not None and
                             given.stem == "textured_simple" else str(grasped))
    name = None if ycb_name else (as_str(data["grasped_ycb_name"], where)
                                  if "grasped_ycb_name" in data else None)
    candidates: list[Path] = []
    if given is not None:
        candidates.append(given if given.is_absolute() else path.parent / given)
        if mesh_root is not None:
            candidates += [mesh_root / given.parent.name / given.name, mesh_root / given.name]
    for mesh in candidates:
        if mesh.is_file():
            ref = mesh_object(object_id, mesh, where)
            return ObjectRef(ref.object_id, ref.mesh_file, ref.mesh_path, name)
    try:
        ref = ycb_object(object_id, [mesh_root], where)
    except DatasetFormatError as exc:
        tried = ", ".join(str(c) for c in candidates)
        raise DatasetFormatError(f"{exc}{'; and ' + tried if tried else ''} (pass mesh_root "
                                 "to say where the object meshes are)") from exc
    return ObjectRef(ref.object_id, ref.mesh_file, ref.mesh_path, name)


def _human_joints(data: dict[str, Any], frames: int) -> FloatArray | None:
    """World-frame MANO joints when a variant of the script saved them, else None."""
    key = "mano_joint_3d_world" if "mano_joint_3d_world" in data else "mano_joint_3d"
    if key not in data or (key == "mano_joint_3d" and "object_pose_frame" in data):
        return None  # that variant re-expressed mano_joint_3d in the object frame
    try:
        joints = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if joints.shape != (frames, 21, 3):
        return None
    return joints


def robot_motions(data: dict[str, Any], where: str, side: str, column_order: str,
                  wanted: tuple[str, ...] | None) -> tuple[dict[str, FloatArray], int, list[str]]:
    """Hand id -> (T, 6 + dof) columns (dummy joints, then config joints), frame count, and
    the robots without a config here (reported, not imported)."""
    entries = robot_entries(data, where)
    columns: dict[str, FloatArray] = {}
    ignored = []
    for robot, (qpos, names) in entries.items():
        hand = hand_for_robot(robot, side)
        if hand is None:
            ignored.append(robot)
        elif wanted is None or hand in wanted:
            q = float_array(qpos, f"{where}: {robot} robot_qpos", (None, None))
            columns[hand] = _columns(hand, q, names, column_order, where)
    if not columns:
        raise ImportSkip(f"none of the requested hands is in the file (robots: "
                         f"{', '.join(sorted(entries))})")
    lengths = sorted({len(c) for c in columns.values()})
    if len(lengths) != 1:
        raise DatasetFormatError(f"{where}: robots have different frame counts {lengths}")
    if lengths[0] < 2:
        raise ImportSkip("fewer than 2 frames")
    return columns, lengths[0], ignored


def read_unihm_npz(session: ImportSession, path: Path, seq_id: str, *, side: str,
                   column_order: str, mesh_root: Path | None,
                   source_fps: float) -> SequenceRecord:
    """One published capture -> a record (motion per hand as stored, contacts labelled)."""
    where = str(path)
    data = load_npz(path)
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise DatasetFormatError(f"{where}: missing key(s) {', '.join(missing)} (found: "
                                 f"{', '.join(sorted(data)) or 'none'})")
    columns, frames, ignored = robot_motions(data, where, side, column_order,
                                             session.options.hands)
    poses, index, frame_name = object_trajectory(data, where, frames)
    poses = fill_poses(rigid_or_nan(poses))
    human = _human_joints(data, frames)
    human_ok = np.ones(frames, bool) if human is None else \
        np.all(np.isfinite(human.reshape(frames, -1)), axis=1)

    fps, pos = source_fps, None
    if session.options.fps is not None and abs(session.options.fps - source_fps) > 1e-9:
        pos = resample_positions(frames, source_fps, session.options.fps)
        fps = float(session.options.fps)
        poses = resample_poses(poses, pos)
        if human is not None:
            human, human_ok = resample_values(human, human_ok, pos)
    ref = _object(data, path, index, mesh_root)
    obj = session.object_model(ref)
    motions = {}
    clipped: dict[str, float] = {}
    for hand, cols in columns.items():
        kin = hand_kinematics(hand)
        wrist, q = wrist_from_dummy(cols[:, :6], kin), cols[:, 6:]
        if pos is not None:
            wrist = resample_poses(wrist, pos)
            q = resample_values(q, np.ones(len(q), bool), pos)[0]
        excess = float(np.max(np.maximum(kin.lower - q, q - kin.upper), initial=0.0))
        if excess > 1e-6:
            clipped[hand] = excess
        motions[hand] = hand_motion(hand, wrist, kin.clip(q), poses, obj)
    human = hold_fill(human, human_ok) if human is not None and human_ok.any() else None
    record_id = session.unique_id(seq_id)
    seen, heldout = session.instructions(TASK_LIFT, ref, record_id)
    start = int(np.asarray(data["start_frame"]).reshape(-1)[0]) if "start_frame" in data else 0
    metadata = {"importer": FORMAT, "source_file": where, "side": side,
                "source_fps": source_fps, "frame": frame_name, "column_order": column_order,
                "start_frame": start, "ignored_robots": ignored,
                "clipped_to_limits": clipped,
                "human_invalid_frames": frame_ranges(~human_ok) if human is not None else [],
                "ycb_ids": np.asarray(data["ycb_ids"]).reshape(-1).tolist()}
    return SequenceRecord(
        sequence_id=record_id, fps=fps, object_id=ref.object_id, mesh_path=ref.mesh_path,
        object_points=obj.points, object_normals=obj.normals, object_poses=poses,
        task=TASK_LIFT, instructions=seen, heldout_instructions=heldout, hands=motions,
        human_joints=human, source=FORMAT, metadata=metadata)


def import_unihm_npz(src: str | os.PathLike[str], out: str | os.PathLike[str], *,
                     hands: tuple[str, ...] | list[str] | None = None, fps: float | None = None,
                     seed: int = 0, progress: ProgressFn | None = None, on_error: str = "raise",
                     overwrite: bool = False, side: str = "right", column_order: str = "sapien",
                     mesh_root: str | os.PathLike[str] | None = None,
                     source_fps: float = DEXYCB_FPS) -> ImportReport:
    """UniHM's published per-capture .npz files (robot qpos taken as given)."""
    if side not in SIDES:
        raise DatasetFormatError(f"side must be one of {SIDES}, got {side!r}")
    if column_order not in COLUMN_ORDERS:
        raise DatasetFormatError(f"column_order must be one of {COLUMN_ORDERS}, "
                                 f"got {column_order!r}")
    root = Path(src)
    files = find_files(root, "*.npz", "UniHM capture .npz files")
    options = ImportOptions(hands=tuple(hands) if hands is not None else None, fps=fps,
                            seed=seed, on_error=on_error, overwrite=overwrite)
    session = ImportSession(FORMAT, src, out, options, progress)
    meshes = Path(mesh_root) if mesh_root is not None else None

    def build(path: Path) -> SequenceRecord:
        return read_unihm_npz(session, path, sequence_id(FORMAT, path.stem), side=side,
                              column_order=column_order, mesh_root=meshes,
                              source_fps=source_fps)

    return session.run(files, str, build,
                       provenance={"side": side, "column_order": column_order})
