"""Frame-by-frame Gauss-Newton / Levenberg-Marquardt refinement (paper Algorithm 1, eqs. 17-18).

The variable of frame t is the hand pose: a body-frame wrist twist (applied as
``T <- T @ exp(xi)``, the Jacobian convention of :mod:`unihm_core.hands.kinematics`) and the
actuated finger joints. Priors on the wrist use the SE(3) logarithm of the relative pose, whose
derivative is taken as the identity (exact at the solution of the generative prior, first-order
elsewhere); priors on the fingers are linear as in the paper.

Per iteration: fingertips and link points by forward kinematics, mapped into the object frame
with T_tar(t)^-1; nearest neighbours with normals (frozen for the step); signed point-to-plane
distances; residuals and their Jacobians (eq. B19); the LM normal equations; a step projected
into the joint limits; accepted only if the (freshly re-associated) energy decreases.

:meth:`Refiner.refine` runs these iterations in a compiled loop (:mod:`unihm_refiner.compiled`)
when numba is installed and ``solver.compiled`` is on; the numpy methods below are the
reference it is tested against, and what the per-frame API (``energy``, ``residual_vector``)
evaluates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pinocchio as pin
from numpy.typing import NDArray

from unihm_core.hands.kinematics import WRIST_DOF, HandKinematics, hand_kinematics
from unihm_core.se3 import invert
from unihm_refiner import compiled
from unihm_refiner.config import RefinerConfig, load_refiner_config
from unihm_refiner.energies import kernel_and_slope, residuals

FloatArray = NDArray[np.float64]
TERMS = ("contact", "gen", "vel", "acc", "total")


class Surface(Protocol):
    """What the solver needs of an object (``ObjectModel`` is one): nearest surface samples
    with outward normals, checked for whole batches and unchecked for inner loops."""

    def nearest(self, x: FloatArray) -> tuple[FloatArray, FloatArray, np.ndarray]: ...

    def nearest_unchecked(self, x: FloatArray) -> tuple[FloatArray, FloatArray]: ...

    def neighbours_unchecked(self, x: FloatArray, k: int) -> tuple[FloatArray, FloatArray,
                                                                   FloatArray]: ...

    @property
    def spacing(self) -> float: ...


@dataclass
class RefineResult:
    """A refined trajectory and what the solver did, frame by frame."""

    hand_id: str
    wrist_poses: FloatArray  # (T, 4, 4)
    q: FloatArray  # (T, dof)
    energy_before: dict[str, FloatArray]  # term -> (T,), at the generated poses
    energy_after: dict[str, FloatArray]  # term -> (T,), at the refined poses
    iterations: NDArray[np.int64]  # (T,) steps tried (accepted + rejected)
    accepted: NDArray[np.int64]  # (T,) accepted steps
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    path: str = "numpy"  # which loop ran: "compiled" or "numpy"

    @property
    def frames_per_second(self) -> float:
        return len(self.q) / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class FrameProblem:
    """What stays fixed while one frame is refined (built by :meth:`Refiner.frame_problem`)."""

    pose_gen: FloatArray
    q_gen: FloatArray
    pose_init: FloatArray | None  # warm start (None: start from the generated pose)
    q_init: FloatArray | None
    obj_inv: FloatArray
    gen_inv: FloatArray
    prev_inv: FloatArray
    q_prev: FloatArray
    prev_vel: FloatArray  # (q_{t-1} - q_{t-2}) over (wrist twist, fingers)
    points: np.ndarray  # keypoint indices checked this frame: fingertips first
    pull: np.ndarray  # (len(points),) in [0, 1]: weight of the pull onto the surface


@dataclass(frozen=True)
class TrajectoryPlan:
    """A validated trajectory with its per-frame precomputations (:meth:`Refiner.plan`)."""

    wrist_poses: FloatArray
    q: FloatArray
    obj_inv: FloatArray
    gen_inv: FloatArray
    points: list[np.ndarray]
    pull: list[np.ndarray]


@dataclass(frozen=True)
class _State:
    """One evaluated candidate: pose, residuals with Jacobian, prior errors, energies."""

    pose: FloatArray
    q: FloatArray
    r: FloatArray
    jac: FloatArray | None  # None when only the energy was needed
    e_gen: FloatArray
    e_vel: FloatArray
    e_acc: FloatArray
    terms: tuple[float, float, float, float]  # contact, gen, vel, acc
    energy: float


def _log6(pose_a_inv: FloatArray, pose_b: FloatArray) -> FloatArray:
    """log of the relative pose a^-1 b as (v, w): the body-frame twist from a to b."""
    return pin.log6(pin.SE3(pose_a_inv @ pose_b)).vector


class Refiner:
    """Refines generated trajectories of one hand type against an object (see module doc)."""

    def __init__(self, hand: str | HandKinematics, config: RefinerConfig | None = None) -> None:
        self.kin = hand_kinematics(hand) if isinstance(hand, str) else hand
        self.config = config or load_refiner_config()
        kin, cfg = self.kin, self.config
        self.tips = np.array(kin.fingertip_indices)
        if cfg.contact.penetration_points == "all":
            others = [i for i in range(kin.num_keypoints) if i not in kin.fingertip_indices]
        else:
            others = []
        self.points = np.concatenate([self.tips, np.array(others, dtype=int)]).astype(int)
        self.n_tips = len(self.tips)
        n = WRIST_DOF + kin.dof
        self.w_gen = cfg.gen.diagonal(kin.weights)
        self.w_vel = cfg.vel.diagonal(kin.weights)
        self.w_acc = cfg.acc.diagonal(kin.weights)
        self.w_sum = self.w_gen + self.w_vel + self.w_acc
        # fingers only: the wrist columns are removed from the system
        self.free = np.arange(WRIST_DOF, n) if cfg.solver.fingers_only else np.arange(n)
        self._inv_h2 = 1.0  # set per surface by refine()
        self._tree_arrays: tuple[tuple, tuple] | None = None  # for the compiled loop
        self._tree: tuple[Surface, tuple] | None = None  # (surface, its k-d tree)

    # ------------------------------------------------------------------------------ checks
    def _check(self, wrist_poses: FloatArray, q: FloatArray,
               target_poses: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        wrist_poses = np.asarray(wrist_poses, dtype=np.float64)
        q = np.asarray(q, dtype=np.float64)
        target_poses = np.asarray(target_poses, dtype=np.float64)
        hand = self.kin.hand_id
        if q.ndim != 2 or q.shape[1] != self.kin.dof:
            raise ValueError(f"{hand}: joints must have shape (T, {self.kin.dof}), got {q.shape}")
        frames = q.shape[0]
        if frames == 0:
            raise ValueError(f"{hand}: the trajectory has no frames")
        if wrist_poses.shape != (frames, 4, 4):
            raise ValueError(f"{hand}: wrist poses must have shape ({frames}, 4, 4) to match "
                             f"{frames} joint frames, got {wrist_poses.shape}")
        if target_poses.shape != (frames, 4, 4):
            raise ValueError(f"object target poses must have shape ({frames}, 4, 4), one per "
                             f"frame, got {target_poses.shape}")
        for name, array in (("joints", q), ("wrist poses", wrist_poses),
                            ("object target poses", target_poses)):
            bad = np.flatnonzero(~np.isfinite(array.reshape(frames, -1)).all(axis=1))
            if bad.size:
                raise ValueError(f"{hand}: {name} are not finite at frame(s) "
                                 f"{bad[:10].tolist()}")
        return wrist_poses, q, target_poses

    # --------------------------------------------------------------------------- energies
    def _contact(self, surface: Surface, pose: FloatArray, q: FloatArray, frame: FrameProblem,
                 jacobian: bool = True) -> tuple[float, FloatArray, FloatArray | None]:
        """Contact energy, residuals (M,) and their Jacobian (M, 6 + dof) at one pose."""
        c = self.config.contact
        kin = self.kin
        kin.prepare_one(q)
        pts = kin.points_one(pose, frame.points)
        rot = frame.obj_inv[:3, :3]
        x = pts @ rot.T + frame.obj_inv[:3, 3]
        d, normals = self._distances(surface, x)
        pull = frame.pull
        # rows with a residual: pulled fingertips, and points inside the object; the others
        # are zero with a zero Jacobian (f = f' = 0 outside for the penetration kernel)
        rows = (pull > 0.0) | (d < 0.0)
        f, slope = kernel_and_slope(d[rows], c.alpha, c.k, pull[rows])
        r, dr = residuals(f, slope, c.lambda_c, c.epsilon)
        if not jacobian:  # residuals of every checked point (zeros where inactive)
            full = np.zeros(len(rows))
            full[rows] = r
            return float(c.lambda_c * f.sum()), full, None
        jac = kin.jacobians_one(pose, frame.points[rows], pts[rows])
        # dd/dx_world = n^T R_obj^-1; rows of J_r are dr * n^T R^-1 J
        grad = (normals[rows] @ rot)[:, None, :] @ jac
        return float(c.lambda_c * f.sum()), r, dr[:, None] * grad[:, 0, :]

    def _distances(self, surface: Surface, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Signed distances (M,) of object-frame points and the normals they are measured
        along (M, 3). One neighbour: the paper's point-to-plane distance (eq. 11). Several:
        a Gaussian-weighted average of the neighbours' point-to-plane distances (a moving
        least-squares surface), which does not jump when the nearest sample changes, so
        fingers resting on a sparse cloud do not chatter from frame to frame. Neighbours and
        weights are frozen for the step, as the paper freezes correspondences."""
        k = self.config.contact.neighbours
        tree = self._tree[1] if self._tree is not None and self._tree[0] is surface else None
        if tree is not None:  # the same neighbours, from the compiled loop's tree
            near, normals, dist2 = compiled.knn_batch(np.ascontiguousarray(x), surface.points,
                                                      surface.normals, tree, k)
            if k == 1:
                near, normals = near[:, 0], normals[:, 0]
        elif k == 1:
            near, normals = surface.nearest_unchecked(x)
        else:
            near, normals, dist2 = surface.neighbours_unchecked(x, k)
        if k == 1:
            return np.einsum("ij,ij->i", normals, x - near), normals
        weights = np.exp(-(dist2 - dist2[:, :1]) * self._inv_h2)
        weights /= weights.sum(axis=1, keepdims=True)
        d = np.einsum("mk,mk->m", weights, np.einsum("mki,mki->mk", normals, x[:, None] - near))
        return d, np.einsum("mk,mki->mi", weights, normals)

    def _evaluate(self, frame: FrameProblem, surface: Surface, pose: FloatArray,
                  q: FloatArray, jacobian: bool = True) -> _State:
        """Energy terms, contact residuals/Jacobian and prior errors at one candidate pose."""
        e_c, r, jac = self._contact(surface, pose, q, frame, jacobian)
        n = WRIST_DOF + self.kin.dof
        e_gen, e_vel = np.empty(n), np.empty(n)
        e_gen[:6] = _log6(frame.gen_inv, pose)
        e_gen[6:] = q - frame.q_gen
        e_vel[:6] = _log6(frame.prev_inv, pose)
        e_vel[6:] = q - frame.q_prev
        e_acc = e_vel - frame.prev_vel
        terms = (e_c, 0.5 * float(self.w_gen @ (e_gen * e_gen)),
                 0.5 * float(self.w_vel @ (e_vel * e_vel)),
                 0.5 * float(self.w_acc @ (e_acc * e_acc)))
        return _State(pose, q, r, jac, e_gen, e_vel, e_acc, terms, sum(terms))

    def _refine_frame(self, frame: FrameProblem,
                      surface: Surface) -> tuple[_State, _State, int, int]:
        """LM iterations of one frame: (state at the generated pose, final state, steps tried,
        steps accepted). With a warm start, iterations begin there unless the generated pose
        itself has the lower energy."""
        s = self.config.solver
        free = self.free
        warm = frame.q_init is not None
        start = self._evaluate(frame, surface, frame.pose_gen, frame.q_gen, jacobian=not warm)
        state = start
        if warm:
            state = self._evaluate(frame, surface, frame.pose_init, frame.q_init)
            if state.energy > start.energy:
                state = start = self._evaluate(frame, surface, frame.pose_gen, frame.q_gen)
        lam, tried, accepted = s.lambda_init, 0, 0
        while tried < s.max_iterations:
            tried += 1
            jr = state.jac[:, free]
            lhs = jr.T @ jr
            lhs[np.diag_indices(len(free))] += self.w_sum[free] + lam
            rhs = -(jr.T @ state.r + (self.w_gen * state.e_gen + self.w_vel * state.e_vel
                                      + self.w_acc * state.e_acc)[free])
            step = np.zeros(WRIST_DOF + self.kin.dof)
            step[free] = np.linalg.solve(lhs, rhs)
            # the damped Gauss-Newton model's predicted decrease: when even the model promises
            # less than the tolerance, the frame has converged without evaluating the step
            predicted = 0.5 * float(step[free] @ (rhs + lam * step[free]))
            if predicted < s.tolerance * state.energy:
                tried -= 1
                break
            pose = state.pose if s.fingers_only else \
                state.pose @ pin.exp6(pin.Motion(step[:6])).homogeneous
            q = state.q + step[6:]
            if s.joint_limits:
                q = np.clip(q, self.kin.lower, self.kin.upper)
            candidate = self._evaluate(frame, surface, pose, q)
            if candidate.energy < state.energy:
                decrease = (state.energy - candidate.energy) / max(state.energy, 1e-300)
                state = candidate
                accepted += 1
                lam = max(lam / s.lambda_down, 1e-12)
                if decrease < s.tolerance:
                    break
            else:
                lam *= s.lambda_up
                if lam > s.lambda_max:
                    break
        return start, state, tried, accepted

    # ----------------------------------------------------------------- public per-frame API
    def plan(self, wrist_poses: FloatArray, q: FloatArray, surface: Surface,
             target_poses: FloatArray) -> TrajectoryPlan:
        """Validate a trajectory and precompute what every frame needs (one batched pass)."""
        wrist_poses, q_gen, target_poses = self._check(wrist_poses, q, target_poses)
        h = self.config.contact.smoothing * surface.spacing
        self._inv_h2 = 1.0 / max(h * h, 1e-12)
        self._tree = None
        if self.uses_compiled(surface):
            self._tree = (surface, self._build_tree(surface))
        obj_inv = invert(target_poses)
        points, pull = self._select_points(surface, wrist_poses, q_gen, obj_inv)
        return TrajectoryPlan(wrist_poses, q_gen, obj_inv, invert(wrist_poses), points, pull)

    def frame_problem(self, plan: TrajectoryPlan, t: int, previous: tuple[FloatArray, ...],
                      init: tuple[FloatArray, FloatArray] | None = None) -> FrameProblem:
        """Frame ``t``'s problem given the refined (pose, q) of frames t-2 and t-1 as
        ``previous = (pose_t2, pose_t1, q_t2, q_t1)`` (for t < 2, the generated frame 0:
        the paper's boundary prior) and an optional warm start ``init = (pose, q)``."""
        pose_t2, pose_t1, q_t2, q_t1 = previous
        return FrameProblem(
            pose_gen=plan.wrist_poses[t], q_gen=plan.q[t],
            pose_init=None if init is None else init[0],
            q_init=None if init is None else init[1],
            obj_inv=plan.obj_inv[t], gen_inv=plan.gen_inv[t], prev_inv=invert(pose_t1),
            q_prev=q_t1,
            prev_vel=np.concatenate([_log6(invert(pose_t2), pose_t1), q_t1 - q_t2]),
            points=plan.points[t], pull=plan.pull[t])

    def residual_vector(self, problem: FrameProblem, surface: Surface, pose: FloatArray,
                        q: FloatArray) -> FloatArray:
        """All residuals of a frame: contact, then sqrt(W) times the gen, vel and acc errors;
        half its squared norm is the frame energy (eq. 16)."""
        state = self._evaluate(problem, surface, pose, q, jacobian=False)
        return np.concatenate([state.r, np.sqrt(self.w_gen) * state.e_gen,
                               np.sqrt(self.w_vel) * state.e_vel,
                               np.sqrt(self.w_acc) * state.e_acc])

    def energy(self, problem: FrameProblem, surface: Surface, pose: FloatArray,
               q: FloatArray) -> dict[str, float]:
        """The frame's energy terms (contact, gen, vel, acc, total) at a pose."""
        state = self._evaluate(problem, surface, pose, q, jacobian=False)
        return dict(zip(TERMS, (*state.terms, state.energy), strict=True))

    # ------------------------------------------------------------------------------ refine
    def refine(self, wrist_poses: FloatArray, q: FloatArray, surface: Surface,
               target_poses: FloatArray) -> RefineResult:
        """Refine a generated trajectory (T frames) against ``surface`` moving along
        ``target_poses`` (object poses in the world, one per frame)."""
        clock = time.perf_counter()
        plan = self.plan(wrist_poses, q, surface, target_poses)
        if self.uses_compiled(surface):
            return self._refine_compiled(plan, surface, clock)
        frames = plan.q.shape[0]
        out_pose, out_q = plan.wrist_poses.copy(), plan.q.copy()
        before = {t: np.zeros(frames) for t in TERMS}
        after = {t: np.zeros(frames) for t in TERMS}
        tried = np.zeros(frames, dtype=np.int64)
        accepted = np.zeros(frames, dtype=np.int64)
        warm = self.config.solver.warm_start
        # boundary priors: q_-2 = q_-1 = q_0^gen
        previous = (plan.wrist_poses[0], plan.wrist_poses[0], plan.q[0], plan.q[0])
        for t in range(frames):
            init = None
            if warm and t > 0:  # carry the previous frame's correction over
                init = (plan.wrist_poses[t] @ plan.gen_inv[t - 1] @ out_pose[t - 1],
                        np.clip(plan.q[t] + out_q[t - 1] - plan.q[t - 1], self.kin.lower,
                                self.kin.upper))
            problem = self.frame_problem(plan, t, previous, init)
            start, end, tried[t], accepted[t] = self._refine_frame(problem, surface)
            for name, a, b in zip(TERMS, (*start.terms, start.energy),
                                  (*end.terms, end.energy), strict=True):
                before[name][t], after[name][t] = a, b
            out_pose[t], out_q[t] = end.pose, end.q
            previous = (previous[1], end.pose, previous[3], end.q)
        return RefineResult(self.kin.hand_id, out_pose, out_q, before, after, tried, accepted,
                            time.perf_counter() - clock)

    def _select_points(self, surface: Surface, wrist_poses: FloatArray, q_gen: FloatArray,
                       obj_inv: FloatArray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per frame, decided once at the generated poses (one batched pass): how strongly each
        fingertip is pulled onto the surface (fully within half of ``attract_within``, not at
        all beyond it, smoothly between, so that the pull does not flicker with noise in the
        generated joints) and which other points are
        close enough (``penetration_margin``) to be kept out; far points cannot reach the
        object in the small steps the priors allow, and skipping them keeps frames cheap."""
        c = self.config.contact
        world = self.kin.keypoints(wrist_poses, q_gen, self.points)  # (T, M, 3)
        x = np.einsum("tij,tmj->tmi", obj_inv[:, :3, :3], world) + obj_inv[:, None, :3, 3]
        d = self._distances(surface, x.reshape(-1, 3))[0].reshape(x.shape[:2])
        tips = d[:, :self.n_tips]
        if c.attract_within is None:
            attract = np.ones_like(tips)
        else:  # full pull below half the band, none beyond it, smoothstep between
            u = np.clip(2.0 * tips / max(c.attract_within, 1e-12) - 1.0, 0.0, 1.0)
            attract = 1.0 - u * u * (3.0 - 2.0 * u)
        keep = d < c.penetration_margin
        keep[:, :self.n_tips] = True
        points = [self.points[k] for k in keep]
        pull = [np.concatenate([a, np.zeros(int(k.sum()) - self.n_tips)])
                for a, k in zip(attract, keep, strict=True)]
        return points, pull

    # ------------------------------------------------------------------------- compiled loop
    def uses_compiled(self, surface: Surface) -> bool:
        """Whether :meth:`refine` runs the compiled loop for ``surface``: numba is installed,
        ``solver.compiled`` is on, and the surface exposes its ``points`` and ``normals`` with at
        least ``contact.neighbours`` samples (else the numpy loop runs, and reports bad input
        as it always did). The compiled loop takes a surface's neighbours to be its nearest
        ``points``, as ``ObjectModel`` defines them."""
        if not (compiled.AVAILABLE and self.config.solver.compiled):
            return False
        cloud = getattr(surface, "points", None)
        normals = getattr(surface, "normals", None)
        return (isinstance(cloud, np.ndarray) and isinstance(normals, np.ndarray)
                and cloud.ndim == 2 and cloud.shape[1] == 3 and normals.shape == cloud.shape
                and len(cloud) >= self.config.contact.neighbours)

    @staticmethod
    def _build_tree(surface: Surface) -> tuple:
        """The compiled loop's k-d tree over ``surface``'s samples."""
        return compiled.build_tree(np.ascontiguousarray(surface.points,
                                                        dtype=np.float64))

    def _kinematic_tree(self) -> tuple[tuple, tuple]:
        """The hand's tree for the compiled loop, from the pinocchio model of the kinematics:
        (parents, revolute flags, keypoint joints, support) and (placements, joint axes, mimic
        matrix and offset, keypoint offsets, URDF root in the wrist frame)."""
        if self._tree_arrays is None:
            kin = self.kin
            model = kin.model
            data = model.createData()
            pin.forwardKinematics(model, data, pin.neutral(model))
            nj = model.njoints
            parent = np.zeros(nj, dtype=np.int64)
            revolute = np.zeros(nj, dtype=np.bool_)
            placement = np.zeros((nj, 3, 4))
            axis = np.zeros((nj, 3))
            for i in range(1, nj):
                motion = np.asarray(data.joints[i].S).reshape(6)
                revolute[i] = np.linalg.norm(motion[3:]) > 0.5
                a = motion[3:] if revolute[i] else motion[:3]
                axis[i] = a / np.linalg.norm(a)
                parent[i] = model.parents[i]
                placement[i, :, :3] = model.jointPlacements[i].rotation
                placement[i, :, 3] = model.jointPlacements[i].translation
            frames = [model.frames[model.getFrameId(f"unihm_keypoint/{name}")]
                      for name in kin.keypoint_names]
            kp_joint = np.array([f.parentJoint for f in frames], dtype=np.int64)
            kp_offset = np.array([f.placement.translation for f in frames])
            support = np.zeros((len(frames), nj - 1), dtype=np.bool_)
            for k, j in enumerate(kp_joint):
                for s in model.supports[int(j)]:
                    if s > 0:
                        support[k, s - 1] = True
            self._tree_arrays = (
                (parent, revolute, kp_joint, support),
                (placement, axis, np.ascontiguousarray(kin.mimic_matrix),
                 np.ascontiguousarray(kin.mimic_offset), kp_offset,
                 invert(kin.root_to_wrist)))
        return self._tree_arrays

    def _refine_compiled(self, plan: TrajectoryPlan, surface: Surface,
                         clock: float) -> RefineResult:
        """The whole trajectory in :func:`unihm_refiner.compiled.refine_trajectory`."""
        c, s = self.config.contact, self.config.solver
        frames, dof = plan.q.shape
        cloud = np.ascontiguousarray(surface.points, dtype=np.float64)
        cloud_nrm = np.ascontiguousarray(surface.normals, dtype=np.float64)
        counts = np.array([len(p) for p in plan.points], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        points = np.concatenate(plan.points).astype(np.int64)
        pull = np.concatenate(plan.pull)
        tree = self._tree[1] if self._tree is not None and self._tree[0] is surface else \
            self._build_tree(surface)
        free = np.zeros(WRIST_DOF + dof, dtype=np.bool_)
        free[self.free] = True
        fp = np.array([c.alpha, c.k, c.lambda_c, c.epsilon, self._inv_h2, s.tolerance,
                       s.lambda_init, s.lambda_up, s.lambda_down, s.lambda_max])
        ip = np.array([c.neighbours, s.max_iterations, s.fingers_only, s.joint_limits,
                       s.warm_start], dtype=np.int64)
        out_pose = np.empty((frames, 4, 4))
        out_q = np.empty((frames, dof))
        before = np.empty((frames, len(TERMS)))
        after = np.empty((frames, len(TERMS)))
        tried = np.zeros(frames, dtype=np.int64)
        accepted = np.zeros(frames, dtype=np.int64)
        kin_i, kin_f = self._kinematic_tree()
        compiled.refine_trajectory(
            kin_i, kin_f, self.kin.lower, self.kin.upper,
            np.ascontiguousarray(plan.wrist_poses), np.ascontiguousarray(plan.q),
            np.ascontiguousarray(plan.obj_inv), np.ascontiguousarray(plan.gen_inv), points,
            offsets, pull, cloud, cloud_nrm, tree, self.w_gen,
            self.w_vel, self.w_acc, free, fp, ip, out_pose, out_q, before, after, tried,
            accepted)
        return RefineResult(self.kin.hand_id, out_pose, out_q,
                            {name: before[:, i].copy() for i, name in enumerate(TERMS)},
                            {name: after[:, i].copy() for i, name in enumerate(TERMS)},
                            tried, accepted, time.perf_counter() - clock, path="compiled")


def refine_many(jobs: list[tuple[str, FloatArray, FloatArray, Surface, FloatArray]],
                config: RefinerConfig | None = None) -> list[RefineResult]:
    """Several hands or sequences in one call: (hand id, wrist poses, q, surface, targets)."""
    refiners: dict[str, Refiner] = {}
    results = []
    for hand_id, wrist_poses, q, surface, targets in jobs:
        if hand_id not in refiners:
            refiners[hand_id] = Refiner(hand_id, config)
        results.append(refiners[hand_id].refine(wrist_poses, q, surface, targets))
    return results
