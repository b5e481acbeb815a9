"""Human 21-joint hand sequences -> robot hand joint trajectories, with dex-retargeting.

Input joints follow the MANO/MediaPipe order (:data:`HUMAN_JOINT_NAMES`, metres). The optimizer
works in the canonical wrist frame (docs/hands.md) so that human and robot points compare
directly: before dex-retargeting sees a URDF we re-root it at that frame (an added fixed link
``unihm_wrist``), add a fixed link per config keypoint (``unihm_kp_<name>``, so correspondences can
name our keypoints, offsets included), flatten mimic chains onto the actuated leaders and drop
meshes. What each hand optimizes is the ``retargeting:`` section of its YAML (docs/retargeting.md).

The wrist pose is carried over unchanged; only the fingers are optimized. Frames whose joints are
not finite, or marked invalid, hold the previous solution and are reported in ``held``.
"""

from __future__ import annotations

import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pinocchio as pin
from numpy.typing import ArrayLike

from unihm_core.hands.config import HandConfig, HandConfigError
from unihm_core.hands.kinematics import HandKinematics, hand_kinematics
from unihm_core.se3 import FloatArray, invert

HUMAN_JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)
HUMAN_FINGER_JOINTS: dict[str, tuple[int, ...]] = {
    "thumb": (1, 2, 3, 4), "index": (5, 6, 7, 8), "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16), "pinky": (17, 18, 19, 20),
}
# Wrist -> middle fingertip along the bones (pose-independent), median over the valid frames of
# the MediaPipe sequence shipped in the assets; index: the same for the index finger (used by
# hands without a middle finger). See docs/retargeting.md.
HUMAN_HAND_LENGTH = {"middle": 0.1892, "index": 0.1781}
OPTIMIZERS = ("position", "vector")
WRIST_LINK = "unihm_wrist"
_KEYS = {"optimizer", "scaling_factor", "low_pass_alpha", "targets", "vectors", "huber_delta",
         "normal_delta", "reference_finger"}
_BUILD_LOCK = threading.Lock()  # dex-retargeting's build writes into tempfile.tempdir


class RetargetingError(ValueError):
    """Bad input to retargeting (shapes, names); the message says what was expected."""


def human_joint_index(name: str | int, where: str = "") -> int:
    """Index of a human joint given by MANO/MediaPipe name (``index_tip``) or index (0-20)."""
    if isinstance(name, int) and 0 <= name < len(HUMAN_JOINT_NAMES):
        return name
    if isinstance(name, str) and name in HUMAN_JOINT_NAMES:
        return HUMAN_JOINT_NAMES.index(name)
    raise RetargetingError(f"{where}unknown human joint {name!r} (an index 0-20 or one of "
                           f"{', '.join(HUMAN_JOINT_NAMES)})")


@dataclass(frozen=True)
class RetargetingSpec:
    """The validated ``retargeting:`` section of one hand config."""

    optimizer: str
    scaling_factor: float
    low_pass_alpha: float
    reference_finger: str
    huber_delta: float = 0.02
    normal_delta: float = 4e-3
    # position: (human joint, robot point); vector: (human origin, human task, robot o, robot t)
    targets: tuple[tuple[int, str], ...] = ()
    vectors: tuple[tuple[int, int, str, str], ...] = ()


