"""``dexycb``: the DexYCB release folder (per-camera label files, calibration, YCB models).

Layout read (docs/dataset_importers.md)::

    <root>/calibration/extrinsics_<name>/extrinsics.yml   # {<serial>: 3x4, apriltag: 3x4}
    <root>/models/<ycb name>/textured_simple.obj          # optional; else the shared assets
    <root>/<subject>/<sequence>/meta.yml                  # serials, num_frames, ycb_ids, ...
    <root>/<subject>/<sequence>/<serial>/labels_<frame:06d>.npz   # pose_y, pose_m, joint_3d

One camera's labels are used (the calibration's master camera unless ``serial`` says otherwise):
``joint_3d`` (1, 21, 3) and ``pose_y`` (n_obj, 3, 4) are in that camera's frame. With the
calibration, ``extrinsics[serial]`` takes them to the master camera and the inverse of
``extrinsics["apriltag"]`` (the tag's pose in the master camera) to the tag on the table, which
becomes the world frame; without it the camera frame is kept (recorded in the metadata). The
grasped object is ``ycb_ids[ycb_grasp_ind]``; frames whose ``joint_3d`` is all -1 have no hand.
DexYCB's MANO joint order is the MANO/MediaPipe order used here. The hand side is
``mano_sides[0]``; the task is ``lift`` (every DexYCB capture grasps and lifts an object).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from unihm_core.dataset.format import DatasetFormatError
from unihm_core.dataset.importers.common import (
    SIDES,
    HumanSequence,
    ImportOptions,
    ImportReport,
    ImportSession,
    ProgressFn,
    float_array,
    human_record,
    sequence_id,
    ycb_object,
)
from unihm_core.dataset.importers.safe_pickle import load_npz
from unihm_core.se3 import FloatArray, invert
from unihm_core.tasks import TASK_LIFT

FORMAT = "dexycb"
DEXYCB_FPS = 30.0
YCB_CLASSES: dict[int, str] = {
    1: "002_master_chef_can", 2: "003_cracker_box", 3: "004_sugar_box",
    4: "005_tomato_soup_can", 5: "006_mustard_bottle", 6: "007_tuna_fish_can",
    7: "008_pudding_box", 8: "009_gelatin_box", 9: "010_potted_meat_can", 10: "011_banana",
    11: "019_pitcher_base", 12: "021_bleach_cleanser", 13: "024_bowl", 14: "025_mug",
    15: "035_power_drill", 16: "036_wood_block", 17: "037_scissors", 18: "040_large_marker",
    19: "051_large_clamp", 20: "052_extra_large_clamp", 21: "061_foam_brick",
}
"""DexYCB's object ids (``ycb_ids`` in meta.yml) -> YCB model folder names."""
META_KEYS = ("serials", "num_frames", "ycb_ids", "ycb_grasp_ind", "mano_sides")


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetFormatError(f"{path}: not readable YAML: {exc}") from exc


def _up(folder: Path, name: str, levels: int = 3) -> Path | None:
    """``name`` next to ``folder`` or one of its parents (the release root holds it)."""
    for parent in [folder, *folder.parents][: levels + 1]:
        if (parent / name).is_dir():
            return parent / name
    return None


def find_sequences(src: Path) -> list[Path]:
    """Sequence folders (those with a meta.yml) at, or up to two levels below, ``src``."""
    if not src.is_dir():
        raise DatasetFormatError(f"{src}: no such folder (give the DexYCB root, a subject or "
                                 "a sequence folder)")
    metas = [src / "meta.yml", *sorted(src.glob("*/meta.yml")), *sorted(src.glob("*/*/meta.yml"))]
    found = [m.parent for m in metas if m.is_file()]
    if not found:
        raise DatasetFormatError(f"{src}: no DexYCB sequence (<subject>/<sequence>/meta.yml) "
                                 "found")
    return found


def _matrix34(table: dict[Any, Any], key: str, where: str) -> FloatArray:
    value = table.get(key)
    if value is None and key.isdigit():
        value = table.get(int(key))  # unquoted serials parse as integers
    if value is None:
        raise DatasetFormatError(f"{where}: no extrinsics for {key!r} (has: "
                                 f"{', '.join(str(k) for k in table)})")
    pose = np.eye(4)
    pose[:3] = float_array(value, f"{where}: extrinsics[{key}]", (12,)).reshape(3, 4)
    return pose


