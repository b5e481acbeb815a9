"""Goal outcomes read from a bag or an action result, and their comparison; without rclpy.

An outcome gathers what one Manipulate goal produced: the goal record (``goal_record``), the
object that was identified, the end of the target trajectory and the refined trajectory of each
hand. Messages are read by attribute, so rosbags messages (from a bag) and rclpy messages (from
an action result) both work. ``compare_outcomes`` is what ``unihm replay`` prints per goal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from unihm_bringup.bags.goal_record import (
    GOAL_RECORD_TOPIC,
    STAGES,
    GoalRecord,
    GoalRecordError,
    parse_goal_record,
)

TARGET_TOPIC = "/unihm/target_trajectory"
REFINED_TOPIC = "/unihm/refined_trajectory"
OBJECT_TOPIC = "/unihm/object"


@dataclass(frozen=True)
class HandMotion:
    """The refined motion of one hand: finger joints per point and wrist positions (m)."""

    hand_id: str
    joint_names: tuple[str, ...]
    positions: NDArray[np.float64]
    """(T, J) joint positions in rad (or m for prismatic joints)."""
    wrist_positions: NDArray[np.float64]
    """(T, 3) wrist positions in the planning frame."""

    @classmethod
    def from_message(cls, msg: Any) -> HandMotion:
        """From a HandTrajectory (rclpy or rosbags)."""
        names = tuple(msg.joint_trajectory.joint_names)
        points = msg.joint_trajectory.points
        positions = np.array([np.asarray(p.positions, dtype=np.float64) for p in points],
                             dtype=np.float64).reshape(len(points), len(names))
        wrists = np.array([[p.position.x, p.position.y, p.position.z] for p in msg.wrist_poses],
                          dtype=np.float64).reshape(-1, 3)
        return cls(str(msg.hand_id), names, positions, wrists)


@dataclass(frozen=True)
class GoalOutcome:
    """What one goal produced; fields a source lacks are None (or empty)."""

    request_id: str
    instruction: str = ""
    hands_requested: tuple[str, ...] = ()
    success: bool | None = None
    error_code: int | None = None
    message: str = ""
    object_id: str | None = None
    object_stamp_ns: int | None = None
    """Header stamp of the object observation: the depth image perception used."""
    target_end: NDArray[np.float64] | None = None
    """Last pose's position of the target trajectory (m)."""
    hands: Mapping[str, HandMotion] = field(default_factory=dict)
    stage_s: Mapping[str, float] = field(default_factory=dict)
    total_s: float | None = None


def _target_end(target: Any) -> NDArray[np.float64] | None:
    if target is None or not len(target.poses):
        return None
    p = target.poses[-1].position
    return np.array([p.x, p.y, p.z], dtype=np.float64)


def outcome_from_messages(request_id: str, *, record: GoalRecord | None = None,
                          target: Any = None, refined: Iterable[Any] = (),
                          observation: Any = None, success: bool | None = None,
                          error_code: int | None = None, message: str | None = None,
                          instruction: str = "") -> GoalOutcome:
    """An outcome from whatever is known: the goal record, the TargetTrajectory, the refined
    HandTrajectory messages and the ObjectObservation (rclpy or rosbags messages).

    Explicit ``success``/``error_code``/``message`` (an action result's) win over the record's.
    """
    object_id = None
    if target is not None and target.object_id:
        object_id = str(target.object_id)
    elif observation is not None:
        object_id = str(observation.object_id)
    stamp = None
    if observation is not None:
        stamp = observation.header.stamp.sec * 1_000_000_000 + observation.header.stamp.nanosec
    hands = {m.hand_id: m for m in (HandMotion.from_message(h) for h in refined)}
    total = None if record is None or math.isnan(record.total_s) else record.total_s
    return GoalOutcome(
        request_id=request_id,
        instruction=record.instruction if record is not None else instruction,
        hands_requested=record.hands if record is not None else (),
        success=success if success is not None else (record.success if record else None),
        error_code=(error_code if error_code is not None
                    else (record.error_code if record else None)),
        message=message if message is not None else (record.message if record else ""),
        object_id=object_id, object_stamp_ns=stamp, target_end=_target_end(target),
        hands=hands, stage_s=dict(record.stage_s) if record is not None else {},
        total_s=total)


def read_recorded_outcomes(path: str | Path) -> list[GoalOutcome]:
    """One outcome per goal record in a bag, in recorded order, with the target, refined
    trajectories and object observation of the same request id (the last of each, per hand).

    A bag without goal records gives an empty list; unparsable records are skipped.
    """
    from rosbags.rosbag2 import Reader

    from unihm_bringup.bags.types import bag_typestore, deserialize_lenient

    store = bag_typestore()
    records: list[GoalRecord] = []
    targets: dict[str, Any] = {}
    observations: dict[str, Any] = {}
    refined: dict[str, dict[str, Any]] = {}
    wanted = {GOAL_RECORD_TOPIC, TARGET_TOPIC, REFINED_TOPIC, OBJECT_TOPIC}
    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if c.topic in wanted]
        for conn, _, raw in reader.messages(connections=conns):
            msg, _ = deserialize_lenient(store, raw, conn.msgtype)
            if conn.topic == GOAL_RECORD_TOPIC:
                try:
                    records.append(parse_goal_record(msg.data))
                except GoalRecordError:
                    continue
            elif conn.topic == TARGET_TOPIC:
                targets[msg.request_id] = msg
            elif conn.topic == OBJECT_TOPIC:
                observations[msg.request_id] = msg
            elif conn.topic == REFINED_TOPIC:
                refined.setdefault(msg.request_id, {})[msg.hand_id] = msg
    return [outcome_from_messages(r.request_id, record=r, target=targets.get(r.request_id),
                                  refined=refined.get(r.request_id, {}).values(),
                                  observation=observations.get(r.request_id))
            for r in records]


