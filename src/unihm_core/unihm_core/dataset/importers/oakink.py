"""``oakink``: OakInk-Image annotations (per-frame pickles) with the object models.

Layout read (docs/dataset_importers.md)::

    <root>/image/anno/hand_j/<seq>__<ts>__<sbj>__<frame>__<cam>.pkl      # (21, 3) camera frame
    <root>/image/anno/obj_transf/<seq>__<ts>__<sbj>__<frame>__<cam>.pkl  # (4, 4) T_cam_object
    <root>/image/obj/<object id>.obj (or .ply)
    <root>/shape/metaV2/object_id.json        # optional: object names for the instructions

``<seq>`` is ``<object id>_<intent>_<subject>[_<receiver>]`` (intent 0001 use, 0002 hold,
0003 lift-up, 0004 handover), ``<ts>`` the recording time stamp, ``<sbj>`` which subject's hand
the file is about (0, or 1 for the receiver of a handover), ``<cam>`` one of four views. Each
(sequence, time stamp, subject) becomes one record, read from one view (the lowest camera id
unless ``view`` is given). Joints follow the OpenPose order, which is the MANO/MediaPipe order.
OakInk's object frame is the mesh re-centred on its bounding-box centre, so the importer
shifts the poses to the mesh file's own frame. Everything stays in the camera frame of the
view: the camera extrinsics are only in ``general_info`` pickles, which hold torch tensors and
are therefore never unpickled (see :mod:`.safe_pickle`). Every pickle is read with the
restricted unpickler; one with anything but numpy arrays and builtin containers is refused.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from unihm_core.dataset.format import DatasetFormatError
from unihm_core.dataset.importers.common import (
    HumanSequence,
    ImportOptions,
    ImportReport,
    ImportSession,
    ObjectRef,
    ProgressFn,
    float_array,
    human_record,
    mesh_object,
    sequence_id,
)
from unihm_core.dataset.importers.safe_pickle import load_pickle
from unihm_core.objects import fallback_name
from unihm_core.se3 import FloatArray
from unihm_core.tasks import TASK_HANDOVER, TASK_LIFT

FORMAT = "oakink"
OAKINK_FPS = 30.0
INTENTS = {"0001": "use", "0002": "hold", "0003": "liftup", "0004": "handover"}
MESH_SUFFIXES = (".obj", ".ply")


@dataclass
class OakInkSequence:
    """The annotation files of one (sequence, time stamp, subject), per camera and frame."""

    seq: str
    stamp: str
    subject_flag: str
    files: dict[int, dict[int, str]] = field(default_factory=lambda: defaultdict(dict))
    """camera id -> frame -> file stem."""

    @property
    def name(self) -> str:
        return f"{self.seq}/{self.stamp} subject {self.subject_flag}"


def find_anno(src: Path) -> Path:
    """The ``anno`` folder from the OakInk root, its ``image`` folder or ``anno`` itself."""
    for cand in (src / "image" / "anno", src / "anno", src):
        if (cand / "hand_j").is_dir():
            return cand
    if not src.exists():
        raise DatasetFormatError(f"{src}: no such folder")
    raise DatasetFormatError(f"{src}: no OakInk-Image annotations (expected image/anno/hand_j "
                             "under the OakInk root)")


def find_sequences(anno: Path) -> list[OakInkSequence]:
    """Group the hand_j files by (sequence, time stamp, subject)."""
    groups: dict[tuple[str, str, str], OakInkSequence] = {}
    for path in sorted((anno / "hand_j").glob("*.pkl")):
        parts = path.stem.split("__")
        if len(parts) != 5 or not (parts[3].isdigit() and parts[4].isdigit()):
            raise DatasetFormatError(f"{path}: expected <seq>__<ts>__<subject>__<frame>__<cam>"
                                     ".pkl")
        seq, stamp, sbj, frame, cam = parts
        key = (seq, stamp, sbj)
        group = groups.setdefault(key, OakInkSequence(seq, stamp, sbj))
        group.files[int(cam)][int(frame)] = path.stem
    if not groups:
        raise DatasetFormatError(f"{anno / 'hand_j'}: no annotation files (*.pkl)")
    return [groups[k] for k in sorted(groups)]


def object_names(anno: Path) -> dict[str, str]:
    """OakInk object id -> a readable name from shape/metaV2/object_id.json, when present."""
    for root in (anno.parent.parent, anno.parent):
        meta = root / "shape" / "metaV2" / "object_id.json"
        if meta.is_file():
            try:
                table = json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise DatasetFormatError(f"{meta}: not JSON: {exc}") from exc
            if isinstance(table, dict):
                return {str(v): fallback_name(str(k)) for k, v in table.items()}
    return {}


def object_ref(anno: Path, object_id: str, names: dict[str, str], where: str
               ) -> tuple[ObjectRef, FloatArray]:
    """The object's mesh and the offset from OakInk's centred frame to the mesh's frame."""
    folder = anno.parent / "obj"
    for suffix in MESH_SUFFIXES:
        mesh = folder / f"{object_id}{suffix}"
        if mesh.is_file():
            break
    else:
        raise DatasetFormatError(f"{where}: no mesh for object {object_id!r} in {folder} "
                                 f"({'/'.join(MESH_SUFFIXES)})")
    try:
        vertices = np.asarray(trimesh.load(mesh, process=False, force="mesh").vertices)
    except Exception as exc:  # mesh parsers raise many types on bad files
        raise DatasetFormatError(f"{mesh}: cannot read the mesh: {exc}") from exc
    if vertices.size == 0:
        raise DatasetFormatError(f"{mesh}: no vertices")
    center = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    ref = mesh_object(object_id, mesh, where)
    return ObjectRef(ref.object_id, ref.mesh_file, ref.mesh_path,
                     names.get(object_id, "object")), center


