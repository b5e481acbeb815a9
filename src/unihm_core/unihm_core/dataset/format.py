"""One manipulation sequence per file: the typed record and its versioned ``.npz`` layout.

A sequence is what the tokenizer and the generator learn from: an object (id, mesh, surface
points with normals in the object frame), where it goes (the object pose trajectory, i.e. the
target trajectory T_obj(t)), the task and its instruction paraphrases, and for every hand type
the hand motion (wrist SE(3) in the world frame + actuated joints in config order) with per-frame
fingertip contact labels. Files are plain ``.npz`` read with ``allow_pickle=False`` (a dataset
from elsewhere is never unpickled); metadata is one JSON string. The key layout is documented
key by key in docs/dataset.md and checked on load, so a truncated or foreign file fails with a
message naming the file and the problem instead of producing garbage downstream.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from unihm_core.se3 import FloatArray, pose_from_xyz_quat, xyz_quat_from_pose

FORMAT = "unihm-hoi-sequence"
FORMAT_VERSION = 1
SEQUENCE_SUFFIX = ".npz"
HUMAN_JOINTS = 21
"""The reference human-like hand has 21 joints in MANO/MediaPipe order (docs/retargeting.md)."""

BoolArray = NDArray[np.bool_]


class DatasetFormatError(ValueError):
    """A dataset file or record that does not follow the format; the message names what is wrong."""


def _poses(a: ArrayLike, what: str, frames: int | None = None) -> FloatArray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (4, 4):
        raise DatasetFormatError(f"{what}: expected (T, 4, 4) poses, got shape {arr.shape}")
    if frames is not None and arr.shape[0] != frames:
        raise DatasetFormatError(f"{what}: {arr.shape[0]} frames, the sequence has {frames}")
    if not np.all(np.isfinite(arr)):
        raise DatasetFormatError(f"{what}: poses contain NaN or inf")
    rot = arr[:, :3, :3]
    err = np.abs(rot @ np.swapaxes(rot, 1, 2) - np.eye(3)).max(initial=0.0)
    if err > 1e-3 or np.abs(arr[:, 3] - (0.0, 0.0, 0.0, 1.0)).max(initial=0.0) > 1e-6:
        raise DatasetFormatError(f"{what}: not rigid transforms (rotation error {err:.2g})")
    return arr


def _matrix(a: ArrayLike, what: str, shape: tuple[int | None, ...],
            dtype: Any = np.float64) -> NDArray[Any]:
    arr = np.asarray(a, dtype=dtype)
    if arr.ndim != len(shape) or any(
            s is not None and s != d for s, d in zip(shape, arr.shape, strict=True)):
        want = ", ".join("N" if s is None else str(s) for s in shape)
        raise DatasetFormatError(f"{what}: expected shape ({want}), got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise DatasetFormatError(f"{what}: contains NaN or inf")
    return arr


def _frozen(arr: NDArray[Any]) -> NDArray[Any]:
    arr = np.array(arr, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class HandMotion:
    """One hand type's motion over the sequence, sampled at the sequence's fps."""

    hand_id: str
    joint_names: tuple[str, ...]
    wrist_poses: FloatArray
    """(T, 4, 4) canonical wrist frame in the world frame (docs/hands.md)."""
    joints: FloatArray
    """(T, n) actuated joints in ``joint_names`` order (radians / metres)."""
    fingertips: tuple[str, ...]
    """Fingertip keypoint names, thumb first (the columns of ``contacts``)."""
    contacts: BoolArray
    """(T, len(fingertips)) fingertip within the contact threshold of the object surface."""
    validation: Mapping[str, Any] = field(default_factory=dict)
    """Physics check of the grasp this motion uses (lift success, penetration in mm, ...)."""

    def __post_init__(self) -> None:
        where = f"hand {self.hand_id!r}"
        if not self.hand_id:
            raise DatasetFormatError("hand motion without a hand id")
        poses = _poses(self.wrist_poses, f"{where} wrist_poses")
        frames = poses.shape[0]
        joints = _matrix(self.joints, f"{where} joints", (frames, len(self.joint_names)))
        contacts = _matrix(self.contacts, f"{where} contacts", (frames, len(self.fingertips)),
                           dtype=np.bool_)
        object.__setattr__(self, "joint_names", tuple(self.joint_names))
        object.__setattr__(self, "fingertips", tuple(self.fingertips))
        object.__setattr__(self, "wrist_poses", _frozen(poses))
        object.__setattr__(self, "joints", _frozen(joints))
        object.__setattr__(self, "contacts", _frozen(contacts))
        object.__setattr__(self, "validation", dict(self.validation))

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])


@dataclass(frozen=True)
class SequenceRecord:
    """A manipulation sequence: object, target trajectory, task, instructions, motion per hand."""

    sequence_id: str
    fps: float
    object_id: str
    mesh_path: str
    """As given: asset-relative (``ycb_objects/<id>/textured_simple.obj``) or absolute."""
    object_points: FloatArray
    """(P, 3) surface samples in the object frame (metres)."""
    object_normals: FloatArray
    """(P, 3) outward unit normals at ``object_points``."""
    object_poses: FloatArray
    """(T, 4, 4) T_world_object(t): the target trajectory."""
    task: str
    instructions: tuple[str, ...]
    """Paraphrases from the training phrasing set."""
    heldout_instructions: tuple[str, ...]
    """Paraphrases from the reserved phrasing set (unseen-instruction tests)."""
    hands: Mapping[str, HandMotion]
    human_joints: FloatArray | None = None
    """(T, 21, 3) reference human-like keypoints in the world frame, when there is one."""
    source: str = "synthetic"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Free-form JSON: seed, grasp, phase boundaries, importer details, ..."""

    def __post_init__(self) -> None:  # noqa: PLR0912 - one check per field
        where = f"sequence {self.sequence_id!r}"
        if not self.sequence_id or "/" in self.sequence_id or self.sequence_id.startswith("."):
            raise DatasetFormatError(f"bad sequence id {self.sequence_id!r} (non-empty, no '/')")
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise DatasetFormatError(f"{where}: fps must be positive, got {self.fps}")
        if not self.object_id:
            raise DatasetFormatError(f"{where}: empty object id")
        if not self.task:
            raise DatasetFormatError(f"{where}: empty task")
        poses = _poses(self.object_poses, f"{where} object_poses")
        frames = poses.shape[0]
        if frames < 2:
            raise DatasetFormatError(f"{where}: needs at least 2 frames, got {frames}")
        points = _matrix(self.object_points, f"{where} object_points", (None, 3))
        normals = _matrix(self.object_normals, f"{where} object_normals", (points.shape[0], 3))
        if points.shape[0] == 0:
            raise DatasetFormatError(f"{where}: no object surface points")
        if not self.hands:
            raise DatasetFormatError(f"{where}: no hand motion")
        for hand_id, motion in self.hands.items():
            if not isinstance(motion, HandMotion) or motion.hand_id != hand_id:
                raise DatasetFormatError(f"{where}: hands[{hand_id!r}] is not its HandMotion")
            if motion.num_frames != frames:
                raise DatasetFormatError(f"{where}: hand {hand_id!r} has {motion.num_frames} "
                                         f"frames, the object trajectory {frames}")
        human = None
        if self.human_joints is not None:
            human = _frozen(_matrix(self.human_joints, f"{where} human_joints",
                                    (frames, HUMAN_JOINTS, 3)))
        for name in ("instructions", "heldout_instructions"):
            texts = tuple(getattr(self, name))
            if any(not isinstance(t, str) or not t.strip() for t in texts):
                raise DatasetFormatError(f"{where}: {name} must be non-empty strings")
            object.__setattr__(self, name, texts)
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "object_points", _frozen(points))
        object.__setattr__(self, "object_normals", _frozen(normals))
        object.__setattr__(self, "object_poses", _frozen(poses))
        object.__setattr__(self, "human_joints", human)
        object.__setattr__(self, "hands", dict(self.hands))
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def num_frames(self) -> int:
        return int(self.object_poses.shape[0])

    @property
    def duration(self) -> float:
        return (self.num_frames - 1) / self.fps

    @property
    def hand_ids(self) -> tuple[str, ...]:
        return tuple(self.hands)


