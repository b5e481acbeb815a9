"""``unihm scene render`` and ``unihm perceive`` end to end, in process.

One small scene is rendered to a folder and to a bag; the pipeline is the CLI's shared one,
warmed once, so the embedding model loads once for the module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unihm_core.cli import main
from unihm_perception.cli import shared_perception

OBJECTS = "006_mustard_bottle,025_mug,004_sugar_box"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(frame folder, bag folder) of the same three-object scene."""
    shared_perception().warm_up()
    root = tmp_path_factory.mktemp("scene")
    assert main(["scene", "render", "--objects", OBJECTS, "--seed", "2",
                 "--out", str(root / "frame")]) == 0
    assert main(["scene", "render", "--objects", OBJECTS, "--seed", "2", "--frames", "2",
                 "--depth-noise", "0.001", "--out", str(root / "scene.mcap")]) == 0
    return root / "frame", root / "scene"


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_render_writes_frame_files(rendered: tuple[Path, Path]) -> None:
    frame, bag = rendered
    for name in ("color.png", "depth.npy", "depth_mm.png", "camera_info.json",
                 "ground_truth.json"):
        assert (frame / name).is_file(), name
    depth = np.load(frame / "depth.npy")
    assert depth.dtype == np.float32 and depth.ndim == 2
    info = json.loads((frame / "camera_info.json").read_text())
    assert np.asarray(info["planning_from_camera_optical"]).shape == (4, 4)
    assert (bag / "scene.mcap").is_file() and (bag / "ground_truth.json").is_file()


def test_perceive_from_files(rendered: tuple[Path, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    frame, _ = rendered
    truth = json.loads((frame / "ground_truth.json").read_text())
    assert main(["perceive", "--rgb", str(frame / "color.png"), "--depth",
                 str(frame / "depth_mm.png"), "--camera-info", str(frame / "camera_info.json"),
                 "--instruction", "put the mug on the sugar box", "--out", str(tmp_path),
                 "--json"]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["object_id"] == "025_mug" and "025_mug" in truth["object_ids"]
    assert summary["task"] == "pick_and_place" and summary["destination"]["relation"] == "on"
    gt_pose = np.asarray(truth["planning_from_object"][truth["object_ids"].index("025_mug")])
    assert np.linalg.norm(np.asarray(summary["pose"])[:3, 3] - gt_pose[:3, 3]) < 0.03
    for name in ("result.json", "object_cloud.npz", "trajectory.npz", "overlay.png"):
        assert (tmp_path / name).is_file(), name
    with np.load(tmp_path / "trajectory.npz") as traj:
        assert traj["poses"].shape == (len(traj["times"]), 4, 4)
    with np.load(tmp_path / "object_cloud.npz") as cloud:
        assert cloud["points"].shape == cloud["normals"].shape


def test_perceive_from_bag(rendered: tuple[Path, Path], tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    _, bag = rendered
    assert main(["perceive", "--bag", str(bag), "--frame", "1", "--instruction",
                 "lift the mustard bottle", "--out", str(tmp_path), "--json"]) == 0
    summary = _last_json(capsys.readouterr().out)
    assert summary["object_id"] == "006_mustard_bottle"
    assert summary["object_id"] in summary["ground_truth"]["object_ids"]
    assert summary["camera_pose_from"] == "bag ground truth"
    with Image.open(tmp_path / "overlay.png") as overlay:
        assert overlay.size == (640, 480) and overlay.mode == "RGB"


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("unihm perceive: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unknown_object_lists_candidates(rendered: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _, bag = rendered
    assert main(["perceive", "--bag", str(bag), "--instruction", "pick up the banana",
                 "--out", str(tmp_path)]) == 1
    line = _error(capsys)
    assert "banana" in line and "Objects seen" in line and "mustard bottle" in line


def test_empty_instruction_fails(rendered: tuple[Path, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, bag = rendered
    assert main(["perceive", "--bag", str(bag), "--instruction", "  ",
                 "--out", str(tmp_path)]) == 1
    assert "instruction" in _error(capsys)


def test_missing_file_fails(rendered: tuple[Path, Path], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    frame, _ = rendered
    assert main(["perceive", "--rgb", str(tmp_path / "nope.png"), "--depth",
                 str(frame / "depth.npy"), "--camera-info", str(frame / "camera_info.json"),
                 "--instruction", "lift the mug", "--out", str(tmp_path / "out")]) == 1
    assert "nope.png" in _error(capsys)


def test_bad_depth_encoding_fails(rendered: tuple[Path, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    frame, _ = rendered
    assert main(["perceive", "--rgb", str(frame / "color.png"), "--depth",
                 str(frame / "color.png"), "--camera-info", str(frame / "camera_info.json"),
                 "--instruction", "lift the mug", "--out", str(tmp_path)]) == 1
    assert "16-bit" in _error(capsys)
