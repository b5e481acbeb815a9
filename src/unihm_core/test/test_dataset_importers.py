"""Importers: small fixtures in each source layout, imported for a few hands and read back."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
import yaml
from scipy.spatial.transform import Rotation

from unihm_core.assets import asset_path
from unihm_core.dataset.format import DatasetFormatError
from unihm_core.dataset.importers import (
    IMPORTERS,
    UnknownFormatError,
    UnsafePickleError,
    describe_formats,
    run_import,
)
from unihm_core.dataset.importers.safe_pickle import load_npz, load_pickle, restricted_loads
from unihm_core.dataset.index import Dataset
from unihm_core.hands.config import HandConfig
from unihm_core.hands.kinematics import hand_kinematics
from unihm_core.hands.registry import get_hand_config
from unihm_core.hands.retargeting import estimate_wrist_poses

MEDIAPIPE = "human_hand_sequences/dexretargeting_mediapipe_right/human_joint_right.npz"
MUSTARD = "006_mustard_bottle"
HANDS = ("allegro_right", "panda_gripper")
FRAMES = 6


def _pose(rotvec: Any, xyz: Any) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    pose[:3, 3] = xyz
    return pose


def _apply(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ pose[..., :3, :3].swapaxes(-1, -2) + pose[..., None, :3, 3]


@pytest.fixture(scope="module")
def hand_world() -> np.ndarray:
    """(FRAMES, 21, 3) real MediaPipe frames placed in the world on a moving wrist."""
    with np.load(asset_path(MEDIAPIPE)) as data:
        local = data["joints_21"][200:200 + FRAMES].astype(np.float64)
    wrists = np.stack([_pose([0.0, 0.3 + 0.05 * i, 0.1], [0.4, 0.05, 0.2 + 0.01 * i])
                       for i in range(FRAMES)])
    return _apply(wrists, local)


def _object_track(n: int = FRAMES) -> np.ndarray:
    return np.stack([_pose([0.0, 0.0, 0.1 * i], [0.45, 0.1, 0.1 + 0.01 * i]) for i in range(n)])


def _record(out: Path, index: int = 0) -> Any:
    return Dataset(out).load(index)


# ------------------------------------------------------------------------------- registry
def test_registry_names_every_format(tmp_path: Path) -> None:
    assert set(IMPORTERS) == {"human21", "unihm_npz", "dexycb", "oakink"}
    assert all(describe_formats().values())
    with pytest.raises(UnknownFormatError, match="unknown import format 'mano'"):
        run_import("mano", tmp_path, tmp_path / "out")


# -------------------------------------------------------------------------------- human21
def _human21(path: Path, joints: np.ndarray, **extra: Any) -> Path:
    data = {"joints_21": joints, "object_pose": _object_track(len(joints)),
            "object_id": np.array(MUSTARD), "fps": np.array(30.0)} | extra
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **data)
    return path


def test_human21_round_trip(tmp_path: Path, hand_world: np.ndarray) -> None:
    joints = hand_world.copy()
    joints[0] = np.nan  # no hand in the first frame: cut
    joints[3] = np.nan  # nor in frame 3: held
    _human21(tmp_path / "src" / "take_01.npz", joints, task=np.array("lift"),
             instructions=np.array(["lift the mustard bottle up"]))
    calls: list[tuple[int, int]] = []
    report = run_import("human21", tmp_path / "src", tmp_path / "out", hands=HANDS,
                        progress=lambda done, total: calls.append((done, total)))
    assert report.n_written == 1 and report.n_skipped == 0 and calls == [(0, 1), (1, 1)]
    assert report.summary()["written"] == 1
    rec = _record(tmp_path / "out")
    assert rec.sequence_id == "human21-take_01" and rec.source == "human21"
    assert rec.hand_ids == HANDS and rec.num_frames == FRAMES - 1 and rec.fps == 30.0
    assert rec.task == "lift" and rec.instructions == ("lift the mustard bottle up",)
    assert rec.heldout_instructions and rec.object_id == MUSTARD
    assert rec.mesh_path == f"ycb_objects/{MUSTARD}/textured_simple.obj"
    assert rec.metadata["frames_kept"] == [1, FRAMES]
    assert rec.metadata["invalid_frames"] == [[2, 3]]
    np.testing.assert_allclose(rec.object_poses, _object_track()[1:], atol=1e-5)
    held = hand_world[1:].copy()
    held[2] = held[1]
    np.testing.assert_allclose(rec.human_joints, held, atol=1e-5)
    wrist = estimate_wrist_poses(hand_world[1:])
    wrist[2] = wrist[1]
    for hand in HANDS:
        motion = rec.hands[hand]
        np.testing.assert_allclose(motion.wrist_poses, wrist, atol=1e-5)
        assert motion.joints.shape == (FRAMES - 1, hand_kinematics(hand).dof)
        assert motion.contacts.shape == (FRAMES - 1, len(motion.fingertips))
        np.testing.assert_array_equal(motion.joints[2], motion.joints[1])  # held frame


def test_human21_mesh_file_resample_and_side(tmp_path: Path, hand_world: np.ndarray) -> None:
    mesh = tmp_path / "meshes" / "blue_kettle.obj"
    mesh.parent.mkdir()
    shutil.copy(asset_path(f"ycb_objects/{MUSTARD}/textured_simple.obj"), mesh)
    src = tmp_path / "take.npz"
    np.savez(src, joints_21=hand_world, object_pose=_object_track(),
             object_mesh=np.array("meshes/blue_kettle.obj"), fps=np.array(30.0),
             side=np.array("left"), task=np.array("push"),
             task_params=np.array('{"direction": "left"}'))
    report = run_import("human21", src, tmp_path / "out", hands=("allegro_left",), fps=15.0)
    rec = _record(tmp_path / "out")
    assert report.n_written == 1 and rec.object_id == "blue_kettle"
    assert rec.mesh_path == str(mesh.resolve()) and rec.fps == 15.0 and rec.task == "push"
    assert rec.num_frames == 3 and rec.metadata["side"] == "left"
    np.testing.assert_allclose(rec.human_joints, hand_world[::2], atol=1e-5)
    np.testing.assert_allclose(rec.object_poses, _object_track()[::2], atol=1e-5)
    assert all("kettle" in s for s in rec.instructions)


def test_human21_errors_name_file_and_problem(tmp_path: Path, hand_world: np.ndarray) -> None:
    src = tmp_path / "src"
    bad = _human21(src / "a.npz", hand_world)
    np.savez(bad, joints_21=hand_world, fps=np.array(30.0), object_id=np.array(MUSTARD))
    with pytest.raises(DatasetFormatError, match=r"a\.npz: missing key\(s\) object_pose"):
        run_import("human21", src, tmp_path / "o1", hands=HANDS)
    assert not (tmp_path / "o1").exists()  # nothing left for a corrected re-run to collide with
    np.savez(bad, joints_21=hand_world[:, :20], object_pose=_object_track(),
             object_id=np.array(MUSTARD), fps=np.array(30.0))
    with pytest.raises(DatasetFormatError, match=r"a\.npz: joints_21: expected shape"):
        run_import("human21", src, tmp_path / "o2", hands=HANDS)
    _human21(bad, hand_world, object_pose=_object_track(FRAMES - 1))
    with pytest.raises(DatasetFormatError, match="object_pose: expected shape"):
        run_import("human21", src, tmp_path / "o3", hands=HANDS)
    _human21(bad, hand_world * 1000.0)
    with pytest.raises(DatasetFormatError, match="joints must be in metres"):
        run_import("human21", src, tmp_path / "o3b", hands=HANDS)
    _human21(bad, hand_world)
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DatasetFormatError, match=r"a\.npz: not a readable \.npz"):
        run_import("human21", src, tmp_path / "o4", hands=HANDS)
    _human21(bad, hand_world, object_id=np.array("099_not_an_object"))
    with pytest.raises(DatasetFormatError, match="no mesh for object '099_not_an_object'"):
        run_import("human21", src, tmp_path / "o5", hands=HANDS)
    with pytest.raises(DatasetFormatError, match="unknown hand 'allegro_rihgt'"):
        run_import("human21", src, tmp_path / "o6", hands=("allegro_rihgt",))
    with pytest.raises(DatasetFormatError, match="no such file or folder"):
        run_import("human21", tmp_path / "missing", tmp_path / "o7")


def test_on_error_skip_reports_bad_files(tmp_path: Path, hand_world: np.ndarray) -> None:
    src = tmp_path / "src"
    _human21(src / "good.npz", hand_world)
    _human21(src / "nohand.npz", np.full_like(hand_world, np.nan))
    (src / "broken.npz").write_bytes(b"not a zip")
    report = run_import("human21", src, tmp_path / "out", hands=("panda_gripper",),
                        on_error="skip")
    assert report.written == ["human21-good"]
    reasons = dict(report.skipped)
    assert "not a readable" in reasons[str(src / "broken.npz")]
    assert reasons[str(src / "nohand.npz")] == "fewer than 2 frames with a hand"
    assert len(Dataset(tmp_path / "out")) == 1
    (src / "broken.npz").unlink()
    with pytest.raises(DatasetFormatError, match="already holds a dataset"):
        run_import("human21", src, tmp_path / "out", hands=("panda_gripper",))
    report = run_import("human21", src, tmp_path / "out", hands=("panda_gripper",),
                        on_error="skip", overwrite=True)
    assert report.n_written == 1 and report.n_skipped == 1


# ------------------------------------------------------------------------------ unihm_npz
ALLEGRO_SAPIEN = tuple(f"joint_{i}.0" for i in range(16))  # allegro_hand_right_glb.urdf order
SHADOW_SAPIEN = ("WRJ2", "WRJ1", "FFJ4", "FFJ3", "FFJ2", "FFJ1", "MFJ4", "MFJ3", "MFJ2", "MFJ1",
                 "RFJ4", "RFJ3", "RFJ2", "RFJ1", "LFJ5", "LFJ4", "LFJ3", "LFJ2", "LFJ1",
                 "THJ5", "THJ4", "THJ3", "THJ2", "THJ1")
DUMMY = tuple(f"dummy_{a}_translation_joint" for a in "xyz") + tuple(
    f"dummy_{a}_rotation_joint" for a in "xyz")


def _dex_retargeting_wrist(cfg: HandConfig, dummy: np.ndarray, folder: Path) -> np.ndarray:
    """The canonical wrist from dex-retargeting's own dummy-joint URDF, by yourdfpy's FK."""
    import yourdfpy
    from dex_retargeting import yourdfpy as dex_yourdfpy

    robot = dex_yourdfpy.URDF.load(str(cfg.urdf_path), add_dummy_free_joints=True,
                                   build_scene_graph=False, load_meshes=False)
    path = folder / f"{cfg.id}_dummy.urdf"
    robot.write_xml_file(str(path))
    urdf = yourdfpy.URDF.load(str(path), build_scene_graph=True, load_meshes=False,
                              build_collision_scene_graph=False, load_collision_meshes=False)
    out = []
    for values in dummy:
        urdf.update_cfg(dict(zip(DUMMY, values, strict=True)))
        out.append(urdf.get_transform(cfg.base_link, urdf.base_link) @ cfg.wrist_from_base)
    return np.stack(out)


def _unihm_capture(folder: Path, frames: int = 5, seed: int = 0) -> dict[str, Any]:
    """A capture in UniHM's layout and what it should import to."""
    rng = np.random.default_rng(seed)
    truth: dict[str, Any] = {"q": {}, "dummy": {}}
    data: dict[str, Any] = {}
    for robot, hand, order in (("allegro_hand", "allegro_right", ALLEGRO_SAPIEN),
                               ("shadow_hand", "shadow_right", SHADOW_SAPIEN)):
        kin = hand_kinematics(hand)
        q = rng.uniform(kin.lower, kin.upper, (frames, kin.dof))
        dummy = np.c_[rng.uniform(-0.3, 0.3, (frames, 3)), rng.uniform(-1.0, 1.0, (frames, 3))]
        columns = [q[:, kin.joint_names.index(name)] for name in order]
        qpos = np.c_[dummy, np.stack(columns, axis=1)]
        data[robot] = np.array({"robot_name": robot, "robot_qpos": qpos}, dtype=object)
        truth["q"][hand], truth["dummy"][hand] = q, dummy
    data["gripper"] = np.array({"robot_name": "dclaw", "robot_qpos": np.zeros((frames, 9))},
                               dtype=object)
    world_obj = np.stack([_pose(rng.normal(size=3) * 0.5, rng.normal(size=3) * 0.2)
                          for _ in range(frames)])
    extr = _pose([0.3, -1.2, 0.4], [0.1, 0.2, 0.9])  # world -> camera
    cam_obj = extr @ world_obj
    quat = Rotation.from_matrix(cam_obj[:, :3, :3]).as_quat()  # x, y, z, w
    grasped = np.c_[quat, cam_obj[:, :3, 3]]
    other = np.tile([0.0, 0.0, 0.0, 1.0, 0.1, 0.1, 0.5], (frames, 1))
    data |= {"capture_name": np.array("20200709_141754"),
             "object_pose": np.stack([other, grasped], axis=1), "extrinsics": extr,
             "ycb_ids": np.array([3, 5]), "grasped_ycb_id": np.int64(5),
             "grasped_ycb_name": np.array("mustard bottle"),
             "object_mesh_file": np.array(["/data/DexYCB/models/004_sugar_box/textured_simple.obj",
                                           f"/data/DexYCB/models/{MUSTARD}/textured_simple.obj"],
                                          dtype=object),
             "hand_shape": np.zeros(10), "hand_pose": np.zeros((frames, 51)),
             "start_frame": np.int64(7), "ycb_ids_names": np.array(["sugar box",
                                                                    "mustard bottle"])}
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "20200709_141754.npz", **data)
    truth["object"] = world_obj
    return truth


