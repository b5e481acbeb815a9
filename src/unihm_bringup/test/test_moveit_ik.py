"""The MoveIt IK backend (``ik_backend: moveit``) against a stand-in for moveit_py.

MoveIt 2 is not installable from PyPI, so these tests drive :class:`MoveItArmIK` through a
robot model and robot state with moveit_py's interface (``joint_model_group_names``,
``get_joint_model_group``, ``model_frame``; ``set_joint_group_positions``, ``update``,
``set_from_ik(group, geometry_msgs/Pose, tip, timeout)``, ``get_joint_group_positions``) whose
IK is solved by pinocchio for the requested tip link, seeded from the state's joints as
MoveIt's plugins are. What is tested is the adapter: wrist -> tip targets through the hand's
mount, seeding, the independent FK check of every answer, and the configuration checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pytest

pytest.importorskip("geometry_msgs")

from unihm_bringup.motion_plan import MotionPlanner, PlanError, pose_from_param
from unihm_bringup.moveit_ik import MoveItArmIK, MoveItSettings
from unihm_core.arm.ik import ArmIK
from unihm_core.arm.model import arm_model
from unihm_core.execution.validation import Limits, validate_joint_trajectory
from unihm_core.se3 import invert, pose_from_xyz_quat

HAND = "xhand_right"
ARM = arm_model("franka_panda")
GROUP = "panda_arm"


@dataclass
class StandInGroup:
    active_joint_model_names: list[str]


@dataclass
class StandInRobotModel:
    joints: list[str] = field(default_factory=lambda: list(ARM.joint_names))
    model_frame: str = "panda_link0"
    calls: list[str] = field(default_factory=list)

    @property
    def joint_model_group_names(self) -> list[str]:
        return [GROUP, "hand"]

    def get_joint_model_group(self, name: str) -> StandInGroup:
        return StandInGroup(self.joints if name == GROUP else ["panda_finger_joint1"])


class StandInRobotState:
    """moveit_py's RobotState surface, solved by pinocchio from the current joints."""

    solvers: ClassVar[dict[str, ArmIK]] = {}

    def __init__(self, robot_model: StandInRobotModel) -> None:
        self.model = robot_model
        self.q = np.zeros(ARM.dof)

    def set_joint_group_positions(self, group: str, values: np.ndarray) -> None:
        assert group == GROUP
        self.q = np.asarray(values, dtype=np.float64).copy()

    def update(self) -> None:
        pass

    def get_joint_group_positions(self, group: str) -> np.ndarray:
        assert group == GROUP
        return self.q.copy()

    def set_from_ik(self, group: str, pose: Any, tip: str, timeout: float = 0.0) -> bool:
        assert group == GROUP and timeout > 0
        self.model.calls.append(tip)
        if tip not in self.solvers:
            ready = ARM.ready_posture
            flange_to_tip = invert(ARM.flange_pose(ready)) @ ARM.link_pose(ready, tip)
            self.solvers[tip] = ArmIK(ARM, flange_to_wrist=flange_to_tip)
        target = pose_from_xyz_quat([pose.position.x, pose.position.y, pose.position.z],
                                    [pose.orientation.x, pose.orientation.y, pose.orientation.z,
                                     pose.orientation.w])
        answer = self.solvers[tip].solve(target, q0=self.q)
        if answer.reached:  # MoveIt leaves the state as it was when no solution is found
            self.q = answer.q.copy()
        return answer.reached


def _wrist_path(frames: int = 30) -> tuple[np.ndarray, np.ndarray]:
    s = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, frames))
    q0 = ARM.ready_posture
    q = q0 + s[:, None] * np.array([0.4, 0.3, -0.2, 0.35, 0.1, -0.3, 0.2])
    return ARM.wrist_pose(q, HAND), q


def _ik(tip: str = "", **kw: Any) -> MoveItArmIK:
    model = kw.pop("model", None) or StandInRobotModel()
    return MoveItArmIK(ARM, HAND, model, MoveItSettings(tip_link=tip, **kw),
                       state_factory=StandInRobotState)


