"""``unihm manipulate "instruction"``: send one Manipulate goal and print the outcome.

The command-line client of ``/unihm/manipulate`` (``ros2 action send_goal`` needs ros2cli,
which a PyPI install lacks): feedback lines while it runs, a summary table, and with
``--json`` one JSON object as the last line. Ctrl-C cancels the goal before exiting.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

ACTION = "/unihm/manipulate"


class ManipulateClient:
    """A small rclpy node with an action client; usable from scripts and tests."""

    def __init__(self, node_name: str = "unihm_manipulate_client", action: str = ACTION
                 ) -> None:
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        from unihm_msgs.action import Manipulate

        self.node = Node(node_name)
        self.action = action
        self.client = ActionClient(self.node, Manipulate, action)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop spinning, wait for the spin thread, then destroy: destroying entities the
        thread is still waiting on aborts the process."""
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        self.client.destroy()
        self.node.destroy_node()

    def send(self, instruction: str, hands: list[str] | None = None, *, execute: bool = False,
             request_id: str = "", timeout: float = 60.0, server_wait: float = 10.0,
             on_feedback: Any = None, cancel_after: float | None = None) -> dict[str, Any]:
        """Send a goal and wait for its result; returns a JSON-ready summary.

        ``accepted`` is false when the server rejected the goal (one is already running).
        ``cancel_after`` cancels the goal that many seconds after it was accepted.
        """
        from unihm_core.ros.runtime import wait_future
        from unihm_msgs.action import Manipulate

        if not self.client.wait_for_server(timeout_sec=server_wait):
            raise TimeoutError(f"no Manipulate server at {self.action} within {server_wait:g} s "
                               f"(is the graph running? `unihm run sim`)")
        goal = Manipulate.Goal(instruction=instruction, hands=list(hands or []),
                               execute=execute, request_id=request_id)
        feedback: list[tuple[str, float]] = []

        def on_fb(msg: Any) -> None:
            feedback.append((msg.feedback.stage, float(msg.feedback.progress)))
            if on_feedback is not None:
                on_feedback(msg.feedback)

        start = time.perf_counter()
        future = self.client.send_goal_async(goal, feedback_callback=on_fb)
        handle = wait_future(future, server_wait)
        if handle is None:
            raise TimeoutError("the server did not answer the goal request")
        if not handle.accepted:
            return {"accepted": False, "success": False,
                    "message": "goal rejected (another goal is running)"}
        result_future = handle.get_result_async()
        deadline = time.monotonic() + timeout
        canceled = False
        while not result_future.done():
            if cancel_after is not None and not canceled and \
                    time.perf_counter() - start > cancel_after:
                wait_future(handle.cancel_goal_async(), 5.0)
                canceled = True
            if time.monotonic() > deadline:
                wait_future(handle.cancel_goal_async(), 5.0)
                raise TimeoutError(f"no result within {timeout:g} s (goal canceled)")
            time.sleep(0.01)
        wrapped = result_future.result()
        r = wrapped.result
        return {
            "accepted": True, "status": int(wrapped.status), "success": bool(r.success),
            "error_code": int(r.error_code), "failed_stage": r.failed_stage,
            "message": r.message, "request_id": r.request_id, "executed": bool(r.executed),
            "seconds": round(time.perf_counter() - start, 3),
            "stages": [s for s, _ in feedback],
            "hands": [t.hand_id for t in r.hand_trajectories],
            "arm_points": len(r.arm_trajectory.points),
            "metrics": {(f"{m.name}@{m.hand_id}" if m.hand_id else m.name): m.value
                        for m in r.metrics},
            "result": r,
        }


def run(args: argparse.Namespace) -> int:
    import rclpy

    hands = [h for h in (args.hands or "").split(",") if h]
    rclpy.init()
    client = ManipulateClient()
    try:
        out = client.send(args.instruction, hands, execute=args.execute,
                          timeout=args.timeout, server_wait=args.server_wait,
                          on_feedback=lambda fb: print(
                              f"[{fb.progress:4.0%}] {fb.stage}: {fb.detail}", flush=True))
    except TimeoutError as e:
        print(f"unihm manipulate: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("unihm manipulate: interrupted", file=sys.stderr)
        return 130
    finally:
        client.close()
        rclpy.try_shutdown()
    out.pop("result", None)
    state = "succeeded" if out["success"] else f"FAILED ({out.get('failed_stage') or '-'})"
    print(f"{state}: {out['message']}")
    if args.json:
        print(json.dumps(out))
    return 0 if out["success"] else 2


def register_manipulate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("manipulate", help="send a Manipulate goal to /unihm/manipulate",
                              description=__doc__)
    p.add_argument("instruction")
    p.add_argument("--hands", help="comma-separated hand ids (default: the server's)")
    p.add_argument("--execute", action="store_true", help="also run it on the drivers")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a result")
    p.add_argument("--server-wait", type=float, default=10.0,
                   help="seconds to wait for the action server")
    p.add_argument("--json", action="store_true", help="print one JSON object last")
    p.set_defaults(func=run)
