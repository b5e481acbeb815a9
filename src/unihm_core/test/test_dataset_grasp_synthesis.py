"""Grasp synthesis: energies match their analytic Jacobians, the solver lowers them, and the
grasps it keeps touch the object without going through it or the table."""

from __future__ import annotations

import numpy as np
import pytest

from unihm_core.dataset import grasp_synthesis as gs
from unihm_core.hands import hand_ids
from unihm_core.object_model import ObjectModel
from unihm_core.se3 import exp_local, make_pose

_OBJECTS: dict[str, ObjectModel] = {}


def _object(object_id: str) -> ObjectModel:
    if object_id not in _OBJECTS:
        _OBJECTS[object_id] = ObjectModel.from_asset(object_id)
    return _OBJECTS[object_id]


def _synth(hand_id: str, object_id: str, **kw: object) -> list[gs.Grasp]:
    obj = _object(object_id)
    kw.setdefault("seed", 0)
    return gs.synthesize_grasps(hand_id, obj, table_z=gs.object_table_z(obj), **kw)


def _finite_difference_state(hand_id: str) -> tuple[gs.GraspEnergy, np.ndarray, np.ndarray,
                                                    gs.GraspBatch]:
    """Hands overlapping the object, partly below a raised table, some joints beyond their
    limits and some palms facing up: every hinge term is active somewhere."""
    obj = _object("061_foam_brick")
    params = gs.GraspParams(tip_gap=0.08)  # fingertip pairs closer than 8 cm push apart
    hand = gs.hand_spheres(hand_id)
    energy = gs.GraspEnergy(hand, obj, gs.object_table_z(obj) + 0.03, params)
    rng = np.random.default_rng(3)
    b = 6
    rot = np.array([np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(b)])
    rot *= np.sign(np.linalg.det(rot))[:, None, None]
    wrist = make_pose(rot, -np.einsum("bij,j->bi", rot, hand.palm_local) +
                      rng.normal(0.0, 0.02, (b, 3)))
    q = hand.kin.random_configurations(b, rng)
    q[::2, 0] = hand.kin.upper[0] + 0.05
    anchor = exp_local(wrist, rng.normal(0.0, 0.2, (b, 6)))
    batch = gs.GraspBatch(np.ones((b, hand.num_fingers)), q + rng.normal(0, 0.1, q.shape),
                          anchor)
    return energy, wrist, q, batch


@pytest.mark.parametrize("hand_id", ["shadow_right", "inspire_left", "panda_gripper"])
def test_energy_jacobians_match_finite_differences(hand_id: str) -> None:
    energy, wrist, q, batch = _finite_difference_state(hand_id)
    x, _ = energy.spheres(wrist, q, jacobian=False)
    corr = energy.correspondences(x, batch)  # frozen, as within one solver step
    terms = energy.residuals(wrist, q, batch, corr)
    eps = 1e-6
    fd = {name: np.zeros_like(jac) for name, (_, jac) in terms.items()}
    for k in range(energy.n_var):
        step = np.zeros(energy.n_var)
        step[k] = eps
        plus = energy.residuals(exp_local(wrist, step[:6]), q + step[6:], batch, corr,
                                jacobian=False)
        minus = energy.residuals(exp_local(wrist, -step[:6]), q - step[6:], batch, corr,
                                 jacobian=False)
        for name in terms:
            fd[name][..., k] = (plus[name][0] - minus[name][0]) / (2 * eps)
    for name, (_, jac) in terms.items():
        assert jac is not None
        scale = np.abs(jac).max()
        assert scale > 0, f"{name} is not active in the test state"
        np.testing.assert_allclose(jac, fd[name], atol=1e-5 * scale, err_msg=name)


def test_solver_lowers_every_candidate_energy() -> None:
    obj = _object("005_tomato_soup_can")
    hand = gs.hand_spheres("allegro_right")
    energy = gs.GraspEnergy(hand, obj, gs.object_table_z(obj), gs.GraspParams())
    wrist, q, batch, _ = gs.initial_candidates(energy, ["wrap", "pinch"] * 4,
                                               np.random.default_rng(0))
    _, _, before = gs.stack_terms(energy.residuals(wrist, q, batch))
    wrist2, q2, after, iterations = gs.optimize(energy, wrist, q, batch)
    total_before, total_after = sum(before.values()), sum(after.values())
    assert np.all(total_after <= total_before)
    assert np.all(total_after < 0.2 * total_before)  # the initial hands are centimetres away
    assert np.all(iterations >= 1)
    assert np.all(hand.kin.within_limits(q2))
    _, _, again = gs.stack_terms(energy.residuals(wrist2, q2, batch))
    np.testing.assert_allclose(sum(again.values()), total_after, rtol=1e-9)


def _tips_within(grasp: gs.Grasp, tol: float = 5e-3) -> int:
    return int(np.count_nonzero(np.abs(grasp.tip_distances) <= tol))


