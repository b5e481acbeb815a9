"""FollowJointTrajectory for the XHand, on top of the vendor's ROS 2 driver.

The vendor driver (xhand_control_ros2) publishes the hand's state on /xhand_control/xhand_state
and takes position commands, with per-joint gains and a control mode, on
/xhand_control/xhand_command. It has no trajectory interface, so this adapter serves one: it
samples each goal's trajectory (the shared sampler of the drivers) and streams the setpoints at
``command_rate_hz``, reading the hand's state back for feedback and tolerance checks.

``command_interface``:
  vendor       the vendor's XHandCommand / XHandStateArray messages (their package must be
               importable: build and source the vendor workspace first)
  joint_state  sensor_msgs/JointState on both topics (names and positions only); the gain
               parameters are then not sent anywhere. For simulators, bridges and tests.

Setpoints are streamed only while a goal runs; when it ends (done, canceled, failed) one last
command holds the position and the vendor driver keeps it. See docs/drivers.md.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState

from unihm_bringup.drivers.trajectory_sampler import FloatArray
from unihm_bringup.drivers.trajectory_server import (
    DriverConfigError,
    State,
    TrajectoryServerNode,
    parameter_overrides,
    run_node,
)

DEFAULT_NODE_NAME = "xhand_adapter"
VENDOR_PACKAGES = ("xhand_control_interfaces", "xhand_control_msgs", "xhand_control_ros2")
"""Where the vendor's messages have been published under (its docs name more than one)."""
INTERFACES = ("vendor", "joint_state")


def import_vendor_messages(package: str = "") -> tuple[type, type]:
    """(XHandCommand, XHandStateArray) from the vendor's message package, or DriverConfigError.

    With no package given, the names the vendor has used are tried in turn.
    """
    candidates = [package] if package else list(VENDOR_PACKAGES)
    problems = []
    for name in candidates:
        try:
            module = importlib.import_module(f"{name}.msg")
            return module.XHandCommand, module.XHandStateArray
        except (ImportError, AttributeError) as exc:
            problems.append(f"{name}.msg: {exc}")
    raise DriverConfigError(
        "command_interface 'vendor' needs the XHand vendor messages (XHandCommand, "
        f"XHandStateArray) but none could be imported ({'; '.join(problems)}). Build the vendor "
        "package (xhand_control_ros2) and source its workspace before starting this node, set "
        "vendor_message_package to the package that defines them, or use "
        "command_interface:=joint_state. See docs/drivers.md.")


def _set_field(msg: Any, field: str, values: Sequence[float], n: int) -> None:
    """Fill a vendor message field whatever its declared type (scalar or sequence, int or
    float): the vendor's message definitions differ between releases."""
    kind = msg.get_fields_and_field_types().get(field)
    if kind is None:
        return
    cast = int if "int" in kind else float
    if "sequence" in kind or "[" in kind:
        setattr(msg, field, [cast(round(v)) if cast is int else cast(v) for v in values[:n]])
    else:
        setattr(msg, field, cast(values[0]))


