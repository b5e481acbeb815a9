"""The driver nodes as real rclpy nodes: a FollowJointTrajectory client against the simulated
driver and the XHand adapter, all spun in this process on a background executor.

The unihm_core pytest plugin puts this process on a DDS domain of its own (loopback only).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

rclpy = pytest.importorskip("rclpy")

from action_msgs.msg import GoalStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from trajectory_msgs.msg import JointTrajectoryPoint  # noqa: E402

from control_msgs.action import FollowJointTrajectory  # noqa: E402
from control_msgs.msg import JointTolerance  # noqa: E402
from unihm_bringup.drivers import sim_driver, xhand_adapter  # noqa: E402
from unihm_bringup.drivers.trajectory_server import DriverConfigError  # noqa: E402
from unihm_core.hands.registry import get_hand_config  # noqa: E402

pytestmark = pytest.mark.ros
Result = FollowJointTrajectory.Result
ARM_ACTION = "/fr3_arm_controller/follow_joint_trajectory"
XHAND_ACTION = "/xhand_adapter/follow_joint_trajectory"
PANDA = [f"panda_joint{i}" for i in range(1, 8)]
XHAND = list(get_hand_config("xhand_right").joint_names)
COMMAND_TOPIC = "/xhand_control/xhand_command"
STATE_TOPIC = "/xhand_control/xhand_state"


def wait_for(done: Callable[[], Any], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Harness:
    """A driver and a client node in one context, spun by a background executor."""

    def __init__(self, make: Callable[[Context], Node], threads: int = 1) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.driver = make(self.context)
        self.node = Node("driver_test_client", context=self.context)
        self.executor = (SingleThreadedExecutor(context=self.context) if threads == 1 else
                         MultiThreadedExecutor(num_threads=threads, context=self.context))
        self.executor.add_node(self.driver)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.joint_states: list[JointState] = []

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.driver.destroy_node()
        self.node.destroy_node()
        self.executor.shutdown(timeout_sec=2.0)
        rclpy.shutdown(context=self.context)

    def record_joint_states(self, topic: str = "/joint_states") -> None:
        self.node.create_subscription(JointState, topic, self.joint_states.append, 50)
        assert wait_for(lambda: self.joint_states, 10.0), f"no JointState on {topic}"

    def client(self, action: str) -> ActionClient:
        client = ActionClient(self.node, FollowJointTrajectory, action)
        assert client.wait_for_server(timeout_sec=10.0), f"no server on {action}"
        return client

    def send(self, client: ActionClient, goal: FollowJointTrajectory.Goal,
             feedback: list | None = None):
        """Send a goal, return its handle (a goal whose answer got lost is sent again)."""
        for _ in range(2):
            future = client.send_goal_async(
                goal, feedback_callback=None if feedback is None
                else lambda m: feedback.append(m.feedback))
            if wait_for(future.done, 5.0):
                handle = future.result()
                assert handle.accepted, "the driver rejected the goal"
                return handle
        pytest.fail("goal was neither accepted nor rejected, twice")

    @staticmethod
    def result(handle, timeout_s: float = 10.0) -> tuple[int, Any]:
        future = handle.get_result_async()
        assert wait_for(future.done, timeout_s), f"no result within {timeout_s} s"
        response = future.result()
        return response.status, response.result


@pytest.fixture
def harness_factory() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    # One thread by default: the drivers need no more (a goal holds no executor thread), and
    # rclpy 7.1's MultiThreadedExecutor here delivered a 50 Hz topic at 1-5 Hz (it is not
    # woken when a callback of a mutually exclusive group finishes).
    def factory(make: Callable[[Context], Node], threads: int = 1) -> Harness:
        made.append(Harness(make, threads))
        return made[-1]

    yield factory
    for h in made:
        h.close()


def sim(harness_factory, threads: int = 1, **params: Any) -> Harness:
    params.setdefault("state_rate_hz", 50)
    params.setdefault("initial_positions", [0.0])
    return harness_factory(lambda ctx: sim_driver.make_node(params, context=ctx), threads)


def goal(joints: list[str], points: list[tuple[float, list[float]]],
         velocities: list[list[float]] | None = None) -> FollowJointTrajectory.Goal:
    msg = FollowJointTrajectory.Goal()
    msg.trajectory.joint_names = list(joints)
    for i, (t, positions) in enumerate(points):
        point = JointTrajectoryPoint(positions=[float(p) for p in positions])
        if velocities is not None:
            point.velocities = [float(v) for v in velocities[i]]
        point.time_from_start.sec = int(t)
        point.time_from_start.nanosec = round((t - int(t)) * 1e9)
        msg.trajectory.points.append(point)
    return msg


def test_goal_executes_with_feedback_and_final_state(harness_factory) -> None:
    h = sim(harness_factory)
    h.record_joint_states()
    stepped: list[float] = []  # what the driver commanded, period by period
    step = h.driver._step
    h.driver._step = lambda target, velocity: (stepped.append(float(target[6])),
                                               step(target, velocity))
    client = h.client(ARM_ACTION)
    target = [0.1 * (i + 1) for i in range(7)]
    feedback: list = []
    handle = h.send(client, goal(PANDA, [(0.3, [0.05] * 7), (0.6, target)],
                                 velocities=[[0.1] * 7, [0.0] * 7]), feedback)
    status, result = h.result(handle)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.error_string
    assert result.error_code == Result.SUCCESSFUL
    assert wait_for(lambda: h.joint_states[-1].position[6] == pytest.approx(0.7), 2.0)
    last = h.joint_states[-1]
    assert list(last.name) == PANDA
    assert list(last.position) == pytest.approx(target, abs=1e-9)
    assert feedback, "no feedback"
    fb = feedback[len(feedback) // 2]
    assert list(fb.joint_names) == PANDA
    assert len(fb.desired.positions) == len(fb.actual.positions) == len(fb.error.positions) == 7
    assert 0.0 < fb.desired.positions[0] < 0.2  # mid-way, not the end
    # the joints moved through intermediate positions, not in one jump
    # the driver moved through intermediate positions, not in one jump (counted where it
    # steps, not on the subscriber: delivery rates vary with the executor and the load)
    mids = [p for p in stepped if 0.05 < p < 0.65]
    assert len(mids) >= 5


def test_cancel_stops_and_holds(harness_factory) -> None:
    h = sim(harness_factory)
    h.record_joint_states()
    client = h.client(ARM_ACTION)
    handle = h.send(client, goal(PANDA, [(2.0, [1.0] * 7)]))
    assert wait_for(lambda: h.joint_states[-1].position[0] > 0.1, 5.0)
    cancel = handle.cancel_goal_async()
    assert wait_for(cancel.done, 5.0)
    assert len(cancel.result().goals_canceling) == 1
    status, result = h.result(handle)
    assert status == GoalStatus.STATUS_CANCELED
    assert "canceled" in result.error_string
    time.sleep(0.2)
    held = h.joint_states[-1].position[0]
    time.sleep(0.3)
    assert h.joint_states[-1].position[0] == pytest.approx(held)
    assert 0.05 < held < 0.9


def test_new_goal_preempts_running_goal_smoothly(harness_factory) -> None:
    h = sim(harness_factory, threads=1)  # running goals hold no executor thread
    h.record_joint_states()
    client = h.client(ARM_ACTION)
    first = h.send(client, goal(PANDA, [(2.0, [1.0] * 7)]))
    assert wait_for(lambda: h.joint_states[-1].position[0] > 0.15, 5.0)
    second = h.send(client, goal(PANDA, [(0.5, [-0.2] * 7)]))
    status, result = h.result(first)
    assert status == GoalStatus.STATUS_CANCELED
    assert result.error_code == Result.INVALID_GOAL
    assert "preempted" in result.error_string
    status, result = h.result(second)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.error_string
    assert wait_for(lambda: h.joint_states[-1].position[0] == pytest.approx(-0.2), 2.0)
    # the second goal started where the first had got to: no jump between two states
    steps = [abs(b.position[0] - a.position[0])
             for a, b in zip(h.joint_states, h.joint_states[1:], strict=False)]
    assert max(steps) < 0.1


def _bad_goals() -> list[tuple[str, FollowJointTrajectory.Goal, int, str]]:
    unknown = goal([*PANDA[:6], "elbow"], [(1.0, [0.0] * 7)])
    missing = goal(PANDA[:6], [(1.0, [0.0] * 6)])
    not_increasing = goal(PANDA, [(1.0, [0.0] * 7), (1.0, [0.1] * 7)])
    nan = goal(PANDA, [(1.0, [0.0, math.nan, 0, 0, 0, 0, 0])])
    short = goal(PANDA, [(1.0, [0.0] * 6)])
    old = goal(PANDA, [(1.0, [0.0] * 7)])
    old.trajectory.header.stamp.sec = 1  # 1970: ended long ago
    return [("unknown joint", unknown, Result.INVALID_JOINTS, "unknown joints elbow"),
            ("missing joint", missing, Result.INVALID_JOINTS, "missing panda_joint7"),
            ("times", not_increasing, Result.INVALID_GOAL, "must increase strictly"),
            ("nan", nan, Result.INVALID_GOAL, "non-finite positions for panda_joint2"),
            ("size", short, Result.INVALID_GOAL, "has 6 positions, expected 7"),
            ("old stamp", old, Result.OLD_HEADER_TIMESTAMP, "ends")]


def test_invalid_goals_fail_with_clear_errors(harness_factory) -> None:
    h = sim(harness_factory)
    client = h.client(ARM_ACTION)
    running = h.send(client, goal(PANDA, [(1.5, [0.3] * 7)]))
    for label, bad, code, needle in _bad_goals():
        status, result = h.result(h.send(client, bad))
        assert status == GoalStatus.STATUS_ABORTED, label
        assert result.error_code == code, (label, result.error_string)
        assert needle in result.error_string, (label, result.error_string)
    status, result = h.result(running)  # bad goals do not preempt the running one
    assert status == GoalStatus.STATUS_SUCCEEDED, result.error_string


def test_fault_injection_aborts_mid_trajectory(harness_factory) -> None:
    h = sim(harness_factory, fail_after_s=0.3)
    h.record_joint_states()
    client = h.client(ARM_ACTION)
    started = time.monotonic()
    status, result = h.result(h.send(client, goal(PANDA, [(2.0, [1.0] * 7)])))
    assert status == GoalStatus.STATUS_ABORTED
    assert result.error_code == Result.PATH_TOLERANCE_VIOLATED
    assert "simulated driver fault" in result.error_string
    assert time.monotonic() - started < 1.5
    time.sleep(0.2)
    assert 0.05 < h.joint_states[-1].position[0] < 0.5  # stopped where the fault hit


def test_tolerances_from_goal_with_lagging_joints(harness_factory) -> None:
    h = sim(harness_factory, tracking_time_constant_s=0.2, goal_tolerance=[0.0])
    client = h.client(ARM_ACTION)
    path = goal(PANDA, [(0.5, [1.0] * 7)])
    path.path_tolerance = [JointTolerance(name="panda_joint3", position=0.02)]
    status, result = h.result(h.send(client, path))
    assert status == GoalStatus.STATUS_ABORTED
    assert result.error_code == Result.PATH_TOLERANCE_VIOLATED
    assert "panda_joint3" in result.error_string

    late = goal(PANDA, [(0.2, [0.5] * 7)])
    late.goal_tolerance = [JointTolerance(name="panda_joint1", position=1e-4)]
    late.goal_time_tolerance.nanosec = 50_000_000
    status, result = h.result(h.send(client, late))
    assert status == GoalStatus.STATUS_ABORTED
    assert result.error_code == Result.GOAL_TOLERANCE_VIOLATED
    assert "panda_joint1" in result.error_string and "goal_time_tolerance" in result.error_string


def test_sim_driver_for_a_hand_and_bad_parameters() -> None:
    context = Context()
    rclpy.init(context=context)
    try:
        node = sim_driver.make_node({"hand": "xhand_right"}, node_name="xhand_right_controller",
                                    context=context)
        assert node.joints == XHAND
        assert node.resolve_action_name("~/follow_joint_trajectory") == (
            "/xhand_right_controller/follow_joint_trajectory")
        node.destroy_node()
        with pytest.raises(DriverConfigError, match="unknown hand"):
            sim_driver.make_node({"hand": "xhand_middle"}, context=context)
        with pytest.raises(DriverConfigError, match="initial_positions"):
            sim_driver.make_node({"initial_positions": [0.0, 1.0]}, context=context)
        with pytest.raises(DriverConfigError, match="xhand_control_ros2"):
            xhand_adapter.make_node({"command_interface": "vendor"}, context=context)
        with pytest.raises(DriverConfigError, match="command_interface"):
            xhand_adapter.make_node({"command_interface": "can"}, context=context)
        with pytest.raises(DriverConfigError, match="would echo onto itself"):
            xhand_adapter.make_node({"state_topic": "/joint_states"}, context=context)
    finally:
        rclpy.shutdown(context=context)


class FakeHand:
    """Stands in for the vendor driver in joint_state mode: publishes the hand's state and
    moves to every command it receives."""

    def __init__(self, node: Node, positions: list[float]) -> None:
        self.positions = list(positions)
        self.commands: list[JointState] = []
        self._pub = node.create_publisher(JointState, STATE_TOPIC, 10)
        node.create_subscription(JointState, COMMAND_TOPIC, self._on_command, 50)
        node.create_timer(0.02, self._publish)

    def _on_command(self, msg: JointState) -> None:
        self.commands.append(msg)
        by_name = dict(zip(msg.name, msg.position, strict=True))
        self.positions = [by_name.get(n, p) for n, p in zip(XHAND, self.positions, strict=True)]

    def _publish(self) -> None:
        self._pub.publish(JointState(name=XHAND, position=self.positions))


def xhand(harness_factory, **params: Any) -> Harness:
    params.setdefault("command_interface", "joint_state")
    return harness_factory(lambda ctx: xhand_adapter.make_node(params, context=ctx))


def test_xhand_adapter_streams_commands_and_succeeds(harness_factory) -> None:
    # generous state timeout: the echoing fake hand's state is delivered by a loaded executor
    h = xhand(harness_factory, goal_tolerance=[0.01], command_rate_hz=100, state_timeout_s=3.0)
    hand = FakeHand(h.node, [0.0] * 12)
    client = h.client(XHAND_ACTION)
    target = [0.05 * (i + 1) for i in range(12)]
    feedback: list = []
    handle = h.send(client, goal(XHAND, [(0.5, target)]), feedback)
    status, result = h.result(handle)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.error_string
    assert len(hand.commands) >= 20, "commands were not streamed"
    assert list(hand.commands[-1].name) == XHAND
    assert list(hand.commands[-1].position) == pytest.approx(target)
    assert hand.positions == pytest.approx(target)
    assert feedback and list(feedback[-1].joint_names) == XHAND
    # the adapter republishes the hand's state under its joint names on /joint_states
    h.record_joint_states()
    assert wait_for(lambda: list(h.joint_states[-1].position) == pytest.approx(target), 5.0)
    assert list(h.joint_states[-1].name) == XHAND


def test_xhand_adapter_aborts_without_state(harness_factory) -> None:
    h = xhand(harness_factory, state_timeout_s=0.3)
    commands: list[JointState] = []
    h.node.create_subscription(JointState, COMMAND_TOPIC, commands.append, 10)
    client = h.client(XHAND_ACTION)
    started = time.monotonic()
    status, result = h.result(h.send(client, goal(XHAND, [(0.5, [0.1] * 12)])))
    assert status == GoalStatus.STATUS_ABORTED
    assert result.error_string == f"no XHand state on {STATE_TOPIC} for 0.3 s"
    assert time.monotonic() - started < 3.0
    assert not commands, "commanded a hand it cannot see"


def test_vendor_message_fields_follow_their_declared_types() -> None:
    class FakeCommand:
        hand_id = 0
        position: list = []  # noqa: RUF012
        kp: list = []  # noqa: RUF012
        mode = 0

        @staticmethod
        def get_fields_and_field_types() -> dict[str, str]:
            return {"hand_id": "int32", "position": "sequence<double>",
                    "kp": "sequence<int16>", "mode": "int32"}

    msg = FakeCommand()
    xhand_adapter._set_field(msg, "hand_id", [1], 2)
    xhand_adapter._set_field(msg, "position", [0.5, 0.25], 2)
    xhand_adapter._set_field(msg, "kp", [100.4, 99.6], 2)
    xhand_adapter._set_field(msg, "mode", [3, 3], 2)
    xhand_adapter._set_field(msg, "effort_limit", [1.0, 1.0], 2)  # absent: skipped
    assert (msg.hand_id, msg.position, msg.kp, msg.mode) == (1, [0.5, 0.25], [100, 100], 3)


def test_entry_point_exits_cleanly_on_sigint() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "unihm_bringup.drivers.sim_driver"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ))
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # wait until it serves (the SIGINT handler is installed by then)
        lines.append(line)
        if "serving FollowJointTrajectory" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "never retrieved" not in text, text