def _frame_grid(frames: list[int]) -> tuple[int, int, int]:
    """(first frame, step, count): annotations may be every k-th frame of the recording."""
    first, last = frames[0], frames[-1]
    step = 0
    for a, b in itertools.pairwise(frames):
        step = math.gcd(step, b - a)
    step = max(step, 1)
    return first, step, (last - first) // step + 1


def read_oakink(anno: Path, group: OakInkSequence, names: dict[str, str],
                view: int | None = None, source_fps: float = OAKINK_FPS) -> HumanSequence:
    """One (sequence, subject) from one camera: joints and object poses in that camera frame."""
    if view is None:
        view = min(group.files)
    elif view not in group.files:
        raise DatasetFormatError(f"{group.name}: no annotations for camera {view} (has "
                                 f"{sorted(group.files)})")
    object_id = group.seq.split("_")[0]
    ref, center = object_ref(anno, object_id, names, group.name)
    stems = group.files[view]
    frames = sorted(stems)
    first, step, count = _frame_grid(frames)
    joints = np.full((count, 21, 3), np.nan)
    cam_obj = np.full((count, 4, 4), np.nan)
    for frame in frames:
        k = (frame - first) // step
        hand_file = anno / "hand_j" / f"{stems[frame]}.pkl"
        j = np.asarray(load_pickle(hand_file))
        if j.shape == (1, 21, 3):
            j = j[0]
        joints[k] = float_array(j, f"{hand_file}", (21, 3))
        obj_file = anno / "obj_transf" / f"{stems[frame]}.pkl"
        if obj_file.is_file():
            cam_obj[k] = float_array(load_pickle(obj_file), str(obj_file), (4, 4))
    intent_id = group.seq.split("_")[1] if "_" in group.seq else ""
    shift = np.eye(4)
    shift[:3, 3] = -center
    intent = INTENTS.get(intent_id, intent_id)
    return HumanSequence(
        sequence_id=sequence_id(FORMAT, group.seq, group.stamp, f"s{group.subject_flag}"),
        source_file=str(anno / "hand_j" / f"{stems[frames[0]]}.pkl"), joints=joints,
        object_poses=cam_obj @ shift, obj=ref, fps=source_fps / step, side="right",
        task=TASK_HANDOVER if intent == "handover" else TASK_LIFT,
        metadata={"oakink_sequence": f"{group.seq}/{group.stamp}",
                  "subject_flag": group.subject_flag, "intent": intent, "camera": view,
                  "frame": f"camera_{view}", "first_frame": first, "frame_step": step,
                  "object_center_offset": center.tolist()})


def import_oakink(src: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  hands: tuple[str, ...] | list[str] | None = None, fps: float | None = None,
                  seed: int = 0, progress: ProgressFn | None = None, on_error: str = "raise",
                  overwrite: bool = False, view: int | None = None,
                  source_fps: float = OAKINK_FPS) -> ImportReport:
    """OakInk-Image annotations (root, image or anno folder); ``view`` picks the camera."""
    anno = find_anno(Path(src))
    groups = find_sequences(anno)
    names = object_names(anno)
    options = ImportOptions(hands=tuple(hands) if hands is not None else None, fps=fps,
                            seed=seed, on_error=on_error, overwrite=overwrite)
    session = ImportSession(FORMAT, src, out, options, progress)
    return session.run(groups, lambda g: g.name,
                       lambda g: human_record(session, read_oakink(anno, g, names, view,
                                                                   source_fps)),
                       provenance={"camera": view, "source_fps": source_fps})