# --------------------------------------------------------------------------------- file layout
def _pack_poses(poses: FloatArray) -> NDArray[np.float32]:
    xyz, quat = xyz_quat_from_pose(poses)
    return np.concatenate([xyz, quat], axis=-1).astype(np.float32)


def _unpack_poses(packed: NDArray[Any], what: str) -> FloatArray:
    arr = _matrix(packed, what, (None, 7))
    norms = np.linalg.norm(arr[:, 3:], axis=1)
    if np.any(norms < 1e-6):
        raise DatasetFormatError(f"{what}: zero quaternion")
    return pose_from_xyz_quat(arr[:, :3], arr[:, 3:] / norms[:, None])


def save_sequence(record: SequenceRecord, path: str | os.PathLike[str]) -> Path:
    """Write ``record`` to ``path`` (``.npz``, compressed; written to a temporary name first so
    that an interrupted write never leaves a truncated file under the final name)."""
    path = Path(path)
    if path.suffix != SEQUENCE_SUFFIX:
        raise DatasetFormatError(f"{path}: sequence files end in {SEQUENCE_SUFFIX}")
    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "id": record.sequence_id, "fps": record.fps,
        "object_id": record.object_id, "mesh_path": record.mesh_path, "task": record.task,
        "instructions": list(record.instructions),
        "heldout_instructions": list(record.heldout_instructions),
        "source": record.source, "metadata": record.metadata,
        "hands": {h: {"joint_names": list(m.joint_names), "fingertips": list(m.fingertips),
                      "validation": m.validation} for h, m in record.hands.items()},
    }
    arrays: dict[str, NDArray[Any]] = {
        "meta": np.array(json.dumps(meta, sort_keys=True)),
        "object/points": record.object_points.astype(np.float32),
        "object/normals": record.object_normals.astype(np.float32),
        "object/poses": _pack_poses(record.object_poses),
    }
    for hand_id, m in record.hands.items():
        arrays[f"hands/{hand_id}/wrist"] = _pack_poses(m.wrist_poses)
        arrays[f"hands/{hand_id}/joints"] = m.joints.astype(np.float32)
        arrays[f"hands/{hand_id}/contacts"] = m.contacts
    if record.human_joints is not None:
        arrays["human/joints_21"] = record.human_joints.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    if not path.is_file():
        raise DatasetFormatError(f"{path}: no such sequence file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: not a readable sequence file (truncated or not an "
                                 f"npz written by save_sequence): {exc}") from exc
    if "meta" not in arrays:
        raise DatasetFormatError(f"{path}: no 'meta' entry; not a {FORMAT} file")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{path}: 'meta' is not JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DatasetFormatError(f"{path}: not a {FORMAT} file")
    version = meta.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise DatasetFormatError(f"{path}: format version {version!r}; this reader knows "
                                 f"1..{FORMAT_VERSION}")
    return meta, arrays


