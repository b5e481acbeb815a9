"""``unihm bench refiner``: the refiner against a generic least-squares solver on one grasp.

The baseline minimizes the very same per-frame energy with ``scipy.optimize.least_squares``
(finite-difference Jacobian), frame by frame, with the priors taken from its own previous
solutions and the same points selected per frame. Method "trf": it is the scipy method that
honours bounds, so its solutions stay within the joint limits the refiner projects onto ("lm"
would have to leave them unconstrained, a different problem). Its ``ftol`` is the refiner's
``solver.tolerance``: both stop when an iteration lowers the energy by less than that fraction.

The refiner runs its compiled loop (``solver.compiled``, the default); the numpy loop it
replaces, the reference, runs in the same process on the same input, and the report gives both
rates and the largest difference between their trajectories. The first refinement in a process
compiles the loop or loads it from numba's cache (``refiner_first_call_s``); the rate is the
best of the timed runs after it. Everything runs on one thread (BLAS limited to one through
threadpoolctl when it is installed; the compiled loop is single-threaded).

The residual vector has a fixed length, which ``least_squares`` needs: every selected point
gives a residual, zero when it is outside the object and not pulled (where the kernel is 0), so
``0.5 |res|^2`` equals the refiner's total energy. It is assembled from the solver's private
pieces; ``energy_mismatch`` in the report checks it against the solver's own evaluation at every
baseline solution, so a change of the solver's energy cannot silently skew the comparison.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import numpy as np
import pinocchio as pin
from numpy.typing import NDArray
from scipy.optimize import least_squares

from unihm_core.hands.kinematics import WRIST_DOF
from unihm_refiner.config import load_refiner_config
from unihm_refiner.metrics import trajectory_metrics
from unihm_refiner.scenario import Scenario, grasp_scenario
from unihm_refiner.solver import FrameProblem, Refiner, Surface, _log6

FloatArray = NDArray[np.float64]
HAND, OBJECT = "xhand_right", "006_mustard_bottle"


def scipy_refine(refiner: Refiner, wrist_poses: FloatArray, q_gen: FloatArray,
                 surface: Surface, target_poses: FloatArray) -> dict[str, Any]:
    """The baseline over a whole trajectory: poses, joints, per-frame final energies, time."""
    kin, cfg = refiner.kin, refiner.config
    clock = time.perf_counter()
    plan = refiner.plan(wrist_poses, q_gen, surface, target_poses)
    frames = len(q_gen)
    gen_inv = plan.gen_inv
    free = refiner.free
    lower = np.concatenate([np.full(WRIST_DOF, -np.inf), kin.lower])
    upper = np.concatenate([np.full(WRIST_DOF, np.inf), kin.upper])
    if not cfg.solver.joint_limits:
        lower[:], upper[:] = -np.inf, np.inf
    out_pose, out_q = wrist_poses.copy(), q_gen.copy()
    energy, mismatch = np.zeros(frames), np.zeros(frames)
    evaluations, jacobians = np.zeros(frames, dtype=np.int64), np.zeros(frames, dtype=np.int64)
    previous = (wrist_poses[0], wrist_poses[0], q_gen[0], q_gen[0])
    warm = cfg.solver.warm_start
    for t in range(frames):
        frame = refiner.frame_problem(plan, t, previous)

        def unpack(x: FloatArray, frame: FrameProblem = frame) -> tuple[FloatArray, FloatArray]:
            full = np.zeros(WRIST_DOF + kin.dof)
            full[free] = x
            pose = frame.pose_gen @ pin.exp6(pin.Motion(full[:WRIST_DOF])).homogeneous
            return pose, frame.q_gen + full[WRIST_DOF:]

        def fun(x: FloatArray, frame: FrameProblem = frame) -> FloatArray:
            return refiner.residual_vector(frame, surface, *unpack(x))

        # x is the offset from the generated pose; generated joints outside the limits are
        # first clipped (the refiner's first step does the same)
        x_lo = lower[free] - np.concatenate([np.zeros(WRIST_DOF), q_gen[t]])[free]
        x_hi = upper[free] - np.concatenate([np.zeros(WRIST_DOF), q_gen[t]])[free]
        x0 = np.clip(np.zeros(len(free)), x_lo, x_hi)
        if warm and t > 0:  # the solver's warm start: the previous frame's correction
            x_warm = np.concatenate([_log6(gen_inv[t - 1], out_pose[t - 1]),
                                     out_q[t - 1] - q_gen[t - 1]])[free]
            x_warm = np.clip(x_warm, x_lo, x_hi)
            if 0.5 * np.sum(fun(x_warm) ** 2) < 0.5 * np.sum(fun(x0) ** 2):
                x0 = x_warm
        sol = least_squares(fun, x0, jac="2-point", method="trf", bounds=(x_lo, x_hi),
                            ftol=cfg.solver.tolerance)
        pose, q = unpack(sol.x)
        energy[t] = refiner.energy(frame, surface, pose, q)["total"]
        mismatch[t] = abs(sol.cost - energy[t]) / max(energy[t], 1e-12)
        evaluations[t], jacobians[t] = sol.nfev, sol.njev
        out_pose[t], out_q[t] = pose, q
        previous = (previous[1], pose, previous[3], q)
    seconds = time.perf_counter() - clock
    return {"wrist_poses": out_pose, "q": out_q, "energy": energy, "nfev": evaluations,
            "njev": jacobians,
            "energy_mismatch": float(mismatch.max()), "seconds": seconds, "fps": frames / seconds}


def _summary(s: Scenario, wrist: FloatArray, q: FloatArray) -> dict[str, float]:
    m = trajectory_metrics(s.hand_id, wrist, q, s.surface, s.target_poses,
                           reference_joints=s.q, reference_wrist_poses=s.wrist_poses, fps=s.fps)
    return {"penetration_mean_mm": m["penetration_mean_mm"],
            "penetration_max_mm": m["penetration_max_mm"],
            "contact_ratio": m["contact_ratio"],
            "jitter_mean_rad_s2": m["jitter_mean"],
            "joint_dev_mean_rad": m["joint_dev_mean_rad"],
            "joint_dev_max_rad": m["joint_dev_max_rad"],
            "wrist_trans_dev_mean_mm": m["wrist_trans_dev_mean_mm"],
            "joint_err_vs_clean_mean_rad": float(np.abs(q - s.clean_q).mean())}


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _one_thread() -> contextlib.AbstractContextManager[Any]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its own setting
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _best(refiner: Refiner, s: Scenario, repeats: int, name: str):
    best = None
    for i in range(repeats):
        _log(f"{name} run {i + 1}/{repeats}")
        result = refiner.refine(s.wrist_poses, s.q, s.surface, s.target_poses)
        if best is None or result.seconds < best.seconds:
            best = result
    assert best is not None
    return best


def run_refiner_benchmark(quick: bool = False) -> dict:
    """Refiner frames/s (best of 5 after a first, compiling call; quick: 1 run on 40 frames),
    the numpy reference loop, the scipy baseline on the same energy, and the plausibility
    metrics before/after (see the module doc)."""
    with _one_thread():
        return _run(quick)


def _run(quick: bool) -> dict:
    frames, repeats = (40, 1) if quick else (120, 5)
    _log(f"scenario: {HAND} grasping {OBJECT}, {frames} frames, 2048 surface points")
    s = grasp_scenario(HAND, OBJECT, frames=frames, n_points=2048)
    refiner = Refiner(HAND)
    clock = time.perf_counter()
    first = refiner.refine(s.wrist_poses, s.q, s.surface, s.target_poses)
    first_call = time.perf_counter() - clock
    best = _best(refiner, s, repeats, f"refiner ({first.path} loop)")
    reference = _best(Refiner(HAND, load_refiner_config(overrides={"solver": {"compiled": False}})),
                      s, 1 if quick else 3, "reference (numpy loop)")
    _log("scipy least_squares (trf, 2-point Jacobian) on the same energy")
    base = scipy_refine(refiner, s.wrist_poses, s.q, s.surface, s.target_poses)
    before = _summary(s, s.wrist_poses, s.q)
    after = _summary(s, best.wrist_poses, best.q)
    after_scipy = _summary(s, base["wrist_poses"], base["q"])
    energy_refiner = float(best.energy_after["total"].sum())
    energy_scipy = float(base["energy"].sum())
    jitter_cut = 100.0 * (1.0 - after["jitter_mean_rad_s2"] / before["jitter_mean_rad_s2"])
    return {
        "hand": HAND, "object": OBJECT, "frames": frames, "surface_points": 2048,
        "refiner_loop": best.path,
        "refiner_fps": round(best.frames_per_second, 1),
        "refiner_ms": round(1e3 * best.seconds, 2),
        "refiner_first_call_s": round(first_call, 3),
        "refiner_iterations_mean": round(float(best.iterations.mean()), 2),
        "reference_fps": round(reference.frames_per_second, 1),
        "reference_max_dq_rad": float(f"{np.abs(best.q - reference.q).max():.2g}"),
        "reference_max_dpose": float(
            f"{np.abs(best.wrist_poses - reference.wrist_poses).max():.2g}"),
        "scipy_fps": round(base["fps"], 1),
        "scipy_evaluations_mean": round(float(base["nfev"].mean()), 1),
        "scipy_jacobians_mean": round(float(base["njev"].mean()), 1),
        "scipy_method": "trf, jac=2-point, ftol=solver.tolerance, joint-limit bounds",
        "speedup": round(best.frames_per_second / base["fps"], 1),
        "speedup_reference": round(reference.frames_per_second / base["fps"], 1),
        "energy_before": round(float(best.energy_before["total"].sum()), 2),
        "energy_refiner": round(energy_refiner, 3),
        "energy_scipy": round(energy_scipy, 3),
        "energy_ratio": round(energy_refiner / energy_scipy, 3),
        "energy_mismatch": float(f"{base['energy_mismatch']:.2g}"),
        "jitter_reduction_pct": round(jitter_cut, 1),
        "before": _rounded(before), "after": _rounded(after), "after_scipy": _rounded(after_scipy),
    }


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}
