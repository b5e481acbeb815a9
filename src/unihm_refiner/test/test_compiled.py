"""The compiled frame loop against the numpy reference loop: same neighbours, same SE(3) maps,
same refined trajectories, energies and step counts."""

from __future__ import annotations

import numpy as np
import pinocchio as pin
import pytest

from unihm_refiner import compiled
from unihm_refiner.config import load_refiner_config
from unihm_refiner.scenario import grasp_scenario
from unihm_refiner.solver import TERMS, Refiner

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="numba is not installed")


@pytest.fixture(scope="module")
def scenario():
    return grasp_scenario(frames=60, seed=3)


def _pair(overrides: dict | None = None) -> tuple[Refiner, Refiner]:
    fast = load_refiner_config(overrides=overrides)
    slow = load_refiner_config(overrides={**(overrides or {}),
                                          "solver": {**(overrides or {}).get("solver", {}),
                                                     "compiled": False}})
    return Refiner("xhand_right", fast), Refiner("xhand_right", slow)


@pytest.mark.parametrize("overrides", [
    None,
    {"solver": {"warm_start": True}},
    {"solver": {"fingers_only": True}},
    {"contact": {"neighbours": 1, "attract_within": None}},
    {"solver": {"joint_limits": False}, "contact": {"penetration_points": "fingertips"}},
])
def test_compiled_loop_matches_the_numpy_loop(scenario, overrides) -> None:
    fast, slow = _pair(overrides)
    s = scenario
    a = fast.refine(s.wrist_poses, s.q, s.surface, s.target_poses)
    b = slow.refine(s.wrist_poses, s.q, s.surface, s.target_poses)
    assert (a.path, b.path) == ("compiled", "numpy")
    np.testing.assert_array_equal(a.iterations, b.iterations)
    np.testing.assert_array_equal(a.accepted, b.accepted)
    np.testing.assert_allclose(a.q, b.q, rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.wrist_poses, b.wrist_poses, rtol=0, atol=1e-9)
    for term in TERMS:
        for got, want in ((a.energy_before[term], b.energy_before[term]),
                          (a.energy_after[term], b.energy_after[term])):
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


def test_compiled_energies_agree_with_the_reference_evaluation(scenario) -> None:
    """The compiled loop's final energies are those the reference evaluation gives its poses."""
    fast, slow = _pair()
    s = scenario
    a = fast.refine(s.wrist_poses, s.q, s.surface, s.target_poses)
    plan = slow.plan(s.wrist_poses, s.q, s.surface, s.target_poses)
    previous = (s.wrist_poses[0], s.wrist_poses[0], s.q[0], s.q[0])
    for t in range(len(s.q)):
        frame = slow.frame_problem(plan, t, previous)
        e = slow.energy(frame, s.surface, a.wrist_poses[t], a.q[t])
        assert e["total"] == pytest.approx(a.energy_after["total"][t], rel=1e-9, abs=1e-12)
        previous = (previous[1], a.wrist_poses[t], previous[3], a.q[t])


def test_tree_neighbours_match_scipy(scenario) -> None:
    surface = scenario.surface
    rng = np.random.default_rng(0)
    centre = surface.points.mean(axis=0)
    x = np.concatenate([surface.points[:200] + rng.normal(0, 0.003, (200, 3)),
                        centre + rng.normal(0, 0.1, (300, 3)),
                        centre + np.array([2.0, -1.0, 0.5])[None]])  # near, around, far away
    tree = compiled.build_tree(surface.points)
    for k in (1, 4, 7):
        near, normals, dist2 = compiled.knn_batch(x, surface.points, surface.normals, tree, k)
        ref_near, ref_normals, ref_dist2 = surface.neighbours_unchecked(x, k)
        np.testing.assert_allclose(dist2, ref_dist2.reshape(dist2.shape), rtol=1e-12,
                                   atol=1e-18)
        np.testing.assert_array_equal(near, ref_near.reshape(near.shape))
        np.testing.assert_array_equal(normals, ref_normals.reshape(normals.shape))


def test_tree_of_tiny_clouds() -> None:
    cloud = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    tree = compiled.build_tree(cloud)
    _, _, dist2 = compiled.knn_batch(np.array([[0.9, 0.1, 0.0]]), cloud, cloud, tree, 3)
    np.testing.assert_allclose(dist2[0], [0.02, 0.82, 0.81 + 3.61])


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, 5e-3, 0.3, 2.0, np.pi - 1e-3, np.pi - 1e-8])
def test_se3_exp_and_log_match_pinocchio(angle: float) -> None:
    rng = np.random.default_rng(int(angle * 1e6) % 1000)
    axis = rng.normal(size=3)
    xi = np.concatenate([rng.normal(0, 0.05, 3), angle * axis / np.linalg.norm(axis)])
    out = np.empty((4, 4))
    compiled._exp6(xi, out)
    np.testing.assert_allclose(out, pin.exp6(pin.Motion(xi)).homogeneous, atol=1e-12)
    a = pin.SE3.Random().homogeneous
    b = a @ out
    log = np.empty(6)
    compiled._log6(np.linalg.inv(a), b, log, 0, np.empty((3, 4)))
    np.testing.assert_allclose(log, pin.log6(pin.SE3(np.linalg.inv(a) @ b)).vector, atol=1e-7)
    np.testing.assert_allclose(log, xi, atol=1e-7)


def test_numpy_loop_when_switched_off(scenario) -> None:
    refiner = Refiner("xhand_right", load_refiner_config(overrides={"solver":
                                                                    {"compiled": False}}))
    assert not refiner.uses_compiled(scenario.surface)
    assert Refiner("xhand_right").uses_compiled(scenario.surface)
