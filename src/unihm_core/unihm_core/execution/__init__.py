"""Execution safety: timing joint paths within limits and validating every trajectory before it
goes to a controller (arm or hand). Pure numpy/scipy, no ROS (see docs/execution.md)."""

from unihm_core.execution.timing import (
    DEFAULT_MAX_STEP,
    DEFAULT_RAMP_FRACTION,
    DEFAULT_SCALE,
    TimedTrajectory,
    TimingError,
    approach_segment,
    concatenate,
    plan_execution,
    retime,
)
from unihm_core.execution.validation import (
    VIOLATION_KINDS,
    Limits,
    TrajectoryValidationError,
    Violation,
    check_joint_trajectory,
    interpolated_motion,
    validate_joint_trajectory,
)

__all__ = ["DEFAULT_MAX_STEP", "DEFAULT_RAMP_FRACTION", "DEFAULT_SCALE", "VIOLATION_KINDS",
           "Limits", "TimedTrajectory", "TimingError", "TrajectoryValidationError", "Violation",
           "approach_segment", "check_joint_trajectory", "concatenate", "interpolated_motion",
           "plan_execution", "retime", "validate_joint_trajectory"]
