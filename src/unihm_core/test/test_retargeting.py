"""Retargeting: round trips through every hand, the real MediaPipe sequence, frames and the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from unihm_core.assets import asset_path
from unihm_core.hands import HandConfigError, UnknownHandError, get_hand_config, hand_ids
from unihm_core.hands.benchmark import MEDIAPIPE_SEQUENCE
from unihm_core.hands.kinematics import HandKinematics, hand_kinematics
from unihm_core.hands.retargeting import (
    HUMAN_FINGER_JOINTS,
    Retargeter,
    RetargetingError,
    estimate_wrist_poses,
    suggest_scaling_factor,
)
from unihm_core.se3 import pose_from_xyz_rpy

# Round trip (reachable targets), fingertip error in mm: (mean, p95), measured with margin.
ROUND_TRIP_MM = {"allegro_left": (6, 15), "allegro_right": (6, 15), "leap_right": (6, 25),
                 "shadow_left": (4, 10), "shadow_right": (4, 10), "xhand_left": (4, 8),
                 "xhand_right": (4, 8), "schunk_svh_left": (6, 20),
                 "schunk_svh_right": (6, 20)}
ROUND_TRIP_DEFAULT_MM = (4, 10)
# First 150 frames of the MediaPipe sequence: mean fingertip error (mm) stays below these
# (measured: shadow 13.1, leap 9.1, xhand 20.9, ability 20.0, inspire 30.3, schunk 21.4,
# allegro 18.3, panda 56.8; limits ~25% above).
REAL_MEAN_MM = {"shadow_right": 17, "leap_right": 12, "xhand_right": 26, "ability_right": 25,
                "inspire_right": 38, "schunk_svh_right": 27, "allegro_right": 23,
                "panda_gripper": 70}


@pytest.fixture(autouse=True, scope="module")
def _no_leftover_build_folders() -> Iterator[None]:
    """dex-retargeting leaves a URDF copy per build in the temp folder; ours must not."""
    tmp = tempfile.gettempdir()
    before = {p for p in os.listdir(tmp) if p.startswith("dex_retargeting-")}
    yield
    after = {p for p in os.listdir(tmp) if p.startswith("dex_retargeting-")}
    assert after <= before, f"left behind: {sorted(after - before)}"


@pytest.fixture(scope="module")
def mediapipe() -> dict[str, np.ndarray]:
    data = np.load(asset_path(MEDIAPIPE_SEQUENCE))
    return {"joints_21": data["joints_21"], "valid": data["valid"]}


def _side(kin: HandKinematics) -> str:
    return "right" if kin.config.side == "none" else kin.config.side


def human_like(kin: HandKinematics, q: np.ndarray, scale: float) -> np.ndarray:
    """Robot keypoints as a 21-joint human array at human size (unused joints at the wrist)."""
    kp = kin.keypoints_local(q)
    out = np.zeros((len(q), 21, 3))
    names = kin.keypoint_names
    for finger, idx in HUMAN_FINGER_JOINTS.items():
        if finger not in kin.config.fingers:
            continue
        pts = [names.index(k.name) for k in kin.config.fingers[finger]]
        pick = np.round(np.linspace(0, len(pts) - 1, 4)).astype(int)
        out[:, idx] = kp[:, [pts[p] for p in pick]]
    return out / scale


def smooth_path(kin: HandKinematics, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = kin.random_configurations(4, rng, margin=0.1)
    t = np.linspace(0.0, 1.0, 10)[:, None]
    return np.concatenate([a[i] + (a[i + 1] - a[i]) * t for i in range(3)])


@pytest.mark.parametrize("hand_id", hand_ids())
def test_round_trip(hand_id: str) -> None:
    kin = hand_kinematics(hand_id)
    retargeter = Retargeter(hand_id, low_pass=False)
    q = smooth_path(kin)
    human = human_like(kin, q, retargeter.scaling_factor)
    result = retargeter.retarget(human, human_side=_side(kin))
    assert result.q.shape == (len(q), kin.dof)
    assert result.joint_names == kin.joint_names
    assert np.all(kin.within_limits(result.q, tol=1e-6))
    np.testing.assert_array_equal(result.wrist_poses, np.tile(np.eye(4), (len(q), 1, 1)))
    err = retargeter.fingertip_errors(result).errors_m[2:] * 1e3  # after the first steps
    mean, p95 = ROUND_TRIP_MM.get(hand_id, ROUND_TRIP_DEFAULT_MM)
    assert err.mean() < mean and np.percentile(err, 95) < p95, (err.mean(), err.max())


@pytest.mark.parametrize("hand_id", hand_ids())
def test_scaling_factor_follows_the_documented_rule(hand_id: str) -> None:
    configured = get_hand_config(hand_id).retargeting["scaling_factor"]
    assert configured == pytest.approx(suggest_scaling_factor(hand_id), abs=2e-3)


@pytest.mark.parametrize("hand_id", sorted(REAL_MEAN_MM))
def test_mediapipe_sequence(hand_id: str, mediapipe: dict[str, np.ndarray]) -> None:
    joints = mediapipe["joints_21"][:150]
    retargeter = Retargeter(hand_id)
    result = retargeter.retarget(joints, valid=mediapipe["valid"][:150])
    summary = retargeter.fingertip_errors(result).summary()
    assert summary["frames"] == 150
    assert summary["mean_mm"] < REAL_MEAN_MM[hand_id]
    assert summary["mean_norm_mm"] == pytest.approx(summary["mean_mm"] / summary["scaling_factor"])
    assert 0 < summary["mean_pct"] < 60  # panda: its pads sit where no human tip is


def test_xhand_reports_its_speed(mediapipe: dict[str, np.ndarray]) -> None:
    # the speed itself is measured by `unihm bench kinematics`, not asserted on a shared machine
    result = Retargeter("xhand_right").retarget(mediapipe["joints_21"][:200])
    assert result.optimizer_seconds > 0
    assert result.fps == pytest.approx(200 / result.optimizer_seconds)


def test_left_hand_from_right_data_mirrors(mediapipe: dict[str, np.ndarray]) -> None:
    joints = mediapipe["joints_21"][:40]
    right = Retargeter("xhand_right").retarget(joints)
    left = Retargeter("xhand_left").retarget(joints)
    np.testing.assert_allclose(left.human_local[..., 1], -right.human_local[..., 1])
    np.testing.assert_allclose(left.q, right.q, atol=0.1)


def test_wrist_pose_carried_over(mediapipe: dict[str, np.ndarray]) -> None:
    local = mediapipe["joints_21"][:20].astype(np.float64)
    rng = np.random.default_rng(3)
    wrist = np.stack([pose_from_xyz_rpy(rng.uniform(-1, 1, 3), rng.uniform(-3, 3, 3))
                      for _ in range(20)])
    world = np.einsum("tij,tkj->tki", wrist[:, :3, :3], local) + wrist[:, None, :3, 3]
    retargeter = Retargeter("shadow_right")
    from_world = retargeter.retarget(world, wrist)
    from_local = retargeter.retarget(local)
    np.testing.assert_array_equal(from_world.wrist_poses, wrist)
    np.testing.assert_allclose(from_world.human_local, local, atol=1e-9)
    np.testing.assert_allclose(from_world.q, from_local.q, atol=1e-4)
    given = retargeter.retarget(local, wrist, frame="wrist")
    np.testing.assert_array_equal(given.wrist_poses, wrist)
    np.testing.assert_allclose(given.q, from_local.q, atol=1e-4)


def test_estimated_wrist_frame_is_rigid_and_follows_the_hand(
        mediapipe: dict[str, np.ndarray]) -> None:
    local = mediapipe["joints_21"][:30].astype(np.float64)
    base = estimate_wrist_poses(local)
    move = pose_from_xyz_rpy([0.3, -0.2, 1.0], [0.4, -1.0, 2.0])
    world = local @ move[:3, :3].T + move[:3, 3]
    moved = estimate_wrist_poses(world)
    np.testing.assert_allclose(moved, move @ base, atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(moved[:, :3, :3]), 1.0, atol=1e-9)


def test_invalid_frames_hold_the_previous_solution(mediapipe: dict[str, np.ndarray]) -> None:
    joints = mediapipe["joints_21"][:30].astype(np.float64).copy()
    joints[5] = np.nan
    valid = np.ones(30, dtype=bool)
    valid[[0, 12, 13]] = False
    retargeter = Retargeter("xhand_right")
    result = retargeter.retarget(joints, valid=valid)
    assert np.flatnonzero(result.held).tolist() == [0, 5, 12, 13]
    np.testing.assert_array_equal(result.q[0], retargeter.kin.open_pose)
    np.testing.assert_array_equal(result.q[5], result.q[4])
    np.testing.assert_array_equal(result.q[13], result.q[11])
    errors = retargeter.fingertip_errors(result)
    assert np.isnan(errors.errors_m[5]).all() and errors.summary()["frames"] == 26
    wrist = np.tile(np.eye(4), (30, 1, 1))
    wrist[7] = np.nan
    held = retargeter.retarget(mediapipe["joints_21"][:30], wrist, frame="wrist")
    assert held.held[7] and np.isfinite(held.wrist_poses).all()


def test_bad_input_gives_clear_errors() -> None:
    retargeter = Retargeter("panda_gripper")
    with pytest.raises(RetargetingError, match=r"\(T, 21, 3\)"):
        retargeter.retarget(np.zeros((4, 20, 3)))
    with pytest.raises(RetargetingError, match="wrist poses"):
        retargeter.retarget(np.zeros((4, 21, 3)), np.zeros((3, 4, 4)))
    with pytest.raises(RetargetingError, match="valid"):
        retargeter.retarget(np.zeros((4, 21, 3)), valid=np.ones(5, bool))
    with pytest.raises(UnknownHandError, match="xhand_right"):
        Retargeter("xhand_rigth")


def test_config_problems_name_the_key() -> None:
    config = get_hand_config("xhand_right")
    broken = {"optimizer": "magic"}
    with pytest.raises(HandConfigError, match=r"retargeting\.optimizer"):
        Retargeter(dataclasses.replace(config, retargeting={**config.retargeting, **broken}))
    with pytest.raises(HandConfigError, match="no retargeting section"):
        Retargeter(dataclasses.replace(config, retargeting={}))
    targets = {"thumb_tip": "no_such_link"}
    with pytest.raises(HandConfigError, match="no_such_link"):
        Retargeter(dataclasses.replace(config, retargeting={**config.retargeting,
                                                            "targets": targets}))


def test_cli_end_to_end(tmp_path: Path, mediapipe: dict[str, np.ndarray],
                        capsys: pytest.CaptureFixture[str]) -> None:
    from unihm_core.cli import main

    src = tmp_path / "in.npz"
    np.savez(src, joints_21=mediapipe["joints_21"][:25], valid=mediapipe["valid"][:25], fps=30.0)
    out = tmp_path / "out.npz"
    assert main(["retarget", str(src), "--hand", "xhand_right,panda_gripper",
                 "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [h["hand"] for h in report["hands"]] == ["xhand_right", "panda_gripper"]
    data = np.load(out)
    assert data["xhand_right/q"].shape == (25, 12)
    assert data["xhand_right/wrist_poses"].shape == (25, 4, 4)
    assert list(data["panda_gripper/joint_names"]) == ["panda_finger_joint1"]
    assert float(data["fps"]) == 30.0
    assert json.loads(str(data["xhand_right/metrics_json"]))["frames"] == 25

    assert main(["retarget", str(src), "--hand", "nope", "--out", str(out)]) == 2
    assert "unknown hand 'nope'" in capsys.readouterr().err
    np.savez(src, joints=np.zeros((3, 21, 3)))
    assert main(["retarget", str(src), "--hand", "xhand_right", "--out", str(out)]) == 2
    assert "joints_21" in capsys.readouterr().err


def test_measure_retargeting(mediapipe: dict[str, np.ndarray]) -> None:
    from unihm_core.hands.retarget_cli import measure_retargeting

    figures = measure_retargeting("xhand_right", mediapipe["joints_21"][:30])
    assert figures["frames"] == 30 and figures["fps"] > 0
    assert {"mean_mm", "p95_mm", "mean_norm_mm", "mean_pct"} <= set(figures)
