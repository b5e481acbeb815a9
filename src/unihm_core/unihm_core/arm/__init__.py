"""The arm that carries the hand: config (one YAML per arm), kinematics and IK.

Poses are in the arm's base link; the hand's wrist is mounted on the flange by the hand YAML's
``mount`` (see docs/arm.md).
"""

from unihm_core.arm.config import (
    ArmConfig,
    ArmConfigError,
    IKParams,
    UnknownArmError,
    arm_ids,
    get_arm_config,
    load_arm_config,
)
from unihm_core.arm.ik import ArmIK, IKResult, TrajectoryIKResult, solve_ik, solve_trajectory_ik
from unihm_core.arm.model import ArmModel, arm_model, resolve_mount

__all__ = ["ArmConfig", "ArmConfigError", "ArmIK", "ArmModel", "IKParams", "IKResult",
           "TrajectoryIKResult", "UnknownArmError", "arm_ids", "arm_model", "get_arm_config",
           "load_arm_config", "resolve_mount", "solve_ik", "solve_trajectory_ik"]
