"""ROS 2 smoke test: real rclpy nodes in two processes talking Fast DDS over loopback.

The unihm_core pytest plugin puts this process (and the peers it starts) on a domain of its
own with discovery limited to localhost and ROS_HOME in a temporary folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from action_msgs.msg import GoalStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from unihm_msgs.action import Manipulate  # noqa: E402
from unihm_msgs.msg import HandTrajectory  # noqa: E402

pytestmark = pytest.mark.ros
PEER = Path(__file__).with_name("ros_peer.py")
DISCOVERY_TIMEOUT_S = 20.0


def test_isolated_environment() -> None:
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert 1 <= int(os.environ["ROS_DOMAIN_ID"]) <= 100
    assert "unihm-ros-home-" in os.environ["ROS_HOME"]


def _start_peer(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(PEER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the peer's entities exist (or it died)
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"peer {args} did not start: {line!r}\n{err}")
    return proc


def _stop_peer(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"peer did not stop on SIGINT:\n{err}")
    assert proc.returncode == 0, f"peer exited with {proc.returncode}:\n{err}"


@pytest.fixture
def node() -> Iterator[Node]:
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("unihm_smoke_test", context=context)
    yield node
    node.destroy_node()
    rclpy.shutdown(context=context)


def _spin_until(node: Node, done, timeout_s: float) -> None:
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    executor.remove_node(node)


def test_hand_trajectory_published_and_received(node: Node) -> None:
    received: list[HandTrajectory] = []
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(HandTrajectory, "/unihm/smoke/hand", received.append, qos)
    peer = _start_peer("publisher")
    try:
        _spin_until(node, lambda: received, DISCOVERY_TIMEOUT_S)
    finally:
        _stop_peer(peer)
    assert len(received) == 1, "no HandTrajectory arrived over DDS"
    msg = received[0]
    assert (msg.request_id, msg.hand_id, msg.wrist_frame) == ("smoke-1", "xhand_right",
                                                              "right_hand_link")
    assert msg.source == HandTrajectory.SOURCE_GENERATED
    assert len(msg.joint_trajectory.joint_names) == 12
    assert len(msg.wrist_poses) == len(msg.joint_trajectory.points) == 5
    assert list(msg.joint_trajectory.points[3].positions)[:3] == pytest.approx([0.03, 0.06, 0.09])
    assert msg.joint_trajectory.points[4].time_from_start.nanosec == 400_000_000
    assert msg.wrist_poses[2].position.x == pytest.approx(0.2)
    assert list(msg.tokens) == [3, 10, 17, 24, 31]


@pytest.fixture
def manipulate_server() -> Iterator[None]:
    """A Manipulate server that spends 0.1 s per stage."""
    peer = _start_peer("action_server", "0.1")
    yield
    _stop_peer(peer)


@pytest.fixture
def slow_manipulate_server() -> Iterator[None]:
    """A Manipulate server that spends 1 s per stage: time enough to cancel mid-way."""
    peer = _start_peer("action_server", "1.0")
    yield
    _stop_peer(peer)


def _send(node: Node, client: ActionClient, goal: Manipulate.Goal, feedback: list):
    """Send a goal and return its handle.

    wait_for_server() proves that we discovered the server, not that it discovered our response
    reader; a goal response sent before that is dropped by DDS. A goal that got no answer is
    therefore sent once more (it is a new goal; the peer serves goals concurrently).
    """
    assert client.wait_for_server(timeout_sec=DISCOVERY_TIMEOUT_S), "no /unihm/manipulate server"
    for _ in range(2):
        future = client.send_goal_async(
            goal, feedback_callback=lambda m: feedback.append(m.feedback))
        _spin_until(node, future.done, 5.0)
        if future.done():
            return future.result()
    pytest.fail("goal was neither accepted nor rejected, twice")


def test_manipulate_feedback_and_result(node: Node, manipulate_server: None) -> None:
    client = ActionClient(node, Manipulate, "/unihm/manipulate")
    feedback: list[Manipulate.Feedback] = []
    goal = Manipulate.Goal(instruction="pick up the mustard bottle",
                           hands=["xhand_right", "allegro_right"], execute=False,
                           request_id="smoke-2")
    handle = _send(node, client, goal, feedback)
    assert handle.accepted
    result_future = handle.get_result_async()
    _spin_until(node, result_future.done, 20.0)
    assert result_future.done(), "no result within 20 s"
    response = result_future.result()
    assert response.status == GoalStatus.STATUS_SUCCEEDED
    result = response.result
    assert result.success and result.request_id == "smoke-2"
    assert result.message == "done: pick up the mustard bottle"
    assert [t.hand_id for t in result.hand_trajectories] == ["xhand_right", "allegro_right"]
    assert all(len(t.joint_trajectory.points) == 5 for t in result.hand_trajectories)
    assert [m.hand_id for m in result.metrics] == ["xhand_right", "allegro_right"]
    assert [f.stage for f in feedback] == ["perceiving", "generating", "refining",
                                           "validating", "executing"]
    assert [round(f.progress, 2) for f in feedback] == [0.2, 0.4, 0.6, 0.8, 1.0]


def test_manipulate_cancel(node: Node, slow_manipulate_server: None) -> None:
    client = ActionClient(node, Manipulate, "/unihm/manipulate")
    feedback: list[Manipulate.Feedback] = []
    handle = _send(node, client, Manipulate.Goal(instruction="lift the mug"), feedback)
    assert handle.accepted
    _spin_until(node, lambda: feedback, 10.0)
    assert feedback, "no feedback before cancel"
    cancel_future = handle.cancel_goal_async()
    _spin_until(node, cancel_future.done, 10.0)
    assert cancel_future.done() and len(cancel_future.result().goals_canceling) == 1
    result_future = handle.get_result_async()
    _spin_until(node, result_future.done, 10.0)
    response = result_future.result()
    assert response.status == GoalStatus.STATUS_CANCELED
    assert not response.result.success
    assert response.result.error_code == Manipulate.Result.CANCELED
    assert response.result.message.startswith("canceled while ")
    assert len(feedback) < 5, "the goal ran to the end despite the cancel"
    assert response.result.failed_stage in ("generating", "refining", "validating", "executing")


def test_manipulate_rejects_empty_instruction(node: Node, manipulate_server: None) -> None:
    client = ActionClient(node, Manipulate, "/unihm/manipulate")
    handle = _send(node, client, Manipulate.Goal(instruction="   "), [])
    assert not handle.accepted