class XHandAdapter(TrajectoryServerNode):
    """Trajectory server that streams position commands to the XHand vendor driver."""

    FLOAT_PARAMETERS: ClassVar[frozenset[str]] = TrajectoryServerNode.FLOAT_PARAMETERS | {
        "command_rate_hz", "state_timeout_s", "kp", "ki", "kd", "effort_limit",
        "joint_states_max_rate_hz"}

    def __init__(self, node_name: str = DEFAULT_NODE_NAME, **node_kwargs: Any) -> None:
        # Goal tolerance off by default: a grasp stops the fingers on the object, short of the
        # trajectory's end, which is success for a hand. Set goal_tolerance to check arrival.
        super().__init__(node_name, rate_parameter="command_rate_hz", default_goal_tolerance=0.0,
                         default_goal_time=1.0, **node_kwargs)

    def _configure(self) -> None:
        joints = self._optional_param("joints", Parameter.Type.STRING_ARRAY)
        command_names = self._optional_param("command_joint_names", Parameter.Type.STRING_ARRAY)
        for name, default in (("hand", "xhand_right"), ("command_interface", "joint_state"),
                              ("command_topic", "/xhand_control/xhand_command"),
                              ("state_topic", "/xhand_control/xhand_state"),
                              ("vendor_message_package", ""),
                              ("joint_states_topic", "/joint_states")):
            self.declare_parameter(name, default)
        self.declare_parameter("state_timeout_s", 0.5)
        self.declare_parameter("joint_states_max_rate_hz", 100.0)
        self.declare_parameter("hand_id", 0)
        self.declare_parameter("mode", 3)
        for name, default in (("kp", 100.0), ("ki", 0.0), ("kd", 0.0), ("effort_limit", 350.0)):
            self.declare_parameter(name, [default])

        self._interface = str(self.get_parameter("command_interface").value)
        if self._interface not in INTERFACES:
            raise DriverConfigError(f"command_interface must be one of {', '.join(INTERFACES)}, "
                                    f"got '{self._interface}'")
        self._state_timeout = self._float_param("state_timeout_s", low=0.01, high=60.0)
        self._state_wait_s = self._state_timeout
        self._hand_id = int(self.get_parameter("hand_id").value)
        self._mode = int(self.get_parameter("mode").value)
        self.command_topic = str(self.get_parameter("command_topic").value)
        self.state_topic = str(self.get_parameter("state_topic").value)
        names, prefix = self._hand_joints()
        if joints is not None:
            names = [str(j) for j in joints]
        if command_names is None:  # the vendor names its joints without the side prefix
            command_names = ([n.removeprefix(prefix) for n in names]
                             if self._interface == "vendor" else names)
        self.command_names = [str(n) for n in command_names]
        if len(self.command_names) != len(names):
            raise DriverConfigError(f"command_joint_names has {len(self.command_names)} names "
                                    f"for {len(names)} joints")
        n = len(names)
        self._gains = {g: self._per_joint(g, n) for g in ("kp", "ki", "kd", "effort_limit")}
        self._state_lock = threading.Lock()
        self._state: State | None = None
        self._state_at = -np.inf
        self._warned_at = -np.inf

        if self._interface == "vendor":
            package = str(self.get_parameter("vendor_message_package").value).strip()
            self._command_type, state_type = import_vendor_messages(package)
            self.create_subscription(state_type, self.state_topic, self._on_vendor_state,
                                     qos_profile_sensor_data)
        else:
            self._command_type = JointState
            self.create_subscription(JointState, self.state_topic, self._on_joint_state,
                                     qos_profile_sensor_data)
        self._command_pub = self.create_publisher(self._command_type, self.command_topic, 10)
        # the hand's state under its own joint names on /joint_states, where the executive (and
        # robot_state_publisher) read every joint; "" turns it off
        self.joint_names = list(names)
        self.joint_states_topic = str(self.get_parameter("joint_states_topic").value).strip()
        if self.joint_states_topic and self.joint_states_topic == self.state_topic:
            raise DriverConfigError(f"joint_states_topic and state_topic are both "
                                    f"{self.state_topic}: the hand's state would echo onto itself")
        self._joint_states_period = 1.0 / self._float_param("joint_states_max_rate_hz",
                                                             low=0.1, high=10000.0)
        self._joint_states_at = -np.inf
        self._joint_states_pub = (self.create_publisher(JointState, self.joint_states_topic, 10)
                                  if self.joint_states_topic else None)
        self._start_server(names)
        gains = "" if self._interface == "vendor" else " (gains not sent in this mode)"
        self.get_logger().info(f"{self._interface} commands on {self.command_topic}{gains}, "
                               f"state from {self.state_topic}")

    def _hand_joints(self) -> tuple[list[str], str]:
        """The configured hand's joint names and the side prefix the vendor leaves out."""
        hand = str(self.get_parameter("hand").value).strip()
        if not hand.startswith("xhand"):
            raise DriverConfigError(f"hand must be an XHand config (xhand_right, xhand_left), "
                                    f"got '{hand}'")
        try:
            from unihm_core.hands.registry import get_hand_config

            config = get_hand_config(hand)
        except (KeyError, ValueError, OSError) as exc:
            raise DriverConfigError(str(exc)) from exc
        return list(config.joint_names), f"{config.side}_hand_"

    def _per_joint(self, name: str, n: int) -> FloatArray:
        values = np.asarray(self.get_parameter(name).value, dtype=np.float64)
        if values.size == 1:
            values = np.full(n, values[0])
        if values.shape != (n,) or not np.all(np.isfinite(values)):
            raise DriverConfigError(f"{name} needs one finite value or one per joint ({n})")
        return values

    # -- state --------------------------------------------------------------------------------

    def _accept_state(self, names: Sequence[str], positions: Sequence[float],
                      velocities: Sequence[float]) -> None:
        """Store a state message in controller order (by name when it has names)."""
        n = len(self.command_names)
        if names:
            index = {name: i for i, name in enumerate(names)}
            missing = [c for c in self.command_names if c not in index]
            if missing or len(positions) != len(names):
                self._warn(f"ignoring state on {self.state_topic}: "
                           + (f"it lacks joints {', '.join(missing)}" if missing
                              else "names and positions differ in length"))
                return
            order = [index[c] for c in self.command_names]
        elif len(positions) == n:
            order = list(range(n))
        else:
            self._warn(f"ignoring state on {self.state_topic}: {len(positions)} unnamed "
                       f"positions for {n} joints")
            return
        pos = np.asarray(positions, dtype=np.float64)[order]
        vel = (np.asarray(velocities, dtype=np.float64)[order]
               if len(velocities) == len(positions) else None)
        if not np.all(np.isfinite(pos)):
            self._warn(f"ignoring state on {self.state_topic}: non-finite positions")
            return
        now = time.monotonic()
        with self._state_lock:
            self._state = (pos, vel)
            self._state_at = now
            republish = (self._joint_states_pub is not None
                         and now - self._joint_states_at >= self._joint_states_period)
            if republish:
                self._joint_states_at = now
        if republish:
            msg = JointState(name=self.joint_names, position=pos.tolist(),
                             velocity=[] if vel is None else vel.tolist())
            msg.header.stamp = self.get_clock().now().to_msg()
            self._joint_states_pub.publish(msg)

    def _on_joint_state(self, msg: JointState) -> None:
        self._accept_state(list(msg.name), list(msg.position), list(msg.velocity))

    def _on_vendor_state(self, msg: Any) -> None:
        hands = list(getattr(msg, "hand_states", []))
        ids = list(getattr(msg, "hand_id", []))
        if self._hand_id in ids and ids.index(self._hand_id) < len(hands):
            hand = hands[ids.index(self._hand_id)]
        elif len(hands) == 1 and not ids:
            hand = hands[0]
        else:
            self._warn(f"no hand with hand_id {self._hand_id} in the state on {self.state_topic} "
                       f"(hands {ids})")
            return
        self._accept_state(list(hand.name), list(hand.position), [])

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._warned_at > 5.0:
            self._warned_at = now
            self.get_logger().warning(text)

    def _read_state(self) -> State | None:
        with self._state_lock:
            if self._state is None or time.monotonic() - self._state_at > self._state_timeout:
                return None
            return self._state[0].copy(), (None if self._state[1] is None
                                           else self._state[1].copy())

    def _state_unavailable_message(self) -> str:
        return f"no XHand state on {self.state_topic} for {self._state_timeout:g} s"

    # -- commands -----------------------------------------------------------------------------

    def _command(self, positions: FloatArray, velocities: FloatArray,
                 accelerations: FloatArray) -> None:
        if self._interface == "joint_state":
            msg = JointState()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.name = list(self.command_names)
            msg.position = positions.tolist()
        else:
            msg = self._command_type()
            n = len(self.command_names)
            _set_field(msg, "hand_id", [self._hand_id], n)
            msg.name = list(self.command_names)
            _set_field(msg, "position", positions.tolist(), n)
            for gain, values in self._gains.items():
                _set_field(msg, gain, values.tolist(), n)
            _set_field(msg, "mode", [self._mode] * n, n)
        self._command_pub.publish(msg)


def make_node(parameter_overrides_: Mapping[str, Any] | None = None, *,
              node_name: str = DEFAULT_NODE_NAME, **node_kwargs: Any) -> XHandAdapter:
    """An XHandAdapter with the given parameters, for in-process runners and tests.

    Any executor can spin it: a running goal holds no executor thread (see trajectory_server).
    """
    return XHandAdapter(node_name, parameter_overrides=parameter_overrides(
        parameter_overrides_, XHandAdapter.FLOAT_PARAMETERS), **node_kwargs)


def main(args: list[str] | None = None) -> int:
    return run_node(XHandAdapter, args)


if __name__ == "__main__":
    raise SystemExit(main())
