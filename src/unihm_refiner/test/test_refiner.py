"""The refiner: kernel (eq. B17), Jacobians, LM monotonicity, and what it does to trajectories."""

from __future__ import annotations

import numpy as np
import pytest

from unihm_core.object_model import ObjectModel
from unihm_core.se3 import exp_local
from unihm_refiner.config import RefinerConfigError, load_refiner_config
from unihm_refiner.energies import kernel, kernel_and_slope, kernel_slope, residuals
from unihm_refiner.metrics import jitter, penetration_depth_mm, trajectory_metrics
from unihm_refiner.scenario import grasp_scenario
from unihm_refiner.solver import FrameProblem, Refiner, refine_many


@pytest.fixture(scope="module")
def scenario():
    return grasp_scenario(frames=120, seed=1)


@pytest.fixture(scope="module")
def refined(scenario):
    refiner = Refiner(scenario.hand_id)
    return refiner, refiner.refine(scenario.wrist_poses, scenario.q, scenario.surface,
                                   scenario.target_poses)


@pytest.mark.parametrize(("alpha", "k"), [(1.0, 1.0), (1.0, 300.0), (2.5, 50.0)])
def test_kernel_is_continuous_with_matched_slope_at_zero(alpha: float, k: float) -> None:
    h = 1e-7
    left, right = kernel([-h, h], alpha, k)
    assert kernel(0.0, alpha, k) == 0.0
    assert abs(left) < 1e-12 and abs(right) < 1e-12
    slope_left, slope_right = kernel_slope([-h, h], alpha, k)
    assert abs(slope_left) < 1e-5 * alpha and abs(slope_right) < 1e-5 * alpha
    # second derivative alpha on both sides (eq. B17 and the text after it)
    curv = (kernel_slope([h, -h], alpha, k) - kernel_slope(0.0, alpha, k)) / np.array([h, -h])
    np.testing.assert_allclose(curv, alpha, rtol=1e-3)


def test_kernel_is_asymmetric_and_its_slope_is_its_derivative() -> None:
    d = np.linspace(-0.02, 0.02, 41)
    f, slope = kernel_and_slope(d, 1.0, 300.0)
    assert (f[d < -0.004] > f[::-1][d < -0.004]).all()  # inside costs more than outside
    numeric = np.gradient(f, d)
    away = np.abs(d) > 0.0015  # central differences straddling 0 see both branches
    np.testing.assert_allclose(slope[away][1:-1], numeric[away][1:-1], rtol=0.05, atol=1e-6)
    f_pen, slope_pen = kernel_and_slope(d, 1.0, 300.0, pull=False)
    assert (f_pen[d >= 0] == 0).all() and (slope_pen[d >= 0] == 0).all()


def test_residuals_square_to_the_contact_energy() -> None:
    f, slope = kernel_and_slope(np.array([-0.01, 0.0, 0.004]), 1.0, 300.0)
    r, _ = residuals(f, slope, 4e4, 1e-4)
    np.testing.assert_allclose(0.5 * r * r, 4e4 * f)


def _frame_at(refiner: Refiner, scenario, t: int) -> FrameProblem:
    plan = refiner.plan(scenario.wrist_poses, scenario.q, scenario.surface,
                        scenario.target_poses)
    previous = (scenario.wrist_poses[t - 2], scenario.wrist_poses[t - 1], scenario.q[t - 2],
                scenario.q[t - 1])
    return refiner.frame_problem(plan, t, previous)


def test_residual_vector_squares_to_the_frame_energy(scenario) -> None:
    refiner = Refiner(scenario.hand_id)
    problem = _frame_at(refiner, scenario, 90)
    pose, q = scenario.wrist_poses[90], scenario.q[90] + 0.01
    r = refiner.residual_vector(problem, scenario.surface, pose, q)
    energy = refiner.energy(problem, scenario.surface, pose, q)
    assert abs(0.5 * r @ r - energy["total"]) < 1e-9 * max(energy["total"], 1.0)
    assert energy["total"] == pytest.approx(sum(energy[t] for t in ("contact", "gen", "vel",
                                                                     "acc")))