def test_unihm_npz_reorders_by_name_and_rebuilds_the_wrist(tmp_path: Path) -> None:
    truth = _unihm_capture(tmp_path / "src")
    report = run_import("unihm_npz", tmp_path / "src", tmp_path / "out")
    assert report.n_written == 1 and report.hands == ["allegro_right", "shadow_right"]
    rec = _record(tmp_path / "out")
    assert rec.sequence_id == "unihm_npz-20200709_141754" and rec.object_id == MUSTARD
    assert rec.mesh_path == f"ycb_objects/{MUSTARD}/textured_simple.obj"
    assert rec.human_joints is None and rec.metadata["ignored_robots"] == ["gripper"]
    assert rec.metadata["start_frame"] == 7 and rec.metadata["frame"] == "world"
    np.testing.assert_allclose(rec.object_poses, truth["object"], atol=1e-5)
    for hand in ("allegro_right", "shadow_right"):
        motion = rec.hands[hand]
        assert motion.joint_names == hand_kinematics(hand).joint_names
        np.testing.assert_allclose(motion.joints, truth["q"][hand], atol=1e-5)
        expected = _dex_retargeting_wrist(get_hand_config(hand), truth["dummy"][hand], tmp_path)
        np.testing.assert_allclose(motion.wrist_poses, expected, atol=1e-5)