def camera_to_world(seq_dir: Path, meta: dict[str, Any], serial: str | None
                    ) -> tuple[str, FloatArray, str]:
    """(camera serial, T_world_camera, frame name) — the tag frame when calibrated."""
    serials = [str(s) for s in meta["serials"]]
    calib = _up(seq_dir, "calibration")
    extr_file = None
    if calib is not None and meta.get("extrinsics"):
        candidate = calib / f"extrinsics_{meta['extrinsics']}" / "extrinsics.yml"
        extr_file = candidate if candidate.is_file() else None
    table: dict[Any, Any] = {}
    master = None
    if extr_file is not None:
        data = _yaml(extr_file)
        if not isinstance(data, dict) or not isinstance(data.get("extrinsics"), dict):
            raise DatasetFormatError(f"{extr_file}: expected an 'extrinsics' mapping")
        table = data["extrinsics"]
        master = str(data.get("master")) if data.get("master") is not None else None
    if serial is not None:
        if serial not in serials:
            raise DatasetFormatError(f"{seq_dir}: camera {serial} is not one of {serials}")
    else:
        present = [s for s in serials if (seq_dir / s).is_dir()]
        if not present:
            raise DatasetFormatError(f"{seq_dir}: none of the cameras {serials} has a folder")
        serial = master if master in present else present[0]
    if extr_file is None:
        return serial, np.eye(4), f"camera_{serial}"
    master_cam = _matrix34(table, serial, str(extr_file))
    if "apriltag" in table:
        return serial, invert(_matrix34(table, "apriltag", str(extr_file))) @ master_cam, "apriltag"
    return serial, master_cam, "master_camera"


def read_dexycb(seq_dir: Path, serial: str | None = None) -> HumanSequence:
    """One sequence folder -> the human hand and grasped object in the world frame."""
    meta_file = seq_dir / "meta.yml"
    meta = _yaml(meta_file)
    if not isinstance(meta, dict):
        raise DatasetFormatError(f"{meta_file}: expected a mapping")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise DatasetFormatError(f"{meta_file}: missing {', '.join(missing)}")
    ycb_ids = [int(i) for i in meta["ycb_ids"]]
    grasp = int(meta["ycb_grasp_ind"])
    frames = int(meta["num_frames"])
    if not 0 <= grasp < len(ycb_ids):
        raise DatasetFormatError(f"{meta_file}: ycb_grasp_ind {grasp} is not an index into "
                                 f"ycb_ids {ycb_ids}")
    if ycb_ids[grasp] not in YCB_CLASSES:
        raise DatasetFormatError(f"{meta_file}: unknown DexYCB object id {ycb_ids[grasp]}")
    side = str(meta["mano_sides"][0]) if meta["mano_sides"] else ""
    if side not in SIDES:
        raise DatasetFormatError(f"{meta_file}: mano_sides {meta['mano_sides']!r}: expected "
                                 "'right' or 'left'")
    obj = ycb_object(YCB_CLASSES[ycb_ids[grasp]], [_up(seq_dir, "models")], str(meta_file))
    serial, world_cam, frame = camera_to_world(seq_dir, meta, serial)

    joints = np.full((frames, 21, 3), np.nan)
    cam_obj = np.full((frames, 4, 4), np.nan)
    for i in range(frames):
        label_file = seq_dir / serial / f"labels_{i:06d}.npz"
        where = str(label_file)
        labels = load_npz(label_file)
        for key in ("pose_y", "joint_3d"):
            if key not in labels:
                raise DatasetFormatError(f"{where}: missing {key!r}")
        pose_y = float_array(labels["pose_y"], f"{where}: pose_y", (len(ycb_ids), 3, 4))
        joint = float_array(labels["joint_3d"], f"{where}: joint_3d", (1, 21, 3))[0]
        cam_obj[i, :3] = pose_y[grasp]
        cam_obj[i, 3] = (0.0, 0.0, 0.0, 1.0)
        if not np.all(joint == -1.0):
            joints[i] = joint
    joints = joints @ world_cam[:3, :3].T + world_cam[:3, 3]
    subject, name = seq_dir.parent.name, seq_dir.name
    return HumanSequence(
        sequence_id=sequence_id(FORMAT, subject, name), source_file=str(seq_dir),
        joints=joints, object_poses=world_cam @ cam_obj, obj=obj, fps=DEXYCB_FPS, side=side,
        task=TASK_LIFT,
        metadata={"subject": subject, "sequence": name, "camera": serial, "frame": frame,
                  "ycb_ids": ycb_ids, "grasped_ycb_id": ycb_ids[grasp]})


def import_dexycb(src: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  hands: tuple[str, ...] | list[str] | None = None, fps: float | None = None,
                  seed: int = 0, progress: ProgressFn | None = None, on_error: str = "raise",
                  overwrite: bool = False, serial: str | None = None) -> ImportReport:
    """DexYCB release folders (root, subject or sequence); ``serial`` picks the camera."""
    sequences = find_sequences(Path(src))
    options = ImportOptions(hands=tuple(hands) if hands is not None else None, fps=fps,
                            seed=seed, on_error=on_error, overwrite=overwrite)
    session = ImportSession(FORMAT, src, out, options, progress)
    return session.run(sequences, str,
                       lambda p: human_record(session, read_dexycb(p, serial)),
                       provenance={"camera": serial})