def parse_retargeting(config: HandConfig) -> RetargetingSpec:
    """Read and check a hand config's ``retargeting:`` section (robot names checked at build)."""
    raw: dict[str, Any] = dict(config.retargeting)
    src = config.source or config.id

    def fail(key: str, problem: str) -> HandConfigError:
        return HandConfigError(src, f"retargeting.{key}" if key else "retargeting", problem)

    if not raw:
        raise fail("", f"hand '{config.id}' has no retargeting section (docs/retargeting.md)")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key (allowed: {', '.join(sorted(_KEYS))})")
    opt = raw.get("optimizer")
    if opt not in OPTIMIZERS:
        raise fail("optimizer", f"expected one of {', '.join(OPTIMIZERS)}, got {opt!r}")
    numbers = {}
    for key, default, lo, hi in (("scaling_factor", None, 1e-3, 100.0),
                                 ("low_pass_alpha", 1.0, 0.0, 1.0),
                                 ("huber_delta", 0.02, 1e-6, 1.0),
                                 ("normal_delta", 4e-3, 0.0, 1.0)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not lo <= value <= hi:
            raise fail(key, f"expected a number in [{lo}, {hi}], got {value!r}")
        numbers[key] = float(value)
    ref = raw.get("reference_finger", "middle" if "middle" in config.fingers else "index")
    if ref not in config.fingers:
        raise fail("reference_finger", f"'{ref}' is not a finger of this hand")
    targets = _parse_targets(raw, src, fail) if opt == "position" else ()
    vectors = _parse_vectors(raw, src, fail) if opt == "vector" else ()
    return RetargetingSpec(opt, numbers["scaling_factor"], numbers["low_pass_alpha"], ref,
                           numbers["huber_delta"], numbers["normal_delta"], targets, vectors)


def _parse_targets(raw: dict[str, Any], src: str,
                   fail: Callable[[str, str], HandConfigError]) -> tuple[tuple[int, str], ...]:
    pairs = raw.get("targets")
    if not isinstance(pairs, dict) or not pairs:
        raise fail("targets", "expected a mapping human joint -> robot point")
    out = []
    for human, robot in pairs.items():
        idx = human_joint_index(human, f"{src}: retargeting.targets: ")
        if not isinstance(robot, str):
            raise fail(f"targets.{human}", f"expected a robot point name, got {robot!r}")
        out.append((idx, robot))
    return tuple(out)


def _parse_vectors(raw: dict[str, Any], src: str, fail: Callable[[str, str], HandConfigError]
                   ) -> tuple[tuple[int, int, str, str], ...]:
    items = raw.get("vectors")
    if not isinstance(items, list) or not items:
        raise fail("vectors", "expected a list of {human: [from, to], robot: [from, to]}")
    out = []
    for i, item in enumerate(items):
        ok = isinstance(item, dict) and set(item) == {"human", "robot"} and \
            all(isinstance(item[k], list) and len(item[k]) == 2 for k in item)
        if not ok:
            raise fail(f"vectors[{i}]", "expected {human: [from, to], robot: [from, to]}")
        h0, h1 = (human_joint_index(h, f"{src}: retargeting.vectors[{i}]: ")
                  for h in item["human"])
        out.append((h0, h1, str(item["robot"][0]), str(item["robot"][1])))
    return tuple(out)


def robot_reference_length(kin: HandKinematics, finger: str = "middle") -> float:
    """Wrist -> fingertip distance of ``finger`` in the open pose (metres)."""
    tip = kin.config.keypoint_names.index(f"{finger}_tip")
    return float(np.linalg.norm(kin.keypoints_local(kin.open_pose, [tip])[0]))


def suggest_scaling_factor(hand_id: str, finger: str | None = None) -> float:
    """Robot/human size: the robot's open-pose wrist->tip length over the human one."""
    kin = hand_kinematics(hand_id)
    finger = finger or ("middle" if "middle" in kin.config.fingers else "index")
    return robot_reference_length(kin, finger) / HUMAN_HAND_LENGTH[finger]


# ------------------------------------------------------------------------------ frames, input
def check_joints(joints_21: ArrayLike) -> FloatArray:
    """``joints_21`` as float64 (T, 21, 3); a single frame (21, 3) becomes T = 1."""
    joints = np.asarray(joints_21, dtype=np.float64)
    if joints.ndim == 2:
        joints = joints[None]
    if joints.ndim != 3 or joints.shape[1:] != (21, 3):
        raise RetargetingError("human joints must have shape (T, 21, 3) in the MANO/MediaPipe "
                               f"order (wrist, thumb CMC..TIP, index..pinky), got "
                               f"{np.shape(joints_21)}")
    return joints


def estimate_wrist_poses(joints_21: ArrayLike, side: str = "right") -> FloatArray:
    """Canonical wrist frames (T, 4, 4) of human hands from their joints.

    z: wrist -> middle MCP; y: across the palm (right: pinky -> index MCP, left: index -> pinky),
    made orthogonal to z; x = y x z (the palm normal). Frames with degenerate joints are NaN.
    """
    joints = check_joints(joints_21)
    origin = joints[:, 0]
    z = joints[:, 9] - origin
    across = joints[:, 5] - joints[:, 17]
    if side == "left":
        across = -across
    with np.errstate(invalid="ignore", divide="ignore"):
        z = z / np.linalg.norm(z, axis=-1, keepdims=True)
        y = across - np.sum(across * z, axis=-1, keepdims=True) * z
        y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    x = np.cross(y, z)
    poses = np.tile(np.eye(4), (len(joints), 1, 1))
    poses[:, :3, 0], poses[:, :3, 1], poses[:, :3, 2], poses[:, :3, 3] = x, y, z, origin
    return poses


def _finite_frames(a: FloatArray) -> np.ndarray:
    return np.all(np.isfinite(a.reshape(len(a), -1)), axis=1)


# --------------------------------------------------------------------------- URDF for dex-ret
def _retargeting_urdf(kin: HandKinematics) -> str:
    """The hand's URDF re-rooted at the canonical wrist, with keypoint links, no meshes."""
    tree = ET.fromstring(kin.config.urdf_path.read_text())
    for link in tree.iter("link"):
        for tag in ("visual", "collision"):
            for el in link.findall(tag):
                link.remove(el)
    children = {j.find("child").attrib["link"] for j in tree.iter("joint")}
    roots = [link.attrib["name"] for link in tree.iter("link")
             if link.attrib["name"] not in children]
    if len(roots) != 1:
        raise HandConfigError(kin.config.source, "urdf", f"expected one root link, got {roots}")

    full = kin.full_joint_names
    for joint in tree.iter("joint"):
        mimic = joint.find("mimic")
        name = joint.attrib["name"]
        if mimic is None or name not in full:
            continue
        row = kin.mimic_matrix[full.index(name)]
        leader = int(np.argmax(np.abs(row)))
        mimic.attrib.update(joint=kin.joint_names[leader], multiplier=repr(float(row[leader])),
                            offset=repr(float(kin.mimic_offset[full.index(name)])))

    def add_fixed(parent: str, child: str, pose: FloatArray, new_link: str) -> None:
        ET.SubElement(tree, "link", name=new_link)
        joint = ET.SubElement(tree, "joint", name=f"{new_link}_joint", type="fixed")
        rpy = pin.rpy.matrixToRpy(pose[:3, :3])
        ET.SubElement(joint, "origin", xyz=" ".join(repr(float(v)) for v in pose[:3, 3]),
                      rpy=" ".join(repr(float(v)) for v in rpy))
        ET.SubElement(joint, "parent", link=parent)
        ET.SubElement(joint, "child", link=child)

    add_fixed(WRIST_LINK, roots[0], invert(kin.root_to_wrist), WRIST_LINK)
    for kp in kin.config.keypoints:
        pose = np.eye(4)
        pose[:3, 3] = kp.offset
        add_fixed(kp.link, f"unihm_kp_{kp.name}", pose, f"unihm_kp_{kp.name}")
    return ET.tostring(tree, encoding="unicode")


def _robot_link(kin: HandKinematics, name: str, src: str, key: str) -> str:
    if name == "wrist":
        return WRIST_LINK
    if name in kin.keypoint_names:
        return f"unihm_kp_{name}"
    if kin.model.existFrame(name):
        return name
    raise HandConfigError(src, key, f"'{name}' is neither 'wrist', a keypoint "
                          f"({', '.join(kin.keypoint_names)}) nor a link of the URDF")


def _build(kin: HandKinematics, spec: RetargetingSpec, low_pass: bool) -> Any:
    from dex_retargeting.retargeting_config import RetargetingConfig

    src = kin.config.source or kin.config.id
    cfg: dict[str, Any] = {
        "type": spec.optimizer, "target_joint_names": list(kin.joint_names),
        "scaling_factor": spec.scaling_factor, "huber_delta": spec.huber_delta,
        "normal_delta": spec.normal_delta,
        "low_pass_alpha": spec.low_pass_alpha if low_pass else -1.0,
    }
    if spec.optimizer == "position":
        cfg["target_link_names"] = [_robot_link(kin, r, src, "retargeting.targets")
                                    for _, r in spec.targets]
        cfg["target_link_human_indices"] = [h for h, _ in spec.targets]
    else:
        key = "retargeting.vectors"
        cfg["target_origin_link_names"] = [_robot_link(kin, v[2], src, key) for v in spec.vectors]
        cfg["target_task_link_names"] = [_robot_link(kin, v[3], src, key) for v in spec.vectors]
        cfg["target_link_human_indices"] = [[v[0] for v in spec.vectors],
                                            [v[1] for v in spec.vectors]]
    with tempfile.TemporaryDirectory(prefix="unihm_retarget-") as tmp, _BUILD_LOCK:
        urdf = Path(tmp) / f"{kin.hand_id}.urdf"
        urdf.write_text(_retargeting_urdf(kin))
        cfg["urdf_path"] = str(urdf)
        previous = tempfile.tempdir
        tempfile.tempdir = tmp  # dex-retargeting leaves a URDF copy in a mkdtemp() folder
        try:
            return RetargetingConfig.from_dict(cfg).build()
        finally:
            tempfile.tempdir = previous


# --------------------------------------------------------------------------------- results
@dataclass
class FingertipErrors:
    """Robot fingertips vs the human fingertips scaled by the hand's scaling factor."""

    fingers: tuple[str, ...]
    errors_m: FloatArray  # (T, F), NaN on frames that were not evaluated
    scaling_factor: float
    hand_length_m: float  # the robot's reference length (open pose, wrist -> tip)

    def summary(self) -> dict[str, Any]:
        """Mean and p95 over evaluated frames and fingers: mm, human-hand mm and % of length."""
        ok = np.all(np.isfinite(self.errors_m), axis=1)
        e = self.errors_m[ok]
        if e.size == 0:
            return {"frames": 0}
        mm = e * 1e3

        def stats(x: FloatArray) -> tuple[float, float]:
            return float(np.mean(x)), float(np.percentile(x, 95))

        mean, p95 = stats(mm)
        return {
            "frames": int(ok.sum()), "mean_mm": mean, "p95_mm": p95,
            "mean_norm_mm": mean / self.scaling_factor, "p95_norm_mm": p95 / self.scaling_factor,
            "mean_pct": 100 * mean * 1e-3 / self.hand_length_m,
            "p95_pct": 100 * p95 * 1e-3 / self.hand_length_m,
            "per_finger_mean_mm": {f: float(v) for f, v in
                                   zip(self.fingers, mm.mean(axis=0), strict=True)},
            "scaling_factor": self.scaling_factor,
        }


@dataclass
class RetargetResult:
    """One retargeted sequence: wrist poses (canonical wrist frame) and actuated joints."""

    hand_id: str
    joint_names: tuple[str, ...]
    q: FloatArray  # (T, dof), config joint order
    wrist_poses: FloatArray  # (T, 4, 4)
    held: np.ndarray  # (T,) bool: invalid input, previous solution held
    optimizer_seconds: float
    human_local: FloatArray = field(repr=False)  # (T, 21, 3) wrist-local, mirrored to the hand

    @property
    def fps(self) -> float:
        solved = int((~self.held).sum())
        return solved / self.optimizer_seconds if self.optimizer_seconds > 0 else float("inf")


# ------------------------------------------------------------------------------- retargeter
class Retargeter:
    """Retargets human 21-joint sequences to one hand type (see the module docstring)."""

    def __init__(self, hand: str | HandConfig, low_pass: bool = True) -> None:
        self.kin = hand_kinematics(hand) if isinstance(hand, str) else HandKinematics(hand)
        self.config = self.kin.config
        self.spec = parse_retargeting(self.config)
        self._seq = _build(self.kin, self.spec, low_pass)
        opt = self._seq.optimizer
        if list(opt.target_joint_names) != list(self.kin.joint_names):
            raise HandConfigError(self.config.source, "joints", "dex-retargeting reordered the "
                                  f"joints: {opt.target_joint_names}")
        self._idx = np.asarray(opt.idx_pin2target)
        limits = np.stack([self.kin.lower, self.kin.upper], axis=1)
        opt.set_joint_limit(limits, epsilon=0.0)
        self._seq.joint_limits = limits
        self._human_idx = (np.array([h for h, _ in self.spec.targets]) if self.spec.targets
                           else np.array([[v[0] for v in self.spec.vectors],
                                          [v[1] for v in self.spec.vectors]]))
        self.reset()

    @property
    def hand_id(self) -> str:
        return self.config.id

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.kin.joint_names

    @property
    def scaling_factor(self) -> float:
        return self.spec.scaling_factor

    def reset(self) -> None:
        """Forget the previous frame (warm start and low-pass state) before a new sequence."""
        self._seq.reset()
        self._seq.last_qpos = self.kin.open_pose.astype(np.float32)
        if self._seq.filter is not None:
            self._seq.filter.reset()

    def to_hand_frame(self, joints_21: ArrayLike, wrist_poses: ArrayLike | None = None,
                      frame: str | None = None, human_side: str = "right"
                      ) -> tuple[FloatArray, FloatArray, np.ndarray]:
        """Human joints -> (wrist-local joints mirrored to this hand's side, wrist poses, ok).

        ``frame`` is ``"world"`` (joints in the world; wrist poses given or estimated) or
        ``"wrist"`` (already wrist-local; wrist poses default to identity). Default: "world"
        when wrist poses are given, else "wrist".
        """
        joints = check_joints(joints_21)
        t = len(joints)
        frame = frame or ("world" if wrist_poses is not None else "wrist")
        if frame not in ("world", "wrist"):
            raise RetargetingError(f"frame must be 'world' or 'wrist', got {frame!r}")
        if human_side not in ("right", "left"):
            raise RetargetingError(f"human_side must be 'right' or 'left', got {human_side!r}")
        if wrist_poses is None:
            wrist = estimate_wrist_poses(joints, human_side) if frame == "world" else \
                np.tile(np.eye(4), (t, 1, 1))
        else:
            wrist = np.asarray(wrist_poses, dtype=np.float64)
            if wrist.shape != (t, 4, 4):
                raise RetargetingError(f"wrist poses must have shape ({t}, 4, 4) to match the "
                                       f"joints, got {wrist.shape}")
        ok = _finite_frames(joints) & _finite_frames(wrist)
        local = joints.copy()
        if frame == "world":
            local[ok] = np.einsum("tji,tkj->tki", wrist[ok, :3, :3],
                                  joints[ok] - wrist[ok, None, :3, 3])
        if self.config.side in ("right", "left") and self.config.side != human_side:
            local[..., 1] *= -1.0  # mirror across the x-z plane: a left hand from a right one
        return local, wrist, ok

    def solve_frame(self, local_joints: FloatArray) -> FloatArray:
        """One wrist-local frame (21, 3) -> actuated joints, warm-started from the last frame."""
        if self.spec.optimizer == "position":
            ref = local_joints[self._human_idx] * self.spec.scaling_factor
        else:
            ref = local_joints[self._human_idx[1]] - local_joints[self._human_idx[0]]
        robot_q = self._seq.retarget(ref)
        return np.clip(robot_q[self._idx], self.kin.lower, self.kin.upper)

    def retarget(self, joints_21: ArrayLike, wrist_poses: ArrayLike | None = None,
                 valid: ArrayLike | None = None, *, frame: str | None = None,
                 human_side: str = "right",
                 progress: Callable[[int], None] | None = None) -> RetargetResult:
        """Retarget a sequence (T, 21, 3); see :meth:`to_hand_frame` for the frames.

        Wrist poses are returned as given (identity for wrist-local input); frames that are
        invalid or not finite keep the previous joints (the open pose before the first valid
        frame) and the previous finite wrist pose. ``progress`` is called with frames done.
        """
        local, wrist_in, ok = self.to_hand_frame(joints_21, wrist_poses, frame, human_side)
        t = len(local)
        if valid is not None:
            valid = np.asarray(valid)
            if valid.shape != (t,):
                raise RetargetingError(f"valid must have shape ({t},), got {valid.shape}")
            ok &= valid.astype(bool)
        self.reset()
        q = np.empty((t, self.kin.dof))
        wrist = np.empty((t, 4, 4))
        last_q, last_wrist = self.kin.open_pose.copy(), np.eye(4)
        start = self._seq.accumulated_time
        for i in range(t):
            if np.all(np.isfinite(wrist_in[i])):
                last_wrist = wrist_in[i]
            wrist[i] = last_wrist
            if ok[i]:
                last_q = self.solve_frame(local[i])
            q[i] = last_q
            if progress is not None:
                progress(i + 1)
        seconds = self._seq.accumulated_time - start
        return RetargetResult(self.hand_id, self.joint_names, q, wrist, ~ok, seconds, local)

    def fingertip_errors(self, result: RetargetResult) -> FingertipErrors:
        """Per-frame, per-finger fingertip errors of a result (held frames are NaN)."""
        fingers = self.config.finger_names
        human_tips = result.human_local[:, [HUMAN_FINGER_JOINTS[f][-1] for f in fingers]]
        robot_tips = self.kin.keypoints_local(result.q, "fingertips")
        err = np.linalg.norm(robot_tips - human_tips * self.spec.scaling_factor, axis=-1)
        err[result.held] = np.nan
        length = robot_reference_length(self.kin, self.spec.reference_finger)
        return FingertipErrors(fingers, err, self.spec.scaling_factor, length)


def retarget_sequence(hand_id: str, joints_21: ArrayLike, **kwargs: Any
                      ) -> tuple[RetargetResult, dict[str, Any]]:
    """Build a :class:`Retargeter`, run it and summarize the fingertip errors."""
    retargeter = Retargeter(hand_id)
    tic = time.perf_counter()
    result = retargeter.retarget(joints_21, **kwargs)
    summary = retargeter.fingertip_errors(result).summary()
    summary.update(fps=result.fps, wall_s=time.perf_counter() - tic,
                   held=int(result.held.sum()))
    return result, summary
