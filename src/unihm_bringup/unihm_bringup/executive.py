"""The executive: hosts the ``Manipulate`` action at ``/unihm/manipulate`` and drives the stages.

perceive -> generate -> refine (services, each with its own timeout) -> arm IK, time
parameterization and validation (:mod:`unihm_bringup.motion_plan`, ROS-free) -> when
``execute`` is true, FollowJointTrajectory goals to the arm controller and the hand driver,
sent together. Every failure ends the goal with ``success=false``, an error code, the stage
and a message; nothing reaches a driver before validation passed.

Goal policy: one goal at a time. A goal that arrives while another runs is rejected (the
running one is never disturbed; cancel it first). A canceled goal cancels the driver goals,
whose controllers then hold their current position.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from control_msgs.action import FollowJointTrajectory
from unihm_core.ros.conversions import (
    MessageError,
    joint_trajectory_msg,
    metric_msgs,
    motion_from_hand_trajectory,
    pose_msg,
)
from unihm_core.ros.runtime import STATE_QOS, spin_nodes, wait_future
from unihm_msgs.action import Manipulate
from unihm_msgs.srv import Generate, Perceive, Refine

NODE_NAME = "unihm_executive"
Feedback = Manipulate.Feedback
Result = Manipulate.Result
DEFAULTS: dict[str, Any] = {
    "action_name": "/unihm/manipulate",
    "perceive_service": "/unihm/perceive",
    "generate_service": "/unihm/generate",
    "refine_service": "/unihm/refine",
    "default_hands": ["xhand_right"],
    "planning_frame": "world",
    "arm": "franka_panda",
    # planning_from_arm_base: [x, y, z, qx, qy, qz, qw]
    "arm_base_pose": [-0.55, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    "ik_backend": "pinocchio",  # or "moveit" (moveit_py, when installed)
    # the MoveIt configuration that solves IK when ik_backend is "moveit" (docs/system.md)
    "moveit_config_package": "moveit_resources_panda_moveit_config",
    "moveit_robot_name": "panda",
    "moveit_group": "panda_arm",
    "moveit_tip_link": "",  # empty: the arm's flange link
    "moveit_ik_timeout_s": 0.05,
    "arm_action": "/fr3_arm_controller/follow_joint_trajectory",
    "hand_action": "/hand_controller/follow_joint_trajectory",
    "joint_states_topic": "/joint_states",
    "state_max_age_s": 1.0,
    "limit_scale": 0.5,  # fraction of the published velocity/acceleration/jerk limits
    "start_tolerance_rad": 0.05,
    "smoothing_cutoff_hz": 2.0,  # low-pass of the refined motion before IK; 0 = off
    "service_wait_s": 2.0,
    "perceive_timeout_s": 10.0,
    "generate_timeout_s": 20.0,
    "refine_timeout_s": 20.0,
    "driver_wait_s": 2.0,
    "execute_margin_s": 5.0,
    "temperature": 0.0,
    "seed": 0,
}
STAGE_PROGRESS = {Feedback.STAGE_PERCEIVING: 0.0, Feedback.STAGE_GENERATING: 0.2,
                  Feedback.STAGE_REFINING: 0.4, Feedback.STAGE_VALIDATING: 0.6,
                  Feedback.STAGE_EXECUTING: 0.7}


class StageError(Exception):
    """Ends a goal: the error code, the stage and the message the user reads."""

    def __init__(self, code: int, stage: str, message: str) -> None:
        super().__init__(message)
        self.code, self.stage, self.message = code, stage, message


class GoalCanceledError(Exception):
    """The client canceled the goal (checked between and within stages)."""


@dataclass
class JointStateCache:
    """Latest position of every joint seen on /joint_states, with its arrival time."""

    positions: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, msg: JointState) -> None:
        now = time.monotonic()
        with self.lock:
            for name, value in zip(msg.name, msg.position, strict=False):
                self.positions[name] = float(value)
                self.received[name] = now

    def get(self, names: list[str], max_age: float) -> np.ndarray | None:
        """Positions of ``names``, or None when any is missing or older than ``max_age``."""
        now = time.monotonic()
        with self.lock:
            if any(n not in self.positions or now - self.received[n] > max_age for n in names):
                return None
            return np.array([self.positions[n] for n in names])


class Executive(Node):
    def __init__(self, *, node_name: str = NODE_NAME,
                 parameter_overrides: list[Parameter] | None = None) -> None:
        super().__init__(node_name, parameter_overrides=parameter_overrides or [])
        for name, value in DEFAULTS.items():
            self.declare_parameter(name, value)
        from unihm_bringup.motion_plan import MotionPlanner, pose_from_param
        from unihm_bringup.moveit_ik import MoveItSettings

        self.p = {name: self.get_parameter(name).value for name in DEFAULTS}
        moveit = (MoveItSettings(config_package=self.p["moveit_config_package"],
                                 robot_name=self.p["moveit_robot_name"],
                                 group=self.p["moveit_group"],
                                 tip_link=self.p["moveit_tip_link"],
                                 timeout_s=self.p["moveit_ik_timeout_s"])
                  if self.p["ik_backend"] == "moveit" else None)
        self.planner = MotionPlanner(arm=self.p["arm"],
                                     planning_from_base=pose_from_param(self.p["arm_base_pose"],
                                                                        "arm_base_pose"),
                                     ik_backend=self.p["ik_backend"], moveit=moveit,
                                     limit_scale=self.p["limit_scale"],
                                     start_tolerance=self.p["start_tolerance_rad"],
                                     smoothing_cutoff_hz=self.p["smoothing_cutoff_hz"])
        group = ReentrantCallbackGroup()
        self.perceive = self.create_client(Perceive, self.p["perceive_service"],
                                           callback_group=group)
        self.generate = self.create_client(Generate, self.p["generate_service"],
                                           callback_group=group)
        self.refine = self.create_client(Refine, self.p["refine_service"], callback_group=group)
        self.arm_driver = ActionClient(self, FollowJointTrajectory, self.p["arm_action"],
                                       callback_group=group)
        self.hand_driver = ActionClient(self, FollowJointTrajectory, self.p["hand_action"],
                                        callback_group=group)
        self.states = JointStateCache()
        self.create_subscription(JointState, self.p["joint_states_topic"], self.states.update,
                                 STATE_QOS, callback_group=group)
        self.records = self.create_publisher(String, "/unihm/goal_record", 10)
        self._busy: str | None = None
        self._busy_lock = threading.Lock()
        self.server = ActionServer(self, Manipulate, self.p["action_name"],
                                   execute_callback=self._execute,
                                   goal_callback=self._on_goal,
                                   cancel_callback=lambda _: CancelResponse.ACCEPT,
                                   callback_group=group, result_timeout=10)
        self.get_logger().info(f"ready: {self.p['action_name']}, arm {self.p['arm_action']}, hand "
                               f"{self.p['hand_action']}, default hands "
                               f"{self.p['default_hands']}")

    # --------------------------------------------------------------------------- goals
    def _on_goal(self, goal: Manipulate.Goal) -> GoalResponse:
        with self._busy_lock:
            if self._busy is not None:
                self.get_logger().warning(f"goal {goal.instruction!r} rejected: request "
                                          f"{self._busy} is running (cancel it first)")
                return GoalResponse.REJECT
            self._busy = goal.request_id or "pending"
        return GoalResponse.ACCEPT

    def _execute(self, handle: ServerGoalHandle) -> Manipulate.Result:
        goal: Manipulate.Goal = handle.request
        rid = goal.request_id or uuid.uuid4().hex[:12]
        with self._busy_lock:
            self._busy = rid
        result = Result(request_id=rid)
        timings: dict[str, float] = {}
        try:
            self._run(handle, goal, rid, result, timings)
            result.success, result.error_code = True, Result.OK
            handle.succeed()
        except StageError as e:
            result.success, result.error_code = False, e.code
            result.failed_stage, result.message = e.stage, e.message
            self.get_logger().warning(f"[{rid}] {e.stage}: {e.message}")
            handle.abort()
        except GoalCanceledError:
            result.success, result.error_code = False, Result.CANCELED
            result.message = "canceled; the drivers hold their current position"
            handle.canceled()
        except Exception as e:  # noqa: BLE001 - a bug must end the goal, not the node
            result.success, result.error_code = False, Result.EXECUTION_FAILED
            result.message = f"internal error: {type(e).__name__}: {e}"
            self.get_logger().error(f"[{rid}] {result.message}")
            handle.abort()
        finally:
            with self._busy_lock:
                self._busy = None
        result.metrics.extend(metric_msgs({f"{k}_time_s": v for k, v in timings.items()}))
        self._publish_record(goal, result, timings)
        return result

    def _publish_record(self, goal: Manipulate.Goal, result: Manipulate.Result,
                        timings: dict[str, float]) -> None:
        from unihm_bringup.bags.goal_record import goal_record_message

        try:
            self.records.publish(String(data=goal_record_message(
                request_id=result.request_id, instruction=goal.instruction,
                hands=list(goal.hands), execute=goal.execute, success=result.success,
                error_code=int(result.error_code), message=result.message,
                failed_stage=result.failed_stage, executed=result.executed, stage_s=timings,
                total_s=sum(timings.values()))))
        except Exception as e:  # noqa: BLE001 - observability must not fail a goal
            self.get_logger().warning(f"goal record not published: {e}")

    # --------------------------------------------------------------------------- stages
    def _feedback(self, handle: ServerGoalHandle, stage: str, detail: str,
                  progress: float | None = None) -> None:
        if handle.is_cancel_requested:
            raise GoalCanceledError()
        handle.publish_feedback(Feedback(stage=stage, detail=detail, progress=float(
            STAGE_PROGRESS[stage] if progress is None else progress)))

    def _call(self, handle: ServerGoalHandle, client: Any, request: Any, *, stage: str,
              timeout: float, code: int) -> Any:
        if not client.wait_for_service(timeout_sec=self.p["service_wait_s"]):
            raise StageError(code, stage, f"service {client.srv_name} is not available "
                                            f"(is its node running?)")
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        deadline = time.monotonic() + timeout
        while not done.wait(0.05):
            if handle.is_cancel_requested:
                client.remove_pending_request(future)
                raise GoalCanceledError()
            if time.monotonic() > deadline:
                client.remove_pending_request(future)
                raise StageError(Result.TIMEOUT, stage,
                                   f"{client.srv_name} did not answer within {timeout:g} s")
        response = future.result()
        if response is None:
            raise StageError(code, stage, f"{client.srv_name} returned no response")
        if not response.success:
            raise StageError(code, stage, response.message)
        return response

    def _resolve_hands(self, goal: Manipulate.Goal) -> list[str]:
        from unihm_core.hands.kinematics import hand_kinematics
        from unihm_core.hands.registry import UnknownHandError

        hands = [h.strip() for h in goal.hands] or list(self.p["default_hands"])
        if not hands or any(not h for h in hands):
            raise StageError(Result.INVALID_GOAL, Feedback.STAGE_PERCEIVING,
                               "hands: empty hand id in the goal")
        if len(set(hands)) != len(hands):
            raise StageError(Result.INVALID_GOAL, Feedback.STAGE_PERCEIVING,
                               f"hands: duplicate hand ids in {hands}")
        for hand in hands:
            try:
                hand_kinematics(hand)
            except (UnknownHandError, KeyError, ValueError) as e:
                raise StageError(Result.INVALID_GOAL, Feedback.STAGE_PERCEIVING,
                                   f"unknown hand {hand!r}: {e}") from None
        return hands

    def _run(self, handle: ServerGoalHandle, goal: Manipulate.Goal, rid: str,
             result: Manipulate.Result, timings: dict[str, float]) -> None:
        p = self.p
        if not goal.instruction.strip():
            raise StageError(Result.INVALID_GOAL, Feedback.STAGE_PERCEIVING,
                               "the instruction is empty; say what to do with which object, "
                               "e.g. 'pick up the mustard bottle'")
        hands = self._resolve_hands(goal)
        first = hands[0]
        arm_names = self.planner.arm_joint_names
        hand_names = self.planner.hand_joint_names(first)
        arm_q = self.states.get(arm_names, p["state_max_age_s"])
        hand_q = self.states.get(hand_names, p["state_max_age_s"])
        if goal.execute and (arm_q is None or hand_q is None):
            who = arm_names if arm_q is None else hand_names
            raise StageError(Result.EXECUTION_FAILED, Feedback.STAGE_PERCEIVING,
                               f"no current joint state for {who[0]}.. on "
                               f"{p['joint_states_topic']} (within {p['state_max_age_s']:g} s); "
                               f"are the drivers running?")
        arm_q = self.planner.arm_rest if arm_q is None else arm_q
        hand_q = self.planner.hand_rest(first) if hand_q is None else hand_q

        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = round(now - clock, 4)
            clock = now

        self._feedback(handle, Feedback.STAGE_PERCEIVING, goal.instruction)
        perceived = self._call(
            handle, self.perceive,
            Perceive.Request(request_id=rid, instruction=goal.instruction,
                             planning_frame=p["planning_frame"]),
            stage=Feedback.STAGE_PERCEIVING, timeout=p["perceive_timeout_s"],
            code=Result.PERCEPTION_FAILED)
        result.target = perceived.target
        lap(Feedback.STAGE_PERCEIVING)

        self._feedback(handle, Feedback.STAGE_GENERATING, perceived.message)
        wrist0 = self.planner.wrist_pose(arm_q, first)
        gen_request = Generate.Request(
            request_id=rid, instruction=goal.instruction, hands=hands,
            object=perceived.object, target=perceived.target,
            initial_hand_state=JointState(name=hand_names, position=hand_q.tolist()),
            initial_wrist_pose=pose_msg(wrist0), temperature=float(p["temperature"]),
            top_k=0, top_p=1.0, seed=int(p["seed"]))
        generated = self._call(handle, self.generate, gen_request,
                               stage=Feedback.STAGE_GENERATING,
                               timeout=p["generate_timeout_s"], code=Result.GENERATION_FAILED)
        lap(Feedback.STAGE_GENERATING)

        self._feedback(handle, Feedback.STAGE_REFINING, generated.message)
        refined = self._call(handle, self.refine,
                             Refine.Request(request_id=rid, object=perceived.object,
                                            target=perceived.target,
                                            trajectories=generated.trajectories),
                             stage=Feedback.STAGE_REFINING, timeout=p["refine_timeout_s"],
                             code=Result.REFINEMENT_FAILED)
        result.hand_trajectories = refined.trajectories
        result.metrics.extend(refined.metrics)
        lap(Feedback.STAGE_REFINING)

        self._feedback(handle, Feedback.STAGE_VALIDATING, refined.message)
        plan = self._plan(refined.trajectories[0], first, arm_q, hand_q, result)
        lap(Feedback.STAGE_VALIDATING)
        if not goal.execute:
            result.message = (f"planned and validated ({plan.times[-1]:.1f} s motion, not "
                              f"executed): {perceived.message}")
            return
        hand_traj = joint_trajectory_msg(hand_names, plan.times, plan.hand_q, plan.hand_qd,
                                         accelerations=plan.hand_qdd)
        self._gate(result.arm_trajectory, hand_traj, first)
        self._feedback(handle, Feedback.STAGE_EXECUTING,
                       f"{plan.times[-1]:.1f} s on {p['arm_action']} and {p['hand_action']}")
        self._drive(handle, result.arm_trajectory, hand_traj, float(plan.times[-1]))
        lap(Feedback.STAGE_EXECUTING)
        result.executed = True
        result.message = f"executed ({plan.times[-1]:.1f} s): {perceived.message}"

    def _plan(self, refined: Any, hand: str, arm_q: np.ndarray, hand_q: np.ndarray,
              result: Manipulate.Result) -> Any:
        """IK, timing and validation of the executed hand's refined motion."""
        from unihm_bringup.motion_plan import PlanError

        try:
            motion = motion_from_hand_trajectory(refined)
            plan = self.planner.plan(motion.wrist_poses, motion.joints, motion.times,
                                     hand=hand, arm_current=arm_q, hand_current=hand_q)
        except (PlanError, MessageError, ValueError) as e:
            raise StageError(Result.VALIDATION_FAILED, Feedback.STAGE_VALIDATING,
                             str(e)) from None
        result.arm_trajectory = joint_trajectory_msg(
            self.planner.arm_joint_names, plan.times, plan.arm_q, plan.arm_qd,
            accelerations=plan.arm_qdd)
        result.arm_trajectory.header.frame_id = self.p["planning_frame"]
        result.metrics.extend(metric_msgs(plan.metrics))
        return plan

    # -------------------------------------------------------------------------- drivers
    def _gate(self, arm_traj: Any, hand_traj: Any, hand: str) -> None:
        """Re-read both trajectories from their messages and check them against the published
        limits and the joint state *now*: nothing leaves this node unchecked."""
        from unihm_bringup.motion_plan import PlanError, check_before_send
        from unihm_core.execution.validation import Limits
        from unihm_core.ros.conversions import motion_from_joint_trajectory

        for label, traj, limits in (("arm", arm_traj, self.planner.arm_limits),
                                    ("hand", hand_traj, Limits.from_hand(hand))):
            try:
                m = motion_from_joint_trajectory(traj, f"{label} trajectory")
                now = self.states.get(m.names, self.p["state_max_age_s"])
                if now is None:
                    raise PlanError(f"no fresh joint state for the {label} joints")
                check_before_send(m.names, m.times, m.positions, m.velocities,
                                  m.accelerations, limits=limits, current=now,
                                  start_tolerance=self.p["start_tolerance_rad"])
            except (PlanError, MessageError, ValueError) as e:
                raise StageError(Result.VALIDATION_FAILED, Feedback.STAGE_VALIDATING,
                                   f"{label}: {e}") from None

    def _drive(self, handle: ServerGoalHandle, arm_traj: Any, hand_traj: Any,
               duration: float) -> None:
        stage = Feedback.STAGE_EXECUTING
        drivers = [("arm", self.arm_driver, arm_traj), ("hand", self.hand_driver, hand_traj)]
        for label, client, _ in drivers:
            if not client.wait_for_server(timeout_sec=self.p["driver_wait_s"]):
                raise StageError(Result.EXECUTION_FAILED, stage,
                                   f"{label} driver {client._action_name} is not available")
        sent = []
        for label, client, traj in drivers:  # both sent before waiting: they start together
            sent.append((label, client.send_goal_async(FollowJointTrajectory.Goal(
                trajectory=traj))))
        handles = []
        for label, future in sent:
            goal_handle = wait_future(future, self.p["driver_wait_s"])
            if goal_handle is None or not goal_handle.accepted:
                for other in handles:
                    other.cancel_goal_async()
                why = ("did not answer the goal request within "
                       f"{self.p['driver_wait_s']:g} s" if goal_handle is None
                       else "rejected the trajectory")
                raise StageError(Result.EXECUTION_FAILED, stage, f"{label} driver {why}")
            handles.append(goal_handle)
        results = [h.get_result_async() for h in handles]
        deadline = time.monotonic() + duration + self.p["execute_margin_s"]
        start = time.monotonic()
        next_feedback = 0.0
        while not all(r.done() for r in results):
            if handle.is_cancel_requested:
                self._cancel_all(handles)
                raise GoalCanceledError()
            failed = [(lbl, r) for (lbl, _, _), r in zip(drivers, results, strict=True)
                      if r.done() and r.result().result.error_code != 0]
            if failed:
                self._cancel_all(handles)
                lbl, r = failed[0]
                res = r.result().result
                raise StageError(Result.EXECUTION_FAILED, stage,
                                   f"{lbl} driver aborted: {res.error_string or 'error code'}"
                                   f" ({res.error_code})")
            if time.monotonic() > deadline:
                self._cancel_all(handles)
                raise StageError(Result.TIMEOUT, stage,
                                   f"drivers did not finish within {duration:.1f} s + "
                                   f"{self.p['execute_margin_s']:g} s")
            next_feedback = self._progress(handle, time.monotonic() - start, duration,
                                           next_feedback)
            time.sleep(0.05)
        for (lbl, _, _), r in zip(drivers, results, strict=True):
            res = r.result()
            if res.status != 4 or res.result.error_code != 0:  # 4 = GoalStatus.SUCCEEDED
                raise StageError(Result.EXECUTION_FAILED, stage,
                                   f"{lbl} driver ended with status {res.status}: "
                                   f"{res.result.error_string or res.result.error_code}")

    @staticmethod
    def _progress(handle: ServerGoalHandle, elapsed: float, duration: float,
                  due: float) -> float:
        """Execution feedback twice a second; returns when the next one is due."""
        if elapsed < due:
            return due
        progress = 0.7 + 0.3 * min(1.0, elapsed / max(duration, 1e-3))
        handle.publish_feedback(Feedback(stage=Feedback.STAGE_EXECUTING,
                                         progress=float(progress),
                                         detail=f"{min(elapsed, duration):.1f} of "
                                                f"{duration:.1f} s"))
        return due + 0.5

    def _cancel_all(self, handles: list[Any]) -> None:
        futures = [h.cancel_goal_async() for h in handles]
        for f in futures:
            wait_future(f, 2.0)


def main(args: list[str] | None = None) -> int:
    return spin_nodes([Executive], args=args, config_errors=(ValueError,))


if __name__ == "__main__":
    raise SystemExit(main())
