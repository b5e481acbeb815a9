"""The FollowJointTrajectory action server both drivers are built on.

A subclass says how to command the joints and how to read them back; this class does the rest
the way ros2_control's joint_trajectory_controller does: it checks each goal, samples the
trajectory at a fixed rate, sends feedback, checks path and goal tolerances, holds position on
cancel and on failure, and lets a new goal preempt the running one (the old goal ends CANCELED
with INVALID_GOAL and a "preempted" message, as joint_trajectory_controller reports it).

Invalid goals are accepted and then aborted at once with the error code and a readable
error_string: a ROS 2 rejection carries no reason, and the caller deserves one. Such a goal does
not disturb the goal that is running.

Threading: one timer at the control rate drives the joints, for the running goal and between
goals; a goal's execute callback is a coroutine that only awaits the goal's end, so it holds no
executor thread. The node therefore works on any executor, even a single-threaded one; with a
MultiThreadedExecutor the state subscriptions and cancel requests are served in parallel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
from builtin_interfaces.msg import Duration as DurationMsg
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.task import Future
from rclpy.time import Time
from trajectory_msgs.msg import JointTrajectoryPoint

from control_msgs.action import FollowJointTrajectory
from unihm_bringup.drivers.trajectory_sampler import (
    CheckedTrajectory,
    ErrorCode,
    FloatArray,
    JointToleranceSpec,
    Outcome,
    Tolerances,
    TrajectoryError,
    TrajectoryMonitor,
    TrajectorySampler,
    Waypoint,
    check_trajectory,
    resolve_tolerances,
)

PREEMPTED = "preempted by a newer goal"
CANCELED = "canceled on request; holding position"
SHUTDOWN = "driver shut down while the goal was running"

State = tuple[FloatArray, FloatArray | None]
"""Measured joint positions and, when known, velocities (controller joint order)."""


class DriverConfigError(ValueError):
    """A parameter value the driver cannot start with."""


def parameter_overrides(overrides: Mapping[str, Any] | None,
                        float_names: Iterable[str] = ()) -> list[Parameter]:
    """rclpy Parameters from a plain dict, with ints turned into floats where a float is declared.

    ``{"state_rate_hz": 50}`` would otherwise arrive as an integer and be refused by a double
    parameter; YAML and launch files have the same trap.
    """
    floats = set(float_names)
    out = []
    for name, given in (overrides or {}).items():
        value = list(given) if isinstance(given, tuple) else given
        if name in floats:
            if isinstance(value, list):
                value = [float(v) for v in value]
            elif isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
        out.append(Parameter(name, value=value))
    return out


def _cancel_from_server(handle: ServerGoalHandle) -> None:
    """End a goal CANCELED although no client asked: the goal state machine only reaches
    CANCELED through CANCELING, so take that step first (rclpy has no public call for it)."""
    if not handle.is_cancel_requested:
        handle._update_state(_rclpy.GoalEvent.CANCEL_GOAL)
    handle.canceled()


def _duration_msg(seconds: float) -> DurationMsg:
    ns = max(0, round(seconds * 1e9))
    return DurationMsg(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class _Goal:
    """A goal being executed: what it asked for and how far it got."""

    def __init__(self, handle: ServerGoalHandle, trajectory: CheckedTrajectory,
                 tolerances: Tolerances, start: Time | None) -> None:
        self.handle = handle
        self.trajectory = trajectory
        self.tolerances = tolerances
        self.start = start  # header.stamp, when the goal set one
        self.accepted_at = time.monotonic()
        self.monitor: TrajectoryMonitor | None = None  # set once the joint state is known
        self.start_time: Time | None = None
        self.began_at = 0.0
        self.done: Future = Future()  # (Outcome, canceled) once the goal has ended


class TrajectoryServerNode(Node):
    """FollowJointTrajectory server; subclasses implement the joint I/O hooks below."""

    FLOAT_PARAMETERS: ClassVar[frozenset[str]] = frozenset({
        "goal_time_tolerance", "path_tolerance", "goal_tolerance", "stopped_velocity_tolerance"})

    def __init__(self, node_name: str, *, rate_parameter: str, default_rate_hz: float = 100.0,
                 default_goal_tolerance: float = 0.01, default_goal_time: float = 0.5,
                 **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self._lock = threading.Lock()
        self._active: _Goal | None = None  # the goal that drives the joints
        self._stopping = threading.Event()
        self._commanded: State | None = None  # last commanded positions and velocities
        self.joints: list[str] = []
        self.declare_parameter("action_name", "~/follow_joint_trajectory")
        self.declare_parameter(rate_parameter, float(default_rate_hz))
        self.declare_parameter("goal_time_tolerance", float(default_goal_time))
        self.declare_parameter("path_tolerance", [0.0])
        self.declare_parameter("goal_tolerance", [float(default_goal_tolerance)])
        self.declare_parameter("stopped_velocity_tolerance", [0.0])
        self.declare_parameter("allow_partial_joints_goal", False)
        self._state_wait_s = 0.0  # how long a goal may wait for the first joint state
        try:
            self.rate_hz = self._float_param(rate_parameter, low=1.0, high=2000.0)
            self._configure()
        except Exception:
            super().destroy_node()  # a node that failed to start must not linger in the graph
            raise

    def _configure(self) -> None:
        """Declare the subclass's parameters, set up its I/O, then call _start_server."""
        raise NotImplementedError

    # -- parameters -------------------------------------------------------------------------

    def _float_param(self, name: str, *, low: float | None = None,
                     high: float | None = None) -> float:
        value = float(self.get_parameter(name).value)
        if not np.isfinite(value) or (low is not None and value < low) or (
                high is not None and value > high):
            bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise DriverConfigError(f"parameter {name} must be {bounds}, got {value}")
        return value

    def _optional_param(self, name: str, kind: Parameter.Type) -> Any:
        """Declare a parameter without a default; its value, or None when not set."""
        self.declare_parameter(name, kind)
        try:
            value = self.get_parameter(name).value
        except ParameterUninitializedException:
            return None
        return None if value is None or (hasattr(value, "__len__") and len(value) == 0) else value

    # -- hooks for subclasses -----------------------------------------------------------------

    def _read_state(self) -> State | None:
        """The joints' measured state, or None while it is unknown or stale."""
        raise NotImplementedError

    def _command(self, positions: FloatArray, velocities: FloatArray,
                 accelerations: FloatArray) -> None:
        """Send one setpoint to the joints (called at the control rate during a goal)."""
        raise NotImplementedError

    def _state_unavailable_message(self) -> str:
        return "no joint state available"

    def _fault(self, elapsed_s: float) -> str | None:
        """A driver fault that ends the running goal (elapsed_s: seconds since it began)."""
        return None

    def _idle_tick(self) -> None:
        """Called at the control rate while no goal runs."""

    # -- setup --------------------------------------------------------------------------------

    def _start_server(self, joints: list[str]) -> None:
        """Create the action server once the subclass knows its joints."""
        if not joints or len(set(joints)) != len(joints) or not all(joints):
            raise DriverConfigError(f"joints must be non-empty, unique names, got {joints}")
        self.joints = list(joints)
        try:
            self._default_tolerances = Tolerances.from_defaults(
                len(joints), self.get_parameter("path_tolerance").value,
                self.get_parameter("goal_tolerance").value,
                self.get_parameter("stopped_velocity_tolerance").value,
                self.get_parameter("goal_time_tolerance").value)
        except ValueError as exc:
            raise DriverConfigError(str(exc)) from exc
        self._allow_partial = bool(self.get_parameter("allow_partial_joints_goal").value)
        action_name = str(self.get_parameter("action_name").value).strip()
        if not action_name:
            raise DriverConfigError("action_name must not be empty")
        self._server = ActionServer(
            self, FollowJointTrajectory, action_name, execute_callback=self._execute,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=lambda _handle: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup())
        self._timer = self.create_timer(1.0 / self.rate_hz, self._on_timer,
                                        callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f"serving FollowJointTrajectory on {self.resolve_action_name(action_name)} for "
            f"{len(joints)} joints at {self.rate_hz:g} Hz")

    def resolve_action_name(self, name: str) -> str:
        """The fully qualified action name ('~/x' expands to the node's name)."""
        return self.resolve_topic_name(name)

    def destroy_node(self) -> None:
        """End the running goal and let in-flight callbacks return before the entities they use
        go away (the executor does not wait for them, and would report the failure)."""
        self._stopping.set()
        with self._lock:
            if self._active is not None:
                self._end(self._active, Outcome(ErrorCode.INVALID_GOAL, SHUTDOWN))
        time.sleep(0.05)
        super().destroy_node()

    # -- goal handling ------------------------------------------------------------------------

    def _check_goal(self, goal: FollowJointTrajectory.Goal
                    ) -> tuple[CheckedTrajectory, Tolerances, Time | None]:
        if goal.multi_dof_trajectory.joint_names or goal.multi_dof_trajectory.points:
            raise TrajectoryError(ErrorCode.INVALID_GOAL,
                                  "multi-DOF trajectories are not supported by this driver")
        traj = goal.trajectory
        points = [Waypoint(time=p.time_from_start.sec + p.time_from_start.nanosec * 1e-9,
                           positions=list(p.positions), velocities=list(p.velocities),
                           accelerations=list(p.accelerations)) for p in traj.points]
        checked = check_trajectory(self.joints, list(traj.joint_names), points,
                                   allow_partial_joints=self._allow_partial)

        def specs(tolerances: Iterable[Any]) -> list[JointToleranceSpec]:
            return [JointToleranceSpec(t.name, t.position, t.velocity, t.acceleration)
                    for t in tolerances]

        goal_time = goal.goal_time_tolerance.sec + goal.goal_time_tolerance.nanosec * 1e-9
        tolerances = resolve_tolerances(self._default_tolerances, self.joints,
                                        specs(goal.path_tolerance), specs(goal.goal_tolerance),
                                        goal_time)
        stamp = Time.from_msg(traj.header.stamp, clock_type=self.get_clock().clock_type)
        if stamp.nanoseconds == 0:
            return checked, tolerances, None
        now = self.get_clock().now()
        end_ns = stamp.nanoseconds + round(checked.duration * 1e9)
        if end_ns < now.nanoseconds:
            raise TrajectoryError(
                ErrorCode.OLD_HEADER_TIMESTAMP,
                f"trajectory starts at header.stamp {stamp.nanoseconds * 1e-9:.3f} s and ends "
                f"{(now.nanoseconds - end_ns) * 1e-9:.3f} s before now; nothing left to execute")
        return checked, tolerances, stamp

    def _begin(self, trajectory: CheckedTrajectory, tolerances: Tolerances, state: State,
               start: Time | None) -> tuple[TrajectoryMonitor, Time]:
        """Start sampling from the commanded state (continuity across preemption), or from the
        measured one when nothing has been commanded yet."""
        if self._commanded is not None:
            p0, v0 = self._commanded
        else:
            p0, v0 = state
        sampler = TrajectorySampler(trajectory, p0, v0)
        return (TrajectoryMonitor(sampler, tolerances, self.joints),
                start if start is not None else self.get_clock().now())

    def _hold(self, state: State | None) -> None:
        """Stop where the joints are (measured if known, else where they were commanded)."""
        if state is not None:
            p = state[0]
        elif self._commanded is not None:
            p = self._commanded[0]
        else:
            return
        zeros = np.zeros_like(p)
        self._command(p, zeros, zeros)
        self._commanded = (p.copy(), zeros)

    async def _execute(self, handle: ServerGoalHandle) -> FollowJointTrajectory.Result:
        try:
            trajectory, tolerances, start = self._check_goal(handle.request)
        except TrajectoryError as exc:
            return self._finish(handle, Outcome(exc.code, str(exc)))
        goal = _Goal(handle, trajectory, tolerances, start)
        with self._lock:
            if self._stopping.is_set():
                self._end(goal, Outcome(ErrorCode.INVALID_GOAL, SHUTDOWN))
            else:
                if self._active is not None:
                    self.get_logger().info("new goal preempts the running one")
                    self._end(self._active, Outcome(ErrorCode.INVALID_GOAL, PREEMPTED),
                              canceled=True)
                self._active = goal
        outcome, canceled = await goal.done
        return self._finish(handle, outcome, canceled=canceled)

    def _end(self, goal: _Goal, outcome: Outcome, canceled: bool = False) -> None:
        """Mark a goal finished (its execute coroutine then reports it). Call with the lock."""
        if self._active is goal:
            self._active = None
        if not goal.done.done():
            goal.done.set_result((outcome, canceled))

    def _on_timer(self) -> None:
        with self._lock:
            goal = self._active
            if self._stopping.is_set():
                return
            if goal is None:
                self._idle_tick()
                return
            try:
                result = self._advance(goal)
            except Exception as exc:  # noqa: BLE001 - a bug here must end the goal, not the node
                self.get_logger().error(f"goal step failed: {exc!r}")
                result = Outcome(ErrorCode.INVALID_GOAL, f"driver error: {exc}"), False
            if result is not None:
                self._end(goal, *result)

    def _advance(self, goal: _Goal) -> tuple[Outcome, bool] | None:
        """One control period of the running goal: None while it runs, else (outcome, whether
        it ends CANCELED)."""
        state = self._read_state()
        if goal.handle.is_cancel_requested:
            self._hold(state)
            return Outcome(ErrorCode.SUCCESSFUL, CANCELED), True
        if goal.monitor is None:
            if state is None:
                if time.monotonic() - goal.accepted_at > self._state_wait_s:
                    return Outcome(ErrorCode.PATH_TOLERANCE_VIOLATED,
                                   self._state_unavailable_message()), False
                return None
            goal.monitor, goal.start_time = self._begin(goal.trajectory, goal.tolerances, state,
                                                        goal.start)
            goal.began_at = time.monotonic()
        outcome = self._tick(goal)
        return None if outcome is None else (outcome, False)

    def _tick(self, goal: _Goal) -> Outcome | None:
        monitor, start_time = goal.monitor, goal.start_time
        assert monitor is not None and start_time is not None
        now = self.get_clock().now()
        t = (now - start_time).nanoseconds * 1e-9
        p, v, a = monitor.desired(t)
        self._command(p, v, a)
        self._commanded = (p, v)
        state = self._read_state()
        if state is None:
            self._hold(None)
            return Outcome(ErrorCode.PATH_TOLERANCE_VIOLATED, self._state_unavailable_message())
        fault = self._fault(time.monotonic() - goal.began_at)
        if fault is not None:
            self._hold(state)
            return Outcome(ErrorCode.PATH_TOLERANCE_VIOLATED, fault)
        outcome = monitor.check(t, state[0], state[1])
        self._publish_feedback(goal.handle, now, t, (p, v, a), state)
        if outcome is not None and not outcome.success:
            self._hold(state)
        return outcome

    def _publish_feedback(self, handle: ServerGoalHandle, now: Time, t: float,
                          desired: tuple[FloatArray, FloatArray, FloatArray],
                          state: State) -> None:
        p, v, a = desired
        actual_p, actual_v = state
        fb = FollowJointTrajectory.Feedback()
        fb.header.stamp = now.to_msg()
        fb.joint_names = list(self.joints)
        stamp = _duration_msg(t)
        fb.desired = JointTrajectoryPoint(positions=p.tolist(), velocities=v.tolist(),
                                          accelerations=a.tolist(), time_from_start=stamp)
        fb.actual = JointTrajectoryPoint(positions=actual_p.tolist(), time_from_start=stamp)
        fb.error = JointTrajectoryPoint(positions=(p - actual_p).tolist(), time_from_start=stamp)
        if actual_v is not None:
            fb.actual.velocities = actual_v.tolist()
            fb.error.velocities = (v - actual_v).tolist()
        handle.publish_feedback(fb)

    def _finish(self, handle: ServerGoalHandle, outcome: Outcome,
                canceled: bool = False) -> FollowJointTrajectory.Result:
        result = FollowJointTrajectory.Result(error_code=int(outcome.code),
                                              error_string=outcome.message)
        log = self.get_logger()
        try:
            if canceled:
                _cancel_from_server(handle)
            elif outcome.success:
                handle.succeed()
            else:
                handle.abort()
        except _rclpy.RCLError as exc:  # e.g. a client canceled in the same instant
            log.warning(f"could not set the goal's final state: {exc}")
        status = "canceled" if canceled else "succeeded" if outcome.success else "aborted"
        message = f"goal {status} ({outcome.code.name}): {outcome.message}"
        (log.info if outcome.success or canceled else log.warning)(message)
        return result


def run_node(factory: Callable[[], Node], args: list[str] | None = None,
             threads: int = 2) -> int:
    """Process entry of a driver: spin until SIGINT/SIGTERM, then shut down without a traceback.

    A parameter the driver cannot start with is reported on stderr (exit code 2).
    """
    from unihm_core.ros.runtime import spin_nodes

    return spin_nodes([factory], args=args, threads=threads,
                      config_errors=(DriverConfigError, ParameterException))
