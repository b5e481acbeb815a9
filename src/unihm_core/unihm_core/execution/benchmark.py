"""`unihm bench execution`: retime + validate of a 120-point 7-DoF arm path.

The baseline, measured in the same run, is the naive check a driver might do on its own: finite
differences of the positions against the velocity and acceleration limits (no interpolation,
no names, no ends, no current state). The ratio says what the full gate costs on top of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from unihm_core.execution.timing import DEFAULT_SCALE, plan_execution, retime
from unihm_core.execution.validation import Limits, validate_joint_trajectory

READY = np.array([0.0, -0.7853981634, 0.0, -2.3561944902, 0.0, 1.5707963268, 0.7853981634])


def _median_ms(func: Callable[[], object], repeats: int) -> float:
    func()  # warm-up (caches, first-call imports)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(samples))


def naive_difference_check(times: np.ndarray, positions: np.ndarray, limits: Limits) -> bool:
    """The baseline: divided differences of the positions within the limits."""
    dt = np.diff(times)[:, None]
    vel = np.diff(positions, axis=0) / dt
    acc = np.diff(vel, axis=0) / (0.5 * (dt[:-1] + dt[1:]))
    return bool(np.all(np.abs(vel) <= limits.velocity)
                and np.all(np.abs(acc) <= limits.acceleration))


def run(quick: bool = False) -> dict[str, Any]:
    repeats = 20 if quick else 200
    limits = Limits.from_arm("franka_panda")
    run_limits = limits.scaled(DEFAULT_SCALE)
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 4.0, 120)
    freq = rng.uniform(0.1, 0.5, (3, 7))
    phase = rng.uniform(0.0, 2 * np.pi, (3, 7))
    q = READY + np.sum(0.25 * np.sin(2 * np.pi * freq[:, None] * t[None, :, None]
                                     + phase[:, None]), axis=0)
    timed = retime(q, limits, t)

    def validate() -> list[Any]:
        return validate_joint_trajectory(timed.names, timed.times, timed.positions,
                                         timed.velocities, timed.accelerations, run_limits,
                                         timed.positions[0])

    def retime_and_validate() -> list[Any]:
        out = retime(q, limits, t)
        return out.validate(run_limits, out.positions[0])

    retime_ms = _median_ms(lambda: retime(q, limits, t), repeats)
    validate_ms = _median_ms(validate, repeats)
    both_ms = _median_ms(retime_and_validate, repeats)
    plan_ms = _median_ms(lambda: plan_execution(READY + 0.2, q, limits, t), repeats)
    baseline_ms = _median_ms(lambda: naive_difference_check(timed.times, timed.positions,
                                                            run_limits), repeats)
    return {
        "points": int(q.shape[0]), "dof": int(q.shape[1]), "scale": DEFAULT_SCALE,
        "repeats": repeats, "nominal_duration_s": 4.0,
        "retimed_duration_s": round(timed.duration, 3), "slowdown": round(timed.slowdown, 3),
        "violations": len(validate()),
        "retime_ms": round(retime_ms, 3), "validate_ms": round(validate_ms, 3),
        "retime_and_validate_ms": round(both_ms, 3),
        "plan_execution_with_approach_ms": round(plan_ms, 3),
        "baseline_naive_difference_check_ms": round(baseline_ms, 4),
        "validate_vs_baseline": round(validate_ms / baseline_ms, 1),
        "retime_and_validate_vs_baseline": round(both_ms / baseline_ms, 1),
    }