def test_unihm_npz_named_columns_and_orders(tmp_path: Path) -> None:
    truth = _unihm_capture(tmp_path / "src")
    path = tmp_path / "src" / "20200709_141754.npz"
    data = load_npz(path)
    entry = data.pop("allegro_hand").item()
    names = np.array([*DUMMY, *ALLEGRO_SAPIEN])
    perm = np.random.default_rng(1).permutation(len(names))
    data["allegro_hand_right_qpos"] = entry["robot_qpos"][:, perm]
    data["allegro_hand_right_joint_names"] = names[perm]
    np.savez(path, **data)
    run_import("unihm_npz", path, tmp_path / "out", hands=("allegro_right",))
    rec = _record(tmp_path / "out")
    assert rec.hand_ids == ("allegro_right",)
    np.testing.assert_allclose(rec.hands["allegro_right"].joints, truth["q"]["allegro_right"],
                               atol=1e-5)
    # The same file read in pinocchio order puts allegro's thumb columns elsewhere.
    data.pop("allegro_hand_right_joint_names")
    data["allegro_hand_right_qpos"] = entry["robot_qpos"]
    np.savez(path, **data)
    run_import("unihm_npz", path, tmp_path / "out2", hands=("allegro_right",),
               column_order="pinocchio")
    joints = _record(tmp_path / "out2").hands["allegro_right"].joints
    assert not np.allclose(joints, truth["q"]["allegro_right"], atol=1e-3)


