"""Grasp synthesis: part-aligned initial hands, refined by a batched Levenberg-Marquardt solver.

What this is for: the dataset needs, for any hand of the suite and any object, many stable and
penetration-free grasps (a wrist pose in the object frame plus the hand's actuated joints) and
a more open pre-grasp shape for the approach. It also needs to clean up a grasp transferred from
another hand (retargeting leaves fingertips floating or inside the object): :func:`polish_grasp`.

The approach follows energy-based grasp synthesis (DexGraspNet / DexVLG), rewritten as
least-squares residuals with analytic Jacobians so that a Gauss-Newton solver converges in tens
of iterations instead of the thousands of gradient steps a gradient method needs:

* the hand's volume is a set of spheres fitted once to its URDF collision geometry and attached
  to its links as extra keypoints, so the batched kinematics gives their positions and
  Jacobians (columns: body-frame wrist twist, then the actuated joints);
* the object is its surface samples with outward normals (a KD-tree): every hand sphere is
  measured against the tangent plane of its nearest sample, a correspondence that is frozen for
  one step (its Jacobian is ``n^T J``) and re-associated at every evaluation; on a closed mesh,
  ray-cast occupancy fixes the sign deep inside, fingertips use the exact closest point on the
  triangles (a sample's plane misjudges tips beside a box edge), and the final quality numbers
  use the mesh's exact signed distance;
* energies (each ``0.5 * w * sum r^2``): fingertip contact distance (all fingertips for a
  wrap; thumb, index and middle for a pinch), penetration of every sphere, a force-closure
  proxy (net wrench of the inward contact normals, with per-step force magnitudes that balance
  best, as in DexVLG's LP-DFC), thumb-finger opposition (the thumb-to-fingers line along
  both contact normals: an antipodal pinch), joint limits (steps are also clipped), table
  clearance, fingertip separation, a weak prior toward the initial pre-shape, a weak wrist
  anchor, and a guard against palms facing up from below.

Initialization is part-aligned: the object and its k-means parts get PCA frames; ``wrap``
grasps put the palm on a part and the fingers around one of its axes (thumb up on upright
axes), ``pinch`` grasps put the thumb and the index finger on either side of the part's
thinnest horizontal dimension with the palm above. Approach directions never come from below;
each hand is rolled about its approach until it (and a forearm, for the Shadow hand) clears the
table, then backed off until no sphere is inside the object, and the solver closes in.

Measured on one core (YCB objects, ``num=32``): 0.2 s (Panda gripper) to 1.5 s (Shadow hand)
per object. The opposition filter (a grasp whose thumb does not face its fingers rarely
survives the lift check: 26 % of such pinches did, against 87 % of well-opposed ones) leaves
about a quarter of the candidates passing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from unihm_core.hands.config import Keypoint
from unihm_core.hands.kinematics import WRIST_DOF, HandKinematics, hand_kinematics
from unihm_core.hands.registry import UnknownHandError
from unihm_core.object_model import ObjectModel
from unihm_core.se3 import exp_local, make_pose, skew

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

MODES = ("wrap", "pinch")
TERMS = ("contact", "penetration", "force_closure", "opposition", "joint_limits", "table",
         "separation", "prior", "anchor", "facing")
_MIN_OBJECT_POINTS = 32
_UP = np.array([0.0, 0.0, 1.0])


class GraspInputError(ValueError):
    """A grasp-synthesis input is unusable (unknown hand, bad object, pose or joints); the
    message says which and why."""


# ------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class GraspParams:
    """Weights, thresholds and solver settings. Lengths in metres, angles in radians.

    Energies are ``0.5 * w * sum(r^2)`` of their residuals, so the weights set what trades
    against what: with ``w_contact = 1`` a fingertip 1 cm off the surface costs 5e-5, as does a
    sphere 5.8 mm inside the object (``w_penetration = 3``). Penetration is kept soft on
    purpose: with 10x the weight, fingers that touch the object early block the others and
    20-30 % fewer candidates pass (measured); the filter, not the weight, bounds the final
    depth (mean 0.3 mm, 90th percentile 0.7 mm on the YCB objects).
    """

    # --- energy weights
    w_contact: float = 1.0  # fingertip contact sphere to surface (m)
    w_penetration: float = 3.0  # hand sphere depth below the surface (m)
    w_force_closure: float = 1e-5  # net force (balanced normals) and torque / object radius
    w_opposition: float = 1e-4  # thumb against the other contact fingers (unit vectors)
    w_joint_limits: float = 10.0  # joint outside its limits (rad or m); steps are also clipped
    w_table: float = 30.0  # hand sphere below the table plane + margin (m)
    w_separation: float = 30.0  # fingertip spheres closer than their radii + gap (m)
    w_prior: float = 3e-6  # joint offset from the initial (natural) pose, times joint weights
    w_anchor_translation: float = 1e-3  # wrist offset from its initial pose (m)
    w_anchor_rotation: float = 1e-5  # wrist rotation from its initial pose (rad)
    w_facing: float = 1.0  # palm-facing z above max_facing_up - facing_margin (unitless)

    # --- geometry margins
    penetration_margin: float = 5e-4  # non-contact spheres keep this far outside
    table_margin: float = 2e-3  # spheres keep this far above the table
    tip_gap: float = 4e-3  # fingertip spheres keep this far apart (surface to surface)
    max_facing_up: float = 0.2  # palm-facing direction: z component at most (not from below)
    facing_margin: float = 0.05  # the solver already pushes back this far below that
    min_force: float = 0.3  # smallest contact force (mean 1) the force closure may assign
    query_band: float = 0.02  # spheres farther than radius + band are not looked up (fast)
    pinch_with_middle: bool = True  # pinch pulls the middle finger too (when the hand has one)
    freeze_palm_joints: bool = True  # joints that move the palm (Shadow WRJ) are not optimized

    # --- quality filters (evaluated with the exact mesh distance when available)
    contact_tolerance: float = 5e-3  # a tip is in contact when |gap| <= this
    wrap_min_contacts: int = 3  # tips in contact for a wrap (capped at the hand's tips)
    pinch_min_contacts: int = 2  # thumb and index must be among them
    max_penetration: float = 3e-3  # deepest sphere penetration allowed
    max_opposition: float = 0.25  # rms opposition residual of a pinch (~ rad off antipodal)
    max_opposition_wrap: float = 0.45  # of a wrap, where the palm opposes the fingers too
    table_tolerance: float = 1e-3  # sphere bottoms may dip this far below the table

    # --- solver
    max_iterations: int = 60
    tolerance: float = 1e-4  # stop when an accepted step lowers the energy by less (relative)
    lambda_init: float = 1e-2
    lambda_up: float = 4.0
    lambda_down: float = 3.0
    lambda_max: float = 1e5
    max_step_translation: float = 0.02  # per step; larger steps are scaled down
    max_step_rotation: float = 0.25
    max_step_joint: float = 0.3

    # --- initialization
    num_parts: int = 3  # k-means parts in addition to the whole object
    whole_object_probability: float = 0.4
    wrap_preshape: tuple[float, float] = (0.0, 0.3)  # fraction from open to closed
    pinch_preshape: tuple[float, float] = (0.0, 0.25)
    thumb_preshape: tuple[float, float] = (0.3, 0.6)  # thumb of a hand (not a gripper)
    pinch_idle_curl: float = 0.6  # fingers a pinch does not use are curled this far
    joint_jitter: float = 0.05  # uniform noise on the initial joints
    roll_jitter: float = 0.35  # rotation about the approach direction
    tilt_jitter: float = 0.3  # approach direction tilt
    position_jitter: float = 0.3  # along the part's free axis, fraction of its half extent
    pinch_depth: float = 0.02  # pinch tips aimed this far below the part's approach side
    max_backoff: float = 0.08  # initial hands are backed off along the approach until clear
    wrap_diameter_factor: float = 0.55  # wrap only cross-sections <= factor * hand length
    pregrasp_openings: tuple[float, ...] = (0.35, 0.6, 0.85, 1.0)  # fractions toward open
    pregrasp_clearance: float = 5e-3  # finger spheres clear of the object by this much
    max_spheres: int = 170  # budget of the hand's sphere model
    single_thread_blas: bool = True  # the solver's small batched products run 2x faster on
    # one BLAS thread than with threads contending for shared cores

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(v, (bool, int, float)) and np.isfinite(v) for v in values):
                raise GraspInputError(f"GraspParams.{f.name} must be finite, got {value!r}")
        if self.max_iterations < 0 or self.num_parts < 0 or self.max_spheres < 8:
            raise GraspInputError("GraspParams: max_iterations and num_parts must be >= 0, "
                                  "max_spheres >= 8")
        if not self.pregrasp_openings:
            raise GraspInputError("GraspParams.pregrasp_openings must not be empty")


# ----------------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class Grasp:
    """One synthesized (or polished) grasp, everything in the object frame (metres, radians).

    ``tip_distances`` are signed gaps between each fingertip's contact sphere and the object
    surface (thumb first, negative inside); ``penetration`` is the deepest sphere penetration of
    the whole hand; ``table_clearance`` the lowest sphere bottom above the table plane.
    """

    hand_id: str
    mode: str
    part: int  # index into object_parts() (0: the whole object); -1 for polished grasps
    wrist_pose: FloatArray  # (4, 4) canonical wrist frame in the object frame
    q: FloatArray  # (dof,) actuated joints
    q_pregrasp: FloatArray  # (dof,) more open, fingers clear of the object
    energies: Mapping[str, float]  # TERMS plus "total", at the final pose
    tip_distances: FloatArray  # (fingers,)
    contact_fingers: tuple[str, ...]  # fingers the mode pulls onto the surface
    penetration: float
    table_clearance: float
    facing: FloatArray  # (3,) palm-facing direction in the object frame (z <= max_facing_up)
    passed_filters: bool
    reason: str  # "" when passed, else the failed checks, "; "-separated

    def __post_init__(self) -> None:
        for name in ("wrist_pose", "q", "q_pregrasp", "tip_distances", "facing"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "energies", MappingProxyType(dict(self.energies)))


# ------------------------------------------------------------------------------ hand model
@dataclass(frozen=True)
class HandSpheres:
    """A hand's volume as spheres on its links, and what initialization needs to know.

    ``kin`` is a private kinematics of the same URDF whose keypoints are the sphere centres
    (indices ``sphere_keypoints``) and the configured keypoints (palm, fingertips), so that the
    batched kinematics gives sphere Jacobians directly.
    """

    hand_id: str
    kin: HandKinematics
    sphere_keypoints: IntArray  # (S,) keypoint indices in kin
    radii: FloatArray  # (S,)
    sphere_finger: IntArray  # (S,) finger index or -1 (palm, base)
    tip_spheres: IntArray  # (F,) sphere index of each fingertip's contact sphere
    groups: tuple[IntArray, ...]  # sphere indices sharing one kinematic chain (fast Jacobians)
    finger_names: tuple[str, ...]
    finger_joints: NDArray[np.bool_]  # (F, dof) joint moves that finger's tip
    palm_joints: NDArray[np.bool_]  # (dof,) joint moves the palm (Shadow wrist joints)
    q_open: FloatArray
    q_closed: FloatArray
    facing_local: FloatArray  # (3,) palm-facing direction in the wrist frame
    palm_local: FloatArray  # (3,) palm keypoint at the open pose
    length: float  # wrist to farthest fingertip at the open pose
    aperture: float  # thumb to index tip at the open pose

    @property
    def dof(self) -> int:
        return self.kin.dof

    @property
    def num_fingers(self) -> int:
        return len(self.finger_names)


def _obb_fill(vertices: FloatArray, r_min: float, spacing: float) -> tuple[FloatArray,
                                                                          FloatArray]:
    """Spheres filling a part's PCA box: radius = half its thinnest side, centres on a grid
    over the other two sides. Exact for boxes and cylinders, slightly fat for rounded parts."""
    c0 = vertices.mean(axis=0)
    _, _, vt = np.linalg.svd(vertices - c0, full_matrices=False)
    if vt.shape[0] < 3:
        vt = np.eye(3)
    local = (vertices - c0) @ vt.T
    lo, hi = local.min(axis=0), local.max(axis=0)
    ext = hi - lo
    order = np.argsort(ext)[::-1]
    r = max(float(ext[order[2]]) / 2.0, r_min)
    axes = []
    for a in order:
        if ext[a] <= 2.0 * r + 1e-9:
            axes.append(np.array([(lo[a] + hi[a]) / 2.0]))
        else:
            n = int(np.ceil((ext[a] - 2.0 * r) / (spacing * r))) + 1
            axes.append(np.linspace(lo[a] + r, hi[a] - r, n))
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    centers = np.zeros_like(grid)
    centers[:, order] = grid
    return centers @ vt + c0, np.full(len(grid), r)


def _greedy_cover(centers: FloatArray, radii: FloatArray, samples: FloatArray,
                  tol: float) -> IntArray:
    """Fewest spheres that reach (within ``tol``) the surface samples the whole set reaches:
    overlapping collision parts would otherwise give many redundant spheres."""
    gap = np.linalg.norm(samples[None] - centers[:, None], axis=-1) - radii[:, None]
    cover = gap <= np.maximum(gap.min(axis=0), 0.0)[None] + tol
    covered = np.zeros(len(samples), dtype=bool)
    chosen: list[int] = []
    while covered.mean() < 0.97:
        gain = (cover & ~covered).sum(axis=1)
        k = int(np.argmax(gain))
        if gain[k] == 0:
            break
        chosen.append(k)
        covered |= cover[k]
    return np.array(chosen, dtype=np.int64)


def _fit_link_spheres(kin: HandKinematics, budget: int) -> list[tuple[str, FloatArray, float]]:
    """Spheres (link, centre in the link frame, radius) for every link with collision geometry
    (visual geometry when there is none)."""
    import trimesh

    from unihm_core.hands.render import HandRenderError, posed_triangles
    from unihm_core.se3 import invert

    parts: list[tuple[str, FloatArray]] = []
    for kind in ("collision", "visual"):
        try:
            parts = posed_triangles(kin, kin.open_pose, kind, max_faces=20000)
        except HandRenderError:
            parts = []
        if parts:
            break
    if not parts:
        raise GraspInputError(f"{kin.hand_id}: the URDF has no collision or visual geometry "
                              "to build the hand's volume from")
    per_link: dict[str, tuple[list[FloatArray], list[FloatArray], list[FloatArray]]] = {}
    for i, (link, tris) in enumerate(parts):
        vertices = tris.reshape(-1, 3)
        if np.ptp(vertices, axis=0).max() < 0.008:  # tip markers, screws: below resolution
            continue
        mesh = trimesh.Trimesh(vertices, np.arange(len(vertices)).reshape(-1, 3), process=False)
        samples, _ = trimesh.sample.sample_surface(mesh, 200, seed=i)
        centers, radii = _obb_fill(vertices, r_min=0.005, spacing=1.2)
        entry = per_link.setdefault(link, ([], [], []))
        entry[0].append(centers)
        entry[1].append(radii)
        entry[2].append(np.asarray(samples))
    poses = kin.link_poses(kin.open_pose)
    tol = 0.0025
    while True:
        out = []
        for link, (cs, rs, ss) in per_link.items():
            c, r, s = np.concatenate(cs), np.concatenate(rs), np.concatenate(ss)
            keep = _greedy_cover(c, r, s, tol)
            to_link = invert(poses[link])
            for k in keep:
                out.append((link, to_link[:3, :3] @ c[k] + to_link[:3, 3], float(r[k])))
        if len(out) <= budget or tol > 0.05:
            return out
        tol *= 1.5


def _support(kin: HandKinematics, idx: ArrayLike) -> NDArray[np.bool_]:
    """Which actuated joints move each keypoint (K, dof): a Jacobian column that is non-zero
    at the open pose or at one of two fixed random poses (one pose alone can put a point on
    a joint axis)."""
    q = np.concatenate([kin.open_pose[None],
                        kin.random_configurations(2, np.random.default_rng(0), margin=0.1)])
    _, jac = kin.keypoints_and_jacobians(np.eye(4), q, idx)
    return np.any(np.abs(jac[..., WRIST_DOF:]).max(axis=2) > 1e-9, axis=0)


def _closed_pose(kin: HandKinematics, facing: FloatArray, palm_joints: NDArray[np.bool_]
                 ) -> FloatArray:
    """Per joint, the limit that brings the fingertip it moves closer to a point in front of
    the palm; palm joints and joints that barely help stay open. A finger other than the
    thumb aims in front of its own lateral position and must also move out along the palm
    normal: abduction only bunches fingers together. The thumb, and both fingers of a
    gripper, aim at the centre."""
    q_open = kin.open_pose
    palm = kin.keypoints_local(q_open)[0]
    tips = np.array(kin.fingertip_indices)
    open_tips = kin.keypoints_local(q_open, tips)
    target = np.repeat((palm + 0.05 * facing)[None], len(tips), axis=0)
    hand = len(tips) >= 3
    if hand:
        target[1:, 1] += open_tips[1:, 1] - palm[1]
    trials = np.repeat(q_open[None], 2 * kin.dof, axis=0)
    for j in range(kin.dof):  # half-way to each limit: a finger curled to its limit can
        # end up back near where it started (Ability), half-way shows the direction
        trials[2 * j, j] = 0.5 * (q_open[j] + kin.lower[j])
        trials[2 * j + 1, j] = 0.5 * (q_open[j] + kin.upper[j])
    moved = kin.keypoints_local(trials, tips).reshape(kin.dof, 2, len(tips), 3)
    gain = np.linalg.norm(open_tips - target, axis=-1) - \
        np.linalg.norm(moved - target, axis=-1)  # (dof, 2, F)
    out = (moved - open_tips) @ facing  # (dof, 2, F)
    closed = q_open.copy()
    for j in range(kin.dof):
        finger = int(np.argmax(np.abs(moved[j] - open_tips).sum(axis=(0, 2))))
        ok = gain[j, :, finger] >= 0.003
        if hand and finger > 0:
            ok &= out[j, :, finger] >= 0.01
        if palm_joints[j] or not ok.any():
            continue
        side = int(np.argmax(np.where(ok, gain[j, :, finger], -np.inf)))
        closed[j] = (kin.lower[j], kin.upper[j])[side]
    return closed


def _build_hand(hand_id: str, budget: int) -> HandSpheres:
    base = hand_kinematics(hand_id)
    cfg = base.config
    spheres = _fit_link_spheres(base, budget)
    extra = tuple(Keypoint(f"grasp_sphere_{i}", link, tuple(float(v) for v in c))
                  for i, (link, c, _) in enumerate(spheres))
    first = next(iter(cfg.fingers))
    fingers = dict(cfg.fingers)
    fingers[first] = extra + fingers[first]
    kin = HandKinematics(dataclasses.replace(cfg, fingers=fingers))
    sphere_kp = np.array([kin.keypoint_names.index(k.name) for k in extra], dtype=np.int64)
    radii = np.array([r for _, _, r in spheres])
    q_open = base.open_pose
    palm_joints = _support(base, [0])[0]
    finger_joints = _support(base, base.fingertip_indices) & ~palm_joints
    sup = _support(kin, sphere_kp) & ~palm_joints
    sphere_finger = np.full(len(extra), -1, dtype=np.int64)
    for s in range(len(extra)):
        if sup[s].any():
            owners = [f for f in range(len(finger_joints))
                      if not np.any(sup[s] & ~finger_joints[f])]
            if owners:
                sphere_finger[s] = owners[0]
    local = kin.keypoints_local(q_open)
    centers = local[sphere_kp]
    tip_local = base.keypoints_local(q_open, "fingertips")
    tip_spheres = []
    for f, tip in enumerate(tip_local):
        cand = np.flatnonzero(sphere_finger == f)
        if cand.size == 0:
            cand = np.arange(len(extra))
        tip_spheres.append(int(cand[np.argmin(np.linalg.norm(centers[cand] - tip, axis=1))]))
    groups = tuple(np.flatnonzero(sphere_finger == f) for f in range(-1, len(finger_joints))
                   if np.any(sphere_finger == f))
    palm = base.keypoints_local(q_open)[0]
    tips_mean = tip_local.mean(axis=0)
    if len(cfg.fingers) >= 3:
        facing = np.array([1.0, 0.0, 0.0])  # the palm normal of the canonical wrist frame
    else:  # a gripper grasps between its fingers, in front of its base
        facing = (tips_mean - palm) / max(np.linalg.norm(tips_mean - palm), 1e-9)
    q_closed = _closed_pose(base, facing, palm_joints)
    aperture = float(np.linalg.norm(tip_local[0] - tip_local[min(1, len(tip_local) - 1)]))
    return HandSpheres(
        hand_id=hand_id, kin=kin, sphere_keypoints=sphere_kp, radii=radii,
        sphere_finger=sphere_finger, tip_spheres=np.array(tip_spheres, dtype=np.int64),
        groups=groups, finger_names=tuple(cfg.fingers), finger_joints=finger_joints,
        palm_joints=palm_joints, q_open=q_open.copy(), q_closed=q_closed,
        facing_local=facing, palm_local=palm,
        length=float(np.linalg.norm(tip_local, axis=1).max()), aperture=aperture)


_HANDS: dict[tuple[str, int], tuple[Any, HandSpheres]] = {}


def hand_spheres(hand_id: str, params: GraspParams | None = None) -> HandSpheres:
    """The sphere model of a registered hand (built once per process and config file)."""
    if not isinstance(hand_id, str) or not hand_id:
        raise GraspInputError(f"hand id must be a non-empty string, got {hand_id!r}")
    params = params or GraspParams()
    try:
        config = hand_kinematics(hand_id).config
    except UnknownHandError as e:
        raise GraspInputError(str(e)) from e
    key = (hand_id, params.max_spheres)
    cached = _HANDS.get(key)
    if cached is None or cached[0] is not config:
        cached = _HANDS[key] = (config, _build_hand(hand_id, params.max_spheres))
    return cached[1]


# ---------------------------------------------------------------------------- object model
@dataclass(frozen=True)
class ObjectPart:
    """A PCA frame of the object or of one of its k-means parts (object frame)."""

    index: int
    center: FloatArray  # (3,) centre of the part's PCA box
    axes: FloatArray  # (3, 3) columns: longest, middle, thinnest direction
    extents: FloatArray  # (3,) box sides along those axes (2nd to 98th percentile)
    size: int  # surface samples in the part


class _ObjectGeometry:
    """Object queries the energies need: nearest samples with normals (KD-tree with a range
    cut-off), curvature for the force-closure normal model, occupancy for the sign, parts."""

    def __init__(self, obj: ObjectModel, num_parts: int) -> None:
        # no reference to ``obj`` itself: this lives in a WeakKeyDictionary keyed by it
        self.points = np.asarray(obj.points)
        self.normals = np.asarray(obj.normals)
        self.tree = cKDTree(self.points)
        self.center = self.points.mean(axis=0)
        spread = np.linalg.norm(self.points - self.center, axis=1)
        self.radius = float(np.sqrt(np.mean(spread**2)))  # torque scale
        self.bounding_radius = float(spread.max())
        self.curvature = self._curvature()
        self.parts = self._parts(num_parts)
        self._scene: Any = None
        if obj.has_closed_mesh:
            import open3d as o3d

            assert obj.mesh is not None
            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(
                o3d.core.Tensor(np.ascontiguousarray(obj.mesh.vertices, dtype=np.float32)),
                o3d.core.Tensor(np.ascontiguousarray(obj.mesh.faces, dtype=np.uint32)))
            self._scene = scene

    def _curvature(self) -> FloatArray:
        """Per sample, how fast the normal turns per metre (median over 8 neighbours): the
        force-closure normal model ``n(x) = n_p + kappa (I - n n^T)(x - p)``."""
        k = min(9, len(self.points))
        dist, idx = self.tree.query(self.points, k=k)
        turn = np.linalg.norm(self.normals[idx[:, 1:]] - self.normals[:, None], axis=-1)
        rate = turn / np.maximum(dist[:, 1:], 1e-6)
        return np.clip(np.median(rate, axis=1), 0.0, 200.0)

    def _parts(self, num_parts: int) -> list[ObjectPart]:
        """The whole object, then k-means clusters of the surface samples (fixed seed: parts
        depend on the object only), each with its PCA box."""
        labels = [np.arange(len(self.points))]
        if num_parts > 1 and len(self.points) >= 8 * num_parts:
            rng = np.random.default_rng(0)
            pts = self.points
            centers = [pts[rng.integers(len(pts))]]
            for _ in range(1, num_parts):  # k-means++ seeding
                d2 = np.min(((pts[:, None] - np.array(centers)[None]) ** 2).sum(-1), axis=1)
                centers.append(pts[rng.choice(len(pts), p=d2 / d2.sum())])
            c = np.array(centers)
            for _ in range(30):
                assign = np.argmin(((pts[:, None] - c[None]) ** 2).sum(-1), axis=1)
                c = np.array([pts[assign == j].mean(axis=0) if np.any(assign == j) else c[j]
                              for j in range(num_parts)])
            labels += [np.flatnonzero(assign == j) for j in range(num_parts)
                       if np.count_nonzero(assign == j) >= 0.05 * len(pts)]
        return [self._part(i, idx) for i, idx in enumerate(labels)]

    def _part(self, index: int, idx: IntArray) -> ObjectPart:
        pts = self.points[idx]
        mean = pts.mean(axis=0)
        _, vectors = np.linalg.eigh(np.cov((pts - mean).T) + 1e-12 * np.eye(3))
        axes = vectors[:, ::-1]
        proj = (pts - mean) @ axes
        lo, hi = np.percentile(proj, 2, axis=0), np.percentile(proj, 98, axis=0)
        order = np.argsort(hi - lo)[::-1]
        axes, lo, hi = axes[:, order], lo[order], hi[order]
        if np.linalg.det(axes) < 0:
            axes[:, 2] = -axes[:, 2]
            lo[2], hi[2] = -hi[2], -lo[2]
        return ObjectPart(index, mean + axes @ ((lo + hi) / 2.0), axes, hi - lo, len(idx))

    def query(self, x: FloatArray, bound: float = np.inf
              ) -> tuple[FloatArray, FloatArray, FloatArray, IntArray]:
        """Per point (M, 3): the plane it is measured against (point p, unit normal n), the
        signed distance n^T (x - p), and the sample index (-1: farther than ``bound``, then
        d = +inf). The normal is the sample's; where occupancy disagrees with its sign (deep
        inside, beyond the medial axis), the direction to the nearest sample is used."""
        dist, idx = self.tree.query(x, distance_upper_bound=bound)
        found = idx < len(self.points)
        idx = np.where(found, idx, -1)
        p = np.zeros_like(x)
        n = np.zeros_like(x)
        d = np.full(len(x), np.inf)
        p[found] = self.points[idx[found]]
        n[found] = self.normals[idx[found]]
        d[found] = np.einsum("ij,ij->i", n[found], x[found] - p[found])
        if self._scene is not None and np.any(found):
            import open3d as o3d

            sel = np.flatnonzero(found)
            inside = self._scene.compute_occupancy(
                o3d.core.Tensor(x[sel].astype(np.float32))).numpy() > 0.5
            wrong = (d[sel] < 0.0) != inside
            wrong &= dist[sel] > 1e-4
            if np.any(wrong):
                w = sel[wrong]
                sign = np.where(inside[wrong], -1.0, 1.0)
                n[w] = sign[:, None] * (x[w] - p[w]) / dist[w][:, None]
                d[w] = sign * dist[w]
        return p, n, d, idx

    def closest(self, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, IntArray]:
        """Like :meth:`query` but exact on a closed mesh (closest point on the triangles, the
        sign by occupancy, the normal along the offset, or the face normal at contact): the
        fingertips use it, because the plane of the nearest sample lies about fingertips off a
        box edge (it reports millimetres where the edge is a centimetre away). The sample
        index is that of the sample nearest to the closest point (for its curvature)."""
        if self._scene is None:
            return self.query(x)
        import open3d as o3d

        query = o3d.core.Tensor(x.astype(np.float32))
        found = self._scene.compute_closest_points(query)
        p = found["points"].numpy().astype(np.float64)
        face_n = found["primitive_normals"].numpy().astype(np.float64)
        inside = self._scene.compute_occupancy(query).numpy() > 0.5
        offset = x - p
        dist = np.linalg.norm(offset, axis=1)
        sign = np.where(inside, -1.0, 1.0)
        along = sign[:, None] * offset / np.maximum(dist, 1e-12)[:, None]
        n = np.where((dist > 1e-4)[:, None], along, face_n)
        idx = self.tree.query(p)[1]
        return p, n, sign * dist, np.asarray(idx, dtype=np.int64)

    def signed_distance(self, x: FloatArray) -> FloatArray:
        """Exact (mesh) signed distance where the object has a closed mesh, else
        point-to-plane (as :meth:`ObjectModel.signed_distance`): the final quality numbers."""
        if self._scene is None:
            return self.query(x)[2]
        import open3d as o3d

        query = o3d.core.Tensor(np.ascontiguousarray(x, dtype=np.float32))
        return self._scene.compute_signed_distance(query).numpy().astype(np.float64)


_OBJECTS: weakref.WeakKeyDictionary[ObjectModel, dict[int, _ObjectGeometry]] = \
    weakref.WeakKeyDictionary()


def _check_object(obj: Any) -> ObjectModel:
    if not isinstance(obj, ObjectModel):
        raise GraspInputError(f"object must be an ObjectModel (ObjectModel.from_asset or "
                              f"from_file), got {type(obj).__name__}")
    if len(obj) < _MIN_OBJECT_POINTS:
        raise GraspInputError(f"object '{obj.name}' has {len(obj)} surface points; at least "
                              f"{_MIN_OBJECT_POINTS} are needed to find parts and contacts")
    if float(np.ptp(obj.points, axis=0).max()) < 1e-3:
        raise GraspInputError(f"object '{obj.name}' is degenerate (all points within 1 mm)")
    return obj


def _object_geometry(obj: ObjectModel, params: GraspParams) -> _ObjectGeometry:
    per_object = _OBJECTS.setdefault(obj, {})
    if params.num_parts not in per_object:
        per_object[params.num_parts] = _ObjectGeometry(obj, params.num_parts)
    return per_object[params.num_parts]


def object_parts(obj: ObjectModel, params: GraspParams | None = None) -> list[ObjectPart]:
    """The parts initialization aligns to: index 0 is the whole object."""
    params = params or GraspParams()
    return list(_object_geometry(_check_object(obj), params).parts)


# -------------------------------------------------------------------------------- energies
@dataclass(frozen=True)
class Correspondences:
    """Nearest-surface planes of every hand sphere, frozen for one solver step."""

    p: FloatArray  # (B, S, 3)
    n: FloatArray  # (B, S, 3) unit; zero where the sphere is out of range
    far: NDArray[np.bool_]  # (B, S) out of range: no penetration residual
    kappa: FloatArray  # (B, F) curvature at each fingertip's plane
    force: FloatArray  # (B, F) contact force magnitudes of the force-closure term


@dataclass(frozen=True)
class GraspBatch:
    """Per-candidate constants of one solve: which fingertips are pulled onto the surface,
    the joint prior and the wrist anchor."""

    contact: FloatArray  # (B, F) 1 for fingers pulled onto the surface
    q_ref: FloatArray  # (B, dof) prior pose
    anchor: FloatArray  # (B, 4, 4) initial wrist pose


class GraspEnergy:
    """Residuals and analytic Jacobians of every energy term for a batch of hands.

    Jacobian columns are the body-frame wrist twist (v, w) then the actuated joints, as in
    :mod:`unihm_core.hands.kinematics`. Correspondences (nearest planes) are passed in so that
    a caller can freeze them, as the solver does for one step and the tests do for finite
    differences.
    """

    def __init__(self, hand: HandSpheres, obj: ObjectModel, table_z: float,
                 params: GraspParams) -> None:
        self.hand = hand
        self.params = params
        self.geo = _object_geometry(obj, params)
        self.table_z = float(table_z)
        self.n_var = WRIST_DOF + hand.dof
        f = hand.num_fingers
        self.pairs = np.array([(i, j) for i in range(f) for j in range(i + 1, f)],
                              dtype=np.int64).reshape(-1, 2)
        self.sqrt_joint_w = np.sqrt(hand.kin.weights)
        self.margin = np.full(len(hand.radii), params.penetration_margin)
        self.margin[hand.tip_spheres] = 0.0
        self.bounds = hand.radii + params.query_band

    # --------------------------------------------------------------------------- kinematics
    def spheres(self, wrist: FloatArray, q: FloatArray,
                jacobian: bool = True) -> tuple[FloatArray, FloatArray | None]:
        """Sphere centres (B, S, 3) and Jacobians (B, S, 3, n) in the object frame."""
        kin, h = self.hand.kin, self.hand
        if not jacobian:
            return kin.keypoints(wrist, q, h.sphere_keypoints), None
        b = wrist.shape[0]
        x = np.empty((b, len(h.radii), 3))
        jac = np.empty((b, len(h.radii), 3, self.n_var))
        for g in h.groups:
            x[:, g], jac[:, g] = kin.keypoints_and_jacobians(wrist, q, h.sphere_keypoints[g])
        return x, jac

    def correspondences(self, x: FloatArray, batch: GraspBatch | None = None) -> Correspondences:
        """Nearest planes for sphere centres (B, S, 3), and the force magnitudes that balance
        the fingertip normals best (equal without ``batch``). Fingertips are always looked
        up; the other spheres only when they may be within their radius + ``query_band`` of
        the surface (a bounding-sphere test first, then a range-limited KD query): far ones
        cannot penetrate in one step, and skipping them is most of the lookup time."""
        h, geo = self.hand, self.geo
        b, s = x.shape[:2]
        p = np.zeros((b, s, 3))
        n = np.zeros((b, s, 3))
        far = np.ones((b, s), dtype=bool)
        reach = np.linalg.norm(x - geo.center, axis=-1) - self.bounds
        near = reach <= geo.bounding_radius
        near[:, h.tip_spheres] = False
        if np.any(near):
            bound = float(self.bounds[np.nonzero(near)[1]].max())
            pn, nn, _, idx = geo.query(x[near], bound)
            p[near], n[near], far[near] = pn, nn, idx < 0
        tp, tn, _, tidx = geo.closest(x[:, h.tip_spheres].reshape(-1, 3))
        p[:, h.tip_spheres] = tp.reshape(b, -1, 3)
        n[:, h.tip_spheres] = tn.reshape(b, -1, 3)
        far[:, h.tip_spheres] = False
        force = np.ones((b, h.num_fingers))
        if batch is not None:
            tips = x[:, h.tip_spheres]
            inward = -n[:, h.tip_spheres]
            lever = (tips - geo.center) / geo.radius
            wrench = np.concatenate([inward, np.cross(lever, inward)], axis=2)  # (B, F, 6)
            force = _force_magnitudes(np.swapaxes(wrench, 1, 2), batch.contact,
                                      self.params.min_force)
        return Correspondences(p, n, far, geo.curvature[tidx].reshape(b, -1), force)

    # ---------------------------------------------------------------------------- residuals
    def residuals(self, wrist: FloatArray, q: FloatArray, batch: GraspBatch,
                  corr: Correspondences | None = None, jacobian: bool = True
                  ) -> dict[str, tuple[FloatArray, FloatArray | None]]:
        """term -> (residuals (B, m), Jacobian (B, m, n) or None). Without ``corr`` the
        correspondences are looked up at this pose."""
        x, jx = self.spheres(wrist, q, jacobian)
        if corr is None:
            corr = self.correspondences(x, batch)
        d = np.einsum("bsi,bsi->bs", corr.n, x - corr.p)
        d[corr.far] = np.inf
        out = {
            "contact": self._contact(x, jx, d, corr, batch),
            "penetration": self._penetration(jx, d, corr),
            "force_closure": self._force_closure(x, jx, corr, batch),
            "opposition": self._opposition(x, jx, corr, batch),
            "joint_limits": self._limits(q, jacobian),
            "table": self._table(x, jx),
            "separation": self._separation(x, jx),
            "prior": self._prior(q, batch, jacobian),
            "anchor": self._anchor(wrist, batch, jacobian),
            "facing": self._facing(wrist, jacobian),
        }
        return out

    def _contact(self, x: FloatArray, jx: FloatArray | None, d: FloatArray,
                 corr: Correspondences, batch: GraspBatch) -> tuple[FloatArray, FloatArray | None]:
        tips = self.hand.tip_spheres
        w = np.sqrt(self.params.w_contact) * batch.contact
        r = w * (d[:, tips] - self.hand.radii[tips])
        if jx is None:
            return r, None
        jac = np.einsum("bfi,bfin->bfn", corr.n[:, tips], jx[:, tips]) * w[..., None]
        return r, jac

    def _penetration(self, jx: FloatArray | None, d: FloatArray,
                     corr: Correspondences) -> tuple[FloatArray, FloatArray | None]:
        depth = self.hand.radii + self.margin - d
        active = depth > 0.0
        w = np.sqrt(self.params.w_penetration)
        r = np.where(active, w * depth, 0.0)
        if jx is None:
            return r, None
        jac = -w * np.einsum("bsi,bsin->bsn", corr.n, jx) * active[..., None]
        return r, jac

    def _force_closure(self, x: FloatArray, jx: FloatArray | None, corr: Correspondences,
                       batch: GraspBatch) -> tuple[FloatArray, FloatArray | None]:
        """Net wrench of the inward normals at the contact fingertips (DexGraspNet's force
        closure), torques about the object centre per object radius. The force magnitudes
        are chosen per step to balance best (DexVLG's LP-DFC: equal forces would tilt the
        thumb against two fingers in a pinch) and frozen with the correspondences; the normal
        follows the contact along the surface through the curvature model."""
        tips = self.hand.tip_spheres
        xt, nt, pt = x[:, tips], corr.n[:, tips], corr.p[:, tips]
        kappa = corr.kappa[..., None, None]
        proj = np.eye(3) - nt[..., :, None] * nt[..., None, :]  # (B, F, 3, 3)
        normal = nt + np.einsum("bfij,bfj->bfi", kappa * proj, xt - pt)
        m = (batch.contact * corr.force)[..., None]
        force = -m * normal
        lever = (xt - self.geo.center) / self.geo.radius
        w = np.sqrt(self.params.w_force_closure)
        r = w * np.concatenate([force.sum(axis=1), np.cross(lever, force).sum(axis=1)], axis=1)
        if jx is None:
            return r, None
        jt = jx[:, tips]  # (B, F, 3, n)
        dforce = -m[..., None] * np.einsum("bfij,bfjn->bfin", kappa * proj, jt)
        dtorque = (-np.einsum("bfij,bfjn->bfin", skew(force), jt) / self.geo.radius
                   + np.einsum("bfij,bfjn->bfin", skew(lever), dforce))
        jac = w * np.concatenate([dforce.sum(axis=1), dtorque.sum(axis=1)], axis=1)
        return r, jac

    def _opposition(self, x: FloatArray, jx: FloatArray | None, corr: Correspondences,
                    batch: GraspBatch) -> tuple[FloatArray, FloatArray | None]:
        """Thumb-finger opposition (an antipodal pinch, generalised to several fingers): the
        unit vector ``u`` from the thumb tip to the centroid of the other contact fingertips
        should leave the thumb's contact into the object and arrive at the fingers' contacts
        from inside, i.e. ``u = -n_thumb`` and ``u = mean(n_fingers)`` (outward normals).
        Residuals ``u + n_thumb`` and ``u - mean(n_fingers)`` (6 per candidate), zero for an
        ideal antipodal grasp. The net-wrench term alone is also small for fingers on one
        face pressing the object onto the table, or a thumb beside the object; this term is
        not. Normals are frozen with the correspondences (the Jacobian is that of ``u``)."""
        tips = self.hand.tip_spheres
        others = batch.contact.copy()
        others[:, 0] = 0.0
        count = others.sum(axis=1)
        active = (batch.contact[:, 0] > 0) & (count > 0)
        wgt = others / np.maximum(count, 1.0)[:, None]  # (B, F)
        xt = x[:, tips]
        nt = corr.n[:, tips]
        grip = np.einsum("bf,bfi->bi", wgt, xt)
        diff = grip - xt[:, 0]
        length = np.maximum(np.linalg.norm(diff, axis=1), 1e-6)
        u = diff / length[:, None]
        n_grip = np.einsum("bf,bfi->bi", wgt, nt)
        w = np.sqrt(self.params.w_opposition) * active
        r = w[:, None] * np.concatenate([u + nt[:, 0], u - n_grip], axis=1)
        if jx is None:
            return r, None
        jt = jx[:, tips]  # (B, F, 3, n)
        ddiff = np.einsum("bf,bfin->bin", wgt, jt) - jt[:, 0]
        proj = (np.eye(3) - u[:, :, None] * u[:, None, :]) / length[:, None, None]
        du = np.einsum("bij,bjn->bin", proj, ddiff) * w[:, None, None]
        return r, np.concatenate([du, du], axis=1)

    def _limits(self, q: FloatArray, jacobian: bool) -> tuple[FloatArray, FloatArray | None]:
        kin = self.hand.kin
        below, above = kin.lower - q, q - kin.upper
        w = np.sqrt(self.params.w_joint_limits)
        r = w * (np.maximum(below, 0.0) + np.maximum(above, 0.0))
        if not jacobian:
            return r, None
        slope = w * (np.where(above > 0.0, 1.0, 0.0) - np.where(below > 0.0, 1.0, 0.0))
        return r, self._joint_diagonal(slope)

    def _joint_diagonal(self, diag: FloatArray) -> FloatArray:
        b, dof = diag.shape
        jac = np.zeros((b, dof, self.n_var))
        jac[:, np.arange(dof), WRIST_DOF + np.arange(dof)] = diag
        return jac

    def _table(self, x: FloatArray, jx: FloatArray | None) -> tuple[FloatArray,
                                                                    FloatArray | None]:
        depth = self.table_z + self.params.table_margin + self.hand.radii - x[..., 2]
        active = depth > 0.0
        w = np.sqrt(self.params.w_table)
        r = np.where(active, w * depth, 0.0)
        if jx is None:
            return r, None
        return r, -w * jx[:, :, 2, :] * active[..., None]

    def _separation(self, x: FloatArray, jx: FloatArray | None) -> tuple[FloatArray,
                                                                         FloatArray | None]:
        h = self.hand
        b = x.shape[0]
        if not len(self.pairs):
            return np.zeros((b, 0)), (None if jx is None else np.zeros((b, 0, self.n_var)))
        si, sj = h.tip_spheres[self.pairs[:, 0]], h.tip_spheres[self.pairs[:, 1]]
        diff = x[:, si] - x[:, sj]
        dist = np.linalg.norm(diff, axis=-1)
        short = h.radii[si] + h.radii[sj] + self.params.tip_gap - dist
        active = short > 0.0
        w = np.sqrt(self.params.w_separation)
        r = np.where(active, w * short, 0.0)
        if jx is None:
            return r, None
        u = diff / np.maximum(dist, 1e-9)[..., None]
        jac = -w * np.einsum("bpi,bpin->bpn", u, jx[:, si] - jx[:, sj]) * active[..., None]
        return r, jac

    def _prior(self, q: FloatArray, batch: GraspBatch,
               jacobian: bool) -> tuple[FloatArray, FloatArray | None]:
        w = np.sqrt(self.params.w_prior) * self.sqrt_joint_w
        r = w * (q - batch.q_ref)
        if not jacobian:
            return r, None
        return r, self._joint_diagonal(np.broadcast_to(w, q.shape))

    def _anchor(self, wrist: FloatArray, batch: GraspBatch,
                jacobian: bool) -> tuple[FloatArray, FloatArray | None]:
        """Weak pull toward the initial wrist: translation in the initial frame and the
        rotation vector of the relative rotation (exact Jacobian: inverse right Jacobian)."""
        r0 = batch.anchor[:, :3, :3]
        rel_rot = np.swapaxes(r0, 1, 2) @ wrist[:, :3, :3]
        phi = Rotation.from_matrix(rel_rot).as_rotvec()
        trans = np.einsum("bji,bj->bi", r0, wrist[:, :3, 3] - batch.anchor[:, :3, 3])
        wt = np.sqrt(self.params.w_anchor_translation)
        wr = np.sqrt(self.params.w_anchor_rotation)
        r = np.concatenate([wt * trans, wr * phi], axis=1)
        if not jacobian:
            return r, None
        jac = np.zeros((wrist.shape[0], 6, self.n_var))
        jac[:, :3, :3] = wt * rel_rot
        jac[:, 3:, 3:6] = wr * _right_jacobian_inverse(phi)
        return r, jac

    def _facing(self, wrist: FloatArray, jacobian: bool) -> tuple[FloatArray,
                                                                  FloatArray | None]:
        f = self.hand.facing_local
        up = wrist[:, 2, :3] @ f
        excess = up - (self.params.max_facing_up - self.params.facing_margin)
        active = excess > 0.0
        w = np.sqrt(self.params.w_facing)
        r = np.where(active, w * excess, 0.0)[:, None]
        if not jacobian:
            return r, None
        jac = np.zeros((wrist.shape[0], 1, self.n_var))
        # d(R exp(w) f) = -R [f]x w: the z row
        jac[:, 0, 3:6] = -w * (wrist[:, 2, :3] @ skew(f)) * active[:, None]
        return r, jac


def _force_magnitudes(wrench: FloatArray, mask: FloatArray, floor: float) -> FloatArray:
    """Per candidate, contact force magnitudes ``a`` (zero off ``mask``) minimizing the net
    wrench ``|W a|`` with mean 1 over the contacts and ``a >= floor``: the equality-constrained
    least squares (KKT system), magnitudes below the floor pinned there and the rest solved
    again (a few active-set rounds; a handful of variables, batched)."""
    b, _, f = wrench.shape
    contact = mask > 0
    count = contact.sum(axis=1).astype(np.float64)
    gram = np.swapaxes(wrench, 1, 2) @ wrench + 1e-6 * np.eye(f)
    pinned = ~contact
    value = np.zeros((b, f))
    a = contact.astype(np.float64)
    for _ in range(3):
        m = np.zeros((b, f + 1, f + 1))
        m[:, :f, :f] = np.where(pinned[:, :, None], np.eye(f), gram)
        m[:, :f, f] = np.where(pinned, 0.0, 1.0)
        m[:, f, :f] = contact
        m[:, f, f] = -1e-9
        rhs = np.concatenate([np.where(pinned, value, 0.0), count[:, None]], axis=1)
        a = np.linalg.solve(m, rhs[..., None])[:, :f, 0]
        low = contact & ~pinned & (a < floor)
        if not low.any():
            break
        pinned |= low
        value = np.where(low, floor, value)
    a = np.where(contact, np.maximum(a, floor), 0.0)
    return np.where(count[:, None] >= 2, a, contact.astype(np.float64))


def _right_jacobian_inverse(phi: FloatArray) -> FloatArray:
    """Inverse right Jacobian of SO(3) for rotation vectors (B, 3): d log(R exp(w)) / dw."""
    theta = np.linalg.norm(phi, axis=-1)
    k = skew(phi)
    small = theta < 1e-6
    t = np.where(small, 1.0, theta)
    sin = np.maximum(np.sin(t), 1e-6)  # the anchor is never half a turn away in practice
    coef = np.where(small, 1.0 / 12.0, 1.0 / t**2 - (1.0 + np.cos(t)) / (2.0 * t * sin))
    return np.eye(3) + 0.5 * k + coef[:, None, None] * (k @ k)


def stack_terms(terms: Mapping[str, tuple[FloatArray, FloatArray | None]]
                ) -> tuple[FloatArray, FloatArray | None, dict[str, FloatArray]]:
    """All residuals (B, M), their Jacobian (B, M, n) and the per-term energies (B,)."""
    r = np.concatenate([t[0] for t in terms.values()], axis=1)
    r = np.where(np.isfinite(r), r, 0.0)
    energies = {k: 0.5 * np.sum(np.nan_to_num(v[0]) ** 2, axis=1) for k, v in terms.items()}
    jacs = [t[1] for t in terms.values()]
    jac = None if any(j is None for j in jacs) else np.concatenate(jacs, axis=1)  # type: ignore[arg-type]
    return r, jac, energies


# ------------------------------------------------------------------------------- optimizer
@dataclass
class _State:
    wrist: FloatArray
    q: FloatArray
    r: FloatArray
    jac: FloatArray
    energy: FloatArray
    terms: dict[str, FloatArray]


def _evaluate(energy: GraspEnergy, wrist: FloatArray, q: FloatArray, batch: GraspBatch) -> _State:
    r, jac, terms = stack_terms(energy.residuals(wrist, q, batch))
    assert jac is not None
    return _State(wrist, q, r, jac, sum(terms.values()), terms)


def _subset(batch: GraspBatch, idx: IntArray) -> GraspBatch:
    return GraspBatch(batch.contact[idx], batch.q_ref[idx], batch.anchor[idx])


def _limit_step(step: FloatArray, params: GraspParams) -> FloatArray:
    """Scale whole steps down to the per-step translation, rotation and joint caps."""
    scale = np.minimum.reduce([
        params.max_step_translation / np.maximum(np.linalg.norm(step[:, :3], axis=1), 1e-12),
        params.max_step_rotation / np.maximum(np.linalg.norm(step[:, 3:6], axis=1), 1e-12),
        params.max_step_joint / np.maximum(np.abs(step[:, 6:]).max(axis=1, initial=0.0),
                                           1e-12),
        np.ones(len(step))])
    return step * scale[:, None]


def optimize(energy: GraspEnergy, wrist: FloatArray, q: FloatArray, batch: GraspBatch
             ) -> tuple[FloatArray, FloatArray, dict[str, FloatArray], IntArray]:
    """Batched Levenberg-Marquardt over all candidates: per candidate damping, a step is
    accepted only if the freshly re-associated energy decreases. Wrist: ``T @ exp(xi)``;
    joints clipped to the limits. Returns wrist poses, joints, per-term energies and the
    iterations each candidate ran."""
    p = energy.params
    hand = energy.hand
    kin = hand.kin
    free = np.arange(energy.n_var)
    if p.freeze_palm_joints and hand.palm_joints.any():
        free = np.concatenate([np.arange(WRIST_DOF),
                               WRIST_DOF + np.flatnonzero(~hand.palm_joints)])
    q = kin.clip(q)
    state = _evaluate(energy, np.array(wrist, dtype=np.float64), q, batch)
    b = len(q)
    lam = np.full(b, p.lambda_init)
    done = np.zeros(b, dtype=bool)
    iterations = np.zeros(b, dtype=np.int64)
    for _ in range(p.max_iterations):
        act = np.flatnonzero(~done)
        if not len(act):
            break
        iterations[act] += 1
        jr = state.jac[act][:, :, free]
        hess = np.swapaxes(jr, 1, 2) @ jr
        grad = np.einsum("bmn,bm->bn", jr, state.r[act])
        diag = np.diagonal(hess, axis1=1, axis2=2)
        damped = hess + (lam[act, None] * (diag + 1e-9))[..., None] * np.eye(len(free))
        step = np.zeros((len(act), energy.n_var))
        step[:, free] = np.linalg.solve(damped, -grad[..., None])[..., 0]
        step = _limit_step(step, p)
        new_wrist = exp_local(state.wrist[act], step[:, :6])
        new_q = kin.clip(state.q[act] + step[:, 6:])
        cand = _evaluate(energy, new_wrist, new_q, _subset(batch, act))
        better = cand.energy < state.energy[act]
        rel = (state.energy[act] - cand.energy) / np.maximum(state.energy[act], 1e-300)
        acc = act[better]
        for name in ("wrist", "q", "r", "jac", "energy"):
            getattr(state, name)[acc] = getattr(cand, name)[better]
        for name in state.terms:
            state.terms[name][acc] = cand.terms[name][better]
        lam[acc] = np.maximum(lam[acc] / p.lambda_down, 1e-9)
        lam[act[~better]] *= p.lambda_up
        done[acc[rel[better] < p.tolerance]] = True
        done[act[lam[act] > p.lambda_max]] = True
    return state.wrist, state.q, state.terms, iterations


# ------------------------------------------------------------------------- initialization
def _basis(a: FloatArray, b: FloatArray) -> FloatArray:
    """The rotation whose columns are ``a``, ``b`` made orthogonal to ``a``, and their cross
    product (both normalized): ``basis(world) @ basis(local).T`` maps the local pair onto the
    world pair."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b - np.sum(a * b, axis=-1, keepdims=True) * a
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return np.stack([a, b, np.cross(a, b)], axis=-1)


