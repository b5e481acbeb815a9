"""QoS profiles and the process entry every node uses (clean shutdown on SIGINT and SIGTERM)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rclpy.executors import (
    ExternalShutdownException,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
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


class NodeExecutors:
    """One executor per node, each spun in a thread of its own.

    Why not one executor for the whole graph: rclpy's executors rebuild their wait set over
    every entity of every node they hold at each wake-up, in Python, under the GIL. With the
    drivers' timers, camera frames and joint states waking a shared executor a hundred times
    a second, that walk over the whole graph took the GIL from the node doing the work. Here
    a wake-up walks one node's entities. A node that blocks in a callback while others of its
    own callbacks must run (an action that waits on service calls, a service that waits for
    a camera frame) says so with an ``executor_threads`` attribute (default 1).
    """

    def __init__(self) -> None:
        self._spun: list[tuple[Node, Any, threading.Thread]] = []

    def add(self, node: Node) -> None:
        threads = int(getattr(node, "executor_threads", 1))
        executor = (SingleThreadedExecutor(context=node.context) if threads <= 1
                    else MultiThreadedExecutor(num_threads=threads, context=node.context))
        executor.add_node(node)
        thread = threading.Thread(target=self._spin, args=(executor,), daemon=True,
                                  name=f"spin-{node.get_name()}")
        self._spun.append((node, executor, thread))
        thread.start()

    @staticmethod
    def _spin(executor: Any) -> None:
        with contextlib.suppress(ExternalShutdownException):
            executor.spin()

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop every executor and wait for its thread (before the nodes are destroyed)."""
        for _, executor, _ in self._spun:
            executor.shutdown(timeout_sec=timeout_s)
        for _, _, thread in self._spun:
            thread.join(timeout=timeout_s)
        self._spun.clear()


def spin_nodes(factories: Sequence[NodeFactory], *, args: list[str] | None = None,
               ready: Callable[[list[Node]], None] | None = None,
               config_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Create the nodes, spin each on its own executor (:class:`NodeExecutors`), stop cleanly.

    SIGINT and SIGTERM end the spin and destroy every node (each node's ``destroy_node``
    closes what it holds, a recorder its bag), so nothing is lost and no traceback is printed.
    Returns the process exit code.
    A node that cannot start because of one of ``config_errors`` (a bad parameter) is reported
    as ``error: ...`` on stderr, exit code 2.
    """
    limit_malloc_arenas()
    start_memory_trimmer()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    executors = NodeExecutors()
    nodes: list[Node] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        for make in factories:
            nodes.append(make())
        for node in nodes:
            executors.add(node)
        if ready is not None:
            ready(nodes)
        while not stop.wait(0.1) and rclpy.ok():
            pass
    except config_errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        executors.shutdown()  # before the nodes: callbacks may still hold them
        for node in reversed(nodes):
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code
