"""The other process of the ROS smoke test: a real rclpy node on the test's isolated domain.

Modes:
  publisher      publishes one HandTrajectory (reliable, transient local) on /unihm/smoke/hand
  action_server  serves unihm_msgs/action/Manipulate at /unihm/manipulate, walking the pipeline
                 stages with feedback; honours cancel; rejects goals with an empty instruction

It prints "ready" once its entities exist and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

import rclpy
from geometry_msgs.msg import Pose
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from trajectory_msgs.msg import JointTrajectoryPoint

from unihm_msgs.action import Manipulate
from unihm_msgs.msg import HandTrajectory, Metric

HAND_TOPIC = "/unihm/smoke/hand"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
STAGES = [Manipulate.Feedback.STAGE_PERCEIVING, Manipulate.Feedback.STAGE_GENERATING,
          Manipulate.Feedback.STAGE_REFINING, Manipulate.Feedback.STAGE_VALIDATING,
          Manipulate.Feedback.STAGE_EXECUTING]


def sample_trajectory(request_id: str, hand_id: str, frames: int = 5) -> HandTrajectory:
    """A small but complete trajectory: every field set, values that depend on the frame."""
    msg = HandTrajectory()
    msg.header.frame_id = "world"
    msg.request_id = request_id
    msg.hand_id = hand_id
    msg.source = HandTrajectory.SOURCE_GENERATED
    msg.wrist_frame = "right_hand_link"
    msg.joint_trajectory.joint_names = [f"joint_{j}" for j in range(12)]
    for t in range(frames):
        pose = Pose()
        pose.position.x = 0.1 * t
        pose.orientation.w = 1.0
        msg.wrist_poses.append(pose)
        point = JointTrajectoryPoint()
        point.positions = [0.01 * t * (j + 1) for j in range(12)]
        point.time_from_start.sec = t // 10
        point.time_from_start.nanosec = (t % 10) * 100_000_000
        msg.joint_trajectory.points.append(point)
    msg.tokens = [7 * t + 3 for t in range(frames)]
    msg.frames_per_token = 1
    return msg


class ManipulatePeer(Node):
    def __init__(self, step_s: float) -> None:
        super().__init__("unihm_smoke_manipulate_server")
        self._step_s = step_s
        self._server = ActionServer(
            self, Manipulate, "/unihm/manipulate", execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup())

    def _on_goal(self, goal: Manipulate.Goal) -> GoalResponse:
        return GoalResponse.REJECT if not goal.instruction.strip() else GoalResponse.ACCEPT

    def _execute(self, handle) -> Manipulate.Result:
        goal = handle.request
        result = Manipulate.Result(request_id=goal.request_id or "smoke")
        # Feedback is volatile: wait (briefly) until the client's feedback reader is discovered,
        # or the first stages' feedback could be published before anyone listens.
        deadline = time.monotonic() + 5.0
        while (self.count_subscribers("/unihm/manipulate/_action/feedback") == 0
               and time.monotonic() < deadline):
            time.sleep(0.01)
        for i, stage in enumerate(STAGES):
            for _ in range(5):
                if handle.is_cancel_requested:
                    handle.canceled()
                    result.message = f"canceled while {stage}"
                    result.error_code = Manipulate.Result.CANCELED
                    result.failed_stage = stage
                    return result
                time.sleep(self._step_s / 5)
            handle.publish_feedback(Manipulate.Feedback(
                stage=stage, progress=(i + 1) / len(STAGES), detail=goal.instruction))
        result.success = True
        result.message = f"done: {goal.instruction}"
        result.hand_trajectories = [sample_trajectory(result.request_id, h) for h in goal.hands]
        result.metrics = [Metric(name="frames", hand_id=h, value=5.0) for h in goal.hands]
        result.executed = goal.execute
        handle.succeed()
        return result


def main() -> int:
    mode = sys.argv[1]
    step_s = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    # Our own SIGINT/SIGTERM handling: stop spinning, then tear down in order. (rclpy's handlers
    # shut the context down under a running executor, which races with its worker threads.)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    if mode == "publisher":
        node = Node("unihm_smoke_publisher")
        pub = node.create_publisher(HandTrajectory, HAND_TOPIC, LATCHED)
        pub.publish(sample_trajectory("smoke-1", "xhand_right"))
    elif mode == "action_server":
        node = ManipulatePeer(step_s)
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    print("ready", flush=True)
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
