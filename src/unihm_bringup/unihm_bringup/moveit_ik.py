"""Arm IK through MoveIt (moveit_py), for sites whose arm is configured in a MoveIt package.

The executive's default IK is pinocchio (:class:`unihm_core.arm.ik.ArmIK`). With
``ik_backend: moveit`` the same wrist targets go to the kinematics solver of the robot's MoveIt
configuration (KDL, TRAC-IK, pick_ik, ...), so the arm solves IK the way the site's other
MoveIt tools do. Each frame is seeded with the previous answer, as with pinocchio, so the
joint path stays on one branch.

MoveIt solves for its tip link (the flange by default); the hand's mount converts wrist targets
to tip targets. Every answer is checked with the project's own forward kinematics: a frame
counts as reached only when the mounted wrist lands within the same position and rotation
tolerances as the pinocchio backend, whatever the plugin reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from unihm_core.arm.ik import TrajectoryIKResult
from unihm_core.arm.model import ArmModel, Mount, check_rigid, resolve_mount
from unihm_core.ros.conversions import pose_msgs
from unihm_core.se3 import invert, rotation_angle

__all__ = ["MoveItArmIK", "MoveItSettings", "MoveItUnavailableError", "load_robot_model"]



class MoveItUnavailableError(ValueError):
    """moveit_py (or the robot's MoveIt configuration) cannot be loaded here."""


@dataclass(frozen=True)
class MoveItSettings:
    """Which MoveIt configuration and planning group solve the arm's IK.

    The defaults are MoveIt's own Panda configuration (``moveit_resources_panda_moveit_config``),
    whose joint names match the ``franka_panda`` arm model. An empty ``tip_link`` means the arm
    config's flange link.
    """

    config_package: str = "moveit_resources_panda_moveit_config"
    robot_name: str = "panda"
    group: str = "panda_arm"
    tip_link: str = ""
    timeout_s: float = 0.05

    def __post_init__(self) -> None:
        for name in ("config_package", "robot_name", "group"):
            if not getattr(self, name).strip():
                raise ValueError(f"moveit {name} must not be empty")
        if not self.timeout_s > 0:
            raise ValueError(f"moveit timeout_s must be > 0, got {self.timeout_s}")


def load_robot_model(settings: MoveItSettings) -> Any:
    """The robot model of ``settings.config_package`` through a MoveItPy instance."""
    try:
        from moveit.planning import MoveItPy
        from moveit_configs_utils import MoveItConfigsBuilder
    except ImportError:
        raise MoveItUnavailableError(
            "ik_backend 'moveit' needs moveit_py and moveit_configs_utils, which are not "
            "installed here; install MoveIt 2 (ros-jazzy-moveit-py, "
            "ros-jazzy-moveit-configs-utils) or use 'pinocchio'") from None
    try:
        config = (MoveItConfigsBuilder(settings.robot_name, package_name=settings.config_package)
                  .to_moveit_configs().to_dict())
    except Exception as e:  # noqa: BLE001 - the builder raises many kinds; all mean "no config"
        raise MoveItUnavailableError(
            f"cannot load the MoveIt configuration {settings.config_package!r} for robot "
            f"{settings.robot_name!r}: {e}") from None
    return MoveItPy(node_name="unihm_moveit_ik", config_dict=config).get_robot_model()


def _robot_state_class() -> Callable[[Any], Any]:
    from moveit.core.robot_state import RobotState

    return RobotState


class MoveItArmIK:
    """Wrist-trajectory IK of one arm and mounted hand, solved by MoveIt's kinematics plugin.

    ``robot_model`` is a moveit_py ``RobotModel``; ``state_factory(robot_model)`` makes the
    ``RobotState`` that is solved (moveit_py's class unless given). Raises ``ValueError`` when
    the group, its joints, the tip link or the model frame do not match the arm model.
    """

    def __init__(self, arm: ArmModel, hand: Mount, robot_model: Any, settings: MoveItSettings,
                 *, reach_position_tolerance: float = 0.005,
                 reach_rotation_tolerance: float = 0.05,
                 state_factory: Callable[[Any], Any] | None = None) -> None:
        self.arm, self.settings, self.robot_model = arm, settings, robot_model
        self._state_factory = state_factory or _robot_state_class()
        cfg = arm.config
        groups = list(robot_model.joint_model_group_names)
        if settings.group not in groups:
            raise ValueError(f"MoveIt has no planning group {settings.group!r}; its groups: "
                             f"{', '.join(groups)}")
        joints = list(robot_model.get_joint_model_group(settings.group).active_joint_model_names)
        if joints != list(arm.joint_names):
            raise ValueError(f"MoveIt group {settings.group!r} has joints {joints}, the arm "
                             f"{cfg.id!r} has {list(arm.joint_names)}: they must be the same, "
                             f"in the same order")
        if robot_model.model_frame.lstrip("/") != cfg.base_link:
            raise ValueError(f"MoveIt's model frame is {robot_model.model_frame!r}; IK targets "
                             f"are in the arm's base link {cfg.base_link!r}")
        self.tip = settings.tip_link or cfg.flange_link
        try:
            ready = np.asarray(arm.ready_posture, dtype=np.float64)
            flange_to_tip = invert(arm.flange_pose(ready)) @ arm.link_pose(ready, self.tip)
        except (KeyError, ValueError) as e:
            raise ValueError(f"MoveIt tip link {self.tip!r} is not a link of the arm model "
                             f"{cfg.id!r}: {e}") from None
        self.flange_to_wrist = resolve_mount(hand)
        self.wrist_to_tip = invert(self.flange_to_wrist) @ flange_to_tip
        self.reach_position = float(reach_position_tolerance)
        self.reach_rotation = float(reach_rotation_tolerance)

    def solve_trajectory(self, targets: ArrayLike, q0: ArrayLike | None = None
                         ) -> TrajectoryIKResult:
        """IK of wrist poses (N, 4, 4) in the arm's base link, in order, each frame seeded
        with the last reached answer (the first with ``q0``, default the ready posture)."""
        poses = np.asarray(targets, dtype=np.float64)
        if poses.ndim != 3 or poses.shape[1:] != (4, 4):
            raise ValueError(f"targets: expected poses of shape (N, 4, 4), got {poses.shape}")
        check_rigid(poses, "targets")
        n, dof = poses.shape[0], self.arm.dof
        seed = (np.asarray(self.arm.ready_posture, dtype=np.float64) if q0 is None
                else self.arm.check_configurations(np.asarray(q0, dtype=np.float64), "q0"))
        group, timeout = self.settings.group, self.settings.timeout_s
        tips = pose_msgs(poses @ self.wrist_to_tip)
        state = self._state_factory(self.robot_model)
        state.set_joint_group_positions(group, seed.copy())
        state.update()
        q_out = np.empty((n, dof))
        solved = np.zeros(n, dtype=bool)
        last_good = seed.copy()
        for i in range(n):
            solved[i] = bool(state.set_from_ik(group, tips[i], self.tip, timeout))
            q_out[i] = np.asarray(state.get_joint_group_positions(group), dtype=np.float64)
            if solved[i]:
                last_good = q_out[i].copy()
            else:  # the next frame is seeded with the last good answer, not the failed one
                state.set_joint_group_positions(group, last_good.copy())
                state.update()
        reached_wrist = self.arm.flange_pose(q_out) @ self.flange_to_wrist
        pos_err = np.linalg.norm(reached_wrist[:, :3, 3] - poses[:, :3, 3], axis=1)
        rel = np.einsum("nji,njk->nik", poses[:, :3, :3], reached_wrist[:, :3, :3])
        rot_err = rotation_angle(rel)
        reached = solved & (pos_err <= self.reach_position) & (rot_err <= self.reach_rotation)
        reached &= self.arm.within_limits(q_out, tolerance=1e-6)
        return TrajectoryIKResult(q_out, reached, pos_err, rot_err,
                                  np.ones(n, dtype=np.int64), np.zeros(n, dtype=bool))