def load_sequence(path: str | os.PathLike[str]) -> SequenceRecord:
    """Read and check one sequence file (see :func:`save_sequence`)."""
    path = Path(path)
    meta, arrays = _read(path)

    def need(key: str) -> NDArray[Any]:
        if key not in arrays:
            raise DatasetFormatError(f"{path}: missing array {key!r}")
        return arrays[key]

    try:
        hands = {}
        for hand_id, info in meta["hands"].items():
            hands[hand_id] = HandMotion(
                hand_id=hand_id, joint_names=tuple(info["joint_names"]),
                wrist_poses=_unpack_poses(need(f"hands/{hand_id}/wrist"), f"{hand_id} wrist"),
                joints=need(f"hands/{hand_id}/joints"), fingertips=tuple(info["fingertips"]),
                contacts=need(f"hands/{hand_id}/contacts"), validation=info.get("validation", {}))
        return SequenceRecord(
            sequence_id=meta["id"], fps=meta["fps"], object_id=meta["object_id"],
            mesh_path=meta["mesh_path"], object_points=need("object/points"),
            object_normals=need("object/normals"),
            object_poses=_unpack_poses(need("object/poses"), "object poses"),
            task=meta["task"], instructions=tuple(meta["instructions"]),
            heldout_instructions=tuple(meta["heldout_instructions"]), hands=hands,
            human_joints=arrays.get("human/joints_21"), source=meta.get("source", ""),
            metadata=meta.get("metadata", {}))
    except KeyError as exc:
        raise DatasetFormatError(f"{path}: metadata lacks {exc}") from exc
    except DatasetFormatError as exc:
        raise DatasetFormatError(f"{path}: {exc}") from exc
