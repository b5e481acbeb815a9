"""``unihm replay``: run a recorded scene through the running pipeline again and compare.

The bag's camera stream is played (``player``, held frame with fresh stamps), Manipulate goals
go to ``/unihm/manipulate`` (the given instruction, or every goal recorded in the bag's
``/unihm/goal_record``), the outputs can be recorded to a new bag (``recorder``, in this
process), and one JSON line per goal compares the new result with the recorded one
(``outcomes.compare_outcomes``). When the bag recorded the object observation of a goal, the
player holds the frame perception used then.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rclpy
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import String

from unihm_bringup.bags.goal_record import GOAL_RECORD_TOPIC, GoalRecordError, parse_goal_record
from unihm_bringup.bags.outcomes import (
    GoalOutcome,
    compare_outcomes,
    outcome_from_messages,
    read_recorded_outcomes,
    summarize_outcome,
)
from unihm_bringup.bags.player import DEFAULT_TOPICS as CAMERA_TOPICS
from unihm_bringup.bags.player import CameraPlayer, read_camera_messages
from unihm_bringup.bags.recorder import STREAM_QOS, BagWriter, RecorderNode, drain
from unihm_msgs.action import Manipulate
from unihm_perception.bag_io import BagTopics

ACTION_NAME = "/unihm/manipulate"
NO_SERVER = (f"no Manipulate server at {ACTION_NAME} (is the graph running? `unihm run sim`)")
RECORD_WAIT_S = 1.0
"""How long to wait after a result for the executive's goal record (stage timings)."""


class ReplayError(RuntimeError):
    """Replay cannot go on (no server, nothing to replay)."""


@dataclass(frozen=True)
class ReplayGoal:
    """A goal to send and the recorded outcome to compare its result with (if any)."""

    instruction: str
    hands: tuple[str, ...]
    execute: bool
    recorded: GoalOutcome | None


def plan_goals(recorded: Sequence[GoalOutcome], *, instruction: str | None = None,
               hands: Sequence[str] | None = None, execute: bool = False) -> list[ReplayGoal]:
    """The goals of a replay (ROS-free).

    With an instruction: one goal, compared with the last recorded goal of the same instruction
    (case and surrounding blanks ignored). Without: every recorded goal, with its recorded hands
    unless ``hands`` is given. Goals execute only when ``execute`` is set, whatever was recorded.
    """
    if instruction is not None:
        key = instruction.strip().lower()
        same = [o for o in recorded if o.instruction.strip().lower() == key]
        return [ReplayGoal(instruction, tuple(hands or ()), execute, same[-1] if same else None)]
    if not recorded:
        raise ReplayError("the bag has no goal records (/unihm/goal_record); give --instruction")
    return [ReplayGoal(o.instruction, tuple(hands) if hands else o.hands_requested, execute, o)
            for o in recorded]


class _Client(Node):
    """The Manipulate client and the goal-record listener."""

    def __init__(self, context: Context) -> None:
        super().__init__("unihm_replay", context=context)
        self.action = ActionClient(self, Manipulate, ACTION_NAME)
        self.records: dict[str, Any] = {}
        self.create_subscription(String, GOAL_RECORD_TOPIC, self._on_record, STREAM_QOS)

    def _on_record(self, msg: String) -> None:
        try:
            record = parse_goal_record(msg.data)
        except GoalRecordError as e:
            self.get_logger().warn(f"ignoring a goal record: {e}")
            return
        self.records[record.request_id] = record


class _Session:
    """The nodes of one replay on one executor, spun from the calling thread."""

    def __init__(self, bag: Path, out: Path | None, topics: BagTopics, hold_hz: float) -> None:
        frames = read_camera_messages(bag, topics=topics)
        if not frames:
            raise ReplayError(f"bag {bag} has no complete camera frame (color, depth and "
                              "camera_info with one stamp)")
        self.writer = BagWriter(out) if out is not None else None
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: list[Node] = []
        self.stop = threading.Event()
        self.player = CameraPlayer(frames, mode="hold", rate_hz=hold_hz, topics=topics,
                                   context=self.context)
        self.client = _Client(self.context)
        self.nodes += [self.player, self.client]
        if self.writer is not None:
            self.nodes.append(RecorderNode(self.writer, context=self.context, progress_s=0.0,
                                           node_name="unihm_replay_recorder"))
        for node in self.nodes:
            self.executor.add_node(node)

    def spin_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done() and not self.stop.is_set() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def close(self) -> None:
        if self.writer is not None:
            try:
                drain(self.executor, self.writer)
            finally:
                self.writer.close()
        self.executor.shutdown(timeout_sec=1.0)
        for node in reversed(self.nodes):
            node.destroy_node()
        rclpy.shutdown(context=self.context)