def test_unihm_npz_errors(tmp_path: Path) -> None:
    _unihm_capture(tmp_path / "src")
    path = tmp_path / "src" / "20200709_141754.npz"
    data = load_npz(path)
    wide = dict(data, allegro_hand=np.array(
        {"robot_qpos": np.zeros((5, 30))}, dtype=object))
    np.savez(path, **wide)
    with pytest.raises(DatasetFormatError, match="allegro_right: 30 qpos columns, expected 22"):
        run_import("unihm_npz", path, tmp_path / "o1")
    np.savez(path, **dict(data, grasped_ycb_id=np.int64(9)))
    with pytest.raises(DatasetFormatError, match=r"grasped_ycb_id 9 is not in ycb_ids"):
        run_import("unihm_npz", path, tmp_path / "o2")
    np.savez(path, **{k: v for k, v in data.items() if k != "object_pose"})
    with pytest.raises(DatasetFormatError, match=r"missing key\(s\) object_pose"):
        run_import("unihm_npz", path, tmp_path / "o3")
    np.savez(path, **dict(data, object_pose=np.zeros((5, 2, 6))))
    with pytest.raises(DatasetFormatError, match=r"object_pose: expected \(T, n_obj, 7\)"):
        run_import("unihm_npz", path, tmp_path / "o4")
    np.savez(path, **dict(data, ycb_ids=np.array([3, 1]), grasped_ycb_id=np.int64(1)))
    with pytest.raises(DatasetFormatError, match="no mesh for object '002_master_chef_can'"):
        run_import("unihm_npz", path, tmp_path / "o5")
    np.savez(path, **dict(data, allegro_hand=np.array({"robot_qpos": _Evil(tmp_path / "pwned")},
                                                   dtype=object)))
    with pytest.raises(UnsafePickleError, match=r"allegro_hand\].*refers to (posix|os)\.system"):
        run_import("unihm_npz", path, tmp_path / "o6")
    assert not (tmp_path / "pwned").exists()