@pytest.mark.parametrize(("hand_id", "object_id"), [("shadow_right", "006_mustard_bottle"),
                                                     ("allegro_right", "005_tomato_soup_can")])
def test_wrap_grasps_touch_without_penetrating(hand_id: str, object_id: str) -> None:
    grasps = _synth(hand_id, object_id, num=12, modes=("wrap",))
    assert len(grasps) >= 3
    for g in grasps:
        assert g.passed_filters and g.reason == ""
        assert _tips_within(g) >= 3
        assert g.penetration < 3e-3
        assert g.table_clearance > -1e-3
        assert g.mode == "wrap" and g.contact_fingers == gs.hand_spheres(hand_id).finger_names
    energies = [g.energies["total"] for g in grasps]
    assert energies == sorted(energies)


def test_panda_pinches_the_foam_brick() -> None:
    grasps = _synth("panda_gripper", "061_foam_brick", num=6, modes=("pinch",))
    assert grasps
    for g in grasps:
        assert np.all(np.abs(g.tip_distances) <= 5e-3) and g.penetration < 3e-3
        assert g.q_pregrasp[0] > g.q[0]  # the pre-grasp opens the jaws
    # palm above: the gripper points down onto the brick
    down = np.array([g.facing[2] for g in grasps])
    assert np.all(down < -0.5)


def test_no_grasp_comes_from_below_the_table() -> None:
    for hand_id, object_id in [("shadow_left", "061_foam_brick"),
                               ("xhand_right", "025_mug"),
                               ("leap_right", "051_large_clamp")]:
        obj = _object(object_id)
        table_z = gs.object_table_z(obj)
        grasps = _synth(hand_id, object_id, num=48)
        assert grasps, hand_id
        for g in grasps:
            assert g.facing[2] <= gs.GraspParams().max_facing_up + 1e-6
            assert g.wrist_pose[2, 3] > table_z
            assert g.table_clearance > -1e-3
            hand = gs.hand_spheres(hand_id)
            x = hand.kin.keypoints(g.wrist_pose, g.q, hand.sphere_keypoints)
            assert np.all(x[:, 2] - hand.radii > table_z - 1e-3)


