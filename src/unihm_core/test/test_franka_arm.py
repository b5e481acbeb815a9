"""Franka arm: config loading, FK against an independent URDF parser, IK accuracy and reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from unihm_core.arm import (
    ArmConfigError,
    ArmIK,
    UnknownArmError,
    arm_ids,
    arm_model,
    get_arm_config,
    load_arm_config,
    resolve_mount,
)
from unihm_core.arm.benchmark import measure_ik, smooth_joint_path
from unihm_core.arm.config import BUILTIN_DIR
from unihm_core.hands import get_hand_config
from unihm_core.se3 import invert, pose_from_xyz_rpy, rotation_angle

RNG_SEED = 11
MOUNT_HANDS = ["xhand_right", "panda_gripper", "allegro_right", "shadow_left"]


@pytest.fixture(scope="module")
def arm():
    return arm_model("franka_panda")


@pytest.fixture(scope="module", params=MOUNT_HANDS)
def solver(request, arm):
    return ArmIK(arm, hand=request.param)


def _errors(solver: ArmIK, q: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent error check: FK of the answer composed with the solver's mount."""
    reached = solver.arm.flange_pose(q) @ solver.flange_to_wrist
    delta = invert(targets) @ reached
    return np.linalg.norm(delta[..., :3, 3], axis=-1), rotation_angle(delta[..., :3, :3])


# -- config ----------------------------------------------------------------------------------

def test_shipped_config(arm) -> None:
    cfg = get_arm_config("franka_panda")
    assert "franka_panda" in arm_ids()
    assert arm.dof == 7 and arm.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8))
    assert cfg.flange_link == "panda_link8"
    # Datasheet limits match the URDF's position and velocity limits.
    np.testing.assert_allclose(cfg.position_lower, arm.model.lowerPositionLimit)
    np.testing.assert_allclose(cfg.position_upper, arm.model.upperPositionLimit)
    np.testing.assert_allclose(cfg.velocity_limit, arm.model.velocityLimit)
    assert np.all(cfg.acceleration_limit > 0) and np.all(cfg.jerk_limit > cfg.acceleration_limit)
    assert arm.within_limits(arm.ready_posture)


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("edit", "key"), [
    (lambda d: d.pop("flange_link"), "flange_link"),
    (lambda d: d["limits"].__setitem__("velocity", [1.0] * 6), "limits.velocity"),
    (lambda d: d["limits"].__setitem__("jerk", [-1.0] * 7), "limits.jerk"),
    (lambda d: d.__setitem__("ready_posture", [0.0] * 7), "ready_posture"),
    (lambda d: d["ik"].__setitem__("dampin", 0.1), "ik.dampin"),
    (lambda d: d["ik"].__setitem__("max_iterations", 2.5), "ik.max_iterations"),
    (lambda d: d.__setitem__("colour", "red"), "colour"),
    (lambda d: d.__setitem__("urdf", "no/such/arm.urdf"), "urdf"),
])
def test_config_errors_name_file_and_key(tmp_path, edit, key) -> None:
    data = yaml.safe_load((BUILTIN_DIR / "franka_panda.yaml").read_text())
    edit(data)
    path = _write(tmp_path, data)
    with pytest.raises(ArmConfigError) as info:
        load_arm_config(path)
    assert info.value.key == key
    assert str(path) in str(info.value) and f"'{key}'" in str(info.value)


def test_config_errors_found_against_the_urdf(tmp_path) -> None:
    from unihm_core.arm import ArmModel

    data = yaml.safe_load((BUILTIN_DIR / "franka_panda.yaml").read_text())
    data["urdf"] = str(get_arm_config().urdf_path)
    data["flange_link"] = "panda_link99"
    with pytest.raises(ArmConfigError, match="flange_link"):
        ArmModel(load_arm_config(_write(tmp_path, data)))
    data["flange_link"] = "panda_link8"
    data["joints"][2] = "panda_joint33"
    with pytest.raises(ArmConfigError, match="panda_joint33"):
        ArmModel(load_arm_config(_write(tmp_path, data)))


