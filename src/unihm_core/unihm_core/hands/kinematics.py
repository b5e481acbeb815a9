"""Hand kinematics: a free-floating wrist plus the hand's actuated finger joints.

The model comes from pinocchio (URDF parsing, joint placements, axes, limits) and every single
configuration can be evaluated by pinocchio itself (:meth:`HandKinematics.keypoints_pinocchio`).
Learning and refinement evaluate whole sequences and batches, where a Python loop over frames
calling pinocchio costs more than the kinematics; :meth:`HandKinematics.keypoints_and_jacobians`
therefore runs the same tree, with the parameters pinocchio parsed, as a handful of batched
numpy operations per joint. Tests hold the two to 1e-9, and to yourdfpy as an independent parser.

Frames: the wrist pose ``T_world_wrist`` places the canonical wrist frame (docs/hands.md). Wrist
Jacobian columns follow pinocchio's free-flyer convention: body-frame twist (v, w), i.e. a
perturbation ``T_world_wrist @ exp([v, w])`` (see :func:`unihm_core.se3.exp_local`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
import pinocchio as pin
from numpy.typing import ArrayLike

from unihm_core.hands.config import HandConfig, HandConfigError, Keypoint
from unihm_core.hands.registry import get_hand_config
from unihm_core.se3 import FloatArray, invert, skew

WRIST_DOF = 6
_CHUNK = 2048  # configurations per batched block: temporaries stay cache-sized (measured best)


@dataclass(frozen=True)
class _Joint:
    parent: int  # index into the joint list (0 = URDF root)
    revolute: bool
    placement: FloatArray  # [rotation | translation] in the parent joint frame, 3 x 4
    motion: FloatArray  # [K | K^2 | axis] with K = [axis]x, 3 x 7


def _urdf_mimics(urdf_text: str) -> dict[str, tuple[str, float, float]]:
    """``joint -> (mimicked joint, multiplier, offset)`` from the URDF's <mimic> tags."""
    mimics = {}
    for joint in ET.fromstring(urdf_text).iter("joint"):
        tag = joint.find("mimic")
        if tag is not None:
            mimics[joint.attrib["name"]] = (tag.attrib["joint"],
                                            float(tag.attrib.get("multiplier", 1.0)),
                                            float(tag.attrib.get("offset", 0.0)))
    return mimics


