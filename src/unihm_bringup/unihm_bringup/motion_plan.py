"""From a refined hand motion to what the drivers receive (ROS-free).

The wrist trajectory becomes Franka joints by IK (pinocchio, :class:`unihm_core.arm.ArmIK`,
or MoveIt through moveit_py where installed); arm and hand joints are then timed *together*
(one time law, so the fingers close where the wrist is), preceded by an approach from the
current joint state, and validated against the limits (:mod:`unihm_core.execution`). Anything
that fails raises :class:`PlanError` with a message naming the frame, joint and limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from unihm_core.se3 import invert, pose_from_param

__all__ = ["MotionPlan", "MotionPlanner", "PlanError", "check_before_send", "pose_from_param",
           "smooth_motion"]

FloatArray = NDArray[np.float64]
IK_BACKENDS = ("pinocchio", "moveit")


class PlanError(ValueError):
    """The motion cannot be executed safely; the message says where and why."""


def smooth_motion(wrist_poses: ArrayLike, joints: ArrayLike, times: ArrayLike,
                  cutoff_hz: float) -> tuple[FloatArray, FloatArray]:
    """Zero-phase Gaussian low-pass of the wrist poses and finger joints.

    Decoded motions carry frame-to-frame wobble (several degrees of wrist rotation per frame)
    that no arm can follow; filtering to the arm's bandwidth removes it without shifting the
    motion in time. The Gaussian's sigma is chosen so that its -3 dB frequency is
    ``cutoff_hz``; rotations are filtered as sign-aligned quaternions and renormalized, which
    is accurate for the small frame-to-frame differences of a trajectory. Ends are held
    (``nearest``), so the first and last poses move least. ``cutoff_hz`` <= 0 disables it.
    """
    from scipy.ndimage import gaussian_filter1d
    from scipy.spatial.transform import Rotation

    from unihm_core.se3 import make_pose

    w = np.asarray(wrist_poses, dtype=np.float64)
    q = np.asarray(joints, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if cutoff_hz <= 0 or len(t) < 3:
        return w.copy(), q.copy()
    fps = (len(t) - 1) / float(t[-1] - t[0])
    sigma = fps * np.sqrt(np.log(2.0)) / (2.0 * np.pi * cutoff_hz)  # -3 dB at cutoff
    pos = gaussian_filter1d(w[:, :3, 3], sigma, axis=0, mode="nearest")
    quat = Rotation.from_matrix(w[:, :3, :3]).as_quat()
    flips = np.cumprod(np.where(np.sum(quat[1:] * quat[:-1], axis=1) < 0, -1.0, 1.0))
    quat[1:] *= flips[:, None]
    quat = gaussian_filter1d(quat, sigma, axis=0, mode="nearest")
    rot = Rotation.from_quat(quat / np.linalg.norm(quat, axis=1, keepdims=True)).as_matrix()
    return make_pose(rot, pos), gaussian_filter1d(q, sigma, axis=0, mode="nearest")


@dataclass
class MotionPlan:
    """Arm and hand joint trajectories on one time base (approach included)."""

    times: FloatArray
    arm_q: FloatArray
    arm_qd: FloatArray
    arm_qdd: FloatArray
    hand_q: FloatArray
    hand_qd: FloatArray
    hand_qdd: FloatArray
    metrics: dict[str, float] = field(default_factory=dict)


class MotionPlanner:
    """IK + timing + validation for one arm; hands are given per call."""

    def __init__(self, arm: str = "franka_panda", *, planning_from_base: ArrayLike | None = None,
                 ik_backend: str = "pinocchio", limit_scale: float = 0.5,
                 start_tolerance: float = 0.05, smoothing_cutoff_hz: float = 2.0,
                 reach_position_tolerance: float = 0.005,
                 reach_rotation_tolerance: float = 0.05, moveit: Any = None,
                 moveit_robot_model: Any = None,
                 moveit_state_factory: Callable[[Any], Any] | None = None) -> None:
        """``moveit`` (a :class:`unihm_bringup.moveit_ik.MoveItSettings`) configures the
        "moveit" backend; its robot model is loaded through moveit_py unless
        ``moveit_robot_model`` is given (with ``moveit_state_factory`` making its states)."""
        from unihm_core.arm.model import arm_model
        from unihm_core.execution.validation import Limits

        if ik_backend not in IK_BACKENDS:
            raise ValueError(f"ik_backend must be one of {', '.join(IK_BACKENDS)}, "
                             f"got {ik_backend!r}")
        if not 0 < limit_scale <= 1:
            raise ValueError(f"limit_scale must be in (0, 1], got {limit_scale}")
        self.arm = arm_model(arm)
        self.arm_limits = Limits.from_arm(arm)
        self.planning_from_base = (np.eye(4) if planning_from_base is None
                                   else np.asarray(planning_from_base, dtype=np.float64))
        self.base_from_planning = invert(self.planning_from_base)
        self.ik_backend = ik_backend
        self.scale = float(limit_scale)
        self.start_tolerance = float(start_tolerance)
        self.cutoff_hz = float(smoothing_cutoff_hz)
        # a wrist within millimetres of the generated pose is as good as the generator is
        self.reach = {"reach_position_tolerance": float(reach_position_tolerance),
                      "reach_rotation_tolerance": float(reach_rotation_tolerance)}
        self._iks: dict[str, object] = {}
        self._moveit: tuple[Any, Any, Any] | None = None
        if ik_backend == "moveit":
            from unihm_bringup.moveit_ik import MoveItArmIK, MoveItSettings, load_robot_model

            settings = moveit if moveit is not None else MoveItSettings()
            model = (moveit_robot_model if moveit_robot_model is not None
                     else load_robot_model(settings))
            self._moveit = (settings, model, moveit_state_factory)
            # a group, joint or tip mismatch fails at start-up, not on the first goal
            MoveItArmIK(self.arm, None, model, settings, state_factory=moveit_state_factory)

    # -------------------------------------------------------------------------- lookups
    @property
    def arm_joint_names(self) -> list[str]:
        return list(self.arm.joint_names)

    @property
    def arm_rest(self) -> FloatArray:
        return np.asarray(self.arm.ready_posture, dtype=np.float64)

    @staticmethod
    def hand_joint_names(hand: str) -> list[str]:
        from unihm_core.hands.kinematics import hand_kinematics

        return list(hand_kinematics(hand).joint_names)

    @staticmethod
    def hand_rest(hand: str) -> FloatArray:
        from unihm_core.hands.kinematics import hand_kinematics

        return np.asarray(hand_kinematics(hand).open_pose, dtype=np.float64)

    def wrist_pose(self, arm_q: ArrayLike, hand: str) -> FloatArray:
        """The mounted hand's wrist in the planning frame at arm joints ``arm_q``."""
        return self.planning_from_base @ self.arm.wrist_pose(np.asarray(arm_q), hand)

    def _ik(self, hand: str) -> Any:
        from unihm_core.arm.ik import ArmIK

        if hand not in self._iks:
            if self._moveit is None:
                self._iks[hand] = ArmIK(self.arm, hand=hand, **self.reach)
            else:
                from unihm_bringup.moveit_ik import MoveItArmIK

                settings, model, factory = self._moveit
                self._iks[hand] = MoveItArmIK(self.arm, hand, model, settings,
                                              state_factory=factory, **self.reach)
        return self._iks[hand]

    # --------------------------------------------------------------------------- plan
    def arm_path(self, wrist_poses: ArrayLike, hand: str, arm_current: ArrayLike,
                 times: FloatArray) -> tuple[FloatArray, dict[str, float]]:
        """Arm joints following the wrist poses (planning frame).

        The IK starts from the ready posture, not from the current joints: the ready posture
        sits mid-range on every joint, so the solution branch found from it leaves room to
        follow the whole motion, and the same motion gives the same joints whatever the arm
        did before (the approach segment then links the current joints to the first frame)."""
        del arm_current
        poses = self.base_from_planning @ np.asarray(wrist_poses, dtype=np.float64)
        ik = self._ik(hand).solve_trajectory(poses, q0=self.arm_rest)
        if not ik.all_reached:
            bad = ik.unreached_frames
            i = int(bad[0])
            raise PlanError(
                f"arm IK: the {hand} wrist pose at frame {i} (t={times[i]:.2f} s) is out of "
                f"reach of {self.arm.config.id} (position error "
                f"{1000 * ik.position_error[i]:.1f} mm, rotation error "
                f"{ik.rotation_error[i]:.3f} rad); {len(bad)} of {len(ik)} frames unreached")
        summary = {"ik_position_error_max_mm": float(1000 * ik.position_error.max()),
                   "ik_rotation_error_max_rad": float(ik.rotation_error.max())}
        return ik.q, summary

    def plan(self, wrist_poses: ArrayLike, hand_q: ArrayLike, times: ArrayLike, *, hand: str,
             arm_current: ArrayLike, hand_current: ArrayLike) -> MotionPlan:
        from unihm_core.execution.timing import TimingError, plan_execution
        from unihm_core.execution.validation import Limits, TrajectoryValidationError
        from unihm_core.se3 import rotation_angle

        t = np.asarray(times, dtype=np.float64)
        given = np.asarray(wrist_poses, dtype=np.float64)
        wrist, hq = smooth_motion(given, hand_q, t, self.cutoff_hz)
        hand_limits = Limits.from_hand(hand)
        hq = np.clip(hq, hand_limits.lower, hand_limits.upper)
        arm_q, metrics = self.arm_path(wrist, hand, arm_current, t)
        rel = np.einsum("nji,njk->nik", given[:, :3, :3], wrist[:, :3, :3])
        metrics["smoothing_wrist_deviation_max_mm"] = float(
            1000 * np.linalg.norm(wrist[:, :3, 3] - given[:, :3, 3], axis=1).max())
        metrics["smoothing_wrist_deviation_max_rad"] = float(rotation_angle(rel).max())
        metrics["smoothing_joint_deviation_max_rad"] = float(
            np.abs(hq - np.asarray(hand_q)).max())
        limits = Limits.concat(self.arm_limits, hand_limits)
        current = np.concatenate([np.asarray(arm_current, float), np.asarray(hand_current,
                                                                             float)])
        gap = np.abs(current - np.concatenate([arm_q[0], hq[0]]))
        try:
            timed = plan_execution(current, np.hstack([arm_q, hq]), limits, t,
                                   scale=self.scale)
        except (TimingError, TrajectoryValidationError) as e:
            raise PlanError(str(e)) from None
        n_arm = self.arm.dof
        metrics.update({
            "motion_duration_s": float(timed.duration),
            "nominal_duration_s": float(t[-1] - t[0]),
            "slowdown": float(timed.slowdown),
            "approach_joint_distance_max_rad": float(gap.max()),
            "trajectory_points": float(len(timed)),
        })
        return MotionPlan(timed.times, timed.positions[:, :n_arm], timed.velocities[:, :n_arm],
                          timed.accelerations[:, :n_arm], timed.positions[:, n_arm:],
                          timed.velocities[:, n_arm:], timed.accelerations[:, n_arm:], metrics)


def check_before_send(names: Sequence[str], times: ArrayLike, positions: ArrayLike,
                      velocities: ArrayLike | None, accelerations: ArrayLike | None, *,
                      limits: object, current: ArrayLike | None, start_tolerance: float
                      ) -> None:
    """The last gate: published limits, continuity with ``current``, rest at the end.

    Raises PlanError listing the first violations (joint, point, value, limit)."""
    from unihm_core.execution.validation import validate_joint_trajectory

    problems = validate_joint_trajectory(names, times, positions, velocities, accelerations,
                                         limits, current, start_tolerance=start_tolerance)
    if problems:
        text = "; ".join(str(p) for p in problems[:3])
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise PlanError(f"refused to send: {text}{more}")