def test_fr3_is_the_panda_kinematics_under_its_own_names_and_limits(arm) -> None:
    from unihm_core.arm.model import renamed_urdf

    fr3 = arm_model("franka_fr3")
    assert fr3.joint_names == tuple(f"fr3_joint{i}" for i in range(1, 8))
    assert fr3.config.base_link == "fr3_link0" and fr3.config.flange_link == "fr3_link8"
    # the FR3's own ranges, some wider than the Panda URDF's, are the model's limits
    np.testing.assert_allclose(fr3.model.upperPositionLimit[[1, 5]], [1.7837, 4.5169])
    assert fr3.model.upperPositionLimit[5] > arm.model.upperPositionLimit[5]
    q = np.random.default_rng(RNG_SEED).uniform(np.maximum(fr3.lower, arm.lower),
                                                 np.minimum(fr3.upper, arm.upper), (20, 7))
    np.testing.assert_allclose(fr3.flange_pose(q), arm.flange_pose(q), atol=1e-12)
    target = fr3.wrist_pose(q[0], "xhand_right")
    assert ArmIK(fr3, hand="xhand_right").solve(target).reached
    # names change, mesh paths do not
    xml = renamed_urdf(get_arm_config().urdf_path, {"panda_": "fr3_"})
    assert 'name="fr3_joint4"' in xml and 'link="fr3_link3"' in xml
    assert "panda_" not in xml and "franka_description/meshes" in xml


def test_config_limits_beyond_the_urdf_need_limits_replace_urdf(tmp_path) -> None:
    from unihm_core.arm import ArmModel

    data = yaml.safe_load((BUILTIN_DIR / "franka_panda.yaml").read_text())
    data["urdf"] = str(get_arm_config().urdf_path)
    data["limits"]["position_upper"][5] = 4.5
    with pytest.raises(ArmConfigError, match="exceed the URDF"):
        ArmModel(load_arm_config(_write(tmp_path, data)))
    data["limits_replace_urdf"] = True
    assert ArmModel(load_arm_config(_write(tmp_path, data))).model.upperPositionLimit[5] == 4.5
    data["urdf_rename"] = {"panda_": ""}
    with pytest.raises(ArmConfigError, match="urdf_rename"):
        load_arm_config(_write(tmp_path, data))


def test_unknown_arm_suggests_a_close_id() -> None:
    with pytest.raises(UnknownArmError, match="franka_panda"):
        get_arm_config("franka_pand")


def test_an_arm_is_added_by_a_yaml_file(tmp_path, monkeypatch) -> None:
    data = yaml.safe_load((BUILTIN_DIR / "franka_panda.yaml").read_text())
    data.update(id="panda_slow", urdf=str(get_arm_config().urdf_path))
    data["limits"]["velocity"] = [1.0] * 7
    (tmp_path / "panda_slow.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("UNIHM_ARM_CONFIGS", str(tmp_path))
    assert "panda_slow" in arm_ids()
    np.testing.assert_allclose(get_arm_config("panda_slow").velocity_limit, 1.0)


# -- forward kinematics ----------------------------------------------------------------------

def test_fk_matches_yourdfpy(arm) -> None:
    yourdfpy = pytest.importorskip("yourdfpy")
    urdf = yourdfpy.URDF.load(str(arm.config.urdf_path), load_meshes=False,
                              build_scene_graph=True)
    rng = np.random.default_rng(RNG_SEED)
    qs = arm.random_configurations(25, rng)
    flanges = arm.flange_pose(qs)
    links = [f"panda_link{i}" for i in range(1, 9)]
    ours = {link: arm.link_pose(qs, link) for link in links}
    for i, q in enumerate(qs):
        urdf.update_cfg(dict(zip(arm.joint_names, q, strict=True)))
        ref = urdf.get_transform("panda_link8", "panda_link0")
        np.testing.assert_allclose(flanges[i], ref, atol=1e-9)
        for link in links:
            np.testing.assert_allclose(ours[link][i], urdf.get_transform(link, "panda_link0"),
                                       atol=1e-9)


def test_wrist_pose_composes_the_hand_mount(arm) -> None:
    q = arm.random_configurations(3, np.random.default_rng(RNG_SEED))
    mount = get_hand_config("xhand_right").flange_to_wrist
    expected = arm.flange_pose(q) @ mount
    np.testing.assert_allclose(arm.wrist_pose(q, hand="xhand_right"), expected)
    np.testing.assert_allclose(arm.wrist_pose(q, flange_to_wrist=mount), expected)
    np.testing.assert_allclose(arm.wrist_pose(q), arm.flange_pose(q))
    assert arm.flange_pose(q.reshape(1, 3, 7)).shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="not both"):
        resolve_mount("xhand_right", mount)


