"""Arm kinematics: pinocchio model reduced to the arm joints, flange and mounted-wrist FK.

Frames (docs/arm.md): poses are expressed in the arm's base link (``panda_link0``). The flange
is the config's ``flange_link`` (``panda_link8``); a hand's canonical wrist frame sits at
``T_base_wrist = T_base_flange @ flange_to_wrist``, the mount read from the hand YAML's
``mount`` key. Anything else in the URDF that moves (the Panda's own fingers) is locked at its
neutral value, so the model has exactly the config's joints, in the config's order.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pinocchio as pin
from numpy.typing import ArrayLike

from unihm_core.arm.config import DEFAULT_ARM, ArmConfig, ArmConfigError, get_arm_config
from unihm_core.hands.config import HandConfig
from unihm_core.se3 import FloatArray

# Orthonormality tolerance for user-given rotations: loose enough for poses that went through
# float32 messages, tight enough that a scaled or sheared matrix is caught.
RIGID_TOLERANCE = 1e-5

Mount = str | HandConfig | None


def resolve_mount(hand: Mount = None, flange_to_wrist: ArrayLike | None = None) -> FloatArray:
    """The flange -> wrist transform from a hand id/config or an explicit 4x4 (identity if none).

    An explicit matrix is how a different mounting is tried without writing a hand YAML; to
    change it for good, override the hand's YAML (see docs/arm.md).
    """
    if hand is not None and flange_to_wrist is not None:
        raise ValueError("give either a hand or flange_to_wrist, not both")
    if flange_to_wrist is not None:
        mount = np.asarray(flange_to_wrist, dtype=np.float64)
        check_rigid(mount, "flange_to_wrist")
        return mount.copy()
    if hand is None:
        return np.eye(4)
    if isinstance(hand, str):
        from unihm_core.hands import get_hand_config

        hand = get_hand_config(hand)
    return np.asarray(hand.flange_to_wrist, dtype=np.float64).copy()


def renamed_urdf(path: Path, prefixes: dict[str, str]) -> str:
    """The URDF's XML with link and joint names' prefixes rewritten (``{"panda_": "fr3_"}``).

    Only names are touched (``name``, ``link`` and ``joint`` attributes), never mesh paths.
    """
    import xml.etree.ElementTree as ET

    root = ET.fromstring(path.read_text())
    for element in root.iter():
        for attribute in ("name", "link", "joint"):
            value = element.get(attribute)
            if value is None:
                continue
            for old, new in prefixes.items():
                if value.startswith(old):
                    element.set(attribute, new + value[len(old):])
                    break
    return ET.tostring(root, encoding="unicode")


def check_rigid(poses: FloatArray, what: str) -> None:
    """Raise ValueError naming the first bad frame unless ``poses`` are finite rigid transforms."""
    if poses.shape[-2:] != (4, 4):
        raise ValueError(f"{what}: expected 4x4 poses, got shape {poses.shape}")
    flat = poses.reshape(-1, 4, 4)
    single = poses.ndim == 2

    def fail(index: int, problem: str) -> None:
        where = "" if single else f" frame {index}"
        raise ValueError(f"{what}{where}: {problem}")

    finite = np.isfinite(flat).all(axis=(1, 2))
    if not finite.all():
        fail(int(np.argmin(finite)), "contains NaN or infinite values")
    bottom = np.abs(flat[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=1) > RIGID_TOLERANCE
    if bottom.any():
        fail(int(np.argmax(bottom)), "last row is not [0, 0, 0, 1]")
    rot = flat[:, :3, :3]
    gram = np.einsum("nji,njk->nik", rot, rot) - np.eye(3)
    not_ortho = np.abs(gram).max(axis=(1, 2)) > RIGID_TOLERANCE
    if not_ortho.any():
        fail(int(np.argmax(not_ortho)), "rotation part is not orthonormal (scaled or sheared)")
    reflected = np.linalg.det(rot) < 0
    if reflected.any():
        fail(int(np.argmax(reflected)), "rotation part is a reflection (determinant -1)")


class ArmModel:
    """Kinematics of one arm: FK of the flange, of any link and of a mounted hand's wrist.

    Batched functions take joint arrays (..., dof) and return poses (..., 4, 4); they loop in
    pinocchio (a few microseconds a configuration), which is ample for trajectories.
    """

    def __init__(self, config: ArmConfig | str = DEFAULT_ARM) -> None:
        self.config = get_arm_config(config) if isinstance(config, str) else config
        cfg = self.config
        full = (pin.buildModelFromXML(renamed_urdf(cfg.urdf_path, dict(cfg.urdf_rename)))
                if cfg.urdf_rename else pin.buildModelFromUrdf(str(cfg.urdf_path)))
        missing = [j for j in cfg.joint_names if not full.existJointName(j)]
        if missing:
            raise ArmConfigError(cfg.source, "joints", f"not joints of {cfg.urdf_path}: {missing}")
        keep = {full.getJointId(j) for j in cfg.joint_names}
        lock = [i for i in range(1, full.njoints) if i not in keep]
        self.model = pin.buildReducedModel(full, lock, pin.neutral(full)) if lock else full
        model = self.model
        ids = [model.getJointId(j) for j in cfg.joint_names]
        bad = [j for j, i in zip(cfg.joint_names, ids, strict=True)
               if model.joints[i].nq != 1 or model.joints[i].nv != 1]
        if bad:
            raise ArmConfigError(cfg.source, "joints",
                                 f"only one-DoF (revolute, prismatic) joints are supported: {bad}")
        if model.nq != cfg.dof:
            raise ArmConfigError(cfg.source, "joints", "the arm joints must be every joint left "
                                                       "after locking the others")
        # The reduced model orders joints along the tree; the config's order is the public one.
        self._perm = np.array([model.joints[i].idx_q for i in ids])
        if not np.array_equal(self._perm, np.arange(cfg.dof)):
            raise ArmConfigError(cfg.source, "joints",
                                 "list the joints from the base to the flange (URDF tree order)")
        for key in (cfg.flange_link, cfg.base_link):
            if not model.existFrame(key):
                name = "flange_link" if key == cfg.flange_link else "base_link"
                raise ArmConfigError(cfg.source, name, f"no link '{key}' in {cfg.urdf_path}")
        urdf_lo = model.lowerPositionLimit
        urdf_hi = model.upperPositionLimit
        tol = 1e-6
        if cfg.limits_replace_urdf:
            model.lowerPositionLimit = np.asarray(cfg.position_lower, dtype=np.float64).copy()
            model.upperPositionLimit = np.asarray(cfg.position_upper, dtype=np.float64).copy()
        elif (np.any(cfg.position_lower < urdf_lo - tol)
              or np.any(cfg.position_upper > urdf_hi + tol)):
            raise ArmConfigError(cfg.source, "limits.position_lower",
                                 f"position limits exceed the URDF's ({urdf_lo}, {urdf_hi})")
        self.flange_frame = model.getFrameId(cfg.flange_link)
        base = model.getFrameId(cfg.base_link)
        if model.frames[base].parentJoint != 0:
            raise ArmConfigError(cfg.source, "base_link",
                                 f"'{cfg.base_link}' moves with the joints; use the fixed root")
        self.data = model.createData()
        pin.framesForwardKinematics(model, self.data, pin.neutral(model))
        # Poses are reported in the base link; pinocchio works in the URDF root ("world").
        self.world_from_base: FloatArray = self.data.oMf[base].homogeneous.copy()
        self.base_from_world: FloatArray = self.data.oMf[base].inverse().homogeneous.copy()
        self.base_is_world = bool(np.allclose(self.world_from_base, np.eye(4), atol=1e-12))

    # -- limits ------------------------------------------------------------------------------

    @property
    def dof(self) -> int:
        return self.config.dof

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.config.joint_names

    @property
    def lower(self) -> FloatArray:
        return self.config.position_lower

    @property
    def upper(self) -> FloatArray:
        return self.config.position_upper

    @property
    def ready_posture(self) -> FloatArray:
        return self.config.ready_posture.copy()

    def clamp(self, q: ArrayLike, margin: float = 0.0) -> FloatArray:
        """Project joint values (..., dof) into the position limits shrunk by ``margin``."""
        return np.clip(np.asarray(q, dtype=np.float64), self.lower + margin, self.upper - margin)

    def within_limits(self, q: ArrayLike, tolerance: float = 1e-9) -> np.ndarray:
        """Whether each configuration (..., dof) is inside the position limits."""
        q = np.asarray(q, dtype=np.float64)
        return np.all((q >= self.lower - tolerance) & (q <= self.upper + tolerance), axis=-1)

    def random_configurations(self, n: int, rng: np.random.Generator,
                              margin: float = 0.0) -> FloatArray:
        """Uniform samples (n, dof) inside the position limits shrunk by ``margin``."""
        return rng.uniform(self.lower + margin, self.upper - margin, size=(n, self.dof))

    def check_configurations(self, q: ArrayLike, what: str = "q") -> FloatArray:
        """Joint arrays as float64 (..., dof); ValueError on a wrong shape or NaN."""
        q = np.asarray(q, dtype=np.float64)
        if q.ndim == 0 or q.shape[-1] != self.dof:
            raise ValueError(f"{what}: expected shape (..., {self.dof}), got {q.shape}")
        finite = np.isfinite(q).all(axis=-1).reshape(-1)
        if not finite.all():
            raise ValueError(f"{what}: configuration {int(np.argmin(finite))} contains NaN or "
                             "infinite values")
        return q

    # -- forward kinematics ------------------------------------------------------------------

    def link_pose(self, q: ArrayLike, link: str) -> FloatArray:
        """Pose (..., 4, 4) of a URDF link (or any pinocchio frame) in the base link frame."""
        if not self.model.existFrame(link):
            raise ValueError(f"no link or frame '{link}' in the arm model")
        return self._frame_pose(q, self.model.getFrameId(link))

    def flange_pose(self, q: ArrayLike) -> FloatArray:
        """Flange pose(s) T_base_flange (..., 4, 4)."""
        return self._frame_pose(q, self.flange_frame)

    def wrist_pose(self, q: ArrayLike, hand: Mount = None,
                   flange_to_wrist: ArrayLike | None = None) -> FloatArray:
        """Wrist pose(s) T_base_wrist (..., 4, 4) of a hand mounted on the flange."""
        return self.flange_pose(q) @ resolve_mount(hand, flange_to_wrist)

    def _frame_pose(self, q: ArrayLike, frame: int) -> FloatArray:
        q = self.check_configurations(q)
        flat = q.reshape(-1, self.dof)
        out = np.empty((flat.shape[0], 4, 4))
        model, data = self.model, self.data
        for i, qi in enumerate(flat):
            pin.forwardKinematics(model, data, qi)
            out[i] = pin.updateFramePlacement(model, data, frame).homogeneous
        if self.base_is_world:
            return out.reshape(*q.shape[:-1], 4, 4)
        return (self.base_from_world @ out).reshape(*q.shape[:-1], 4, 4)

    def tool_model(self, flange_to_wrist: FloatArray) -> tuple[pin.Model, int]:
        """A copy of the model with a ``wrist`` frame at ``flange_to_wrist`` from the flange.

        The IK solves for this frame directly, so its errors and Jacobian are the wrist's.
        """
        model = pin.Model(self.model)
        flange = model.frames[self.flange_frame]
        placement = flange.placement * pin.SE3(flange_to_wrist)
        frame = model.addFrame(pin.Frame("wrist", flange.parentJoint, self.flange_frame,
                                         placement, pin.FrameType.OP_FRAME))
        return model, frame


@cache
def arm_model(arm_id: str = DEFAULT_ARM) -> ArmModel:
    """A shared :class:`ArmModel` per arm id (building one parses the URDF)."""
    return ArmModel(arm_id)