# --------------------------------------------------------------------------------- dexycb
SERIAL = "836212060125"


def _dexycb(root: Path, hand_world: np.ndarray, calibrated: bool = True) -> dict[str, Any]:
    seq = root / "20200709-subject-01" / "20200709_141754"
    (seq / SERIAL).mkdir(parents=True)
    master_cam = _pose([0.2, 0.1, -0.3], [0.05, -0.4, 0.8])  # camera -> master
    tag = _pose([2.5, 0.1, 0.2], [0.0, 0.3, 1.0])  # tag pose in the master camera
    world_cam = np.linalg.inv(tag) @ master_cam if calibrated else np.eye(4)
    cam_world = np.linalg.inv(world_cam)
    meta = {"serials": [SERIAL, "839512060362"], "num_frames": FRAMES, "ycb_ids": [3, 5],
            "ycb_grasp_ind": 1, "mano_sides": ["right"], "mano_calib": ["20200709_weiy"],
            "extrinsics": "20200702_151821"}
    (seq / "meta.yml").write_text(yaml.safe_dump(meta))
    if calibrated:
        extr = root / "calibration" / "extrinsics_20200702_151821"
        extr.mkdir(parents=True)
        table = {SERIAL: master_cam[:3].reshape(-1).tolist(),
                 "839512060362": np.eye(4)[:3].reshape(-1).tolist(),
                 "apriltag": tag[:3].reshape(-1).tolist()}
        (extr / "extrinsics.yml").write_text(yaml.safe_dump({"extrinsics": table,
                                                             "master": SERIAL}))
    world_obj = _object_track()
    for i in range(FRAMES):
        joints = _apply(cam_world, hand_world[i])[None]
        if i == 2:
            joints = np.full((1, 21, 3), -1.0)  # DexYCB: no hand this frame
        pose_y = np.stack([np.eye(4)[:3], (cam_world @ world_obj[i])[:3]]).astype(np.float32)
        np.savez_compressed(seq / SERIAL / f"labels_{i:06d}.npz", pose_y=pose_y,
                            pose_m=np.zeros((1, 51), np.float32),
                            joint_3d=joints.astype(np.float32))
    return {"seq": seq, "object": world_obj, "world_cam": world_cam}