def test_same_seed_same_grasps() -> None:
    kw = {"num": 4, "seed": 7, "return_all": True}
    first = _synth("inspire_right", "061_foam_brick", **kw)
    second = _synth("inspire_right", "061_foam_brick", **kw)
    other = _synth("inspire_right", "061_foam_brick", num=4, seed=8, return_all=True)
    assert len(first) == len(second) == 4
    for a, b in zip(first, second, strict=True):
        assert (a.mode, a.part, a.passed_filters) == (b.mode, b.part, b.passed_filters)
        for name in ("wrist_pose", "q", "q_pregrasp", "tip_distances"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(first[0].wrist_pose, other[0].wrist_pose)


def test_polish_repairs_a_displaced_grasp() -> None:
    obj = _object("006_mustard_bottle")
    table_z = gs.object_table_z(obj)
    good = _synth("shadow_right", "006_mustard_bottle", num=6, modes=("wrap",))[0]
    rng = np.random.default_rng(1)
    moved = exp_local(good.wrist_pose, np.array([0.01, -0.01, 0.008, 0.05, 0.0, -0.05]))
    q = good.q + rng.normal(0.0, 0.1, good.q.shape)
    kin = gs.hand_spheres("shadow_right").kin
    polished = gs.polish_grasp("shadow_right", obj, moved, q, table_z=table_z, mode="wrap")
    assert polished.part == -1 and polished.mode == "wrap"
    assert polished.passed_filters, polished.reason
    assert _tips_within(polished) >= 3
    # the batched form keeps the order and gives the same result
    batch = gs.polish_grasps("shadow_right", obj, [moved, good.wrist_pose],
                             [kin.clip(q), good.q], table_z=table_z, mode=["wrap", "wrap"])
    np.testing.assert_allclose(batch[0].q, polished.q, atol=1e-9)
    assert batch[1].energies["total"] <= good.energies["total"] + 1e-12
    assert gs.polish_grasps("shadow_right", obj, [], [], table_z=table_z, mode="wrap") == []


def test_pregrasp_is_clear_of_the_object() -> None:
    obj = _object("005_tomato_soup_can")
    hand = gs.hand_spheres("allegro_right")
    fingers = hand.sphere_keypoints[hand.sphere_finger >= 0]
    radii = hand.radii[hand.sphere_finger >= 0]
    grasps = _synth("allegro_right", "005_tomato_soup_can", num=6)
    assert grasps
    for g in grasps:
        gap_grasp = obj.signed_distance(hand.kin.keypoints(g.wrist_pose, g.q, fingers)) - radii
        gap_pre = obj.signed_distance(
            hand.kin.keypoints(g.wrist_pose, g.q_pregrasp, fingers)) - radii
        assert gap_pre.min() > gap_grasp.min()
        assert np.all(hand.kin.within_limits(g.q_pregrasp))


def test_bad_inputs_are_value_errors() -> None:
    obj = _object("061_foam_brick")
    table_z = gs.object_table_z(obj)
    kin = gs.hand_spheres("panda_gripper").kin
    with pytest.raises(gs.GraspInputError, match="unknown hand 'shadow_rigth'"):
        gs.synthesize_grasps("shadow_rigth", obj, table_z=table_z, num=2, seed=0)
    tiny = ObjectModel(obj.points[:10], obj.normals[:10])
    with pytest.raises(gs.GraspInputError, match="surface points"):
        gs.synthesize_grasps("panda_gripper", tiny, table_z=table_z, num=2, seed=0)
    with pytest.raises(gs.GraspInputError, match="ObjectModel"):
        gs.synthesize_grasps("panda_gripper", None, table_z=table_z, num=2,  # type: ignore[arg-type]
                             seed=0)
    with pytest.raises(gs.GraspInputError, match="modes"):
        gs.synthesize_grasps("panda_gripper", obj, table_z=table_z, num=2, seed=0,
                             modes=("grab",))
    with pytest.raises(gs.GraspInputError, match="num"):
        gs.synthesize_grasps("panda_gripper", obj, table_z=table_z, num=0, seed=0)
    with pytest.raises(gs.GraspInputError, match="table_z"):
        gs.synthesize_grasps("panda_gripper", obj, table_z=float("nan"), num=2, seed=0)
    pose = make_pose(None, [0.0, 0.0, 0.1])
    bad = pose.copy()
    bad[0, 3] = np.nan
    with pytest.raises(gs.GraspInputError, match="finite"):
        gs.polish_grasp("panda_gripper", obj, bad, kin.open_pose, table_z=table_z,
                        mode="pinch")
    with pytest.raises(gs.GraspInputError, match="1 values per grasp"):
        gs.polish_grasp("panda_gripper", obj, pose, [0.01, 0.02], table_z=table_z,
                        mode="pinch")
    with pytest.raises(gs.GraspInputError, match="rigid"):
        gs.polish_grasp("panda_gripper", obj, 2 * pose, kin.open_pose, table_z=table_z,
                        mode="pinch")
    with pytest.raises(gs.GraspInputError, match="finite"):
        gs.GraspParams(w_contact=float("inf"))
    assert issubclass(gs.GraspInputError, ValueError)


def test_every_hand_grasps_the_brick_or_the_can() -> None:
    for hand_id in hand_ids():
        grasps = _synth(hand_id, "061_foam_brick", num=6)
        if not grasps:
            grasps = _synth(hand_id, "005_tomato_soup_can", num=6)
        assert grasps, f"{hand_id}: no grasp passed the filters"
        for g in grasps:
            assert g.hand_id == hand_id and g.penetration < 3e-3


def test_opposition_prefers_an_antipodal_pinch_to_pads_on_one_face() -> None:
    """A gripper with its pads on opposite faces of the brick is antipodal; the same gripper
    closed and raised until both pads rest on the top face touches just as well but would
    only press the brick onto the table: the opposition term and filter tell them apart."""
    obj = _object("061_foam_brick")
    table_z = gs.object_table_z(obj)
    good = _synth("panda_gripper", "061_foam_brick", num=12, modes=("pinch",))[0]
    hand = gs.hand_spheres("panda_gripper")
    tips = hand.kin.keypoints(good.wrist_pose, hand.kin.lower, hand.sphere_keypoints)
    top = float(obj.points[:, 2].max())
    lift = top + hand.radii[hand.tip_spheres].max() - tips[hand.tip_spheres, 2].min()
    on_top = good.wrist_pose.copy()
    on_top[2, 3] += lift
    frozen = gs.GraspParams(max_iterations=0)
    pair = gs.polish_grasps("panda_gripper", obj, np.stack([good.wrist_pose, on_top]),
                            np.stack([good.q, hand.kin.lower]), table_z=table_z,
                            mode="pinch", params=frozen)
    assert np.all(np.abs(pair[1].tip_distances) < 3e-3)  # both pads touch the top face
    assert pair[0].energies["opposition"] < 0.1 * pair[1].energies["opposition"]
    assert pair[0].passed_filters, pair[0].reason
    assert not pair[1].passed_filters and "oppose" in pair[1].reason
    off = gs.GraspParams(w_opposition=0.0, max_iterations=0)
    plain = gs.polish_grasps("panda_gripper", obj, on_top[None], hand.kin.lower[None],
                             table_z=table_z, mode="pinch", params=off)[0]
    assert plain.energies["opposition"] == 0.0
