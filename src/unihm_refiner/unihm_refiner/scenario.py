"""A synthetic grasp-and-lift sequence to exercise and benchmark the refiner.

Until generated trajectories exist, the refiner is measured on what a generator typically gets
wrong: fingers closed a little too far (penetration), joint noise (jitter) and a wrist that
wobbles. The sequence: approach along the object's surface normal, close the fingers, hold while
the object lifts 10 cm (min-jerk), all at ``fps``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from unihm_core.hands.kinematics import hand_kinematics
from unihm_core.object_model import ObjectModel
from unihm_core.se3 import make_pose
from unihm_core.trajectory import min_jerk

FloatArray = NDArray[np.float64]


@dataclass
class Scenario:
    hand_id: str
    object_id: str
    fps: float
    surface: ObjectModel
    target_poses: FloatArray  # (T, 4, 4) object in the world
    wrist_poses: FloatArray  # (T, 4, 4) the "generated" wrist
    q: FloatArray  # (T, dof) the "generated" joints (noisy, over-closed)
    clean_q: FloatArray  # (T, dof) the same without noise


def _closure(kin, q_open: FloatArray, s: FloatArray | float) -> FloatArray:
    """Joints a fraction ``s`` of the way from open to each joint's far limit (a crude grasp
    synergy: every joint flexes toward whichever limit is farther from the open pose)."""
    far = np.where(kin.upper - q_open >= q_open - kin.lower, kin.upper, kin.lower)
    s = np.asarray(s, dtype=np.float64)[..., None]
    return q_open + s * (far - q_open)


def grasp_scenario(hand_id: str = "xhand_right", object_id: str = "006_mustard_bottle", *,
                   frames: int = 120, fps: float = 30.0, n_points: int = 2048, seed: int = 0,
                   squeeze: float = 0.08, noise_q: float = 0.02,
                   noise_wrist: float = 0.001) -> Scenario:
    """Build the sequence (see the module docstring). ``squeeze`` closes the fingers that
    fraction of their range past first contact."""
    rng = np.random.default_rng(seed)
    kin = hand_kinematics(hand_id)
    surface = ObjectModel.from_asset(object_id, n_points=n_points, seed=seed)
    pts = surface.points
    centre = pts.mean(axis=0)
    # side grasp: the widest point of the object's +x side at mid height
    band = np.abs(pts[:, 2] - centre[2]) < 0.15 * np.ptp(pts[:, 2])
    side = pts[band][np.argmax(pts[band, 0])]
    normal = np.array([1.0, 0.0, 0.0])
    # wrist frame: palm (x) faces the object, fingers (z) wrap around it, thumb side up
    rot = np.column_stack([-normal, np.cross([0.0, 1.0, 0.0], -normal), [0.0, 1.0, 0.0]])
    palm_local = kin.keypoints_local(kin.open_pose, [0])[0]
    grasp = make_pose(rot, side + 0.012 * normal - rot @ palm_local)
    # first contact: the closure at which the fingertips' mean signed distance crosses zero
    closures = np.linspace(0.0, 1.0, 101)
    q_try = _closure(kin, kin.open_pose, closures)
    tips = kin.keypoints(grasp, q_try, "fingertips")
    mean_d = surface.signed_distance(tips.reshape(-1, 3)).reshape(tips.shape[:2]).mean(axis=1)
    contact = closures[int(np.argmax(mean_d < 0))] if (mean_d < 0).any() else 1.0
    s_grasp = min(contact + squeeze, 1.0)

    t = np.arange(frames)
    approach, close = frames // 4, frames // 2
    lift = min_jerk((t - close) / max(frames - 1 - close, 1))
    targets = np.repeat(np.eye(4)[None], frames, axis=0)
    targets[:, 2, 3] = 0.10 * lift
    reach = 0.10 * (1.0 - min_jerk(t / max(approach, 1)))
    wrist = np.repeat(grasp[None], frames, axis=0)
    wrist[:, :3, 3] += reach[:, None] * normal
    wrist = targets @ wrist  # the hand carries the object up (targets start at identity)
    s = s_grasp * min_jerk((t - approach) / max(close - approach, 1))
    clean = kin.clip(_closure(kin, kin.open_pose, s))
    noisy = kin.clip(clean + rng.normal(0.0, noise_q, clean.shape))
    wrist[:, :3, 3] += rng.normal(0.0, noise_wrist, (frames, 3))
    return Scenario(hand_id, object_id, fps, surface, targets, wrist, noisy, clean)