def test_dexycb_world_frame_from_extrinsics(tmp_path: Path, hand_world: np.ndarray) -> None:
    truth = _dexycb(tmp_path / "DexYCB", hand_world)
    report = run_import("dexycb", tmp_path / "DexYCB", tmp_path / "out", hands=HANDS)
    assert report.n_written == 1
    rec = _record(tmp_path / "out")
    assert rec.sequence_id == "dexycb-20200709-subject-01-20200709_141754"
    assert rec.object_id == MUSTARD and rec.task == "lift" and rec.fps == 30.0
    assert rec.metadata["frame"] == "apriltag" and rec.metadata["camera"] == SERIAL
    assert rec.metadata["invalid_frames"] == [[2, 3]] and rec.hand_ids == HANDS
    np.testing.assert_allclose(rec.object_poses, truth["object"], atol=1e-4)
    held = hand_world.copy()
    held[2] = held[1]
    np.testing.assert_allclose(rec.human_joints, held, atol=1e-4)


def test_dexycb_without_calibration_keeps_the_camera_frame(tmp_path: Path,
                                                           hand_world: np.ndarray) -> None:
    truth = _dexycb(tmp_path / "DexYCB", hand_world, calibrated=False)
    run_import("dexycb", truth["seq"], tmp_path / "out", hands=("panda_gripper",))
    rec = _record(tmp_path / "out")
    assert rec.metadata["frame"] == f"camera_{SERIAL}"
    np.testing.assert_allclose(rec.object_poses, truth["object"], atol=1e-4)


