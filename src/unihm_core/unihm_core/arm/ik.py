"""Inverse kinematics: wrist SE(3) poses (single or a trajectory) to arm joint values.

Damped least squares on the SE(3) log error of the wrist frame (docs/arm.md):

    e = log6(T_wrist(q)^-1 T_target)            (wrist-local twist, 6)
    J = Jlog6(T_target^-1 T_wrist(q)) J_wrist(q)   (6 x dof)
    dq = J^T (J J^T + lambda I)^-1 e  +  k (I - J^+ J) (q_ready - q)

with the step scaled down to ``max_step`` and q projected into the position limits after every
step. A trajectory is solved frame by frame, each frame starting from the previous frame's
answer, so consecutive solutions stay on one IK branch and most frames need one to three
iterations. Every frame reports whether it was reached and how far off it ended; a target
outside the workspace ends as the closest pose the iteration found, flagged not reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pinocchio as pin
from numpy.typing import ArrayLike, NDArray

from unihm_core.arm.config import DEFAULT_ARM, IKParams
from unihm_core.arm.model import ArmModel, Mount, arm_model, check_rigid, resolve_mount
from unihm_core.se3 import FloatArray

# Regularisation of the null-space projector: small enough that the posture term does not move
# the wrist measurably, large enough to keep the 6x6 solve finite at a singularity.
_PROJECTOR_EPS = 1e-10


@dataclass(frozen=True)
class IKResult:
    """One pose's answer; errors are of the wrist frame (metres, radians)."""

    q: FloatArray
    reached: bool
    position_error: float
    rotation_error: float
    iterations: int
    restarted: bool = False


@dataclass(frozen=True)
class TrajectoryIKResult:
    """Per-frame answers of a trajectory, arrays indexed by frame."""

    q: FloatArray  # (N, dof)
    reached: NDArray[np.bool_]  # (N,)
    position_error: FloatArray  # (N,) metres, wrist origin distance to the target
    rotation_error: FloatArray  # (N,) radians, angle of the residual rotation
    iterations: NDArray[np.int64]  # (N,) iterations spent (all attempts of a cold start)
    restarted: NDArray[np.bool_]  # (N,) the answer came from a random restart, not the warm start

    def __len__(self) -> int:
        return int(self.q.shape[0])

    def __getitem__(self, index: int) -> IKResult:
        return IKResult(self.q[index].copy(), bool(self.reached[index]),
                        float(self.position_error[index]), float(self.rotation_error[index]),
                        int(self.iterations[index]), bool(self.restarted[index]))

    @property
    def all_reached(self) -> bool:
        return bool(self.reached.all())

    @property
    def reached_fraction(self) -> float:
        return float(self.reached.mean()) if len(self) else 1.0

    @property
    def unreached_frames(self) -> NDArray[np.int64]:
        """Indices of the frames whose target was not reached."""
        return np.flatnonzero(~self.reached)

    @property
    def joint_steps(self) -> FloatArray:
        """(N,) largest joint change from the previous frame (0 for the first), radians.

        A warm start that a joint limit cuts off can slide to another IK branch, and a restart
        lands on one: large steps show where the joint path is not continuous even though
        every pose was reached (the time parametrization must not be fed such a path blindly).
        """
        steps = np.zeros(len(self))
        if len(self) > 1:
            steps[1:] = np.abs(np.diff(self.q, axis=0)).max(axis=1)
        return steps

    def jump_frames(self, threshold: float = 0.5) -> NDArray[np.int64]:
        """Frames whose largest joint step exceeds ``threshold`` radians."""
        return np.flatnonzero(self.joint_steps > threshold)

    def summary(self) -> dict[str, Any]:
        """Numbers worth logging: reach rate and the worst errors of the reached frames."""
        ok = self.reached
        return {
            "max_joint_step_rad": float(self.joint_steps.max()) if len(self) else 0.0,
            "jump_frames": self.jump_frames().tolist(),
            "frames": len(self),
            "reached_fraction": self.reached_fraction,
            "unreached_frames": self.unreached_frames.tolist(),
            "max_position_error_m": float(self.position_error[ok].max()) if ok.any() else None,
            "max_rotation_error_rad": float(self.rotation_error[ok].max()) if ok.any() else None,
            "mean_iterations": float(self.iterations.mean()) if len(self) else 0.0,
        }