# -- inverse kinematics ----------------------------------------------------------------------

def test_ik_reaches_random_reachable_poses(solver, arm) -> None:
    rng = np.random.default_rng(RNG_SEED)
    qs = arm.random_configurations(25, rng, margin=0.05)
    targets = solver.arm.flange_pose(qs) @ solver.flange_to_wrist
    results = [solver.solve(t) for t in targets]
    assert all(r.reached for r in results)
    q = np.stack([r.q for r in results])
    pos, rot = _errors(solver, q, targets)
    assert pos.max() < 1e-3 and rot.max() < 1e-2
    np.testing.assert_allclose(pos, [r.position_error for r in results], atol=1e-9)
    np.testing.assert_allclose(rot, [r.rotation_error for r in results], atol=1e-7)
    assert arm.within_limits(q).all()


@pytest.mark.parametrize("margin", [0.6, 0.1])
def test_trajectory_warm_start_is_continuous_and_accurate(arm, margin) -> None:
    rng = np.random.default_rng(RNG_SEED)
    q_path = smooth_joint_path(arm, 300, rng, margin=margin)
    targets = arm.wrist_pose(q_path, hand="xhand_right")
    solver = ArmIK(arm, hand="xhand_right")
    result = solver.solve_trajectory(targets, q0=q_path[0])
    assert len(result) == 300 and result.all_reached
    pos, rot = _errors(solver, result.q, targets)
    assert pos.max() < 1e-3 and rot.max() < 1e-2
    assert arm.within_limits(result.q).all()
    # Warm starts: few iterations, and the joints move about as much as the generating path
    # (a little more near a singularity, where the redundant joint slides along).
    assert np.median(result.iterations[1:]) <= 3
    steps = np.abs(np.diff(result.q, axis=0)).max(axis=1)
    path_step = np.abs(np.diff(q_path, axis=0)).max()
    if margin > 0.5:  # away from the limits: no branch change is ever needed
        assert not result.restarted.any()
        assert np.mean(steps <= 2 * path_step) >= 0.98
    else:
        # A path sweeping the whole joint space drives the IK's branch into a joint limit now
        # and then; those frames restart on another branch, are flagged, and stay rare.
        assert result.restarted.sum() <= 6
        assert np.mean(steps <= 2 * path_step) >= 0.9
        assert result.restarted[1:][np.argmax(steps)]  # the largest jump is a flagged one
    assert result[5].reached and result[5].q.shape == (7,)


def test_joint_limits_are_respected_when_the_target_pulls_outside(arm) -> None:
    solver = ArmIK(arm, hand="panda_gripper")
    q = arm.ready_posture
    q[3] = arm.upper[3] - 0.02  # elbow almost straight
    target = arm.wrist_pose(q, hand="panda_gripper")
    target[:3, 3] *= 1.3  # a little further than the straight elbow allows
    result = solver.solve(target, q0=q)
    assert arm.within_limits(result.q)
    limited = ArmIK(arm, hand="panda_gripper", limit_margin=0.1).solve(target, q0=q)
    assert np.all(limited.q >= arm.lower + 0.1 - 1e-12)
    assert np.all(limited.q <= arm.upper - 0.1 + 1e-12)