def _send(session: _Session, goal: Manipulate.Goal) -> Any:
    """Send a goal and return its handle; a goal that got no answer is sent once more (a goal
    response sent before the server discovered our reader is lost)."""
    for _ in range(2):
        future = session.client.action.send_goal_async(goal)
        if session.spin_until(future.done, 10.0):
            return future.result()
        if session.stop.is_set():
            break
    raise ReplayError(f"goal {goal.instruction!r} was neither accepted nor rejected")


def _run_goal(session: _Session, goal: ReplayGoal, goal_timeout_s: float) -> dict[str, Any]:
    if goal.recorded is not None and goal.recorded.object_stamp_ns is not None:
        session.player.hold(session.player.frame_index_for_stamp(goal.recorded.object_stamp_ns))
    else:
        session.player.hold(None)
    msg = Manipulate.Goal(instruction=goal.instruction, hands=list(goal.hands),
                          execute=goal.execute)
    handle = _send(session, msg)
    line: dict[str, Any] = {"instruction": goal.instruction, "hands": list(goal.hands)}
    if not handle.accepted:
        line["status"] = "rejected"
        return line
    result_future = handle.get_result_async()
    if not session.spin_until(result_future.done, goal_timeout_s):
        cancel = handle.cancel_goal_async()
        session.spin_until(cancel.done, 5.0)
        line["status"] = "interrupted" if session.stop.is_set() else "timeout"
        return line
    response = result_future.result()
    result = response.result
    line["status"] = {GoalStatus.STATUS_SUCCEEDED: "succeeded", GoalStatus.STATUS_ABORTED:
                      "aborted", GoalStatus.STATUS_CANCELED: "canceled"}.get(response.status,
                                                                              "unknown")
    session.spin_until(lambda: result.request_id in session.client.records, RECORD_WAIT_S)
    new = outcome_from_messages(
        result.request_id, record=session.client.records.get(result.request_id),
        target=result.target, refined=result.hand_trajectories, success=result.success,
        error_code=result.error_code, message=result.message, instruction=goal.instruction)
    if goal.recorded is None:
        line["recorded"] = None
        line["result"] = summarize_outcome(new)
    else:
        line["comparison"] = compare_outcomes(goal.recorded, new)
        line["message"] = result.message
    return line


def replay(bag: str | Path, *, instruction: str | None = None,
           hands: Sequence[str] | None = None, execute: bool = False,
           out: str | Path | None = None, timeout_s: float = 15.0,
           goal_timeout_s: float = 300.0, hold_hz: float = 10.0,
           topics: BagTopics = CAMERA_TOPICS,
           emit: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Replay a bag against the running graph; returns (and passes to ``emit``) one dict per
    goal: ``status`` and either ``comparison`` (recorded result found) or ``result``.

    Raises ReplayError when no Manipulate server appears within ``timeout_s`` or there is
    nothing to replay. SIGINT/SIGTERM cancel the running goal and stop; ``out`` is closed
    complete in every case.
    """
    bag = Path(bag)
    goals = plan_goals(read_recorded_outcomes(bag), instruction=instruction, hands=hands,
                       execute=execute)
    session = _Session(bag, None if out is None else Path(out), topics, hold_hz)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, lambda _s, _f: session.stop.set())
                    for s in (signal.SIGINT, signal.SIGTERM)}
    lines: list[dict[str, Any]] = []
    try:
        if not session.spin_until(session.client.action.server_is_ready, timeout_s):
            if session.stop.is_set():
                return lines
            raise ReplayError(NO_SERVER)
        session.spin_until(lambda: session.player.published >= 2, 2.0)  # frames flowing
        for goal in goals:
            if session.stop.is_set():
                break
            line = _run_goal(session, goal, goal_timeout_s)
            lines.append(line)
            if emit is not None:
                emit(line)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        session.close()
    return lines


def exit_code(lines: Sequence[dict[str, Any]]) -> int:
    """0 when every goal got a result and, where one was recorded, succeeded as it did then."""
    for line in lines:
        if line.get("status") not in ("succeeded", "aborted", "canceled"):
            return 1
        comparison = line.get("comparison")
        if comparison is not None and not comparison["success"]["same"]:
            return 1
    return 0


def print_line(line: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    print(json.dumps(line, sort_keys=False), flush=True)
