"""Timing of the physical lift check (:mod:`unihm_core.dataset.physics`), one grasp per hand.

The dataset runs the check on every synthetic grasp, so its cost per hand decides how many
grasps a minute can be validated. Each hand gets a reference grasp (below) on the sugar box; the
figures are the wall time of one check, stopping at the first failure (``ms_per_check``, what
the dataset pays) and running every phase (``ms_full_check``; where the reference grasp holds,
this is the most a check costs, and where it fails the object has left the hand, so it is less
than a holding grasp would cost). The baseline, measured in
the same run, is MuJoCo stepping the same scene through the same motion (squeeze, lift, hold)
with nothing checked in between: ``ratio_to_baseline`` near 1 says the check's cost is the
physics itself, not its bookkeeping.

The reference grasps also serve the tests: they need grasps known to touch the object without
a grasp synthesizer. The Panda gripper pinches analytically; a multi-fingered hand approaches
from the side with its palm facing the object until it touches it, then closes in simulation
(:meth:`LiftChecker.close_fingers`) towards :func:`closing_pose`, a shape found from the
kinematics alone. The latter is crude (a thumb may miss), so not every hand holds every object.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from unihm_core.dataset.physics import FloatArray, LiftChecker, LiftParams, min_jerk
from unihm_core.hands.kinematics import HandKinematics
from unihm_core.hands.registry import hand_ids

BENCH_OBJECT = "004_sugar_box"
_PANDA_TCP = 0.1034  # panda_hand -> panda_hand_tcp (URDF): the middle of the finger pads


def closing_pose(kin: HandKinematics, threshold: float = 0.3) -> FloatArray:
    """Joints that mostly move the fingertips along the palm normal (the canonical wrist x)
    go to the limit on the palm side; the others (spread, twist) stay open."""
    _, jac = kin.keypoints_and_jacobians(np.eye(4), kin.open_pose, "fingertips")
    cols = jac[:, :, 6:]  # (fingertips, xyz, joints) in the wrist frame
    along_normal = cols[:, 0].sum(axis=0)
    size = np.linalg.norm(cols, axis=1).sum(axis=0)
    q = kin.open_pose.copy()
    closes = (size > 1e-9) & (np.abs(along_normal) > threshold * size)
    q[closes] = np.where(along_normal[closes] > 0, kin.upper[closes], kin.lower[closes])
    return q


def pinch_grasp(checker: LiftChecker, object_pose: FloatArray,
                depth: float = 0.02) -> tuple[FloatArray, FloatArray]:
    """Panda gripper from above an upright object, fingers across its narrower horizontal side
    (in the object's frame, so any yaw works), pads ``depth`` below its top and closed to its
    width: (wrist pose, q)."""
    local = checker.object_points(np.eye(4))
    lo, hi = local.min(axis=0), local.max(axis=0)
    across = 0 if hi[0] - lo[0] <= hi[1] - lo[1] else 1  # the fingers open along this axis
    centre = object_pose[:3, :3] @ ((lo + hi) / 2.0) + object_pose[:3, 3]
    top = float(checker.object_points(object_pose)[:, 2].max())
    height = hi[2] - lo[2]
    y_axis = object_pose[:3, :3] @ np.eye(3)[across]
    z_axis = np.array([0.0, 0.0, -1.0])
    rotation = np.column_stack([np.cross(y_axis, z_axis), y_axis, z_axis])
    tcp = np.array([centre[0], centre[1], top - min(depth, height / 2.0)])
    wrist = np.eye(4)
    wrist[:3, :3] = rotation
    wrist[:3, 3] = tcp - rotation @ np.array([0.0, 0.0, _PANDA_TCP])
    q = np.clip([(hi[across] - lo[across]) / 2.0], checker.kin.lower, checker.kin.upper)
    return wrist, q


def wrap_grasp(checker: LiftChecker, object_pose: FloatArray, height: float = 0.7,
               gap: float = 0.003) -> tuple[FloatArray, FloatArray, FloatArray]:
    """A multi-fingered side grasp: palm towards +x, fingers horizontal, thumb up, the hand's
    keypoint centroid level with ``height`` of the object; moved in until ``gap`` short of
    touching, then closed in simulation. Returns (object pose, wrist pose, q) after closing."""
    kin = checker.kin
    points = checker.object_points(object_pose)
    lo, hi = points.min(axis=0), points.max(axis=0)
    target = (lo + hi) / 2.0
    target[2] = lo[2] + height * (hi[2] - lo[2])
    normal = np.array([1.0, 0.0, 0.0])
    thumb_up = np.array([0.0, 0.0, 1.0 if kin.config.side != "left" else -1.0])
    rotation = np.column_stack([normal, thumb_up, np.cross(normal, thumb_up)])
    centroid = kin.keypoints_local(kin.open_pose).mean(axis=0)

    def wrist_at(standoff: float) -> FloatArray:
        wrist = np.eye(4)
        wrist[:3, :3] = rotation
        wrist[:3, 3] = target - standoff * normal - rotation @ centroid
        return wrist

    touching, free = -0.1, 0.3  # standoffs (m) known to collide / to be clear
    for _ in range(20):
        mid = (touching + free) / 2.0
        if checker.penetration_mm(object_pose, wrist_at(mid), kin.open_pose) > 0:
            touching = mid
        else:
            free = mid
    wrist = wrist_at(free + gap)
    pose, q = checker.close_fingers(object_pose, wrist, closing_pose(kin))
    return pose, wrist, q


def reference_grasp(checker: LiftChecker, object_pose: FloatArray
                    ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(object pose, wrist pose, q): :func:`pinch_grasp` for a one-joint gripper, else
    :func:`wrap_grasp`."""
    if checker.kin.dof == 1:
        wrist, q = pinch_grasp(checker, object_pose)
        return object_pose, wrist, q
    return wrap_grasp(checker, object_pose)


def _best_ms(func: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` (the least disturbed run on a shared machine), in ms."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best


def measure_hand(hand_id: str, repeats: int, object_id: str = BENCH_OBJECT) -> dict:
    """Build time and per-check times of one hand (see the module docstring)."""
    import mujoco

    start = time.perf_counter()
    checker = LiftChecker(hand_id, object_id)
    build_s = time.perf_counter() - start
    object_pose, wrist, q = reference_grasp(checker, checker.resting_pose())
    result = checker.check(object_pose, wrist, q)
    per_check = _best_ms(lambda: checker.check(object_pose, wrist, q), repeats)
    full = LiftChecker(hand_id, checker.object, replace(checker.params, stop_early=False))
    full_result = full.check(object_pose, wrist, q)
    per_full = _best_ms(lambda: full.check(object_pose, wrist, q), repeats)
    steps = round(full_result.sim_s / full.model.opt.timestep)

    squeeze = full.squeeze_targets(np.asarray(q, dtype=np.float64), checker.kin.open_pose)
    p, chunk = full.params, full.params.control_every
    n_settle, n_lift, n_hold = (round(t / p.timestep / chunk) for t in (p.settle_s, p.lift_s,
                                                                        p.hold_s))

    def bare() -> None:  # the same motion, stepped with nothing checked in between
        m, d = full.model, full.data
        full.set_grasp(object_pose, wrist, q)
        d.ctrl[:checker.kin.dof] = squeeze
        mujoco.mj_step(m, d, n_settle * chunk)
        for i in range(n_lift):
            d.ctrl[checker.kin.dof] = p.lift_height * min_jerk((i + 1) / n_lift)
            mujoco.mj_step(m, d, chunk)
        mujoco.mj_step(m, d, n_hold * chunk)

    per_bare = _best_ms(bare, repeats)
    return {
        "dof": checker.kin.dof, "nv": int(full.model.nv), "geoms": int(full.model.ngeom),
        "build_s": round(build_s, 3), "success": result.success, "reason": result.reason,
        "ms_per_check": round(per_check, 1), "ms_full_check": round(per_full, 1),
        "sim_steps_full": steps, "us_per_step": round(1000.0 * per_full / steps, 1),
        "baseline_ms": round(per_bare, 1), "ratio_to_baseline": round(per_full / per_bare, 2),
    }


def run(quick: bool = False) -> dict:
    """``unihm bench`` entry: per-hand milliseconds per lift check."""
    repeats = 1 if quick else 3
    hands = {}
    for hand_id in hand_ids():
        print(f"[bench] lift check: {hand_id}", file=sys.stderr, flush=True)
        hands[hand_id] = measure_hand(hand_id, repeats)
    full = [h["ms_full_check"] for h in hands.values()]
    return {
        "object": BENCH_OBJECT, "params": {"timestep": LiftParams().timestep},
        "hands": hands,
        "max_ms_full_check": max(full),
        "mean_ms_full_check": round(float(np.mean(full)), 1),
        "full_checks_per_min_one_core": round(60000.0 / float(np.mean(full))),
    }
