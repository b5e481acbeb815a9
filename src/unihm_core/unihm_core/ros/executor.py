"""A multithreaded executor that waits for its workers instead of spinning for them.

Why: rclpy's ``MultiThreadedExecutor`` hands each ready callback to a thread pool as a task,
and until a worker has started that task, every pass of its wait loop yields the task again
without waiting and submits it once more. With the nodes of a process sharing two cores, a
worker often needs milliseconds to get the GIL, and in that time the spin thread goes round
its loop (a wait set rebuilt in Python over every entity of every node) thousands of times:
measured in the in-process sim graph, 2 900 hand-outs per second while idle where the timers
and subscriptions account for ~160, and the spin thread holding the GIL about half of the
time while goals ran, so the callbacks doing the work waited for it.

``WaitingExecutor`` submits a task once and, when the loop yields a task that is queued but
not started, waits (up to ``settle_s``) for a worker to start it instead of going round
again. Everything else is rclpy's: the same wait set, callback groups and task handling.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rclpy.executors import (
    ConditionReachedException,
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    TimeoutException,
)


class WaitingExecutor(MultiThreadedExecutor):
    """``MultiThreadedExecutor`` without the busy loop over queued, not yet started tasks."""

    def __init__(self, num_threads: int | None = None, *, settle_s: float = 0.005,
                 **kwargs: Any) -> None:
        super().__init__(num_threads, **kwargs)
        self._settle_s = settle_s
        self._queued: dict[Any, threading.Event] = {}   # task -> set once a worker starts it
        self._queued_lock = threading.Lock()

    def _run(self, task: Any, started: threading.Event) -> None:
        started.set()
        with self._queued_lock:
            self._queued.pop(task, None)
        task()

    def _spin_once_impl(self, timeout_sec: Any = None,
                        wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            task, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None,
                                                                 wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException,
                ConditionReachedException):
            return
        with self._queued_lock:
            started = self._queued.get(task)
            if started is None:
                started = self._queued[task] = threading.Event()
                submit = True
            else:
                submit = False
        if not submit:
            # queued and not started yet: let a worker take it rather than spin
            started.wait(self._settle_s)
            return
        self._executor.submit(self._run, task, started)
        self._futures.append(task)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise any exceptions