@pytest.mark.parametrize("tip", ["", "panda_hand"])
def test_a_wrist_path_is_solved_through_the_tip_link(tip: str) -> None:
    model = StandInRobotModel()
    ik = _ik(tip, model=model)
    wrist, q_true = _wrist_path()
    out = ik.solve_trajectory(wrist)
    assert out.all_reached, out.summary()
    assert out.position_error.max() < 1e-3 and out.rotation_error.max() < 1e-2
    assert set(model.calls) == {tip or "panda_link8"}
    # seeded frame to frame (the first from the ready posture), the path stays on one branch
    assert np.abs(out.q[0] - q_true[0]).max() < 1e-3
    assert out.joint_steps.max() < 0.1


def test_an_unreachable_frame_is_reported_and_the_path_goes_on() -> None:
    ik = _ik()
    wrist, _ = _wrist_path()
    wrist[12, :3, 3] += [2.0, 0.0, 0.0]
    out = ik.solve_trajectory(wrist)
    assert out.unreached_frames.tolist() == [12]
    assert out.position_error[12] > 1.0
    assert out.reached[13:].all()  # seeded with frame 11's answer, not the failed one


def test_a_plugin_answer_off_the_target_is_not_counted_as_reached() -> None:
    class SloppyState(StandInRobotState):
        def set_from_ik(self, group: str, pose: Any, tip: str, timeout: float = 0.0) -> bool:
            ok = super().set_from_ik(group, pose, tip, timeout)
            self.q = self.q + 0.02  # a plugin that claims success with a loose tolerance
            return ok

    ik = MoveItArmIK(ARM, HAND, StandInRobotModel(), MoveItSettings(),
                     state_factory=SloppyState)
    wrist, _ = _wrist_path(5)
    out = ik.solve_trajectory(wrist)
    assert not out.reached.any()
    assert (out.position_error > 0.005).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"group": "manipulator"}, "no planning group 'manipulator'; its groups: panda_arm, hand"),
    ({"tip": "panda_link9"}, "tip link 'panda_link9' is not a link of the arm model"),
    ({"model": StandInRobotModel(joints=[f"fr3_joint{i}" for i in range(1, 8)])},
     "has joints .*fr3_joint1.* the arm 'franka_panda' has .*panda_joint1"),
    ({"model": StandInRobotModel(model_frame="world")}, "model frame is 'world'"),
])
def test_a_mismatched_moveit_configuration_is_refused(kwargs: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _ik(**kwargs)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="group must not be empty"):
        MoveItSettings(group=" ")
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        MoveItSettings(timeout_s=0.0)


def test_without_moveit_py_the_backend_is_refused_with_the_packages_to_install() -> None:
    try:
        import moveit  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("moveit_py is installed here")
    with pytest.raises(ValueError, match="ros-jazzy-moveit-py"):
        MotionPlanner(ik_backend="moveit")


def test_the_planner_plans_a_motion_with_the_moveit_backend() -> None:
    base = pose_from_param([-0.55, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], "arm_base_pose")
    planner = MotionPlanner(planning_from_base=base, ik_backend="moveit",
                            moveit_robot_model=StandInRobotModel(),
                            moveit_state_factory=StandInRobotState)
    wrist_base, _ = _wrist_path(60)
    wrist = base @ wrist_base
    t = np.arange(60) / 30.0
    limits = Limits.from_hand(HAND)
    s = np.linspace(0.0, 1.0, 60)[:, None]
    hand = limits.lower + 0.5 * s * (limits.upper - limits.lower)
    plan = planner.plan(wrist, hand, t, hand=HAND, arm_current=planner.arm_rest,
                        hand_current=hand[0])
    both = Limits.concat(planner.arm_limits, limits)
    problems = validate_joint_trajectory(
        both.names, plan.times, np.hstack([plan.arm_q, plan.hand_q]),
        np.hstack([plan.arm_qd, plan.hand_qd]), np.hstack([plan.arm_qdd, plan.hand_qdd]),
        both, np.concatenate([planner.arm_rest, hand[0]]))
    assert problems == [], problems[:3]
    assert plan.metrics["ik_position_error_max_mm"] < 5.0
    far = wrist.copy()
    far[30:, :3, 3] += [3.0, 0.0, 0.0]
    with pytest.raises(PlanError, match=r"wrist pose at frame \d+ .* out of reach"):
        planner.plan(far, hand, t, hand=HAND, arm_current=planner.arm_rest,
                     hand_current=hand[0])
