"""QoS profiles and the process entry every node uses (clean shutdown on SIGINT and SIGTERM)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions

from unihm_core.process import limit_malloc_arenas, start_memory_trimmer
from unihm_core.ros.executor import WaitingExecutor

SENSOR_QOS: QoSProfile = qos_profile_sensor_data
"""Camera topics: best effort, keep last 5 (what camera drivers publish with)."""

PIPELINE_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""Pipeline outputs (clouds, trajectories): reliable, and the last ones kept for late joiners
(RViz, a recorder started after the request). Depth 10 holds one message per hand."""

STATE_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                       reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)
"""Joint states: reliable and volatile, like robot_state_publisher's subscription."""


NodeFactory = Callable[[], Node]


def wait_future(future: Any, timeout: float) -> Any:
    """The future's result, or None after ``timeout`` seconds, for a thread that is not the
    one spinning (an action's execute callback, a client with a spin thread)."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    return future.result() if done.wait(timeout) else None


def spin_nodes(factories: Sequence[NodeFactory], *, args: list[str] | None = None,
               threads: int = 16, ready: Callable[[list[Node]], None] | None = None,
               config_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Create the nodes, spin them together on one multithreaded executor, stop cleanly.

    SIGINT and SIGTERM end the spin and destroy every node (each node's ``destroy_node``
    closes what it holds, a recorder its bag), so nothing is lost and no traceback is printed.
    Returns the process exit code. ``threads`` is not a CPU count: action servers block a
    thread for a whole goal, so several nodes in one process need more threads than cores.
    A node that cannot start because of one of ``config_errors`` (a bad parameter) is reported
    as ``error: ...`` on stderr, exit code 2.
    """
    limit_malloc_arenas()
    start_memory_trimmer()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    executor = WaitingExecutor(num_threads=threads)
    nodes: list[Node] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        for make in factories:
            nodes.append(make())
        for node in nodes:
            executor.add_node(node)
        if ready is not None:
            ready(nodes)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except config_errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for node in reversed(nodes):  # before the executor: callbacks may still hold them
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown(timeout_sec=2.0)
        if rclpy.ok():
            rclpy.shutdown()
    return code
