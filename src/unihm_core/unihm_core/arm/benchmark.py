"""Speed and accuracy of the trajectory IK on a reachable, smooth, random wrist trajectory.

The trajectory is the FK of a random joint path, so every frame is reachable by construction
and the IK is judged only on what it can do. The joint path moves through random waypoints
inside the limits with C2 "smootherstep" blends, each segment slow enough to peak at half the
published joint velocity limits, sampled at ``rate_hz`` (like a perception stream).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from unihm_core.arm.config import DEFAULT_ARM
from unihm_core.arm.ik import ArmIK
from unihm_core.arm.model import ArmModel, Mount, arm_model
from unihm_core.se3 import FloatArray

# Peak velocity of a smootherstep blend over duration T and distance d is 1.875 d / T.
_SMOOTHERSTEP_PEAK = 1.875


def smooth_joint_path(arm: ArmModel, n_frames: int, rng: np.random.Generator, *,
                      rate_hz: float = 30.0, speed_fraction: float = 0.5,
                      margin: float = 0.1) -> FloatArray:
    """A C2 joint path (n_frames, dof) through random waypoints, within limits and speeds."""
    dt = 1.0 / rate_hz
    points = [arm.ready_posture]
    times = [0.0]
    while times[-1] < n_frames * dt:
        nxt = arm.random_configurations(1, rng, margin)[0]
        need = _SMOOTHERSTEP_PEAK * np.abs(nxt - points[-1]) / (
            speed_fraction * arm.config.velocity_limit)
        times.append(times[-1] + max(float(need.max()), dt))
        points.append(nxt)
    t = np.arange(n_frames) * dt
    seg = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    t0, t1 = np.asarray(times)[seg], np.asarray(times)[seg + 1]
    s = (t - t0) / (t1 - t0)
    blend = s**3 * (10.0 - 15.0 * s + 6.0 * s**2)
    way = np.asarray(points)
    return way[seg] + blend[:, None] * (way[seg + 1] - way[seg])


def measure_ik(n_frames: int = 3000, seed: int = 0, *, hand: Mount = "xhand_right",
               arm: ArmModel | str = DEFAULT_ARM, rate_hz: float = 30.0,
               repeats: int = 3) -> dict[str, Any]:
    """Time the warm-started trajectory IK and report its accuracy (best of ``repeats``).

    Also checks that targets moved 2 m out of the workspace come back flagged not reached.
    """
    model = arm_model(arm) if isinstance(arm, str) else arm
    rng = np.random.default_rng(seed)
    q_path = smooth_joint_path(model, n_frames, rng, rate_hz=rate_hz)
    targets = model.wrist_pose(q_path, hand=hand)
    solver = ArmIK(model, hand=hand, seed=seed)
    best = np.inf
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = solver.solve_trajectory(targets, q0=q_path[0])
        best = min(best, time.perf_counter() - start)
    ok = result.reached
    far = targets[:: max(n_frames // 5, 1)][:5].copy()
    far[:, :3, 3] += np.array([2.0, 0.0, 0.0])
    far_result = solver.solve_trajectory(far)
    return {
        "n_frames": n_frames,
        "rate_hz": rate_hz,
        "hand": hand if isinstance(hand, str) or hand is None else hand.id,
        "seconds": best,
        "frames_per_s": n_frames / best,
        "reached_fraction": result.reached_fraction,
        "max_position_error_mm": float(result.position_error[ok].max() * 1e3),
        "mean_position_error_mm": float(result.position_error[ok].mean() * 1e3),
        "max_rotation_error_rad": float(result.rotation_error[ok].max()),
        "mean_iterations": float(result.iterations.mean()),
        "max_joint_step_rad": float(result.joint_steps.max()),
        "jump_frames_over_0.5rad": int(result.jump_frames(0.5).size),
        "within_limits": bool(model.within_limits(result.q).all()),
        "unreachable_frames": len(far),
        "unreachable_reported": bool(not far_result.reached.any()),
        "unreachable_min_position_error_m": float(far_result.position_error.min()),
    }


def main() -> None:
    """Print the numbers of :func:`measure_ik` (``python -m unihm_core.arm.benchmark``)."""
    for key, value in measure_ik().items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