def test_unreachable_poses_are_reported(arm) -> None:
    solver = ArmIK(arm, hand="xhand_right", restarts=2)
    q_path = smooth_joint_path(arm, 40, np.random.default_rng(RNG_SEED))
    targets = arm.wrist_pose(q_path, hand="xhand_right")
    targets[10:13, :3, 3] += [2.0, 0.0, 0.0]  # 2 m away: out of the ~0.86 m reach
    result = solver.solve_trajectory(targets, q0=q_path[0])
    assert result.unreached_frames.tolist() == [10, 11, 12]
    assert np.all(result.position_error[10:13] > 1.0)
    assert np.all(result.position_error[10:13] < 2.1)  # the closest pose tried, not garbage
    assert np.isfinite(result.q).all() and arm.within_limits(result.q).all()
    # The frames after the outlier are tracked again.
    assert result.reached[13:].all()
    single = solver.solve(targets[11])
    assert not single.reached and single.position_error > 1.0


def test_bad_inputs_raise_clear_errors(arm) -> None:
    solver = ArmIK(arm)
    good = arm.flange_pose(np.stack([arm.ready_posture] * 4))
    nan = good.copy()
    nan[2, 0, 3] = np.nan
    with pytest.raises(ValueError, match=r"frame 2.*NaN"):
        solver.solve_trajectory(nan)
    scaled = good.copy()
    scaled[1, :3, :3] *= 1.1
    with pytest.raises(ValueError, match=r"frame 1.*orthonormal"):
        solver.solve_trajectory(scaled)
    mirrored = good.copy()
    mirrored[3, :3, 0] *= -1
    with pytest.raises(ValueError, match=r"frame 3.*reflection"):
        solver.solve_trajectory(mirrored)
    bottom = good.copy()
    bottom[0, 3, 0] = 1.0
    with pytest.raises(ValueError, match=r"frame 0.*last row"):
        solver.solve_trajectory(bottom)
    with pytest.raises(ValueError, match=r"\(N, 4, 4\)"):
        solver.solve_trajectory(good[:, :3])
    with pytest.raises(ValueError, match="4x4"):
        solver.solve(good)
    with pytest.raises(ValueError, match=r"q0.*shape"):
        solver.solve(good[0], q0=np.zeros(6))
    with pytest.raises(ValueError, match=r"q0.*NaN"):
        solver.solve(good[0], q0=np.full(7, np.nan))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 7\)"):
        arm.flange_pose(np.zeros(6))
    with pytest.raises(ValueError, match="flange_to_wrist"):
        ArmIK(arm, flange_to_wrist=pose_from_xyz_rpy([0, 0, 0], [0, 0, 0])[:3])
    with pytest.raises(ArmConfigError, match="max_step"):
        ArmIK(arm, max_step=-1.0)


def test_measure_ik_reports_speed_accuracy_and_unreachable() -> None:
    report = measure_ik(n_frames=300, seed=0, repeats=1)
    assert report["reached_fraction"] == 1.0
    assert report["max_position_error_mm"] < 1.0 and report["max_rotation_error_rad"] < 1e-2
    assert report["within_limits"] and report["unreachable_reported"]
    assert report["unreachable_min_position_error_m"] > 1.0
    assert report["frames_per_s"] > 0


def test_joint_steps_report_jumps() -> None:
    from unihm_core.arm.ik import TrajectoryIKResult

    q = np.zeros((4, 7))
    q[2, 3] = 1.0  # a jump in, and back out
    ones = np.ones(4, dtype=bool)
    result = TrajectoryIKResult(q, ones, np.zeros(4), np.zeros(4), np.ones(4, dtype=np.int64),
                                ~ones)
    np.testing.assert_allclose(result.joint_steps, [0.0, 0.0, 1.0, 1.0])
    assert result.jump_frames(0.5).tolist() == [2, 3]
    assert result.summary()["jump_frames"] == [2, 3]
