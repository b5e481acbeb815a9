"""``human21``: a generic, documented ``.npz`` layout for any human hand capture.

For data from tools that UniHM has no reader for (a MediaPipe or MANO fit of one's own videos,
another dataset converted by a short script): one file per sequence with the hand's 21 joints
and the object's poses in one world frame. Keys (docs/dataset_importers.md):

* ``joints_21`` (T, 21, 3) float, metres, MANO/MediaPipe order; NaN rows: no hand that frame
* ``object_pose`` (T, 4, 4) float: T_world_object of the object mesh's own frame
* ``object_id`` (str) and/or ``object_mesh`` (str: mesh path, absolute or relative to the file)
* ``fps`` (number)
* optional: ``valid`` (T,) bool, ``side`` ("right" | "left", default right), ``task`` (one of
  the task ids, default lift), ``instructions`` (strings: used as the seen paraphrases),
  ``task_params`` (a JSON object string: the words some tasks need to be phrased, e.g.
  ``{"direction": "left"}`` for push or ``{"destination": "next_to:025_mug"}``)

Strings are stored as numpy unicode arrays, so the files load without pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from unihm_core.dataset.format import DatasetFormatError
from unihm_core.dataset.importers.common import (
    DEFAULT_TASK,
    HumanSequence,
    ImportOptions,
    ImportReport,
    ImportSession,
    ObjectRef,
    ProgressFn,
    as_float,
    as_str,
    find_files,
    float_array,
    human_record,
    mesh_object,
    sequence_id,
    ycb_object,
)
from unihm_core.dataset.importers.safe_pickle import load_npz

FORMAT = "human21"
REQUIRED = ("joints_21", "object_pose", "fps")
_GENERIC_MESH_STEMS = {"textured_simple", "textured", "model", "mesh", "object"}
TASK_PARAMS = ("destination", "direction", "distance_m", "angle_deg", "height_m", "part")


def _object(data: dict[str, Any], path: Path) -> ObjectRef:
    where = str(path)
    object_id = as_str(data["object_id"], f"{where}: object_id") if "object_id" in data else None
    if "object_mesh" in data:
        mesh = Path(os.path.expanduser(as_str(data["object_mesh"], f"{where}: object_mesh")))
        if not mesh.is_absolute():
            mesh = path.parent / mesh
        if object_id is None:
            object_id = mesh.parent.name if mesh.stem in _GENERIC_MESH_STEMS else mesh.stem
        return mesh_object(object_id, mesh, where)
    if not object_id:
        raise DatasetFormatError(f"{where}: empty object_id")
    return ycb_object(object_id, where=where)


def read_human21(path: Path, seq_id: str) -> HumanSequence:
    """One file of the layout in the module docstring, checked key by key."""
    where = str(path)
    data = load_npz(path)
    missing = [k for k in REQUIRED if k not in data]
    if "object_id" not in data and "object_mesh" not in data:
        missing.append("object_id or object_mesh")
    if missing:
        raise DatasetFormatError(f"{where}: missing key(s) {', '.join(missing)} (found: "
                                 f"{', '.join(sorted(data)) or 'none'}); see "
                                 "docs/dataset_importers.md")
    joints = float_array(data["joints_21"], f"{where}: joints_21", (None, 21, 3))
    frames = len(joints)
    poses = float_array(data["object_pose"], f"{where}: object_pose", (frames, 4, 4))
    if "valid" in data:
        valid = np.asarray(data["valid"])
        if valid.shape != (frames,):
            raise DatasetFormatError(f"{where}: valid: expected shape ({frames},), "
                                     f"got {valid.shape}")
        joints = np.where(valid.astype(bool)[:, None, None], joints, np.nan)
    fps = as_float(data["fps"], f"{where}: fps")
    if fps <= 0:
        raise DatasetFormatError(f"{where}: fps must be positive, got {fps}")
    side = as_str(data["side"], f"{where}: side") if "side" in data else "right"
    task = as_str(data["task"], f"{where}: task") if "task" in data else DEFAULT_TASK
    instructions = None
    if "instructions" in data:
        texts = np.asarray(data["instructions"]).reshape(-1)
        if texts.dtype.kind not in "UO" or not all(isinstance(t, str) for t in texts):
            raise DatasetFormatError(f"{where}: instructions must be strings")
        instructions = tuple(str(t) for t in texts)
    return HumanSequence(sequence_id=seq_id, source_file=where, joints=joints,
                         object_poses=poses, obj=_object(data, path), fps=fps, side=side,
                         task=task, instructions=instructions,
                         task_params=_task_params(data, where))


def _task_params(data: dict[str, Any], where: str) -> dict[str, Any]:
    if "task_params" not in data:
        return {}
    text = as_str(data["task_params"], f"{where}: task_params")
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(f"{where}: task_params is not JSON: {exc}") from exc
    if not isinstance(params, dict) or not set(params) <= set(TASK_PARAMS):
        raise DatasetFormatError(f"{where}: task_params must be a JSON object with keys among "
                                 f"{', '.join(TASK_PARAMS)}, got {text!r}")
    return params


def import_human21(src: str | os.PathLike[str], out: str | os.PathLike[str], *,
                   hands: tuple[str, ...] | list[str] | None = None, fps: float | None = None,
                   seed: int = 0, progress: ProgressFn | None = None, on_error: str = "raise",
                   overwrite: bool = False) -> ImportReport:
    """Generic 21-joint captures (one .npz per sequence; a file or a folder of them)."""
    root = Path(src)
    files = find_files(root, "*.npz", "human21 .npz files")
    options = ImportOptions(hands=tuple(hands) if hands is not None else None, fps=fps,
                            seed=seed, on_error=on_error, overwrite=overwrite)
    session = ImportSession(FORMAT, src, out, options, progress)
    base = root if root.is_dir() else root.parent

    def build(path: Path) -> Any:
        rel = path.relative_to(base).with_suffix("")
        return human_record(session, read_human21(path, sequence_id(FORMAT, str(rel))))

    return session.run(files, str, build)
