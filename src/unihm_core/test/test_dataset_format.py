"""Sequence files and dataset folders: round trips, splits and clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from unihm_core.dataset.format import (
    DatasetFormatError,
    HandMotion,
    SequenceRecord,
    load_sequence,
    save_sequence,
)
from unihm_core.dataset.index import Dataset, DatasetWriter, make_splits
from unihm_core.se3 import make_pose


def _poses(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_pose(Rotation.random(n, random_state=seed).as_matrix(), rng.normal(size=(n, 3)))


def _record(seq_id: str = "seq_0", frames: int = 12, object_id: str = "061_foam_brick",
            human: bool = True) -> SequenceRecord:
    rng = np.random.default_rng(len(seq_id) + frames)
    hand = HandMotion(
        hand_id="xhand_right", joint_names=tuple(f"j{i}" for i in range(12)),
        wrist_poses=_poses(frames, 1), joints=rng.uniform(-1, 1, (frames, 12)),
        fingertips=("thumb", "index", "middle", "ring", "pinky"),
        contacts=rng.random((frames, 5)) > 0.5, validation={"lift_success": True,
                                                            "penetration_mm": 0.7})
    pts = rng.normal(size=(64, 3))
    return SequenceRecord(
        sequence_id=seq_id, fps=30.0, object_id=object_id,
        mesh_path=f"ycb_objects/{object_id}/textured_simple.obj", object_points=pts * 0.05,
        object_normals=pts / np.linalg.norm(pts, axis=1, keepdims=True),
        object_poses=_poses(frames, 2), task="lift",
        instructions=("pick up the brick", "lift the foam brick"),
        heldout_instructions=("raise the red block",), hands={"xhand_right": hand},
        human_joints=rng.normal(size=(frames, 21, 3)) if human else None,
        metadata={"seed": 3, "phases": {"close": [4, 6]}})


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    rec = _record()
    out = load_sequence(save_sequence(rec, tmp_path / "a.npz"))
    assert out.sequence_id == rec.sequence_id and out.task == rec.task and out.fps == 30.0
    assert out.instructions == rec.instructions
    assert out.heldout_instructions == rec.heldout_instructions
    assert out.metadata == rec.metadata and out.source == "synthetic"
    np.testing.assert_allclose(out.object_poses, rec.object_poses, atol=1e-6)
    np.testing.assert_allclose(out.object_points, rec.object_points, atol=1e-6)
    np.testing.assert_allclose(out.human_joints, rec.human_joints, atol=1e-6)
    a, b = out.hands["xhand_right"], rec.hands["xhand_right"]
    np.testing.assert_allclose(a.wrist_poses, b.wrist_poses, atol=1e-6)
    np.testing.assert_allclose(a.joints, b.joints, atol=1e-6)
    np.testing.assert_array_equal(a.contacts, b.contacts)
    assert a.validation == b.validation and a.joint_names == b.joint_names


def test_record_without_human_sequence(tmp_path: Path) -> None:
    out = load_sequence(save_sequence(_record(human=False), tmp_path / "b.npz"))
    assert out.human_joints is None


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    path = save_sequence(_record(), tmp_path / "c.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFormatError, match=r"c\.npz"):
        load_sequence(path)


def test_foreign_npz_and_newer_version_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(DatasetFormatError, match="no 'meta'"):
        load_sequence(tmp_path / "foreign.npz")
    path = save_sequence(_record(), tmp_path / "d.npz")
    arrays = dict(np.load(path, allow_pickle=False))
    meta = json.loads(str(arrays["meta"]))
    meta["version"] = 99
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(DatasetFormatError, match="version 99"):
        load_sequence(path)


def test_missing_array_names_the_key(tmp_path: Path) -> None:
    path = save_sequence(_record(), tmp_path / "e.npz")
    arrays = dict(np.load(path, allow_pickle=False))
    del arrays["hands/xhand_right/joints"]
    np.savez(path, **arrays)
    with pytest.raises(DatasetFormatError, match="hands/xhand_right/joints"):
        load_sequence(path)


@pytest.mark.parametrize("change, match", [
    (lambda r: {"object_poses": r.object_poses[:-1]}, "frames"),
    (lambda r: {"object_points": np.full((4, 3), np.nan), "object_normals": np.ones((4, 3))},
     "NaN"),
    (lambda r: {"object_normals": np.ones((3, 3))}, "object_normals"),
    (lambda r: {"fps": 0.0}, "fps"),
    (lambda r: {"sequence_id": "a/b"}, "bad sequence id"),
    (lambda r: {"hands": {}}, "no hand motion"),
    (lambda r: {"instructions": ("",)}, "instructions"),
])
def test_bad_records_are_refused(change, match) -> None:  # type: ignore[no-untyped-def]
    rec = _record()
    fields = {k: getattr(rec, k) for k in rec.__dataclass_fields__}
    fields.update(change(rec))
    with pytest.raises(DatasetFormatError, match=match):
        SequenceRecord(**fields)


def test_hand_motion_shapes_are_checked() -> None:
    with pytest.raises(DatasetFormatError, match="joints"):
        HandMotion("h", ("a", "b"), _poses(3, 0), np.zeros((3, 3)), ("t",), np.zeros((3, 1)))
    bad = _poses(3, 0)
    bad[1, :3, :3] *= 2.0
    with pytest.raises(DatasetFormatError, match="rigid"):
        HandMotion("h", ("a",), bad, np.zeros((3, 1)), ("t",), np.zeros((3, 1)))


def test_dataset_folder_splits_by_object(tmp_path: Path) -> None:
    objects = ["004_sugar_box", "025_mug", "061_foam_brick"]
    with DatasetWriter(tmp_path / "ds", flush_every=4) as writer:
        writer.set_splits(unseen_objects=["025_mug"], test_fraction=0.25, seed=1)
        for i in range(12):
            writer.add(_record(f"s{i:02d}", object_id=objects[i % 3]))
    ds = Dataset(tmp_path / "ds")
    assert len(ds) == 12 and ds.hands == ("xhand_right",)
    unseen = ds.ids("unseen")
    assert len(unseen) == 4 and all(ds.entry(i).object_id == "025_mug" for i in unseen)
    assert len(ds.ids("test")) == 2 and len(ds.ids("train")) == 6
    assert set(ds.ids("train")) | set(ds.ids("test")) | set(unseen) == set(ds.ids())
    assert ds.load(0).sequence_id == "s00" and ds.load("s05").object_id == "061_foam_brick"
    with pytest.raises(DatasetFormatError, match="unknown split"):
        ds.ids("validation")
    with pytest.raises(DatasetFormatError, match="already holds"):
        DatasetWriter(tmp_path / "ds")


def test_splits_are_reproducible_and_checked() -> None:
    from unihm_core.dataset.index import IndexEntry
    entries = [IndexEntry(f"s{i}", f"s{i}.npz", "a" if i % 2 else "b", "lift", 5, ("h",))
               for i in range(20)]
    assert make_splits(entries, ["a"], 0.2, 7) == make_splits(entries, ["a"], 0.2, 7)
    with pytest.raises(DatasetFormatError, match="not in the dataset"):
        make_splits(entries, ["zzz"])


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="not a dataset folder"):
        Dataset(tmp_path)
