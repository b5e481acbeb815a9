"""The physical lift check: grasps known to hold pass, bad ones fail, every hand simulates."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from unihm_core.assets import asset_path
from unihm_core.dataset.physics import (
    HAND_PREFIX,
    GraspInputError,
    GraspObject,
    HandModelError,
    LiftChecker,
    LiftParams,
    ObjectModelError,
    PhysicsCheckError,
    lift_capacity,
    support_score,
)
from unihm_core.dataset.physics_benchmark import pinch_grasp, wrap_grasp
from unihm_core.hands import hand_ids, hand_kinematics
from unihm_core.hands.registry import BUILTIN_DIR
from unihm_core.objects import OBJECTS


def _moved(pose: np.ndarray, offset: tuple[float, float, float]) -> np.ndarray:
    out = pose.copy()
    out[:3, 3] += offset
    return out


@pytest.fixture(scope="module")
def panda_brick() -> tuple[LiftChecker, np.ndarray, np.ndarray, np.ndarray]:
    """Panda gripper over the foam brick, pads 2 cm below its top, closed to its width."""
    checker = LiftChecker("panda_gripper", "061_foam_brick")
    object_pose = checker.resting_pose(0.05, -0.02, 0.3)
    wrist, q = pinch_grasp(checker, object_pose)
    return checker, object_pose, wrist, q


def test_panda_pinch_lifts_the_brick(panda_brick) -> None:
    checker, object_pose, wrist, q = panda_brick
    assert checker.object_mass == pytest.approx(OBJECTS["061_foam_brick"].mass_kg)
    result = checker.check(object_pose, wrist, q)
    assert result.success, result.reason
    assert result.reason == ""
    assert result.lift_height > 0.09
    assert result.max_slip_m < 0.003 and result.max_slip_deg < 3.0
    assert result.penetration_mm < 1.5  # collision pieces are ~1 mm larger than the mesh
    assert result.held_s == pytest.approx(1.0)
    assert result.sim_s == pytest.approx(1.7)
    assert result.contacts > 0
    # Deterministic: the model is reused, the state is reset.
    again = checker.check(object_pose, wrist, q)
    assert again.lift_height == result.lift_height and again.max_slip_m == result.max_slip_m


def test_bad_grasps_fail_fast(panda_brick) -> None:
    checker, object_pose, wrist, q = panda_brick
    away = checker.check(object_pose, _moved(wrist, (0.1, 0.0, 0.0)), q)
    assert not away.success
    assert "did not rise" in away.reason
    assert away.contacts == 0 and away.held_s == 0.0
    assert away.sim_s < 0.5  # stopped at the first sign of failure
    open_fingers = checker.check(object_pose, wrist, [0.04])
    assert not open_fingers.success and open_fingers.penetration_mm == 0.0
    assert open_fingers.lift_height < 0.01


def test_full_run_keeps_the_first_failure(panda_brick) -> None:
    checker, object_pose, wrist, _ = panda_brick
    params = LiftParams(stop_early=False)
    full = LiftChecker("panda_gripper", checker.object, params).check(object_pose, wrist, [0.04])
    assert not full.success and "did not rise" in full.reason
    assert full.sim_s == pytest.approx(1.7)


def test_hand_inside_the_object_reports_its_penetration(panda_brick) -> None:
    checker, object_pose, wrist, q = panda_brick
    sunk = _moved(wrist, (0.0, 0.0, -0.03))  # fingertips 3 cm deeper, the palm in the brick
    result = checker.check(object_pose, sunk, q)
    assert result.penetration_mm > 10.0
    assert checker.penetration_mm(object_pose, sunk, q) == pytest.approx(result.penetration_mm)
    strict = LiftChecker("panda_gripper", checker.object, LiftParams(max_penetration_mm=5.0))
    rejected = strict.check(object_pose, sunk, q)
    assert not rejected.success and "penetrates the object" in rejected.reason
    assert rejected.sim_s == 0.0


def test_a_multi_finger_wrap_grasp_lifts_the_sugar_box() -> None:
    checker = LiftChecker("allegro_right", "004_sugar_box")
    object_pose, wrist, q = wrap_grasp(checker, checker.resting_pose())
    result = checker.check(object_pose, wrist, q)
    assert result.success, result.reason
    assert result.contacts >= 4 and result.penetration_mm < 3.0
    opened = checker.check(object_pose, wrist, checker.kin.open_pose)
    assert not opened.success


def test_mesh_objects_take_a_mass_or_a_density() -> None:
    mesh = asset_path("ycb_objects/061_foam_brick/textured_simple.obj")
    checker = LiftChecker("panda_gripper", mesh, mass=0.05)
    assert checker.object_mass == pytest.approx(0.05)
    pose = checker.resting_pose(0.05, -0.02, 0.3)
    assert checker.check(pose, *pinch_grasp(checker, pose)).success
    dense = LiftChecker("panda_gripper", GraspObject.from_mesh(mesh, density=1000.0))
    # 1000 kg/m^3 times the convex hull volume of the 5.3 x 7.8 x 5.1 cm brick.
    assert 0.15 < dense.object_mass < 0.25


def test_squeeze_pushes_away_from_the_open_pose() -> None:
    checker = LiftChecker("shadow_right", "061_foam_brick")
    kin = checker.kin
    q = np.clip(kin.open_pose + 0.5, kin.lower, kin.upper)
    targets = checker.squeeze_targets(q, kin.open_pose)
    assert np.all(targets >= q - 1e-12) and np.all(targets <= kin.upper + 1e-12)
    wrist = [kin.joint_names.index(j) for j in ("WRJ1", "WRJ2")]
    np.testing.assert_allclose(targets[wrist], q[wrist])  # wrist joints are never squeezed
    assert np.any(targets > q + 0.1)


def test_squeeze_drives_flexion_past_contact_even_when_barely_closed() -> None:
    """A finger that touches the object almost straight still presses: its flexion joints
    get the whole squeeze toward the closed hand; a spread joint near open is not forced."""
    checker = LiftChecker("shadow_right", "061_foam_brick")
    kin = checker.kin
    q = kin.open_pose.copy()
    targets = checker.squeeze_targets(q, kin.open_pose)
    flexion = [kin.joint_names.index(j) for j in ("FFJ3", "FFJ2", "MFJ3", "MFJ2")]
    spread = [kin.joint_names.index(j) for j in ("FFJ4", "MFJ4", "WRJ1")]
    np.testing.assert_allclose(targets[flexion] - q[flexion], checker.params.squeeze_rad)
    np.testing.assert_allclose(targets[spread], q[spread])
    panda = LiftChecker("panda_gripper", "061_foam_brick")
    q = np.array([0.039])  # nearly open: the fingers still close 5 mm past contact
    assert panda.squeeze_targets(q, panda.kin.open_pose)[0] == pytest.approx(0.034)


@pytest.mark.parametrize("hand_id", hand_ids())
def test_every_hand_builds_and_runs_a_check(hand_id: str) -> None:
    checker = LiftChecker(hand_id, "061_foam_brick")
    kin = checker.kin
    object_pose = checker.resting_pose()
    wrist = np.eye(4)
    wrist[:3, :3] = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]  # palm down
    wrist[:3, 3] = (0.0, 0.0, 0.35)
    result = checker.check(object_pose, wrist, kin.open_pose)
    assert not result.success and result.penetration_mm == 0.0
    assert np.isfinite([result.lift_height, result.wall_s]).all()
    # The MuJoCo hand is where the kinematics puts it (wrist_from_base, URDF root, joints).
    rng = np.random.default_rng(3)
    q = rng.uniform(kin.lower, kin.upper)
    checker.set_grasp(object_pose, wrist, q)
    data = checker.data
    for keypoint, expected in zip(kin.config.keypoints, kin.keypoints(wrist, q), strict=True):
        body = checker.model.body(HAND_PREFIX + keypoint.link).id
        point = data.xpos[body] + data.xmat[body].reshape(3, 3) @ np.asarray(keypoint.offset)
        np.testing.assert_allclose(point, expected, atol=1e-9)


def test_errors_name_the_problem(panda_brick, tmp_path) -> None:
    checker, object_pose, wrist, q = panda_brick
    with pytest.raises(HandModelError, match="unknown hand 'allegro_rihgt'"):
        LiftChecker("allegro_rihgt", "061_foam_brick")
    with pytest.raises(ObjectModelError, match="999_no_such_object"):
        LiftChecker("panda_gripper", "999_no_such_object")
    missing = tmp_path / "missing.stl"
    with pytest.raises(ObjectModelError, match=r"mesh file not found: .*missing\.stl"):
        LiftChecker("panda_gripper", missing)
    with pytest.raises(ObjectModelError, match="mass must be > 0"):
        GraspObject.ycb("061_foam_brick", mass=-1.0)
    with pytest.raises(GraspInputError, match=r"shape \(1,\).*panda_finger_joint1.*got \(2,\)"):
        checker.check(object_pose, wrist, [0.02, 0.02])
    with pytest.raises(GraspInputError, match="non-finite"):
        checker.check(object_pose, wrist, [np.nan])
    with pytest.raises(GraspInputError, match=r"wrist_pose must be a 4x4 matrix"):
        checker.check(object_pose, wrist[:3], q)
    with pytest.raises(GraspInputError, match="object_pose is not a rigid transform"):
        checker.check(2.0 * object_pose, wrist, q)
    with pytest.raises(GraspInputError, match=r"qs must have shape \(N, 1\)"):
        checker.check_many(object_pose, wrist, q)
    with pytest.raises(GraspInputError, match=r"wrist_poses must have shape \(2, 4, 4\)"):
        checker.check_many(object_pose, np.stack([wrist] * 3), [q, q])
    with pytest.raises(PhysicsCheckError, match="min_lift"):
        LiftParams(min_lift=0.2)
    for error in (HandModelError, ObjectModelError, GraspInputError):
        assert issubclass(error, ValueError)


def test_a_hand_whose_meshes_are_missing_is_refused(tmp_path, monkeypatch) -> None:
    source = hand_kinematics("allegro_right").config
    urdf = tmp_path / "allegro_copy.urdf"  # the URDF alone: its meshes/ folder stays behind
    shutil.copy(source.urdf_path, urdf)
    text = (BUILTIN_DIR / "allegro_right.yaml").read_text()
    text = text.replace("id: allegro_right", "id: allegro_without_meshes")
    text = re.sub(r"(?m)^urdf: .*$", f"urdf: {urdf}", text)
    (tmp_path / "allegro_without_meshes.yaml").write_text(text)
    monkeypatch.setenv("UNIHM_HAND_CONFIGS", str(tmp_path))
    with pytest.raises(HandModelError, match=r"mesh file not found: .*meshes.*allegro_copy"):
        LiftChecker("allegro_without_meshes", "061_foam_brick")


def test_check_many_matches_single_checks(panda_brick) -> None:
    checker, object_pose, wrist, q = panda_brick
    wrists = np.stack([wrist, _moved(wrist, (0.1, 0.0, 0.0))])
    results = checker.check_many(object_pose, wrists, [q, q])
    assert [r.success for r in results] == [True, False]
    single = checker.check(object_pose, wrists[0], q)
    assert results[0].lift_height == single.lift_height


def test_seating_leaves_the_fingers_on_the_surface(panda_brick) -> None:
    checker, object_pose, wrist, q = panda_brick
    squeezed = q - 0.004  # each pad 4 mm inside the brick
    assert checker.penetration_mm(object_pose, wrist, squeezed) > 3.0
    seated = checker.seat(object_pose, wrist, squeezed)
    assert seated.success, seated.reason
    assert seated.backoff_m == 0.0  # the palm is clear: only the fingers move
    assert seated.object_shift_m < 0.005 and seated.object_turn_deg < 5.0
    seated_wrist = object_pose @ seated.wrist_in_object
    assert checker.penetration_mm(object_pose, seated_wrist, seated.q) < 1.5
    assert checker.check(object_pose, seated_wrist, seated.q).success


def test_seating_backs_a_sunk_palm_out_of_the_object() -> None:
    checker = LiftChecker("allegro_right", "004_sugar_box")
    object_pose, wrist, q = wrap_grasp(checker, checker.resting_pose())
    sunk = wrist.copy()
    sunk[:3, 3] += 0.012 * wrist[:3, 0]  # 12 mm further along the palm normal: palm in the box
    assert checker.penetration_mm(object_pose, sunk, q) > 8.0
    seated = checker.seat(object_pose, sunk, q)
    assert 0.008 <= seated.backoff_m <= 0.02
    seated_wrist = object_pose @ seated.wrist_in_object
    assert checker.penetration_mm(object_pose, seated_wrist, seated.q) < 2.0


def test_seating_reports_an_object_knocked_away() -> None:
    checker = LiftChecker("allegro_right", "004_sugar_box")
    object_pose, wrist, q = wrap_grasp(checker, checker.resting_pose())
    aside = _moved(wrist, (0.0, 0.05, 0.0))  # fingers close on the box's edge, off centre
    seated = checker.seat(object_pose, aside, q)
    assert not seated.success and "pushed the object" in seated.reason
    assert seated.object_shift_m > checker.params.seat_max_shift_m
    centred = checker.seat(object_pose, wrist, q)
    assert centred.success, centred.reason
    assert centred.object_shift_m <= checker.params.seat_max_shift_m


def test_mimic_followers_do_not_block_their_leader() -> None:
    """The Schunk SVH left URDF couples j5 = +Thumb_Opposition (0 to 0.99 rad) but gives j5
    the limits [-0.99, 0]: with the follower's own stop the coupling held the thumb's
    opposition at 0 in simulation. Followers move with their leader, as in the kinematics."""
    import mujoco

    checker = LiftChecker("schunk_svh_left", "061_foam_brick")
    kin, m, d = checker.kin, checker.model, checker.data
    wrist = np.eye(4)
    wrist[:3, 3] = (0.0, 0.0, 0.5)
    checker.set_grasp(checker.resting_pose(0.5, 0.5), wrist, kin.open_pose)
    lead = kin.joint_names.index("left_hand_Thumb_Opposition")
    d.ctrl[:kin.dof] = kin.open_pose
    d.ctrl[lead] = 0.6
    mujoco.mj_step(m, d, 500)
    q = d.qpos[checker._hand_qpos]
    for joint in ("left_hand_Thumb_Opposition", "left_hand_j5"):
        assert q[kin.full_joint_names.index(joint)] == pytest.approx(0.6, abs=0.02), joint


def test_support_score_prefers_side_and_underside_contacts() -> None:
    """Side contacts carry the object by friction, a contact on a top face only pushes it
    down: the score orders them so, and is 0 without contacts."""
    side, shoulder, top, under = [1, 0, 0], [0.9, 0, 0.42], [0, 0, 1], [0.8, 0, -0.6]
    assert support_score([side, [-1, 0, 0]]) == pytest.approx(1.0)
    assert support_score([under]) > support_score([side]) > support_score([shoulder]) > 0.0
    assert support_score([top]) == pytest.approx(-1.0)
    assert support_score(np.zeros((0, 3))) == 0.0


def test_contact_normals_of_a_side_pinch_are_horizontal(panda_brick) -> None:
    """The pads of the pinch touch the brick's sides; the same pads pressed onto its top face
    touch a face whose normal points up. Nothing is simulated (the scene is left as set)."""
    checker, object_pose, wrist, q = panda_brick
    normals = checker.contact_normals(object_pose, wrist, q)
    assert len(normals) == 2
    np.testing.assert_allclose(normals[:, 2], 0.0, atol=0.05)
    assert checker.contact_support(object_pose, wrist, q) > 0.9
    time_before = checker.data.time
    above = _moved(wrist, (0.0, 0.0, 0.3))  # far above: nothing touches
    assert len(checker.contact_normals(object_pose, above, q)) == 0
    assert checker.contact_support(object_pose, above, q) == 0.0
    assert checker.data.time == time_before
    # closed pads resting 1 mm deep on the top face
    pressed = checker.contact_normals(object_pose, _moved(wrist, (0.0, 0.0, 0.019)), [0.0])
    assert len(pressed) and pressed[:, 2].mean() > 0.9


def test_lift_capacity_needs_contacts_that_balance_the_weight() -> None:
    """Two pads pinching through the centre of mass carry a weight; the same pinch 3 cm
    beside it lets the object swing (point contacts, no torque); pads on the top face only
    push it down; fingers under a lip carry it best."""
    side = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    centred = np.array([[0.03, 0.0, 0.0], [-0.03, 0.0, 0.0]])
    assert lift_capacity(centred, side, [0, 1]) == pytest.approx(1.0, abs=1e-6)  # 2 x mu 0.5
    beside = centred + np.array([0.0, 0.03, 0.0])
    assert lift_capacity(beside, side, [0, 1]) == pytest.approx(0.0, abs=1e-9)
    # a patch of points per pad resists the swing again
    patch = np.concatenate([beside + np.array([0.0, dy, dz]) for dy in (-0.01, 0.01)
                            for dz in (-0.01, 0.01)])
    assert lift_capacity(patch, np.tile(side, (4, 1)), [0, 1] * 4) > 0.1
    top = np.array([[0.01, 0.0, 0.05], [-0.01, 0.0, 0.05]])
    assert lift_capacity(top, [[0, 0, 1.0], [0, 0, 1.0]], [0, 1]) == pytest.approx(0.0, abs=1e-9)
    under = np.array([[0.03, 0.0, -0.01], [-0.03, 0.0, -0.01]])
    tilted = np.array([[0.8, 0.0, -0.6], [-0.8, 0.0, -0.6]])
    assert lift_capacity(under, tilted, [0, 1]) > lift_capacity(centred, side, [0, 1])
    assert lift_capacity(np.zeros((0, 3)), np.zeros((0, 3)), []) == 0.0


def test_the_panda_pinch_of_the_brick_can_carry_it(panda_brick) -> None:
    checker, object_pose, wrist, q = panda_brick
    assert checker.lift_capacity(object_pose, wrist, q) > 0.5
    assert checker.fingertip_force() == pytest.approx(70.0)  # the gripper's finger force
    assert LiftChecker("inspire_left", "061_foam_brick").fingertip_force() < \
        0.7 * LiftChecker("shadow_right", "061_foam_brick").fingertip_force()
