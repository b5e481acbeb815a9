"""Task sequences: planned object motion, the object following the grasp, phases, randomness."""

from __future__ import annotations

import numpy as np
import pytest

from unihm_core.dataset.reference import human_like_local, retarget_keyframes
from unihm_core.dataset.sequences import (
    HandGrasp,
    SequenceError,
    Timing,
    compose,
    plan_object_motion,
    resting_start,
    sample_task,
)
from unihm_core.hands.kinematics import hand_kinematics
from unihm_core.se3 import invert, make_pose
from unihm_core.tasks import TASKS

EXTENT = np.array([0.06, 0.06, 0.10])
REST = make_pose(None, [0.0, 0.0, 0.05])


def _grasp(hand_id: str) -> HandGrasp:
    kin = hand_kinematics(hand_id)
    # palm (x) facing +x world toward the object, fingers (z) horizontal along -y
    rot = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]).T
    wrist = make_pose(rot, [-0.09, 0.0, 0.0])
    q_open = kin.open_pose
    q_grasp = np.clip(q_open + 0.5 * (kin.upper - q_open), kin.lower, kin.upper)
    return HandGrasp(wrist, q_grasp, (q_open + q_grasp) / 2, q_open)


@pytest.mark.parametrize("task", TASKS)
def test_every_task_composes_and_the_object_follows_the_hand(task: str) -> None:
    rng = np.random.default_rng(4)
    start = resting_start(REST, 0.55, 0.0, 0.3)
    spec, request = sample_task(task, start, EXTENT, rng)
    assert spec.task == task
    motion = plan_object_motion(request, 30.0, rng)
    hands = {"xhand_right": _grasp("xhand_right"), "allegro_right": _grasp("allegro_right")}
    seq = compose(start, motion, hands, 30.0, Timing())
    t = len(seq.object_poses)
    a, b = seq.phases["manipulate"]
    assert seq.phases["approach"][0] == 0 and seq.phases["retreat"][1] == t
    for hand_id, grasp in hands.items():
        wrist = seq.wrist_poses[hand_id]
        assert wrist.shape == (t, 4, 4) and seq.joints[hand_id].shape[0] == t
        # while grasped the wrist keeps its pose in the object frame
        rel = np.einsum("tij,tjk->tik", invert(seq.object_poses[a:b]), wrist[a:b])
        np.testing.assert_allclose(rel, np.broadcast_to(grasp.wrist_in_object, rel.shape),
                                   atol=1e-9)
        np.testing.assert_allclose(seq.joints[hand_id][a:b], np.broadcast_to(
            grasp.q_grasp, (b - a, len(grasp.q_grasp))), atol=1e-12)
        # starts open and away, ends open and away
        np.testing.assert_allclose(seq.joints[hand_id][0], grasp.q_open, atol=1e-12)
        np.testing.assert_allclose(seq.joints[hand_id][-1], grasp.q_open, atol=1e-12)
        assert np.linalg.norm(wrist[0, :3, 3] - wrist[seq.phases["close"][0], :3, 3]) > 0.1
    # the object rests before the grasp and after the release, and moves smoothly
    np.testing.assert_allclose(seq.object_poses[: a], np.broadcast_to(start, (a, 4, 4)))
    steps = np.linalg.norm(np.diff(seq.object_poses[:, :3, 3], axis=0), axis=1)
    assert steps.max() < 0.35 / 30.0 * 1.9 + 1e-9
    if task == "lift":  # lowered back before the release
        np.testing.assert_allclose(seq.object_poses[-1], start, atol=1e-9)
        assert seq.object_poses[:, 2, 3].max() > start[2, 3] + 0.07


def test_sampling_is_reproducible_and_stays_on_the_table() -> None:
    start = resting_start(REST, 0.5, 0.25, 1.0)
    for task in TASKS:
        a = sample_task(task, start, EXTENT, np.random.default_rng(9))
        b = sample_task(task, start, EXTENT, np.random.default_rng(9))
        assert a[0] == b[0]
    for seed in range(20):
        spec, request = sample_task("push", start, EXTENT, np.random.default_rng(seed))
        assert request.destination is not None and -0.4 < request.destination[1] < 0.4
        assert spec.direction in ("left", "right", "far", "near")


def test_bad_task_and_mismatched_start_are_clear_errors() -> None:
    with pytest.raises(SequenceError, match="unknown task"):
        sample_task("juggle", REST, EXTENT, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    _, request = sample_task("lift", REST, EXTENT, rng)
    motion = plan_object_motion(request, 30.0, rng)
    with pytest.raises(SequenceError, match="resting pose"):
        compose(resting_start(REST, 0.1, 0.0, 0.0), motion, {"xhand_right": _grasp(
            "xhand_right")}, 30.0, Timing())
    with pytest.raises(SequenceError, match="no hand"):
        compose(REST, motion, {}, 30.0, Timing())


def test_reference_hand_keypoints_are_human_sized_and_retarget() -> None:
    kin = hand_kinematics("shadow_right")
    local = human_like_local(kin.open_pose)
    assert local.shape == (21, 3) and np.allclose(local[0], 0.0)
    # wrist -> middle tip of an open human hand is about 19 cm
    assert 0.16 < np.linalg.norm(local[12]) < 0.22
    q = retarget_keyframes("allegro_right", np.stack([kin.open_pose, kin.open_pose]))
    assert q.shape == (2, 16) and np.all(np.isfinite(q))
    same = retarget_keyframes("shadow_right", kin.open_pose[None])
    np.testing.assert_array_equal(same[0], kin.open_pose)


def test_hold_ends_puts_rest_around_a_motion() -> None:
    from unihm_core.trajectory import hold_ends

    motion = np.repeat(np.eye(4)[None], 5, axis=0)
    motion[:, 2, 3] = np.linspace(0.0, 0.1, 5)
    held = hold_ends(motion, 3, 2)
    assert held.shape == (10, 4, 4)
    np.testing.assert_array_equal(held[:4, 2, 3], 0.0)
    np.testing.assert_array_equal(held[3:8], motion)
    np.testing.assert_array_equal(held[-3:, 2, 3], 0.1)
    np.testing.assert_array_equal(hold_ends(motion, 0, 0), motion)
    with pytest.raises(ValueError, match="at least one pose"):
        hold_ends(motion[:0], 1, 1)
    with pytest.raises(ValueError, match=">= 0"):
        hold_ends(motion, -1, 0)
    # compose's object trajectory is the motion with the timing's rest phases held
    before_s, after_s = Timing().object_rest_s()
    assert (before_s, after_s) == pytest.approx((2.0, 1.4))