class ArmIK:
    """IK of one arm for one mounted hand (the wrist frame is fixed at construction).

    ``hand`` is a hand id or config whose YAML ``mount`` places its wrist on the flange;
    ``flange_to_wrist`` gives that transform directly; with neither, the flange is solved for.
    ``params`` defaults to the arm YAML's ``ik`` section; ``overrides`` change single fields.
    """

    def __init__(self, arm: ArmModel | str = DEFAULT_ARM, hand: Mount = None,
                 flange_to_wrist: ArrayLike | None = None, params: IKParams | None = None,
                 seed: int = 0, **overrides: Any) -> None:
        self.arm = arm_model(arm) if isinstance(arm, str) else arm
        self.flange_to_wrist = resolve_mount(hand, flange_to_wrist)
        params = params if params is not None else self.arm.config.ik
        self.params = params.replace(**overrides) if overrides else params
        self.model, self.frame = self.arm.tool_model(self.flange_to_wrist)
        self.data = self.model.createData()
        p = self.params
        self._lower = self.arm.lower + p.limit_margin
        self._upper = self.arm.upper - p.limit_margin
        if np.any(self._lower > self._upper):
            raise ValueError(f"ik.limit_margin {p.limit_margin} closes a joint's range")
        self._ready = np.clip(self.arm.ready_posture, self._lower, self._upper)
        self._damping = p.damping * np.eye(6)
        self._rng = np.random.default_rng(seed)
        self._seed = seed

    # -- public ------------------------------------------------------------------------------

    def solve(self, target: ArrayLike, q0: ArrayLike | None = None) -> IKResult:
        """IK of one wrist pose T_base_wrist (4x4), from ``q0`` (default the ready posture).

        When that start does not reach the pose, up to ``restarts`` random starts are tried
        (deterministic for a given solver seed); the best attempt is returned either way.
        """
        pose = np.asarray(target, dtype=np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"target: expected a 4x4 pose, got shape {pose.shape}")
        check_rigid(pose, "target")
        q = self._start(q0)
        se3 = self._to_world(pose[None])[0]
        return self._solve_cold(se3, q)

    def solve_trajectory(self, targets: ArrayLike, q0: ArrayLike | None = None
                         ) -> TrajectoryIKResult:
        """IK of wrist poses (N, 4, 4) in order, each frame warm-started from the last reached.

        The first frame is a cold start from ``q0`` (default the ready posture, with restarts
        as in :meth:`solve`); later frames never restart, so the joint path stays continuous.
        """
        poses = np.asarray(targets, dtype=np.float64)
        if poses.ndim != 3 or poses.shape[1:] != (4, 4):
            raise ValueError(f"targets: expected poses of shape (N, 4, 4), got {poses.shape}")
        check_rigid(poses, "targets")
        n = poses.shape[0]
        dof = self.arm.dof
        q_out = np.empty((n, dof))
        pos_err = np.empty(n)
        rot_err = np.empty(n)
        iters = np.empty(n, dtype=np.int64)
        reached = np.zeros(n, dtype=bool)
        restarted = np.zeros(n, dtype=bool)
        if n == 0:
            return TrajectoryIKResult(q_out, reached, pos_err, rot_err, iters, restarted)
        world = self._to_world(poses)
        first = self._solve_cold(world[0], self._start(q0))
        q_out[0], pos_err[0], rot_err[0] = first.q, first.position_error, first.rotation_error
        iters[0], reached[0] = first.iterations, first.reached
        restarted[0] = first.restarted
        p = self.params
        reach_p, reach_r = p.reach_position_tolerance, p.reach_rotation_tolerance
        max_it = p.max_iterations
        q = first.q.copy()
        last_good = q.copy()
        descend = self._descend
        for i in range(1, n):
            if not reached[i - 1]:
                q[:] = last_good
            it, ep, er = descend(world[i], q, max_it)
            if (ep > reach_p or er > reach_r) and p.restarts:
                # The warm start can sit on an IK branch that joint limits cut off; random
                # restarts find another branch (the joint path then jumps, which `restarted`
                # reports) or confirm that the target is out of reach.
                retry = self._solve_cold(world[i], q, first_attempt=False, near=True)
                it += retry.iterations
                closer = (retry.position_error / reach_p + retry.rotation_error / reach_r
                          < ep / reach_p + er / reach_r)
                if retry.reached or closer:
                    q[:] = retry.q
                    ep, er = retry.position_error, retry.rotation_error
                    restarted[i] = True
            q_out[i] = q
            pos_err[i], rot_err[i], iters[i] = ep, er, it
            if ep <= reach_p and er <= reach_r:
                reached[i] = True
                last_good[:] = q
        return TrajectoryIKResult(q_out, reached, pos_err, rot_err, iters, restarted)

    # -- internals ---------------------------------------------------------------------------

    def _start(self, q0: ArrayLike | None) -> FloatArray:
        """Starting configuration: validated, projected into the limits (a measured state may
        sit a hair outside them)."""
        if q0 is None:
            return self._ready.copy()
        q = np.asarray(q0, dtype=np.float64)
        if q.shape != (self.arm.dof,):
            raise ValueError(f"q0: expected shape ({self.arm.dof},), got {q.shape}")
        if not np.isfinite(q).all():
            raise ValueError("q0: contains NaN or infinite values")
        return np.clip(q, self._lower, self._upper)

    def _to_world(self, poses: FloatArray) -> list[pin.SE3]:
        """Base-frame targets as pinocchio SE3 objects in the model's root frame."""
        if not self.arm.base_is_world:
            poses = self.arm.world_from_base @ poses
        return [pin.SE3(pose) for pose in poses]

    def _solve_cold(self, target: pin.SE3, q: FloatArray, first_attempt: bool = True,
                    near: bool = False) -> IKResult:
        """Descend from ``q`` (unless ``first_attempt`` is false), then from random starts.

        With ``near``, restart k of n starts from ``q`` perturbed by k/n of the joint ranges, so
        the first branch found is a close one and a trajectory jumps as little as it must.

        Returns the first attempt that reaches the target, else the attempt that ended
        closest (tolerance-weighted); ``q`` itself is not modified.
        """
        p = self.params
        total = 0
        best: tuple[float, FloatArray, float, float, bool] | None = None
        origin = q.copy()
        q = q.copy()
        span = self._upper - self._lower
        for attempt in range(0 if first_attempt else 1, p.restarts + 1):
            if attempt and near:
                step = self._rng.normal(size=origin.shape) * span * (attempt / p.restarts)
                q = np.clip(origin + step, self._lower, self._upper)
            elif attempt:
                q = self._rng.uniform(self._lower, self._upper)
            it, ep, er = self._descend(target, q, p.max_iterations)
            total += it
            if ep <= p.reach_position_tolerance and er <= p.reach_rotation_tolerance:
                return IKResult(q, True, ep, er, total, attempt > 0)
            score = ep / p.reach_position_tolerance + er / p.reach_rotation_tolerance
            if best is None or score < best[0]:
                best = (score, q.copy(), ep, er, attempt > 0)
        assert best is not None, "no attempt made (first_attempt=False needs restarts > 0)"
        return IKResult(best[1], False, best[2], best[3], total, best[4])

    def _descend(self, target: pin.SE3, q: FloatArray, max_iterations: int
                 ) -> tuple[int, float, float]:
        """Iterate in place on ``q``; return (iterations, position error, rotation error).

        Kept lean: locals hoisted out of the loop, only the small arrays numpy and pinocchio
        return are created per iteration.
        """
        model, data, frame = self.model, self.data, self.frame
        p = self.params
        tol_p, tol_r = p.position_tolerance, p.rotation_tolerance
        gain, max_step = p.nullspace_gain, p.max_step
        lower, upper, ready, damping = self._lower, self._upper, self._ready, self._damping
        projector_eps = _PROJECTOR_EPS * np.eye(6)
        local = pin.ReferenceFrame.LOCAL
        it = 0
        while True:
            # computeJointJacobians also runs the forward pass the frame placement reads.
            pin.computeJointJacobians(model, data, q)
            i_m_d = pin.updateFramePlacement(model, data, frame).actInv(target)
            err = pin.log6(i_m_d).vector
            trans = i_m_d.translation
            ep = float(trans @ trans) ** 0.5
            rot = err[3:]
            er = float(rot @ rot) ** 0.5
            if (ep < tol_p and er < tol_r) or it >= max_iterations:
                return it, ep, er
            jac = pin.Jlog6(i_m_d.inverse()) @ pin.getFrameJacobian(model, data, frame, local)
            to_ready = ready - q
            dq = self._step(jac, err, to_ready, gain=gain, damping=damping,
                                projector_eps=projector_eps)
            # A joint at a limit that the step pushes outward would be clamped back, and the
            # other joints' share of the step would then miss; drop it from this step instead.
            blocked = ((q <= lower) & (dq < 0)) | ((q >= upper) & (dq > 0))
            if blocked.any():
                jac[:, blocked] = 0.0
                to_ready[blocked] = 0.0
                dq = self._step(jac, err, to_ready, gain=gain, damping=damping,
                                projector_eps=projector_eps)
            largest = float(np.abs(dq).max())
            if largest > max_step:
                dq *= max_step / largest
            q += dq
            np.maximum(q, lower, out=q)
            np.minimum(q, upper, out=q)
            it += 1


    @staticmethod
    def _step(jac: FloatArray, err: FloatArray, to_ready: FloatArray, *, gain: float,
              damping: FloatArray, projector_eps: FloatArray) -> FloatArray:
        """Damped least squares step plus the posture term projected into the null space."""
        jjt = jac @ jac.T
        dq = jac.T @ np.linalg.solve(jjt + damping, err)
        if gain:
            # The posture term is projected with a (nearly) undamped pseudo-inverse: the damped
            # one leaks part of it into the task and stalls the error near a millimetre.
            jjt += projector_eps
            dq += gain * (to_ready - jac.T @ np.linalg.solve(jjt, jac @ to_ready))
        return dq


def solve_ik(target: ArrayLike, arm: ArmModel | str = DEFAULT_ARM, hand: Mount = None,
             flange_to_wrist: ArrayLike | None = None, q0: ArrayLike | None = None,
             **overrides: Any) -> IKResult:
    """One-off IK of a single wrist pose (builds a solver; keep an :class:`ArmIK` for many)."""
    return ArmIK(arm, hand, flange_to_wrist, **overrides).solve(target, q0)


def solve_trajectory_ik(targets: ArrayLike, arm: ArmModel | str = DEFAULT_ARM,
                        hand: Mount = None, flange_to_wrist: ArrayLike | None = None,
                        q0: ArrayLike | None = None, **overrides: Any) -> TrajectoryIKResult:
    """One-off IK of a wrist trajectory (N, 4, 4), warm-started frame to frame."""
    return ArmIK(arm, hand, flange_to_wrist, **overrides).solve_trajectory(targets, q0)
