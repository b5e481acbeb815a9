"""The executive's planning core (ROS-free): low-pass, IK, joint timing, validation.

A flood of corrupted motions must either be refused with a PlanError or come out as a plan that
an independent check against the published limits accepts: no third outcome.
"""

from __future__ import annotations

import numpy as np
import pytest

from unihm_bringup.motion_plan import MotionPlanner, PlanError, pose_from_param, smooth_motion
from unihm_core.execution.validation import Limits, validate_joint_trajectory
from unihm_core.se3 import invert

HAND = "xhand_right"
BASE = [-0.55, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


@pytest.fixture(scope="module")
def planner() -> MotionPlanner:
    return MotionPlanner(planning_from_base=pose_from_param(BASE, "arm_base_pose"))


def _motion(planner: MotionPlanner, frames: int = 90, fps: float = 30.0
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A reachable wrist path (FK of a smooth joint path) and a closing hand."""
    t = np.arange(frames) / fps
    s = 0.5 - 0.5 * np.cos(np.pi * t / t[-1])
    q0 = planner.arm_rest
    q1 = q0 + np.array([0.4, 0.3, -0.2, 0.35, 0.1, -0.3, 0.2])
    arm = q0 + s[:, None] * (q1 - q0)
    wrist = np.array([planner.wrist_pose(q, HAND) for q in arm])
    limits = Limits.from_hand(HAND)
    hand = limits.lower + s[:, None] * 0.6 * (limits.upper - limits.lower)
    return wrist, hand, t


def _check(planner: MotionPlanner, plan, arm_now: np.ndarray, hand_now: np.ndarray) -> None:
    limits = Limits.concat(planner.arm_limits, Limits.from_hand(HAND))
    q = np.hstack([plan.arm_q, plan.hand_q])
    qd = np.hstack([plan.arm_qd, plan.hand_qd])
    qdd = np.hstack([plan.arm_qdd, plan.hand_qdd])
    problems = validate_joint_trajectory(limits.names, plan.times, q, qd, qdd, limits,
                                         np.concatenate([arm_now, hand_now]))
    assert problems == [], problems[:3]


def test_a_clean_motion_is_planned_within_the_published_limits(planner: MotionPlanner) -> None:
    wrist, hand, t = _motion(planner)
    arm_now, hand_now = planner.arm_rest, planner.hand_rest(HAND)
    plan = planner.plan(wrist, hand, t, hand=HAND, arm_current=arm_now, hand_current=hand_now)
    _check(planner, plan, arm_now, hand_now)
    assert plan.metrics["ik_position_error_max_mm"] < 5.0
    assert plan.metrics["smoothing_wrist_deviation_max_mm"] < 5.0  # smooth input barely moves
    # the planned arm carries the wrist along the (planning-frame) path
    end = planner.wrist_pose(plan.arm_q[-1], HAND)
    assert np.linalg.norm(end[:3, 3] - wrist[-1, :3, 3]) < 0.01


def test_smoothing_removes_frame_to_frame_wobble() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(120) / 30.0
    joints = np.sin(t)[:, None] + 0.05 * rng.standard_normal((120, 3))
    wrist = np.repeat(np.eye(4)[None], 120, axis=0)
    wrist[:, 0, 3] = 0.1 * t + 0.01 * rng.standard_normal(120)
    w2, j2 = smooth_motion(wrist, joints, t, 2.0)
    assert np.abs(np.diff(j2, axis=0)).max() < 0.5 * np.abs(np.diff(joints, axis=0)).max()
    assert np.abs(j2 - np.sin(t)[:, None]).mean() < np.abs(joints - np.sin(t)[:, None]).mean()
    assert np.allclose(np.linalg.det(w2[:, :3, :3]), 1.0)
    same_w, same_j = smooth_motion(wrist, joints, t, 0.0)
    assert np.array_equal(same_j, joints) and np.array_equal(same_w, wrist)


def _corrupt(kind: str, wrist: np.ndarray, hand: np.ndarray, t: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, h, tt = wrist.copy(), hand.copy(), t.copy()
    i = int(rng.integers(1, len(t) - 1))
    if kind == "nan_wrist":
        w[i, rng.integers(0, 3), 3] = np.nan
    elif kind == "nan_hand":
        h[i, rng.integers(0, h.shape[1])] = np.nan
    elif kind == "far":
        w[i:, :3, 3] += rng.uniform(1.5, 3.0) * rng.choice([-1, 1], 3)
    elif kind == "jump":
        w[i:, :3, 3] += rng.uniform(0.1, 0.4) * rng.standard_normal(3)
    elif kind == "flip":
        w[i:, :3, :3] = w[i:, :3, :3] @ np.diag([-1.0, -1.0, 1.0])
    elif kind == "hand_out":
        h[i:, rng.integers(0, h.shape[1])] += rng.uniform(2.0, 6.0)
    elif kind == "times":
        tt[i] = tt[i - 1]
    elif kind == "short":
        w, h, tt = w[:1], h[:1], tt[:1]
    return w, h, tt


KINDS = ("nan_wrist", "nan_hand", "far", "jump", "flip", "hand_out", "times", "short")


def test_a_flood_of_bad_motions_is_refused_or_planned_safely(planner: MotionPlanner) -> None:
    rng = np.random.default_rng(7)
    wrist, hand, t = _motion(planner, frames=60)
    arm_now, hand_now = planner.arm_rest, planner.hand_rest(HAND)
    refused = {k: 0 for k in KINDS}
    trials = 6
    for kind in KINDS:
        for _ in range(trials):
            w, h, tt = _corrupt(kind, wrist, hand, t, rng)
            try:
                plan = planner.plan(w, h, tt, hand=HAND, arm_current=arm_now,
                                    hand_current=hand_now)
            except (PlanError, ValueError):
                refused[kind] += 1
                continue
            _check(planner, plan, arm_now, hand_now)  # whatever passes is safe
    for kind in ("nan_wrist", "nan_hand", "far", "times", "short"):
        assert refused[kind] == trials, (kind, refused)


def test_unreachable_wrist_is_named(planner: MotionPlanner) -> None:
    wrist, hand, t = _motion(planner, frames=40)
    wrist[20:, :3, 3] += [3.0, 0.0, 0.0]
    with pytest.raises(PlanError, match=r"arm IK: the xhand_right wrist pose at frame \d+"):
        planner.plan(wrist, hand, t, hand=HAND, arm_current=planner.arm_rest,
                     hand_current=planner.hand_rest(HAND))


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="ik_backend"):
        MotionPlanner(ik_backend="ikfast")
    with pytest.raises(ValueError, match="moveit_py"):
        MotionPlanner(ik_backend="moveit")
    with pytest.raises(ValueError, match="limit_scale"):
        MotionPlanner(limit_scale=1.5)
    with pytest.raises(ValueError, match="arm_base_pose"):
        pose_from_param([0, 0, 0, 0, 0, 0, 2], "arm_base_pose")
    assert np.allclose(invert(pose_from_param(BASE, "b")) @ pose_from_param(BASE, "b"),
                       np.eye(4))