def test_dexycb_errors(tmp_path: Path, hand_world: np.ndarray) -> None:
    truth = _dexycb(tmp_path / "DexYCB", hand_world)
    label = truth["seq"] / SERIAL / "labels_000003.npz"
    np.savez(label, pose_y=np.zeros((3, 3, 4)), joint_3d=np.zeros((1, 21, 3)))
    with pytest.raises(DatasetFormatError, match=r"labels_000003\.npz: pose_y: expected shape"):
        run_import("dexycb", tmp_path / "DexYCB", tmp_path / "o1", hands=HANDS)
    label.unlink()
    with pytest.raises(DatasetFormatError, match=r"labels_000003\.npz: no such file"):
        run_import("dexycb", tmp_path / "DexYCB", tmp_path / "o2", hands=HANDS)
    meta = truth["seq"] / "meta.yml"
    meta.write_text(yaml.safe_dump({"serials": [SERIAL], "num_frames": 3, "ycb_ids": [1],
                                    "ycb_grasp_ind": 0, "mano_sides": ["right"]}))
    with pytest.raises(DatasetFormatError, match="no mesh for object '002_master_chef_can'"):
        run_import("dexycb", tmp_path / "DexYCB", tmp_path / "o3", hands=HANDS)
    meta.write_text("serials: [1\n")
    with pytest.raises(DatasetFormatError, match=r"meta\.yml: not readable YAML"):
        run_import("dexycb", tmp_path / "DexYCB", tmp_path / "o4", hands=HANDS)
    with pytest.raises(DatasetFormatError, match="no DexYCB sequence"):
        run_import("dexycb", tmp_path / "DexYCB" / "calibration", tmp_path / "o5")