def _perpendicular(v: FloatArray, rng: np.random.Generator) -> FloatArray:
    w = rng.normal(size=3)
    w -= (w @ v) * v
    return w / np.linalg.norm(w)


def _tilt(u: FloatArray, angle: float, rng: np.random.Generator, max_up: float) -> FloatArray:
    """``u`` tilted by a random angle up to ``angle``, never more upward than ``max_up``."""
    for _ in range(8):
        axis = _perpendicular(u, rng)
        out = Rotation.from_rotvec(axis * rng.uniform(0.0, angle)).apply(u)
        if out[2] <= max_up:
            return out
    return u


class _Initializer:
    """Part-aligned initial wrist poses and pre-shapes (see the module docstring)."""

    def __init__(self, energy: GraspEnergy, rng: np.random.Generator) -> None:
        self.energy = energy
        self.hand = energy.hand
        self.geo = energy.geo
        self.params = energy.params
        self.rng = rng

    def contact_mask(self, mode: str) -> FloatArray:
        """Fingers pulled onto the surface: all for a wrap (and for grippers), thumb, index
        and middle for a pinch."""
        names = self.hand.finger_names
        if mode == "wrap" or self.hand.num_fingers < 3:
            return np.ones(len(names))
        use = {"thumb", "index"} | ({"middle"} if self.params.pinch_with_middle else set())
        mask = np.array([1.0 if n in use else 0.0 for n in names])
        if mask.sum() < 2:  # hands without a thumb/index naming: the first two fingers
            mask[:2] = 1.0
        return mask

    def preshape(self, mode: str, mask: FloatArray) -> FloatArray:
        """Joints between the open and the closed pose: contact fingers a little closed, the
        thumb of a hand half opposed (an open thumb lies in the palm plane and cannot reach
        across), fingers a pinch does not use curled away."""
        h, p = self.hand, self.params
        lo, hi = p.wrap_preshape if mode == "wrap" else p.pinch_preshape
        s = np.full(h.dof, self.rng.uniform(lo, hi))
        if h.num_fingers >= 3:
            s[h.finger_joints[0]] = self.rng.uniform(*p.thumb_preshape)
        if mode == "pinch":
            for f in np.flatnonzero(mask == 0.0):
                s[h.finger_joints[f]] = p.pinch_idle_curl
        q = h.q_open + s * (h.q_closed - h.q_open)
        q = q + self.rng.uniform(-p.joint_jitter, p.joint_jitter, h.dof) * ~h.palm_joints
        return np.clip(q, h.kin.lower, h.kin.upper)

    def _parts_for(self, mode: str) -> list[tuple[ObjectPart, int]]:
        """Usable (part, axis) pairs: wrap axes whose cross-section the hand can close
        around; per part, the thinnest horizontal-ish axis narrower than the hand's opening
        to pinch across."""
        h, p = self.hand, self.params
        out = []
        for part in self.geo.parts:
            if mode == "wrap" and h.num_fingers >= 3:
                out += [(part, k) for k in range(3)
                        if np.delete(part.extents, k).max() <= p.wrap_diameter_factor * h.length]
                continue
            for k in (2, 1, 0):
                if part.extents[k] <= 0.85 * h.aperture and abs(part.axes[2, k]) < 0.8:
                    out.append((part, k))
                    break
        if not out:  # nothing fits: the whole object's thinnest usable axis, best effort
            whole = self.geo.parts[0]
            k = 2 if abs(whole.axes[2, 2]) < 0.8 else 1
            out.append((whole, k if mode == "pinch" else 0))
        return out

    def _choose(self, options: list[tuple[ObjectPart, int]], mode: str
                ) -> tuple[ObjectPart, int]:
        p = self.params
        whole = [o for o in options if o[0].index == 0]
        parts = [o for o in options if o[0].index != 0]
        pool = whole if whole and (not parts or self.rng.random() < p.whole_object_probability) \
            else parts
        weights = np.array([1.0 + (mode == "wrap" and k == 0) for _, k in pool])
        return pool[self.rng.choice(len(pool), p=weights / weights.sum())]

    def _approach(self, axis: FloatArray, mode: str) -> FloatArray:
        """Approach direction (hand -> object) perpendicular to ``axis``: any side for a wrap,
        from above for a pinch; never from below."""
        p = self.params
        down = -_UP - (-_UP @ axis) * axis
        if mode == "pinch" and np.linalg.norm(down) > 0.3:
            u = down / np.linalg.norm(down)
        else:
            b1 = _perpendicular(axis, self.rng)
            b2 = np.cross(axis, b1)
            for _ in range(16):
                phi = self.rng.uniform(0.0, 2.0 * np.pi)
                u = np.cos(phi) * b1 + np.sin(phi) * b2
                if u[2] <= 0.0:
                    break
            else:
                u = down / max(np.linalg.norm(down), 1e-9) if np.linalg.norm(down) > 1e-6 \
                    else b1
        u = _tilt(u, p.tilt_jitter, self.rng, 0.5 * p.max_facing_up)
        return u

    def _span(self, point: FloatArray, direction: FloatArray,
              radius: float = 0.015) -> tuple[float, float]:
        """Where the object's surface is along a line through ``point``: the smallest and
        largest offsets along ``direction`` of surface samples within ``radius`` of the line
        (the whole object when the line misses it)."""
        rel = self.geo.points - point
        t = rel @ direction
        off = np.linalg.norm(rel - t[:, None] * direction, axis=1)
        sel = t[off <= radius]
        if sel.size == 0:
            sel = t
        return float(sel.min()), float(sel.max())

    def candidate(self, mode: str, q0: FloatArray) -> tuple[FloatArray, FloatArray,
                                                            FloatArray, int]:
        """Wrist pose (before :meth:`place`), approach direction, the point the hand is
        aligned on, and the part index of one candidate."""
        h, p = self.hand, self.params
        part, k = self._choose(self._parts_for(mode), mode)
        axis = part.axes[:, k]
        u = self._approach(axis, mode)
        local = h.kin.keypoints_local(q0)
        tips = local[h.sphere_keypoints[h.tip_spheres]]
        palm = h.palm_local
        free = np.cross(u, axis)
        free /= max(float(np.linalg.norm(free)), 1e-9)
        wrap = mode == "wrap" and h.num_fingers >= 3
        along = axis if wrap else free
        along_ext = float(np.abs(part.axes.T @ along) @ part.extents)
        center = part.center + along * self.rng.uniform(-1, 1) * p.position_jitter * 0.5 * \
            along_ext
        if wrap:
            # the lateral axis across the finger bases, pointing to the thumb's side
            lateral = np.array([0.0, np.sign(tips[0][1] - palm[1]) or 1.0, 0.0])
            sign = 1.0
            if abs(axis[2]) > 0.3:  # thumb up, as people hold a bottle
                sign = np.sign(axis[2]) or 1.0
            elif self.rng.random() < 0.5:
                sign = -1.0
            rot = _basis(u, sign * axis) @ _basis(h.facing_local, lateral).T
            near, _ = self._span(center, u)
            anchor_local, target = palm, center + u * near  # the palm on the facing surface
        else:
            mask = self.contact_mask(mode)
            others = np.flatnonzero(mask[1:]) + 1
            grip = tips[others].mean(axis=0)
            mid = 0.5 * (tips[0] + grip)
            sign = 1.0 if self.rng.random() < 0.5 else -1.0
            rot = _basis(u, sign * axis) @ _basis(mid - palm, grip - tips[0]).T
            lo, hi = self._span(center, axis)  # centre the pinch on the object's chord
            center = center + axis * 0.5 * (lo + hi)
            near, far = self._span(center, u)
            depth = min(p.pinch_depth, 0.5 * (far - near))
            anchor_local, target = mid, center + u * (near + depth)
        roll = Rotation.from_rotvec(u * self.rng.uniform(-p.roll_jitter, p.roll_jitter))
        rot = roll.as_matrix() @ rot
        return make_pose(rot, target - rot @ anchor_local), u, target, part.index

    def place(self, wrist: FloatArray, q0: FloatArray, u: FloatArray,
              pivot: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Make the initial hands feasible without losing their alignment: roll each about its
        approach direction (through the aligned point) by the smallest angle that keeps the
        hand and forearm above the table (a long forearm held level would go through it on a
        short object), lift what is still too low, then find the smallest back-off along the
        approach, opening the fingers other than the thumb if that helps, at which no sphere
        is inside the object. The solver then closes in. Returns wrist poses and joints."""
        h, p = self.hand, self.params
        b = len(wrist)
        local = h.kin.keypoints_local(q0, h.sphere_keypoints)  # (B, S, 3)
        rolls = np.array([0.0, 0.3, -0.3, 0.6, -0.6, 0.9, -0.9, 1.2, -1.2])
        turn = Rotation.from_rotvec((u[:, None, :] * rolls[None, :, None]).reshape(-1, 3))
        turn = turn.as_matrix().reshape(b, len(rolls), 3, 3)
        rot = turn @ wrist[:, None, :3, :3]  # (B, R, 3, 3)
        pos = np.einsum("brij,bj->bri", turn, wrist[:, :3, 3] - pivot) + pivot[:, None]
        x = np.einsum("brij,bsj->brsi", rot, local) + pos[:, :, None]
        floor = self.energy.table_z + p.table_margin + 1e-3
        lift = np.maximum(floor - np.min(x[..., 2] - h.radii, axis=-1), 0.0)  # (B, R)
        ok = lift <= 0.005
        pick = np.where(ok.any(axis=1), np.argmax(ok, axis=1), np.argmin(lift, axis=1))
        rows = np.arange(b)
        out = make_pose(rot[rows, pick], pos[rows, pick] + lift[rows, pick, None] * _UP)
        # openings of the non-thumb fingers x back-offs, in order of preference
        opening = np.array([0.0, 0.5, 1.0])
        movable = ~h.palm_joints & (~h.finger_joints[0] if h.num_fingers >= 3 else True)
        trials = q0[:, None] + opening[None, :, None] * \
            np.where(movable, h.q_open - q0, 0.0)[:, None]  # (B, O, dof)
        local = h.kin.keypoints_local(trials, h.sphere_keypoints)  # (B, O, S, 3)
        x = np.einsum("bij,bosj->bosi", out[:, :3, :3], local) + out[:, None, None, :3, 3]
        steps = np.arange(0.0, p.max_backoff + 1e-9, 0.005)
        shifted = x[:, None] - steps[None, :, None, None, None] * u[:, None, None, None, :]
        flat = shifted.reshape(-1, 3)  # (B, K, O, S) points
        radii = np.broadcast_to(h.radii, shifted.shape[:-1]).reshape(-1)
        d = np.full(len(flat), np.inf)
        near = np.linalg.norm(flat - self.geo.center, axis=1) - radii <= \
            self.geo.bounding_radius
        if np.any(near):
            d[near] = self.geo.query(flat[near], float(h.radii.max()) + 0.005)[2]
        depth = np.max((radii - d).reshape(b, -1, h.radii.size), axis=-1)  # (B, K*O)
        clear = depth <= 0.0
        best = np.where(clear.any(axis=1), np.argmax(clear, axis=1), np.argmin(depth, axis=1))
        k, o = np.divmod(best, len(opening))
        out[:, :3, 3] -= steps[k][:, None] * u
        return out, trials[rows, o]


# ----------------------------------------------------------------------------- evaluation
def _pregrasp(energy: GraspEnergy, wrist: FloatArray, q: FloatArray) -> FloatArray:
    """Per grasp, the least opening toward the open pose (of ``pregrasp_openings``) at which
    every finger sphere clears the object by ``pregrasp_clearance`` at the grasp's wrist pose
    (else the clearest one). Palm joints stay as they are."""
    h, p = energy.hand, energy.params
    fracs = np.asarray(p.pregrasp_openings, dtype=np.float64)
    target = np.where(h.palm_joints, q, h.q_open)  # (B, dof)
    trials = q[:, None] + fracs[None, :, None] * (target - q)[:, None]  # (B, K, dof)
    b, k = trials.shape[:2]
    fingers = np.flatnonzero(h.sphere_finger >= 0)
    x = h.kin.keypoints(np.repeat(wrist, k, axis=0), trials.reshape(b * k, -1),
                        h.sphere_keypoints[fingers])
    _, _, d, _ = energy.geo.query(x.reshape(-1, 3), float(h.radii.max()) + 0.02)
    gap = np.min(d.reshape(b, k, -1) - h.radii[fingers], axis=-1)
    ok = gap >= p.pregrasp_clearance
    pick = np.where(ok.any(axis=1), np.argmax(ok, axis=1), np.argmax(gap, axis=1))
    return trials[np.arange(b), pick]


def _finish(energy: GraspEnergy, wrist: FloatArray, q: FloatArray, batch: GraspBatch, *,
            modes: Sequence[str], parts: Sequence[int]) -> list[Grasp]:
    """Exact quality numbers, filters and pre-grasps for optimized candidates."""
    h, p = energy.hand, energy.params
    _, _, terms = stack_terms(energy.residuals(wrist, q, batch, jacobian=False))
    x, _ = energy.spheres(wrist, q, jacobian=False)
    b, s = x.shape[:2]
    sd = energy.geo.signed_distance(x.reshape(-1, 3)).reshape(b, s)
    gaps = sd - h.radii
    tip_gap = gaps[:, h.tip_spheres]
    penetration = np.maximum(-gaps.min(axis=1), 0.0)
    clearance = np.min(x[..., 2] - h.radii, axis=1) - energy.table_z
    facing = np.einsum("bij,j->bi", wrist[:, :3, :3], h.facing_local)
    q_pre = _pregrasp(energy, wrist, q)
    names = h.finger_names
    # rms length of the two opposition residual vectors (about the angle off antipodal),
    # undone from their energy 0.5 w (|a|^2 + |b|^2); 0 when the term is switched off
    opposition = np.sqrt(terms["opposition"] / max(p.w_opposition, 1e-300))
    out = []
    for i in range(b):
        mask = batch.contact[i] > 0
        touching = mask & (np.abs(tip_gap[i]) <= p.contact_tolerance)
        need = min(p.wrap_min_contacts if modes[i] == "wrap" else p.pinch_min_contacts,
                   int(mask.sum()))
        problems = []
        if touching.sum() < need:
            problems.append(f"{int(touching.sum())} of {need} required tips in contact")
        if modes[i] == "pinch" and not touching[:2].all():
            problems.append("thumb and index are not both in contact")
        if penetration[i] > p.max_penetration:
            problems.append(f"penetration {penetration[i] * 1e3:.1f} mm")
        if opposition[i] > (p.max_opposition_wrap if modes[i] == "wrap" else p.max_opposition):
            problems.append(f"the thumb does not oppose the fingers ({opposition[i]:.2f} rad "
                            f"off antipodal)")
        if clearance[i] < -p.table_tolerance:
            problems.append(f"{-clearance[i] * 1e3:.1f} mm below the table")
        if facing[i, 2] > p.max_facing_up + 1e-6:
            problems.append("palm faces up from below")
        energies = {k: float(v[i]) for k, v in terms.items()}
        energies["total"] = float(sum(energies.values()))
        out.append(Grasp(
            hand_id=h.hand_id, mode=modes[i], part=int(parts[i]), wrist_pose=wrist[i],
            q=q[i], q_pregrasp=q_pre[i], energies=energies, tip_distances=tip_gap[i],
            contact_fingers=tuple(n for n, m in zip(names, mask, strict=True) if m),
            penetration=float(penetration[i]), table_clearance=float(clearance[i]),
            facing=facing[i], passed_filters=not problems, reason="; ".join(problems)))
    return out


# ------------------------------------------------------------------------------ public API
def _blas_threads(params: GraspParams) -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread while solving (see ``GraspParams.single_thread_blas``)."""
    if not params.single_thread_blas:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its own setting
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def initial_candidates(energy: GraspEnergy, modes: Sequence[str], rng: np.random.Generator
                       ) -> tuple[FloatArray, FloatArray, GraspBatch, IntArray]:
    """Part-aligned, placed initial hands, one per entry of ``modes``: wrist poses, joints,
    the solve's constants and the part index of each."""
    h = energy.hand
    init = _Initializer(energy, rng)
    num = len(modes)
    wrist = np.empty((num, 4, 4))
    q0 = np.empty((num, h.dof))
    contact = np.empty((num, h.num_fingers))
    approach = np.empty((num, 3))
    pivot = np.empty((num, 3))
    parts = np.empty(num, dtype=np.int64)
    for i, mode in enumerate(modes):
        contact[i] = init.contact_mask(mode)
        q0[i] = init.preshape(mode, contact[i])
        wrist[i], approach[i], pivot[i], parts[i] = init.candidate(mode, q0[i])
    wrist, q0 = init.place(wrist, q0, approach, pivot)
    return wrist, q0, GraspBatch(contact, q0.copy(), wrist.copy()), parts


def object_table_z(obj: ObjectModel) -> float:
    """The table plane of an upright object resting on it: its lowest mesh vertex (lowest
    surface sample without a mesh), in the object frame."""
    if obj.mesh is not None:
        return float(np.min(obj.mesh.vertices[:, 2]))
    return float(np.min(obj.points[:, 2]))


def _check_common(hand_id: str, obj: Any, table_z: float,
                  params: GraspParams | None) -> tuple[HandSpheres, ObjectModel, GraspParams]:
    if params is not None and not isinstance(params, GraspParams):
        raise GraspInputError(f"params must be GraspParams, got {type(params).__name__}")
    params = params or GraspParams()
    obj = _check_object(obj)
    if not isinstance(table_z, (int, float, np.floating)) or not np.isfinite(table_z):
        raise GraspInputError(f"table_z must be a finite number (metres), got {table_z!r}")
    if table_z > float(obj.points[:, 2].min()) + 0.01:
        raise GraspInputError(f"table_z = {table_z:.3f} m is above the object's bottom "
                              f"({float(obj.points[:, 2].min()):.3f} m): the object would sink "
                              "into the table")
    return hand_spheres(hand_id, params), obj, params


def _check_modes(modes: Any) -> tuple[str, ...]:
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise GraspInputError(f"modes must be a non-empty subset of {MODES}, got {modes!r}")
    return modes


def synthesize_grasps(hand_id: str, obj: ObjectModel, *, table_z: float, num: int,
                      modes: Sequence[str] = MODES, seed: int,
                      params: GraspParams | None = None,
                      return_all: bool = False) -> list[Grasp]:
    """Optimize ``num`` part-aligned candidates of ``hand_id`` on ``obj`` (object frame, the
    table plane at ``z = table_z``); modes alternate over ``modes``. Returns the grasps that
    pass the quality filters, best (lowest total energy) first; with ``return_all`` every
    candidate, passing ones first. The same seed gives the same grasps."""
    hand, obj, params = _check_common(hand_id, obj, table_z, params)
    modes = _check_modes(modes)
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise GraspInputError(f"num must be a positive integer, got {num!r}")
    energy = GraspEnergy(hand, obj, table_z, params)
    cand_modes = [modes[i % len(modes)] for i in range(num)]
    wrist, q0, batch, parts = initial_candidates(energy, cand_modes,
                                                 np.random.default_rng(seed))
    with _blas_threads(params):
        wrist, q, _, _ = optimize(energy, wrist, q0, batch)
        grasps = _finish(energy, wrist, q, batch, modes=cand_modes, parts=parts)
    order = sorted(range(num), key=lambda i: (not grasps[i].passed_filters,
                                              grasps[i].energies["total"], i))
    ranked = [grasps[i] for i in order]
    return ranked if return_all else [g for g in ranked if g.passed_filters]


def polish_grasps(hand_id: str, obj: ObjectModel, wrist_poses: ArrayLike, q: ArrayLike, *,
                  table_z: float, mode: str | Sequence[str],
                  params: GraspParams | None = None) -> list[Grasp]:
    """Refine given grasps (B wrist poses in the object frame, B joint vectors), e.g. another
    hand's grasp retargeted onto this hand: the same energies, with the prior and the wrist
    anchor at the given pose. Results keep the input order (filters are reported, not
    applied)."""
    hand, obj, params = _check_common(hand_id, obj, table_z, params)
    wrist = np.array(wrist_poses, dtype=np.float64)
    q = np.array(q, dtype=np.float64)
    if wrist.size == 0 and q.size == 0:  # nothing to polish (e.g. no reference grasp found)
        return []
    if wrist.ndim == 2:
        wrist = wrist[None]
    if q.ndim == 1:
        q = q[None]
    if wrist.ndim != 3 or wrist.shape[1:] != (4, 4):
        raise GraspInputError(f"wrist poses must have shape (B, 4, 4), got {wrist.shape}")
    if q.ndim != 2 or q.shape[1] != hand.dof:
        raise GraspInputError(f"{hand_id}: q must have {hand.dof} values per grasp (joints "
                              f"{', '.join(hand.kin.joint_names)}), got shape {q.shape}")
    if len(q) != len(wrist):
        raise GraspInputError(f"{len(wrist)} wrist poses but {len(q)} joint vectors")
    if not (np.all(np.isfinite(wrist)) and np.all(np.isfinite(q))):
        raise GraspInputError("wrist poses and joints must be finite (got NaN or inf)")
    rot = wrist[:, :3, :3]
    if np.abs(rot @ np.swapaxes(rot, 1, 2) - np.eye(3)).max() > 1e-4 or \
            np.any(np.linalg.det(rot) < 0) or np.abs(wrist[:, 3] - [0, 0, 0, 1]).max() > 1e-9:
        raise GraspInputError("wrist poses must be rigid transforms (orthonormal rotation, "
                              "last row 0 0 0 1)")
    modes = [mode] * len(q) if isinstance(mode, str) else list(mode)
    if len(modes) != len(q):
        raise GraspInputError(f"{len(q)} grasps but {len(modes)} modes")
    _check_modes(modes)
    energy = GraspEnergy(hand, obj, table_z, params)
    init = _Initializer(energy, np.random.default_rng(0))
    contact = np.array([init.contact_mask(m) for m in modes])
    q = hand.kin.clip(q)
    batch = GraspBatch(contact, q.copy(), wrist.copy())
    with _blas_threads(params):
        wrist, q, _, _ = optimize(energy, wrist, q, batch)
        return _finish(energy, wrist, q, batch, modes=modes, parts=[-1] * len(q))


def polish_grasp(hand_id: str, obj: ObjectModel, wrist_pose: ArrayLike, q: ArrayLike, *,
                 table_z: float, mode: str, params: GraspParams | None = None) -> Grasp:
    """:func:`polish_grasps` for one grasp."""
    wrist = np.asarray(wrist_pose, dtype=np.float64)
    qa = np.asarray(q, dtype=np.float64)
    if wrist.shape != (4, 4):
        raise GraspInputError(f"wrist pose must be 4x4, got {wrist.shape}")
    if qa.ndim != 1:
        raise GraspInputError(f"q must be one joint vector, got shape {qa.shape}")
    return polish_grasps(hand_id, obj, wrist[None], qa[None], table_z=table_z, mode=mode,
                         params=params)[0]
