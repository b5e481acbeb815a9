"""One executor per node (``unihm_core.ros.runtime.NodeExecutors``) with real rclpy nodes.

The pattern the executive depends on: an action whose execute callback blocks while it calls
a service hosted by another node, each node on its own executor. Every reply must come back
promptly, goal after goal (a missed executor wake-up would hold it until some later event).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.action import ActionClient, ActionServer  # noqa: E402
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

from control_msgs.action import FollowJointTrajectory  # noqa: E402
from unihm_core.ros.runtime import NodeExecutors, wait_future  # noqa: E402
from unihm_msgs.srv import Perceive  # noqa: E402

pytestmark = pytest.mark.ros
GOALS = 30
CALLS_PER_GOAL = 3


class Stage(Node):
    """A service that answers at once (stands in for a pipeline stage)."""

    def __init__(self) -> None:
        super().__init__("exec_test_stage")
        self.create_service(Perceive, "/exec_test/stage", self._answer)

    @staticmethod
    def _answer(request: Perceive.Request, response: Perceive.Response) -> Perceive.Response:
        response.success, response.message = True, request.instruction
        return response


class Driver(Node):
    """An action whose execute callback blocks on service calls, like the executive."""

    executor_threads = 3

    def __init__(self) -> None:
        super().__init__("exec_test_driver")
        group = ReentrantCallbackGroup()
        self.client = self.create_client(Perceive, "/exec_test/stage", callback_group=group)
        self.reply_s: list[float] = []
        self.failures: list[str] = []
        ActionServer(self, FollowJointTrajectory, "/exec_test/action",
                     execute_callback=self._execute, callback_group=group, result_timeout=10)

    def _execute(self, handle: object) -> FollowJointTrajectory.Result:
        for i in range(CALLS_PER_GOAL):
            tic = time.perf_counter()
            reply = wait_future(self.client.call_async(Perceive.Request(instruction=str(i))),
                                5.0)
            self.reply_s.append(time.perf_counter() - tic)
            if reply is None or reply.message != str(i):
                self.failures.append(f"call {i}: {reply}")
        handle.succeed()
        return FollowJointTrajectory.Result()


@pytest.fixture
def graph() -> Iterator[tuple[NodeExecutors, dict[str, Node]]]:
    rclpy.init()
    executors = NodeExecutors()
    nodes = {"stage": Stage(), "driver": Driver(), "client": Node("exec_test_client")}
    try:
        for node in nodes.values():
            executors.add(node)
        yield executors, nodes
    finally:
        executors.shutdown()
        for node in nodes.values():
            node.destroy_node()
        rclpy.try_shutdown()


def test_each_node_gets_the_executor_it_asks_for(
        graph: tuple[NodeExecutors, dict[str, Node]]) -> None:
    _, nodes = graph
    kinds = {node.get_name(): type(node.executor) for node in nodes.values()}
    assert kinds == {"exec_test_stage": SingleThreadedExecutor,
                     "exec_test_driver": MultiThreadedExecutor,
                     "exec_test_client": SingleThreadedExecutor}
    names = {t.name for t in threading.enumerate()}
    assert {"spin-exec_test_stage", "spin-exec_test_driver", "spin-exec_test_client"} <= names


def test_blocking_action_callback_gets_every_service_reply_promptly(
        graph: tuple[NodeExecutors, dict[str, Node]]) -> None:
    _, nodes = graph
    client = ActionClient(nodes["client"], FollowJointTrajectory, "/exec_test/action")
    assert client.wait_for_server(timeout_sec=10.0)
    for g in range(GOALS):
        handle = wait_future(client.send_goal_async(FollowJointTrajectory.Goal()), 5.0)
        assert handle is not None and handle.accepted, f"goal {g} not accepted"
        result = wait_future(handle.get_result_async(), 10.0)
        assert result is not None, f"goal {g}: no result"
    driver = nodes["driver"]
    assert driver.failures == []
    assert len(driver.reply_s) == GOALS * CALLS_PER_GOAL
    # a missed wake-up waits for the next event (here the 10 s result expiry): far over this
    assert max(driver.reply_s) < 1.0, sorted(driver.reply_s)[-5:]


def test_shutdown_stops_every_spin_thread(graph: tuple[NodeExecutors, dict[str, Node]]) -> None:
    executors, _ = graph
    executors.shutdown()
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name.startswith("spin-exec_test_")]
