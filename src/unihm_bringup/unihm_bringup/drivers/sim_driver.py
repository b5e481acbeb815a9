"""Simulated joint trajectory driver: a FollowJointTrajectory server with no hardware behind it.

It stands in for ros2_control's joint_trajectory_controller on the Franka arm or on any hand of
the registry, so that the executive, MoveIt or a test can run whole pipelines without a robot:
the joints follow the commanded trajectory (exactly, or with a first-order lag when
``tracking_time_constant_s`` > 0, which makes tolerance checks meaningful) and are published as
sensor_msgs/JointState. ``fail_after_s`` injects a driver fault for tests. See docs/drivers.md.

Run: ``unihm_sim_driver --ros-args -r __node:=fr3_arm_controller`` (the arm, default) or
``unihm_sim_driver --ros-args -r __node:=xhand_right_controller -p hand:=xhand_right``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState

from unihm_bringup.drivers.trajectory_sampler import FloatArray
from unihm_bringup.drivers.trajectory_server import (
    DriverConfigError,
    State,
    TrajectoryServerNode,
    parameter_overrides,
    run_node,
)

DEFAULT_NODE_NAME = "fr3_arm_controller"


class SimDriver(TrajectoryServerNode):
    """Simulated joints behind a FollowJointTrajectory action server."""

    FLOAT_PARAMETERS: ClassVar[frozenset[str]] = TrajectoryServerNode.FLOAT_PARAMETERS | {
        "state_rate_hz", "initial_positions", "fail_after_s", "tracking_time_constant_s"}

    def __init__(self, node_name: str = DEFAULT_NODE_NAME, **node_kwargs: Any) -> None:
        super().__init__(node_name, rate_parameter="state_rate_hz", default_goal_tolerance=0.01,
                         default_goal_time=0.5, **node_kwargs)

    def _configure(self) -> None:
        joints = self._optional_param("joints", Parameter.Type.STRING_ARRAY)
        initial = self._optional_param("initial_positions", Parameter.Type.DOUBLE_ARRAY)
        self.declare_parameter("arm", "franka_panda")
        self.declare_parameter("hand", "")
        self.declare_parameter("joint_states_topic", "/joint_states")
        self.declare_parameter("fail_after_s", -1.0)
        self.declare_parameter("tracking_time_constant_s", 0.0)
        self._fail_after_s = float(self.get_parameter("fail_after_s").value)
        if math.isnan(self._fail_after_s):
            raise DriverConfigError("fail_after_s must be a number (negative turns it off)")
        self._tau = self._float_param("tracking_time_constant_s", low=0.0)
        names, defaults = self._joint_setup(joints)
        if initial is None:
            positions = defaults
        else:
            positions = np.asarray(initial, dtype=np.float64)
            if positions.size == 1:
                positions = np.full(len(names), positions[0])
            if positions.shape != (len(names),) or not np.all(np.isfinite(positions)):
                raise DriverConfigError(
                    f"initial_positions needs one finite value or one per joint ({len(names)}), "
                    f"got {list(initial)}")
        self._positions = positions.astype(np.float64)
        self._velocities = np.zeros_like(self._positions)
        self._target = self._positions.copy()
        self._last_step = time.monotonic()
        topic = str(self.get_parameter("joint_states_topic").value)
        self._state_pub = self.create_publisher(JointState, topic, 10)
        self._start_server(names)
        if self._fail_after_s >= 0.0:
            self.get_logger().warning(
                f"fault injection on: every goal aborts {self._fail_after_s:g} s after it starts")

    def _joint_setup(self, joints: list[str] | None) -> tuple[list[str], FloatArray]:
        """Joint names and default start positions: explicit ``joints`` first, else the hand's
        config (its open pose), else the arm's config (its ready posture)."""
        hand = str(self.get_parameter("hand").value).strip()
        arm = str(self.get_parameter("arm").value).strip()
        try:
            if hand:
                from unihm_core.hands.registry import get_hand_config

                config = get_hand_config(hand)
                names = list(config.joint_names)
                defaults = np.array([config.open_pose.get(n, 0.0) for n in names])
            else:
                from unihm_core.arm.config import get_arm_config

                arm_config = get_arm_config(arm)
                names = list(arm_config.joint_names)
                defaults = np.asarray(arm_config.ready_posture, dtype=np.float64)
        except (KeyError, ValueError, OSError) as exc:
            raise DriverConfigError(str(exc)) from exc
        if joints is not None:  # configured start values where the names match, else 0
            known = dict(zip(names, defaults.tolist(), strict=True))
            names = [str(j) for j in joints]
            defaults = np.array([known.get(n, 0.0) for n in names])
        return names, defaults

    # -- hooks --------------------------------------------------------------------------------

    def _step(self, target: FloatArray, velocity: FloatArray) -> None:
        now = time.monotonic()
        dt = min(max(now - self._last_step, 0.0), 0.1)
        self._last_step = now
        self._target = target.copy()
        if self._tau <= 0.0:
            self._positions = target.copy()
            self._velocities = velocity.copy()
        elif dt > 0.0:
            previous = self._positions
            self._positions = previous + (target - previous) * (1.0 - math.exp(-dt / self._tau))
            self._velocities = (self._positions - previous) / dt
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = list(self.joints)
        msg.position = self._positions.tolist()
        msg.velocity = self._velocities.tolist()
        self._state_pub.publish(msg)

    def _command(self, positions: FloatArray, velocities: FloatArray,
                 accelerations: FloatArray) -> None:
        self._step(positions, velocities)

    def _read_state(self) -> State:
        return self._positions.copy(), self._velocities.copy()

    def _idle_tick(self) -> None:
        self._step(self._target, np.zeros_like(self._target))

    def _fault(self, elapsed_s: float) -> str | None:
        if 0.0 <= self._fail_after_s <= elapsed_s:
            return (f"simulated driver fault {self._fail_after_s:g} s into the goal "
                    "(fail_after_s fault injection)")
        return None


def make_node(parameter_overrides_: Mapping[str, Any] | None = None, *,
              node_name: str = DEFAULT_NODE_NAME, **node_kwargs: Any) -> SimDriver:
    """A SimDriver with the given parameters, for in-process runners and tests.

    Any executor can spin it: a running goal holds no executor thread (see trajectory_server).
    """
    return SimDriver(node_name, parameter_overrides=parameter_overrides(
        parameter_overrides_, SimDriver.FLOAT_PARAMETERS), **node_kwargs)


def main(args: list[str] | None = None) -> int:
    return run_node(SimDriver, args)


if __name__ == "__main__":
    raise SystemExit(main())