def test_contact_jacobian_matches_finite_differences(scenario) -> None:
    # one neighbour: the paper's point-to-plane distance, whose frozen-correspondence Jacobian
    # is exact (with k > 1 the Gaussian weights are frozen too, by design)
    refiner = Refiner(scenario.hand_id, load_refiner_config(overrides={
        "contact": {"neighbours": 1}}))
    frame = _frame_at(refiner, scenario, 90)  # fingers closed on the lifted object
    pose, q = scenario.wrist_poses[90], scenario.q[90]
    _, r, jac = refiner._contact(scenario.surface, pose, q, frame)
    assert len(r) >= 3, "the scenario should put several points in contact"
    eps = 1e-7
    numeric = np.empty_like(jac)
    for c in range(jac.shape[1]):
        step = np.zeros(jac.shape[1])
        step[c] = eps
        _, r_plus, _ = refiner._contact(scenario.surface, exp_local(pose, step[:6]),
                                        q + step[6:], frame)
        _, r_minus, _ = refiner._contact(scenario.surface, exp_local(pose, -step[:6]),
                                         q - step[6:], frame)
        numeric[:, c] = (r_plus - r_minus) / (2 * eps)
    scale = np.abs(jac).max()
    assert np.abs(numeric - jac).max() < 1e-4 * scale


def test_accepted_steps_never_raise_the_energy(scenario, refined) -> None:
    _, result = refined
    assert (result.energy_after["total"] <= result.energy_before["total"] + 1e-12).all()
    assert (result.accepted <= result.iterations).all()
    assert result.accepted.sum() > 0


def test_penetration_is_removed_and_limits_hold(scenario, refined) -> None:
    refiner, result = refined
    before = penetration_depth_mm(refiner.kin, scenario.wrist_poses, scenario.q,
                                  scenario.surface, scenario.target_poses)
    after = penetration_depth_mm(refiner.kin, result.wrist_poses, result.q, scenario.surface,
                                 scenario.target_poses)
    assert before.mean() > 5.0, "the scenario must start penetrating"
    assert after.mean() <= 1.5
    assert refiner.kin.within_limits(result.q).all()


def test_jittery_input_comes_out_smoother(scenario, refined) -> None:
    _, result = refined
    assert jitter(result.q).mean() < 0.6 * jitter(scenario.q).mean()


def test_noisy_cloud_converges_near_the_clean_answer(scenario, refined) -> None:
    refiner, clean = refined
    noisy = scenario.surface.with_noise(0.001, seed=3, reestimate_normals=True)
    result = refiner.refine(scenario.wrist_poses, scenario.q, noisy, scenario.target_poses)
    tips_clean = refiner.kin.keypoints(clean.wrist_poses, clean.q, "fingertips")
    tips_noisy = refiner.kin.keypoints(result.wrist_poses, result.q, "fingertips")
    assert np.linalg.norm(tips_noisy - tips_clean, axis=-1).mean() < 0.005  # measured ~3 mm
    after = penetration_depth_mm(refiner.kin, result.wrist_poses, result.q, scenario.surface,
                                 scenario.target_poses)  # against the true (noise-free) mesh
    assert after.mean() <= 1.5


def test_fingers_only_keeps_the_wrist(scenario) -> None:
    config = load_refiner_config(overrides={"solver": {"fingers_only": True}})
    result = Refiner(scenario.hand_id, config).refine(
        scenario.wrist_poses, scenario.q, scenario.surface, scenario.target_poses)
    np.testing.assert_array_equal(result.wrist_poses, scenario.wrist_poses)
    assert np.abs(result.q - scenario.q).max() > 1e-3


def test_several_hands_in_one_call() -> None:
    xhand = grasp_scenario("xhand_right", frames=20, seed=2)
    allegro = grasp_scenario("allegro_right", frames=20, seed=2)
    results = refine_many([
        (s.hand_id, s.wrist_poses, s.q, s.surface, s.target_poses) for s in (xhand, allegro)])
    assert [r.hand_id for r in results] == ["xhand_right", "allegro_right"]
    metrics = trajectory_metrics("allegro_right", results[1].wrist_poses, results[1].q,
                                 allegro.surface, allegro.target_poses)
    assert np.isfinite(list(metrics.values())).all()