def _resample(values: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    """(T, D) -> (n, D) by linear interpolation over the normalised index (0..1)."""
    if len(values) == n:
        return values
    if len(values) == 1:
        return np.repeat(values, n, axis=0)
    src = np.linspace(0.0, 1.0, len(values))
    dst = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(dst, src, values[:, d]) for d in range(values.shape[1])], axis=1)


def compare_hands(recorded: HandMotion, new: HandMotion) -> dict[str, Any]:
    """Mean absolute joint difference (rad) over shared joints and mean wrist distance (mm).

    Trajectories of different lengths are compared at the same fraction of the motion (both
    resampled to the longer length), so a retimed motion is not counted as a different one.
    """
    shared = [j for j in recorded.joint_names if j in new.joint_names]
    out: dict[str, Any] = {"points": [len(recorded.positions), len(new.positions)],
                           "mean_joint_diff_rad": None, "max_joint_diff_rad": None,
                           "mean_wrist_diff_mm": None}
    n = max(len(recorded.positions), len(new.positions))
    if shared and len(recorded.positions) and len(new.positions):
        ri = [recorded.joint_names.index(j) for j in shared]
        ni = [new.joint_names.index(j) for j in shared]
        diff = np.abs(_resample(recorded.positions[:, ri], n) - _resample(new.positions[:, ni], n))
        out["mean_joint_diff_rad"] = float(diff.mean())
        out["max_joint_diff_rad"] = float(diff.max())
    if len(recorded.wrist_positions) and len(new.wrist_positions):
        m = max(len(recorded.wrist_positions), len(new.wrist_positions))
        dist = np.linalg.norm(_resample(recorded.wrist_positions, m)
                              - _resample(new.wrist_positions, m), axis=1)
        out["mean_wrist_diff_mm"] = float(dist.mean() * 1000.0)
    missing = sorted(set(recorded.joint_names) ^ set(new.joint_names))
    if missing:
        out["unshared_joints"] = missing
    return out


def _pair(recorded: Any, new: Any) -> dict[str, Any]:
    return {"recorded": recorded, "new": new, "same": recorded == new}


def compare_outcomes(recorded: GoalOutcome, new: GoalOutcome) -> dict[str, Any]:
    """A JSON-ready comparison of a new outcome against the recorded one.

    ``success``, ``error_code`` and ``object_id`` as recorded/new/same; ``target_end_diff_m``
    (distance of the target trajectories' end positions); per hand of either outcome, the
    figures of ``compare_hands`` (or which side lacks the hand); per stage, recorded and new
    seconds and their difference.
    """
    target_diff = None
    if recorded.target_end is not None and new.target_end is not None:
        target_diff = float(np.linalg.norm(recorded.target_end - new.target_end))
    hands: dict[str, Any] = {}
    for hand_id in list(recorded.hands) + [h for h in new.hands if h not in recorded.hands]:
        if hand_id not in new.hands:
            hands[hand_id] = {"missing": "new"}
        elif hand_id not in recorded.hands:
            hands[hand_id] = {"missing": "recorded"}
        else:
            hands[hand_id] = compare_hands(recorded.hands[hand_id], new.hands[hand_id])
    stages = {}
    for stage in STAGES:
        r, n = recorded.stage_s.get(stage), new.stage_s.get(stage)
        if r is not None or n is not None:
            stages[stage] = {"recorded": r, "new": n,
                             "diff": None if r is None or n is None else n - r}
    return {
        "instruction": new.instruction or recorded.instruction,
        "request_id": {"recorded": recorded.request_id, "new": new.request_id},
        "success": _pair(recorded.success, new.success),
        "error_code": _pair(recorded.error_code, new.error_code),
        "object_id": _pair(recorded.object_id, new.object_id),
        "target_end_diff_m": target_diff,
        "hands": hands,
        "stage_s": stages,
        "total_s": {"recorded": recorded.total_s, "new": new.total_s},
    }


def summarize_outcome(outcome: GoalOutcome) -> dict[str, Any]:
    """A JSON-ready summary of an outcome that has nothing recorded to compare with."""
    return {
        "instruction": outcome.instruction, "request_id": outcome.request_id,
        "success": outcome.success, "error_code": outcome.error_code,
        "message": outcome.message, "object_id": outcome.object_id,
        "target_end": None if outcome.target_end is None else outcome.target_end.tolist(),
        "hands": {h: {"points": len(m.positions)} for h, m in outcome.hands.items()},
        "stage_s": dict(outcome.stage_s), "total_s": outcome.total_s,
    }