class HandKinematics:
    """Forward kinematics, Jacobians and limits of one hand type (see the module docstring)."""

    def __init__(self, config: HandConfig) -> None:
        self.config = config
        src = config.source or config.id
        try:
            urdf_text = config.urdf_path.read_text()
            # Mimic joints are kept as ordinary joints and coupled by ``self.mimic_matrix``:
            # pinocchio's own mimic folding rejects URDFs that list a mimic before its leader.
            self.model = pin.buildModelFromUrdf(str(config.urdf_path), mimic=False)
        except (OSError, ValueError, RuntimeError, ET.ParseError) as e:
            raise HandConfigError(src, "urdf", f"cannot load {config.urdf_path}: {e}") from e
        model = self.model
        self.data = model.createData()
        for i in range(1, model.njoints):
            if model.nqs[i] != 1 or model.nvs[i] != 1:
                raise HandConfigError(src, "urdf", f"joint '{model.names[i]}' is of type "
                                      f"{model.joints[i].shortname()}; only revolute and "
                                      "prismatic joints are supported")
        self.full_joint_names: tuple[str, ...] = tuple(model.names[1:])
        self._build_mimic_map(_urdf_mimics(urdf_text), src)
        self._build_limits(src)
        self._build_frames(src)
        self._build_tree()

    # ----------------------------------------------------------------------------- model setup
    def _build_mimic_map(self, mimics: dict[str, tuple[str, float, float]], src: str) -> None:
        names = self.full_joint_names
        actuated = self.config.joint_names
        for i, joint in enumerate(actuated):
            if joint not in names:
                raise HandConfigError(src, f"joints[{i}]", f"joint '{joint}' is not a movable "
                                      f"joint of {self.config.urdf_path.name} "
                                      f"(movable joints: {', '.join(names)})")
            if joint in mimics:
                raise HandConfigError(src, f"joints[{i}]", f"joint '{joint}' mimics "
                                      f"'{mimics[joint][0]}' in the URDF; list the leader")
        n_full, n = len(names), len(actuated)
        matrix = np.zeros((n_full, n))
        offset = np.zeros(n_full)

        def resolve(joint: str, depth: int = 0) -> tuple[FloatArray, float]:
            if joint in actuated:
                row = np.zeros(n)
                row[actuated.index(joint)] = 1.0
                return row, 0.0
            if joint not in mimics or depth > n_full:
                raise HandConfigError(src, "joints", f"joint '{joint}' moves in the URDF but is "
                                      "neither listed in 'joints' nor a <mimic> of one")
            leader, mult, off = mimics[joint]
            row, base = resolve(leader, depth + 1)
            return mult * row, mult * base + off

        for j, joint in enumerate(names):
            matrix[j], offset[j] = resolve(joint)
        self.mimic_matrix: FloatArray = matrix  # q_full = mimic_matrix @ q + mimic_offset
        self.mimic_offset: FloatArray = offset
        self._q_index = np.array([names.index(j) for j in actuated])

    def _build_limits(self, src: str) -> None:
        model = self.model
        lower = model.lowerPositionLimit[self._q_index].astype(np.float64)
        upper = model.upperPositionLimit[self._q_index].astype(np.float64)
        for name, (lo, hi) in self.config.joint_limit_overrides.items():
            k = self.config.joint_names.index(name)
            lower[k], upper[k] = lo, hi
        bad = [self.config.joint_names[k] for k in range(len(lower))
               if not (np.isfinite(lower[k]) and np.isfinite(upper[k]) and lower[k] <= upper[k])]
        if bad:
            raise HandConfigError(src, "joint_limits", f"joints without finite limits in the "
                                  f"URDF: {bad}; give them in 'joint_limits'")
        self.lower: FloatArray = lower
        self.upper: FloatArray = upper
        self.velocity_limits: FloatArray = model.velocityLimit[self._q_index].astype(np.float64)
        self.weights: FloatArray = np.array(
            [self.config.joint_weights.get(j, 1.0) for j in self.config.joint_names])
        open_pose = np.clip(np.zeros(len(lower)), lower, upper)
        for name, value in self.config.open_pose.items():
            k = self.config.joint_names.index(name)
            if not lower[k] - 1e-9 <= value <= upper[k] + 1e-9:
                raise HandConfigError(src, f"open_pose.{name}", f"{value} is outside the joint "
                                      f"limits [{lower[k]:.4f}, {upper[k]:.4f}]")
            open_pose[k] = value
        self.open_pose: FloatArray = open_pose

    def _frame_id(self, link: str, src: str, key: str) -> int:
        model = self.model
        if not model.existFrame(link):
            links = sorted(f.name for f in model.frames if f.type == pin.FrameType.BODY)
            raise HandConfigError(src, key, f"link '{link}' is not in "
                                  f"{self.config.urdf_path.name} (links: {', '.join(links)})")
        return model.getFrameId(link)

    def _build_frames(self, src: str) -> None:
        model = self.model
        base_id = self._frame_id(self.config.base_link, src, "base_link")
        if model.frames[base_id].parentJoint != 0:
            raise HandConfigError(src, "base_link", f"link '{self.config.base_link}' moves with "
                                  f"joint '{model.names[model.frames[base_id].parentJoint]}'; "
                                  "the base link must be fixed to the URDF root")
        pin.framesForwardKinematics(model, self.data, pin.neutral(model))
        root_base = self.data.oMf[base_id].homogeneous
        self.root_to_wrist: FloatArray = root_base @ self.config.wrist_from_base
        self._wrist_from_root = invert(self.root_to_wrist)

        def resolve(kp: Keypoint, key: str) -> tuple[int, FloatArray]:
            frame = model.frames[self._frame_id(kp.link, src, key)]
            placement = frame.placement
            return frame.parentJoint, placement.rotation @ np.asarray(kp.offset) + \
                placement.translation

        keys = ["palm"] + [f"fingers.{f}[{i}]" for f, pts in self.config.fingers.items()
                           for i in range(len(pts))]
        resolved = [resolve(kp, key) for kp, key in zip(self.config.keypoints, keys, strict=True)]
        # Keypoints also become pinocchio operational frames, for the per-frame reference path.
        self._kp_frame_ids = []
        for kp, (joint, offset) in zip(self.config.keypoints, resolved, strict=True):
            placement = pin.SE3(np.eye(3), offset)
            self._kp_frame_ids.append(model.addFrame(pin.Frame(
                f"unihm_keypoint/{kp.name}", int(joint), model.getFrameId(kp.link),
                placement, pin.FrameType.OP_FRAME)))
        self.data = model.createData()
        self.keypoint_names: tuple[str, ...] = self.config.keypoint_names
        self.fingertip_indices: tuple[int, ...] = self.config.fingertip_indices
        self._kp_joint = np.array([j for j, _ in resolved])
        self._kp_offset = np.array([o for _, o in resolved])

    def _build_tree(self) -> None:
        model = self.model
        data = self.data
        pin.forwardKinematics(model, data, pin.neutral(model))
        joints = [None]
        for i in range(1, model.njoints):
            motion = np.asarray(data.joints[i].S).reshape(6)
            revolute = bool(np.linalg.norm(motion[3:]) > 0.5)
            axis = motion[3:] if revolute else motion[:3]
            axis = axis / np.linalg.norm(axis)
            k = skew(axis)
            placement = model.jointPlacements[i]
            joints.append(_Joint(
                model.parents[i], revolute,
                np.hstack([placement.rotation, placement.translation[:, None]]),
                np.hstack([k, k @ k, axis[:, None]])))
        self._joints: list[_Joint | None] = joints
        # support[k, j]: full joint j (0-based) moves keypoint k
        support = np.zeros((len(self._kp_joint), model.njoints - 1), dtype=bool)
        for k, j in enumerate(self._kp_joint):
            for s in model.supports[int(j)]:
                if s > 0:
                    support[k, s - 1] = True
        self._support = support
        self._selections: dict[bytes, tuple[np.ndarray, np.ndarray, FloatArray]] = {}
        self._revolute = np.array([jt.revolute for jt in joints[1:]])

    # ------------------------------------------------------------------------------ properties
    @property
    def hand_id(self) -> str:
        return self.config.id

    @property
    def dof(self) -> int:
        return self.config.dof

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.config.joint_names

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    # ------------------------------------------------------------------------- configurations
    def check_q(self, q: ArrayLike, what: str = "q") -> FloatArray:
        """``q`` as float64 (..., dof); wrong shapes and non-finite values raise ValueError."""
        q = np.asarray(q, dtype=np.float64)
        if q.ndim == 0 or q.shape[-1] != self.dof:
            raise ValueError(f"{self.hand_id}: {what} must have shape (..., {self.dof}) "
                             f"(joints {', '.join(self.joint_names)}), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"{self.hand_id}: {what} has non-finite values")
        return q

    def full_configuration(self, q: ArrayLike) -> FloatArray:
        """Actuated joints (..., dof) -> every URDF joint, mimics included (..., n_full)."""
        return self.check_q(q) @ self.mimic_matrix.T + self.mimic_offset

    def actuated_from_full(self, q_full: ArrayLike) -> FloatArray:
        """Every URDF joint (..., n_full) -> the actuated joints (mimics are dropped)."""
        q_full = np.asarray(q_full, dtype=np.float64)
        if q_full.shape[-1] != len(self.full_joint_names):
            raise ValueError(f"{self.hand_id}: full configuration must have "
                             f"{len(self.full_joint_names)} values, got {q_full.shape}")
        return q_full[..., self._q_index]

    def clip(self, q: ArrayLike) -> FloatArray:
        return np.clip(self.check_q(q), self.lower, self.upper)

    def limit_violation(self, q: ArrayLike) -> FloatArray:
        """How far each joint is outside its limits (0 inside), radians or metres."""
        q = self.check_q(q)
        return np.maximum(self.lower - q, 0.0) + np.maximum(q - self.upper, 0.0)

    def within_limits(self, q: ArrayLike, tol: float = 1e-9) -> np.ndarray:
        """Per configuration: every joint inside its limits (up to ``tol``)."""
        return np.all(self.limit_violation(q) <= tol, axis=-1)

    def random_configurations(self, n: int, rng: np.random.Generator | int | None = None,
                              margin: float = 0.0) -> FloatArray:
        """Uniform samples inside the limits, shrunk by ``margin`` of the range on each side."""
        rng = np.random.default_rng(rng)
        span = self.upper - self.lower
        return rng.uniform(self.lower + margin * span, self.upper - margin * span,
                           size=(n, self.dof))

    # ---------------------------------------------------------------------- batched kinematics
    def _tree(self, q_full: FloatArray, root: FloatArray,
              need_axes: bool) -> tuple[FloatArray, FloatArray, FloatArray | None]:
        """Joint frames for a flat batch (N, n_full), the URDF root placed at ``root``.

        ``root`` is (4, 4) or (N, 4, 4). Starting the chain at the world pose of the URDF root
        makes every result world-frame without a per-configuration rotation at the end.
        """
        n = q_full.shape[0]
        nj = len(self._joints)
        rot = np.empty((nj, n, 3, 3))
        pos = np.empty((nj, n, 3))
        axes = np.empty((nj - 1, n, 3)) if need_axes else None
        rot[0] = root[..., :3, :3]
        pos[0] = root[..., :3, 3]
        for i in range(1, nj):
            jt = self._joints[i]
            # two GEMMs per joint: [R_par @ R_place | R_par @ t_place], then x @ [K | K^2 | a]
            placed = rot[jt.parent].reshape(n * 3, 3) @ jt.placement
            x = placed[:, :3]
            p = pos[jt.parent] + placed[:, 3].reshape(n, 3)
            moved = x @ jt.motion
            world_axis = moved[:, 6].reshape(n, 3)
            qi = q_full[:, i - 1]
            if jt.revolute:
                s = np.sin(qi)[:, None, None]
                c = (1.0 - np.cos(qi))[:, None, None]
                rot[i] = x.reshape(n, 3, 3) + s * moved[:, 0:3].reshape(n, 3, 3) + \
                    c * moved[:, 3:6].reshape(n, 3, 3)
                pos[i] = p
            else:
                rot[i] = x.reshape(n, 3, 3)
                pos[i] = p + world_axis * qi[:, None]
            if axes is not None:
                axes[i - 1] = world_axis
        return rot, pos, axes

    def _select(self, which: str | ArrayLike) -> np.ndarray:
        if isinstance(which, str):
            if which == "fingertips":
                return np.array(self.fingertip_indices)
            if which == "all":
                return np.arange(self.num_keypoints)
            raise ValueError(f"unknown keypoint selection '{which}' (fingertips, all or indices)")
        idx = np.asarray(which, dtype=int).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_keypoints):
            raise ValueError(f"{self.hand_id}: keypoint indices must be in "
                             f"[0, {self.num_keypoints}), got {idx.tolist()}")
        return idx

    def _selection(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, FloatArray]:
        """(keypoint, joint) pairs where the joint moves the keypoint, and the sparse map of
        those pairs onto (keypoint, actuated joint) Jacobian columns, mimic factors included."""
        key = idx.tobytes()
        if key not in self._selections:
            pair_k, pair_f = np.nonzero(self._support[idx])
            scatter = np.zeros((len(pair_k), len(idx) * self.dof))
            for p, (k, f) in enumerate(zip(pair_k, pair_f, strict=True)):
                scatter[p, k * self.dof:(k + 1) * self.dof] = self.mimic_matrix[f]
            self._selections[key] = (pair_k, pair_f, scatter)
        return self._selections[key]

    def _block(self, q: FloatArray, root: FloatArray, idx: np.ndarray,
               jacobian: bool) -> tuple[FloatArray, FloatArray | None]:
        """Keypoints (N, K, 3) and d/dq (N, K, 3, dof) for a flat block, in the frame ``root``
        (the URDF root's pose, (4, 4) or (N, 4, 4)) is expressed in."""
        n = q.shape[0]
        q_full = q @ self.mimic_matrix.T + self.mimic_offset
        rot, pos, axes = self._tree(q_full, root, jacobian)
        joint = self._kp_joint[idx]
        pts = pos[joint] + np.sum(rot[joint] * self._kp_offset[idx][:, None, None, :], axis=-1)
        points = pts.transpose(1, 0, 2)  # keypoint-major (K, N, 3) -> (N, K, 3)
        if not jacobian:
            return points, None
        pair_k, pair_f, scatter = self._selection(idx)
        ax = axes[pair_f]  # (P, N, 3)
        lev = pts[pair_k] - pos[pair_f + 1]
        cols = np.empty_like(ax)
        cols[..., 0] = ax[..., 1] * lev[..., 2] - ax[..., 2] * lev[..., 1]
        cols[..., 1] = ax[..., 2] * lev[..., 0] - ax[..., 0] * lev[..., 2]
        cols[..., 2] = ax[..., 0] * lev[..., 1] - ax[..., 1] * lev[..., 0]
        prismatic = ~self._revolute[pair_f]
        cols[prismatic] = ax[prismatic]
        cols = cols.transpose(1, 2, 0).reshape(n * 3, -1)
        jac_q = (cols @ scatter).reshape(n, 3, len(idx), self.dof).transpose(0, 2, 1, 3)
        return points, jac_q

    def keypoints_local(self, q: ArrayLike, which: str | ArrayLike = "all") -> FloatArray:
        """Keypoints in the canonical wrist frame, (..., K, 3), for configurations (..., dof)."""
        q = self.check_q(q)
        idx = self._select(which)
        flat = q.reshape(-1, self.dof)
        out = np.empty((flat.shape[0], len(idx), 3))
        for start in range(0, flat.shape[0], _CHUNK):
            out[start:start + _CHUNK] = self._block(flat[start:start + _CHUNK],
                                                    self._wrist_from_root, idx, False)[0]
        return out.reshape(*q.shape[:-1], len(idx), 3)

    def keypoints(self, wrist_pose: ArrayLike, q: ArrayLike,
                  which: str | ArrayLike = "all") -> FloatArray:
        """Keypoints in the world frame for wrist poses (..., 4, 4) and joints (..., dof)."""
        wrist_pose = self._check_pose(wrist_pose)
        local = self.keypoints_local(q, which)
        return np.einsum("...ij,...kj->...ki", wrist_pose[..., :3, :3], local) + \
            wrist_pose[..., None, :3, 3]

    def keypoints_and_jacobians(self, wrist_pose: ArrayLike, q: ArrayLike,
                                which: str | ArrayLike = "fingertips"
                                ) -> tuple[FloatArray, FloatArray]:
        """World keypoints (..., K, 3) and their Jacobians (..., K, 3, 6 + dof).

        Columns: body-frame wrist twist (v, w), then the actuated joints in config order.
        """
        q = self.check_q(q)
        wrist_pose = self._check_pose(wrist_pose)
        batch = np.broadcast_shapes(q.shape[:-1], wrist_pose.shape[:-2])
        q = np.broadcast_to(q, (*batch, self.dof)).reshape(-1, self.dof)
        wrist = np.broadcast_to(wrist_pose, (*batch, 4, 4)).reshape(-1, 4, 4)
        idx = self._select(which)
        n, k = q.shape[0], len(idx)
        points = np.empty((n, k, 3))
        jac = np.empty((n, k, 3, WRIST_DOF + self.dof))
        root = wrist @ self._wrist_from_root  # world pose of the URDF root, per configuration
        for start in range(0, n, _CHUNK):
            sl = slice(start, start + _CHUNK)
            pts, jac_q = self._block(q[sl], root[sl], idx, True)
            points[sl] = pts
            rot = wrist[sl, None, :3, :3]  # (B, 1, 3, 3)
            lever = pts - wrist[sl, None, :3, 3]
            jac[sl, :, :, :3] = rot
            # body-frame rotation about wrist axis r_j moves a point at lever d by r_j x d
            for j in range(3):
                r = rot[..., :, j]
                jac[sl, :, 0, 3 + j] = r[..., 1] * lever[..., 2] - r[..., 2] * lever[..., 1]
                jac[sl, :, 1, 3 + j] = r[..., 2] * lever[..., 0] - r[..., 0] * lever[..., 2]
                jac[sl, :, 2, 3 + j] = r[..., 0] * lever[..., 1] - r[..., 1] * lever[..., 0]
            jac[sl, :, :, 6:] = jac_q
        return points.reshape(*batch, k, 3), jac.reshape(*batch, k, 3, WRIST_DOF + self.dof)

    def _check_pose(self, pose: ArrayLike) -> FloatArray:
        pose = np.asarray(pose, dtype=np.float64)
        if pose.ndim < 2 or pose.shape[-2:] != (4, 4):
            raise ValueError(f"{self.hand_id}: wrist poses must have shape (..., 4, 4), "
                             f"got {pose.shape}")
        if not np.all(np.isfinite(pose)):
            raise ValueError(f"{self.hand_id}: wrist poses have non-finite values")
        return pose

    # ----------------------------------------------------------------- pinocchio, one by one
    def keypoints_pinocchio(self, wrist_pose: ArrayLike, q: ArrayLike,
                            which: str | ArrayLike = "fingertips",
                            jacobian: bool = True) -> tuple[FloatArray, FloatArray | None]:
        """Same as :meth:`keypoints_and_jacobians` with one pinocchio call per frame.

        The reference implementation (and the baseline of ``unihm bench kinematics``).
        """
        q = self.check_q(q).reshape(-1, self.dof)
        wrist = self._check_pose(wrist_pose).reshape(-1, 4, 4)
        wrist = np.broadcast_to(wrist, (q.shape[0], 4, 4))
        idx = self._select(which)
        model, data = self.model, self.data
        wr_rot, wr_t = self._wrist_from_root[:3, :3], self._wrist_from_root[:3, 3]
        q_full = q @ self.mimic_matrix.T + self.mimic_offset
        points = np.empty((q.shape[0], len(idx), 3))
        jac = np.empty((q.shape[0], len(idx), 3, WRIST_DOF + self.dof)) if jacobian else None
        frames = [self._kp_frame_ids[int(k)] for k in idx]
        frame_jacobian = pin.getFrameJacobian
        world_aligned = pin.LOCAL_WORLD_ALIGNED
        for n in range(q.shape[0]):
            if jacobian:
                pin.computeJointJacobians(model, data, q_full[n])
                pin.updateFramePlacements(model, data)
            else:
                pin.framesForwardKinematics(model, data, q_full[n])
            rot_w = wrist[n, :3, :3] @ wr_rot
            t_w = wrist[n, :3, :3] @ wr_t + wrist[n, :3, 3]
            for k, frame in enumerate(frames):
                points[n, k] = rot_w @ data.oMf[frame].translation + t_w
                if jac is not None:
                    j_lin = frame_jacobian(model, data, frame, world_aligned)[:3]
                    jac[n, k, :, 6:] = rot_w @ j_lin @ self.mimic_matrix
            if jac is not None:
                local = (points[n] - wrist[n, :3, 3]) @ wrist[n, :3, :3]
                jac[n, :, :, :3] = wrist[n, :3, :3]
                jac[n, :, :, 3:6] = -wrist[n, :3, :3] @ skew(local)
        return points, jac

    def evaluate_one(self, wrist_pose: FloatArray, q: FloatArray,
                     idx: np.ndarray) -> tuple[FloatArray, FloatArray]:
        """World keypoints (K, 3) and Jacobians (K, 3, 6 + dof) of ONE configuration.

        For solver inner loops, where the batched path's per-call overhead dominates: no input
        checks (validate once outside the loop), ``idx`` an integer array of keypoint indices.
        """
        self.prepare_one(q)
        points = self.points_one(wrist_pose, idx)
        return points, self.jacobians_one(wrist_pose, idx, points)

    def prepare_one(self, q: FloatArray) -> None:
        """Run pinocchio's kinematics for one configuration; :meth:`points_one` and
        :meth:`jacobians_one` then read from it (so a solver can pick the rows it needs
        after seeing the points)."""
        pin.computeJointJacobians(self.model, self.data,
                                  self.mimic_matrix @ q + self.mimic_offset)
        pin.updateFramePlacements(self.model, self.data)

    def points_one(self, wrist_pose: FloatArray, idx: np.ndarray) -> FloatArray:
        """World keypoints (K, 3) of the configuration given to :meth:`prepare_one`."""
        o_mf = self.data.oMf
        p_root = np.array([o_mf[self._kp_frame_ids[k]].translation for k in idx])
        rot = wrist_pose[:3, :3]
        rot_root = rot @ self._wrist_from_root[:3, :3]
        t_root = rot @ self._wrist_from_root[:3, 3] + wrist_pose[:3, 3]
        return p_root @ rot_root.T + t_root if len(idx) else np.zeros((0, 3))

    def jacobians_one(self, wrist_pose: FloatArray, idx: np.ndarray,
                      points: FloatArray) -> FloatArray:
        """Jacobians (K, 3, 6 + dof) of keypoints ``idx`` at world ``points`` (from
        :meth:`points_one`) for the configuration given to :meth:`prepare_one`."""
        jac = np.empty((len(idx), 3, WRIST_DOF + self.dof))
        if not len(idx):
            return jac
        model, data = self.model, self.data
        j_root = np.array([pin.getFrameJacobian(model, data, self._kp_frame_ids[k],
                                                pin.LOCAL_WORLD_ALIGNED)[:3] for k in idx])
        rot = wrist_pose[:3, :3]
        rot_root = rot @ self._wrist_from_root[:3, :3]
        jac[:, :, :3] = rot
        jac[:, :, 3:6] = -skew(points - wrist_pose[:3, 3]) @ rot  # r_j x lever, wrist axis r_j
        jac[:, :, 6:] = rot_root @ (j_root @ self.mimic_matrix)
        return jac

    def link_poses(self, q: ArrayLike) -> dict[str, FloatArray]:
        """Every URDF link's pose in the wrist frame for one configuration (for drawing)."""
        q_full = self.full_configuration(np.asarray(q).reshape(self.dof))
        pin.framesForwardKinematics(self.model, self.data, q_full)
        return {f.name: self._wrist_from_root @ self.data.oMf[i].homogeneous
                for i, f in enumerate(self.model.frames) if f.type == pin.FrameType.BODY}


_CACHE: dict[str, tuple[HandConfig, HandKinematics]] = {}


def hand_kinematics(hand_id: str) -> HandKinematics:
    """The kinematics of a registered hand type id, rebuilt when its config file changes.

    ``get_hand_config`` returns the same object while the file (and the override order) is
    unchanged, so identity tells whether the cached model is still the right one.
    """
    config = get_hand_config(hand_id)
    cached = _CACHE.get(hand_id)
    if cached is None or cached[0] is not config:
        cached = _CACHE[hand_id] = (config, HandKinematics(config))
    return cached[1]