def test_bad_inputs_say_what_is_wrong(scenario) -> None:
    refiner = Refiner(scenario.hand_id)
    w, q, s, t = scenario.wrist_poses, scenario.q, scenario.surface, scenario.target_poses
    with pytest.raises(ValueError, match=r"joints must have shape \(T, 12\)"):
        refiner.refine(w, q[:, :5], s, t)
    with pytest.raises(ValueError, match="one per frame"):
        refiner.refine(w, q, s, t[:10])
    with pytest.raises(ValueError, match="to match"):
        refiner.refine(w[:10], q, s, t)
    bad = t.copy()
    bad[7, 0, 3] = np.nan
    with pytest.raises(ValueError, match=r"object target poses are not finite at frame\(s\) \[7\]"):
        refiner.refine(w, q, s, bad)
    with pytest.raises(ValueError, match="no frames"):
        refiner.refine(w[:0], q[:0], s, t[:0])
    with pytest.raises(ValueError, match="empty"):
        ObjectModel.from_arrays(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        ObjectModel.from_arrays(np.full((10, 3), np.nan))


def test_config_errors_name_the_key(tmp_path) -> None:
    with pytest.raises(RefinerConfigError, match=r"'solver.max_iterations'"):
        load_refiner_config(overrides={"solver": {"max_iterations": 0}})
    with pytest.raises(RefinerConfigError, match=r"'contact.kappa'.*unknown key"):
        load_refiner_config(overrides={"contact": {"kappa": 1.0}})
    bad = tmp_path / "refiner.yaml"
    bad.write_text("prior: {gen: {finger: -1}}\n")
    with pytest.raises(RefinerConfigError, match=r"refiner.yaml: 'prior.gen.finger'"):
        load_refiner_config(bad)


def test_partial_cloud_still_keeps_the_hand_out(scenario, refined) -> None:
    """A single camera sees about half the object (paper Fig. B2): the hidden half must not
    let fingers sink in, measured against the true mesh."""
    refiner, _ = refined
    seen = scenario.surface.partial(direction=[-1.0, 0.0, 0.0], fraction=0.5)
    result = refiner.refine(scenario.wrist_poses, scenario.q, seen, scenario.target_poses)
    after = penetration_depth_mm(refiner.kin, result.wrist_poses, result.q, scenario.surface,
                                 scenario.target_poses)
    assert after.mean() <= 1.5


def test_fast_finger_motion_away_from_the_object_hardly_overshoots(scenario) -> None:
    """Fingers closing 1 rad in three frames with the object far away: only the priors act.
    The temporal prior compares with the previously refined frames; with too little velocity
    weight for its acceleration weight it rings (the earlier default, finger vel 0.05 against
    acc 10, overshot by 0.59 rad and swung back). The default weights lag a little and pass
    the end pose by less than a tenth of the move, then settle on it."""
    refiner = Refiner(scenario.hand_id)
    kin = refiner.kin
    frames = 40
    wrist = np.repeat(scenario.wrist_poses[:1], frames, axis=0)
    far = np.repeat(np.eye(4)[None], frames, axis=0)
    far[:, :3, 3] = wrist[0, :3, 3] + np.array([1.0, 1.0, 1.0])   # a metre from the hand
    lo, hi = np.asarray(kin.lower), np.asarray(kin.upper)
    start = lo + 0.1 * (hi - lo)
    end = np.minimum(start + 1.0, lo + 0.9 * (hi - lo))
    s = np.clip((np.arange(frames) - 10) / 3.0, 0.0, 1.0)[:, None]
    q = start + (end - start) * s
    out = refiner.refine(wrist, q, scenario.surface, far)
    move = np.abs(end - start)
    overshoot = ((out.q - end) * np.sign(end - start)).max(axis=0)
    assert (overshoot < 0.1 * move + 1e-9).all(), overshoot
    np.testing.assert_allclose(out.q[-1], end, atol=0.02)
