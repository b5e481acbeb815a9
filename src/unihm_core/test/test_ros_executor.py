"""WaitingExecutor: callbacks run as on rclpy's MultiThreadedExecutor, without its busy loop."""

from __future__ import annotations

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from unihm_core.ros.executor import WaitingExecutor  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture
def context():
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def _submissions(executor_type: type, context, seconds: float = 1.5
                 ) -> tuple[dict[int, int], dict[str, int]]:
    """Two workers kept busy by slow timers while a fast one fires: tasks queue in the pool,
    and every completion wakes the wait loop. Returns how many times each task was submitted
    to the pool, and how often each callback ran."""
    node = Node("executor_probe", context=context)
    group = ReentrantCallbackGroup()
    ran = {"slow": 0, "fast": 0}

    def slow() -> None:
        ran["slow"] += 1
        time.sleep(0.01)

    def fast() -> None:
        ran["fast"] += 1

    timers = [node.create_timer(0.005, slow, callback_group=group) for _ in range(2)]
    timers.append(node.create_timer(0.001, fast, callback_group=group))
    executor = executor_type(num_threads=2, context=context)
    executor.add_node(node)
    submitted: dict[int, int] = {}
    alive: list[object] = []             # kept, so that no id is reused by a later task
    pool_submit = executor._executor.submit

    def counting_submit(fn, *args, **kwargs):
        task = args[0] if args else fn          # WaitingExecutor submits (_run, task, event)
        alive.append(task)
        submitted[id(task)] = submitted.get(id(task), 0) + 1
        return pool_submit(fn, *args, **kwargs)

    executor._executor.submit = counting_submit
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    time.sleep(seconds)
    for timer in timers:
        timer.cancel()
    executor.shutdown(timeout_sec=2.0)
    spinner.join(timeout=5.0)
    node.destroy_node()
    return submitted, ran


def test_a_queued_task_is_submitted_once(context) -> None:
    submitted, ran = _submissions(WaitingExecutor, context)
    assert ran["slow"] > 10 and ran["fast"] > 10, ran
    assert len(submitted) > 20
    assert max(submitted.values()) == 1, sorted(submitted.values())[-5:]


def test_rclpy_executor_submits_queued_tasks_again(context) -> None:
    """The reference: what the workaround is for (if rclpy stops doing this, drop it)."""
    submitted, _ran = _submissions(MultiThreadedExecutor, context)
    assert max(submitted.values()) > 1


def test_callbacks_run_in_parallel_and_all_messages_arrive(context) -> None:
    node = Node("executor_parallel", context=context)
    group = ReentrantCallbackGroup()
    inside = threading.Semaphore(0)
    both = threading.Event()
    seen: list[str] = []

    def slow(msg: String) -> None:
        seen.append(msg.data)
        inside.release()
        if len(seen) >= 2:
            both.set()
        both.wait(2.0)          # returns only once two callbacks were inside together

    node.create_subscription(String, "parallel", slow, 50, callback_group=group)
    pub = node.create_publisher(String, "parallel", 50)
    executor = WaitingExecutor(num_threads=4, context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    deadline = time.monotonic() + 10.0
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in range(20):
        pub.publish(String(data=str(i)))
    while len(seen) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    executor.shutdown(timeout_sec=2.0)
    spinner.join(timeout=5.0)
    node.destroy_node()
    assert both.is_set()
    assert sorted(seen, key=int) == [str(i) for i in range(20)]