# --------------------------------------------------------------------------------- oakink
class _Evil:
    """Unpickling this would run a shell command (creating ``marker``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _oakink(root: Path, hand_world: np.ndarray, seq: str = "A01001_0003_0000",
            subjects: tuple[str, ...] = ("0",), frames: tuple[int, ...] = (10, 12, 14, 16)
            ) -> dict[str, Any]:
    anno = root / "image" / "anno"
    for sub in ("hand_j", "obj_transf"):
        (anno / sub).mkdir(parents=True, exist_ok=True)
    (root / "image" / "obj").mkdir(parents=True, exist_ok=True)
    box = trimesh.creation.box(extents=(0.06, 0.08, 0.12))
    box.apply_translation((0.02, -0.01, 0.05))  # OakInk centres meshes on their bounding box
    box.export(root / "image" / "obj" / "A01001.obj")
    center = np.array([0.02, -0.01, 0.05])
    cam_world = _pose([0.4, 2.0, -0.3], [0.1, 0.0, 0.7])
    stamp = "2021-09-26-19-59-58"
    track = _object_track(len(frames))
    for k, frame in enumerate(frames):
        for sbj in subjects:
            for cam in (0, 1):
                stem = f"{seq}__{stamp}__{sbj}__{frame}__{cam}"
                with open(anno / "hand_j" / f"{stem}.pkl", "wb") as f:
                    pickle.dump(_apply(cam_world, hand_world[k]).astype(np.float32), f)
                with open(anno / "obj_transf" / f"{stem}.pkl", "wb") as f:
                    pickle.dump((cam_world @ track[k]).astype(np.float32), f)
    return {"anno": anno, "stamp": stamp, "cam_world": cam_world, "track": track,
            "center": center, "vertices": np.asarray(box.vertices)}


def test_oakink_poses_in_the_mesh_frame(tmp_path: Path, hand_world: np.ndarray) -> None:
    truth = _oakink(tmp_path / "OakInk", hand_world)
    report = run_import("oakink", tmp_path / "OakInk", tmp_path / "out", hands=HANDS)
    assert report.n_written == 1
    rec = _record(tmp_path / "out")
    assert rec.sequence_id == f"oakink-A01001_0003_0000-{truth['stamp']}-s0"
    assert rec.object_id == "A01001" and rec.task == "lift" and rec.fps == 15.0
    assert rec.metadata["frame_step"] == 2 and rec.metadata["camera"] == 0
    assert rec.metadata["intent"] == "liftup" and rec.num_frames == 4
    # A mesh vertex placed by the record's pose lands where OakInk puts the centred vertex.
    raw = truth["vertices"]
    for k in range(4):
        oakink = _apply(truth["cam_world"] @ truth["track"][k], raw - truth["center"])
        np.testing.assert_allclose(_apply(rec.object_poses[k], raw), oakink, atol=1e-5)
    np.testing.assert_allclose(rec.human_joints, _apply(truth["cam_world"], hand_world[:4]),
                               atol=1e-5)


def test_oakink_handover_gives_one_record_per_subject(tmp_path: Path,
                                                      hand_world: np.ndarray) -> None:
    _oakink(tmp_path / "OakInk", hand_world, seq="A01001_0004_0001_0002", subjects=("0", "1"),
            frames=(0, 1, 2))
    report = run_import("oakink", tmp_path / "OakInk" / "image", tmp_path / "out",
                        hands=("panda_gripper",), view=1)
    assert report.n_written == 2
    records = list(Dataset(tmp_path / "out").records())
    assert {r.task for r in records} == {"handover"}
    assert {r.metadata["subject_flag"] for r in records} == {"0", "1"}
    assert all(r.fps == 30.0 and r.metadata["camera"] == 1 for r in records)


def test_oakink_refuses_unsafe_pickles(tmp_path: Path, hand_world: np.ndarray) -> None:
    truth = _oakink(tmp_path / "OakInk", hand_world)
    victim = truth["anno"] / "hand_j" / f"A01001_0003_0000__{truth['stamp']}__0__12__0.pkl"
    victim.write_bytes(pickle.dumps(_Evil(tmp_path / "pwned")))
    with pytest.raises(UnsafePickleError, match=r"__12__0\.pkl: the pickle refers to"):
        run_import("oakink", tmp_path / "OakInk", tmp_path / "o1", hands=HANDS)
    assert not (tmp_path / "pwned").exists()
    victim.write_bytes(b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00)\x81q\x01.")
    with pytest.raises(UnsafePickleError, match=r"torch\._utils\._rebuild_tensor_v2"):
        run_import("oakink", tmp_path / "OakInk", tmp_path / "o2", hands=HANDS)
    victim.write_bytes(pickle.dumps(np.zeros((20, 3))))
    with pytest.raises(DatasetFormatError, match=r"__12__0\.pkl: expected shape \(21, 3\)"):
        run_import("oakink", tmp_path / "OakInk", tmp_path / "o3", hands=HANDS)
    victim.write_bytes(pickle.dumps(np.zeros((21, 3))))
    (truth["anno"].parent / "obj" / "A01001.obj").unlink()
    with pytest.raises(DatasetFormatError, match="no mesh for object 'A01001'"):
        run_import("oakink", tmp_path / "OakInk", tmp_path / "o4", hands=HANDS)
    with pytest.raises(DatasetFormatError, match="no OakInk-Image annotations"):
        run_import("oakink", tmp_path / "OakInk" / "image" / "obj", tmp_path / "o5")


# ---------------------------------------------------------------------------- safe pickle
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_unpickler_reads_numpy_and_containers(protocol: int) -> None:
    value = {"a": np.arange(6, dtype=np.float32).reshape(2, 3).T, "b": [np.float64(1.5), "x"],
             "c": (1, {2, 3}), "d": np.array(["ab", "c"]), "e": np.dtype("i2")}
    out = restricted_loads(pickle.dumps(value, protocol=protocol), "test")
    np.testing.assert_array_equal(out["a"], value["a"])
    assert out["b"] == [1.5, "x"] and out["c"] == (1, {2, 3}) and out["e"] == np.dtype("i2")
    assert out["d"].tolist() == ["ab", "c"]


def test_restricted_unpickler_refuses_code_and_reports_corruption(tmp_path: Path) -> None:
    with pytest.raises(UnsafePickleError, match=r"refers to builtins\.eval"):
        restricted_loads(b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.", "evil")
    with pytest.raises(UnsafePickleError, match="persistent ids"):
        restricted_loads(b"\x80\x02X\x03\x00\x00\x00abcQ.", "torch.save")
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps(np.zeros((21, 3)))[:40])
    with pytest.raises(DatasetFormatError, match=r"cut\.pkl: not a readable pickle"):
        load_pickle(path)
