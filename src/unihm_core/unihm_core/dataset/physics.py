"""Physical validation of grasps: does the hand lift the object off the table and hold it?

A synthetic grasp (object pose, wrist pose, joints) can look right and still be useless: fingers
inside the object, a pinch that lets the object slide out, a hand that only touches one side.
:class:`LiftChecker` answers with MuJoCo, the way a robot would find out: close the fingers a
little harder than the grasp says, lift 10 cm, hold one second, and see whether the object came
along. It also reports how deep the hand's collision geometry sits inside the object at the
kinematic grasp (before any simulation), which the dataset filters on separately.

The model, built once per (hand, object) and reused for every grasp:

* a table: the half-space z <= 0 (a plane; MuJoCo's cheapest collider);
* the object: one free body whose geoms are the YCB convex collision pieces (or one mesh, of
  which MuJoCo takes the convex hull), with the object's real mass (from
  :mod:`unihm_core.objects`) or
  ``mass`` / ``density`` given by the caller;
* the hand, imported from its URDF (MuJoCo keeps ``<mimic>`` as joint equality constraints), on
  a *carrier*: a body on one vertical slide joint driven by a stiff position actuator, standing
  for the arm. The hand's pose in the carrier (``mount`` body) is a model parameter that each
  check sets; no recompilation. Why not a mocap body with a weld: a mocap body is teleported, so
  friction at the fingers sees no velocity while lifting and the weld is soft under the object's
  weight; a single actuated slide has real velocities, one degree of freedom instead of six,
  and the hand can neither tilt nor drift sideways under load, as with a stiff arm;
* a position actuator on every actuated joint (force limit from the URDF effort, capped, see
  :class:`LiftParams`), reflected motor inertia (armature) on every finger joint so that stiff
  servos stay stable at a 2 ms step, and gravity compensation on every hand body (a real hand's
  controller holds its own weight). Hand links do not collide with each other (self-contacts
  between overlapping link meshes only add forces a real hand does not feel); they do collide
  with the object and the table.

The check (:meth:`LiftChecker.check`), with the durations of :class:`LiftParams`:

1. kinematic grasp: object at ``object_pose``, hand at ``wrist_pose`` with joints ``q``;
   penetration = the deepest hand-object contact (MuJoCo's signed distance of the convex
   pieces), also that of the hand into the table;
2. squeeze: the servo targets of the joints that close the hand (flexion, a gripper's
   fingers) = ``q`` moved ``squeeze_rad`` / ``squeeze_m`` further toward the closed hand, the
   other finger joints (abduction, thumb rotation) moved away from the open pose by up to as
   much, scaled by how far they have moved, all clipped to the limits; blocked fingers then
   press with up to their force limit; settle ``settle_s``;
3. lift: the carrier rises ``lift_height`` along a minimum-jerk profile in ``lift_s``;
4. hold ``hold_s``. Success: the object rose at least ``min_lift``, its pose relative to the
   hand stayed within ``max_slip_m`` / ``max_slip_deg`` of the pose at the start of the hold for
   the whole hold, and it never touched the table again. A failing check stops at once.

A :class:`LiftChecker` is not thread-safe (the hand pose is written into the model); run one
per process to use several cores.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from unihm_core.assets import AssetNotFoundError, asset_path
from unihm_core.dataset.objects_source import collision_pieces
from unihm_core.hands.config import HandConfigError
from unihm_core.hands.kinematics import HandKinematics, hand_kinematics
from unihm_core.hands.registry import UnknownHandError
from unihm_core.objects import OBJECTS
from unihm_core.se3 import rotation_angle

FloatArray = NDArray[np.float64]

DEFAULT_DENSITY = 500.0
"""kg/m^3 for objects without a known mass: between foam and water, typical of packaged goods
(the YCB objects above range from 150 to 1100)."""

HAND_PREFIX = "hand/"
_MESH_SUFFIXES = (".stl", ".obj", ".msh")


class PhysicsCheckError(ValueError):
    """Base of every error this module raises for bad input (a ValueError, so that callers
    validating data can catch one type)."""


class HandModelError(PhysicsCheckError):
    """The hand id is unknown or its URDF cannot be turned into a simulation model."""


class ObjectModelError(PhysicsCheckError):
    """The object (YCB id or mesh) cannot be found or is unusable."""


class GraspInputError(PhysicsCheckError):
    """A pose or joint vector given to a check has the wrong shape or invalid values."""


# ---------------------------------------------------------------------------------- objects
@dataclass(frozen=True)
class GraspObject:
    """A rigid object for the lift check: its collision meshes (object frame, metres) and mass.

    ``mass`` (kg) wins; without it the mass is ``density`` times the volume of the meshes'
    convex hulls (what MuJoCo collides with).
    """

    name: str
    meshes: tuple[Path, ...]
    mass: float | None = None
    density: float = DEFAULT_DENSITY

    def __post_init__(self) -> None:
        if not self.meshes:
            raise ObjectModelError(f"object '{self.name}' has no collision mesh")
        for mesh in self.meshes:
            if not Path(mesh).is_file():
                raise ObjectModelError(f"object '{self.name}': mesh file not found: {mesh}")
            if Path(mesh).suffix.lower() not in _MESH_SUFFIXES:
                raise ObjectModelError(f"object '{self.name}': {mesh} is not a mesh MuJoCo "
                                       f"reads ({', '.join(_MESH_SUFFIXES)})")
        if self.mass is not None and not (math.isfinite(self.mass) and self.mass > 0):
            raise ObjectModelError(f"object '{self.name}': mass must be > 0 kg, got {self.mass}")
        if not (math.isfinite(self.density) and self.density > 0):
            raise ObjectModelError(f"object '{self.name}': density must be > 0 kg/m^3, "
                                   f"got {self.density}")

    @classmethod
    def ycb(cls, ycb_id: str, mass: float | None = None) -> GraspObject:
        """A YCB object from the assets: its convex collision pieces and its real mass.

        The pieces are ``collision/*.stl``; where the folder holds several decompositions
        (``collision/v0``, ``v1``...), the first, the finest in the shared assets, is used.
        """
        try:
            folder = asset_path(f"ycb_objects/{ycb_id}/collision")
        except AssetNotFoundError as e:
            raise ObjectModelError(f"YCB object '{ycb_id}': no collision meshes. {e}") from e
        pieces = collision_pieces(folder)
        if not pieces:
            raise ObjectModelError(f"YCB object '{ycb_id}': no .stl pieces in {folder}")
        known = OBJECTS.get(ycb_id)
        return cls(ycb_id, pieces, mass if mass is not None else
                   (known.mass_kg if known is not None else None))

    @classmethod
    def from_mesh(cls, path: str | os.PathLike[str], mass: float | None = None,
                  density: float = DEFAULT_DENSITY) -> GraspObject:
        """Any mesh file; MuJoCo collides with its convex hull."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise ObjectModelError(f"object mesh file not found: {path}")
        return cls(path.stem, (path.resolve(),), mass, density)


def resolve_object(obj: GraspObject | str | os.PathLike[str],
                   mass: float | None = None) -> GraspObject:
    """A :class:`GraspObject` from itself, a YCB id (``061_foam_brick``) or a mesh path."""
    if isinstance(obj, GraspObject):
        return obj
    text = os.fspath(obj)
    if Path(text).suffix.lower() in _MESH_SUFFIXES or os.sep in text or "/" in text:
        return GraspObject.from_mesh(text, mass)
    return GraspObject.ycb(text, mass)


# ------------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class LiftParams:
    """Simulation settings and pass/fail thresholds of the lift check (SI units)."""

    timestep: float = 0.002
    """Integration step (s). 2 ms keeps checks fast; the finger armature keeps it stable."""
    control_every: int = 5
    """Steps between updates of the lift target and the checks of the object (10 ms)."""
    friction: float = 1.0
    """Sliding friction of hand and object surfaces (rubber-like finger pads)."""
    torsional_friction: float = 0.005
    """Torsional friction (m): resists an object spinning about a pinch axis, as a finger pad's
    contact patch does."""
    contact_timeconst: float = 0.01
    """Contact stiffness as MuJoCo's solref time constant (s): stiffer than the default 0.02,
    so that a squeezed object sinks only a millimetre or so into the fingers."""
    squeeze_rad: float = 0.15
    """How far past ``q`` revolute finger joints are driven (rad)."""
    squeeze_m: float = 0.005
    """How far past ``q`` prismatic finger joints are driven (m)."""
    squeeze_ramp_rad: float = 0.2
    """A revolute joint that does not close the hand (abduction, thumb rotation) gets the full
    squeeze once it is this far from its open value, proportionally less before (a spread
    joint near open is not forced). Closing joints always get the full squeeze."""
    squeeze_ramp_m: float = 0.01
    """Same for prismatic joints (m)."""
    max_joint_torque: float = 2.0
    """Cap on finger joint torque (N m): some URDF efforts are placeholders (1000 on the SVH)."""
    default_joint_torque: float = 1.0
    """Finger joint torque (N m) when the URDF gives no effort."""
    max_joint_force: float = 70.0
    """Cap on prismatic finger force (N), the Franka hand's continuous grasp force."""
    default_joint_force: float = 20.0
    """Prismatic finger force (N) when the URDF gives no effort."""
    wrist_torque: float = 30.0
    """Torque (N m) of joints that move several fingers (the Shadow hand's wrist): held stiff,
    never squeezed."""
    armature_rad: float = 0.002
    """Reflected motor inertia of revolute finger joints (kg m^2)."""
    armature_m: float = 0.2
    """Reflected motor mass of prismatic finger joints (kg)."""
    lift_height: float = 0.10
    """How far the hand rises (m)."""
    settle_s: float = 0.2
    lift_s: float = 0.5
    hold_s: float = 1.0
    arm_mass: float = 2.0
    """Mass (kg) of the carrier: the arm's effective mass at the flange; keeps the stiff lift
    actuator stable whatever the hand weighs."""
    lift_stiffness: float = 5.0e4
    """Lift actuator gain (N/m): the hand sags m g / k (0.1 mm for 0.5 kg)."""
    min_lift: float = 0.08
    """The object must have risen this much (m) when the hold starts."""
    max_slip_m: float = 0.01
    """Largest allowed drift (m) of the object relative to the hand during the hold."""
    max_slip_deg: float = 10.0
    """Largest allowed rotation (degrees) of the object relative to the hand during the hold."""
    max_penetration_mm: float | None = None
    """When set, a grasp penetrating the object deeper than this fails without simulation."""
    multiccd: bool = True
    """Several contact points per pair of convex shapes: a flat finger pad on a flat face then
    resists rotation as a real one does. Turning it off makes checks about a third faster
    but lets pinched objects pivot more."""
    seat_s: float = 0.3
    """Squeeze time (s) of :meth:`LiftChecker.seat` before the grasp is read back."""
    seat_backoff_m: float = 0.03
    """Farthest :meth:`LiftChecker.seat` moves the wrist back to free a penetrating palm (m)."""
    seat_tolerance_mm: float = 0.5
    """Palm penetration that :meth:`LiftChecker.seat` accepts without moving the wrist."""
    seat_max_shift_m: float = 0.01
    """Seating fails when the squeeze pushes the object further than this (m)..."""
    seat_max_turn_deg: float = 10.0
    """...or turns it more than this (degrees): the settled pose would then be a grasp of a
    displaced object, not of the object standing on the table."""
    stop_early: bool = True
    """Stop a check at its first failure (fast rejection); False runs every phase anyway, for
    timing or for recording the whole motion (the first failure is still the reason)."""

    def __post_init__(self) -> None:
        for name in ("timestep", "friction", "contact_timeconst", "lift_height", "lift_s",
                     "arm_mass", "lift_stiffness", "armature_rad", "armature_m"):
            if not getattr(self, name) > 0:
                raise PhysicsCheckError(f"LiftParams.{name} must be > 0, got "
                                        f"{getattr(self, name)}")
        if self.control_every < 1:
            raise PhysicsCheckError(f"LiftParams.control_every must be >= 1, got "
                                    f"{self.control_every}")
        if not 0 < self.min_lift <= self.lift_height:
            raise PhysicsCheckError(f"LiftParams.min_lift must be in (0, lift_height], got "
                                    f"{self.min_lift}")
        if self.settle_s < 0 or self.hold_s < 0:
            raise PhysicsCheckError("LiftParams.settle_s and hold_s must be >= 0")


@dataclass(frozen=True)
class LiftResult:
    """Outcome of one lift check. Lengths in metres unless named ``_mm``."""

    success: bool
    reason: str
    """Empty on success; otherwise what went wrong, in words."""
    penetration_mm: float
    """Deepest penetration of the hand into the object at the kinematic grasp."""
    table_penetration_mm: float
    """Deepest penetration of the hand into the table at the kinematic grasp."""
    lift_height: float
    """How much the object rose (at the end of the check, or when it failed)."""
    max_slip_m: float
    """Largest drift of the object relative to the hand during the hold."""
    max_slip_deg: float
    """Largest rotation of the object relative to the hand during the hold."""
    held_s: float
    """Time the object was held before it failed (``hold_s`` on success)."""
    sim_s: float
    """Simulated time."""
    wall_s: float
    """Wall-clock time of the check."""
    contacts: int = 0
    """Hand-object contacts at the start of the lift (0: the hand never touched it)."""


@dataclass(frozen=True)
class SeatedGrasp:
    """A grasp after :meth:`LiftChecker.seat`: where the hand really is once it squeezes."""

    wrist_in_object: FloatArray
    """Wrist pose in the object frame (4x4) after seating."""
    q: FloatArray
    """Actuated joints where the squeezed fingers came to rest."""
    backoff_m: float
    """How far the wrist was moved back along its palm normal to free the palm."""
    object_shift_m: float
    object_turn_deg: float
    """How far the squeeze moved / turned the free object on the table."""
    reason: str = ""
    """Empty when seating worked; otherwise why the grasp cannot be seated."""

    @property
    def success(self) -> bool:
        return not self.reason


# ----------------------------------------------------------------------------------- helpers
def _mujoco() -> ModuleType:
    """MuJoCo, imported on first use; EGL is chosen for any later rendering in the process."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco

    return mujoco


def _quat_wxyz(rotation: FloatArray) -> FloatArray:
    mujoco = _mujoco()
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rotation, dtype=np.float64).reshape(9))
    return quat


def _check_pose(pose: ArrayLike, what: str) -> FloatArray:
    arr = np.asarray(pose, dtype=np.float64)
    if arr.shape != (4, 4):
        raise GraspInputError(f"{what} must be a 4x4 matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise GraspInputError(f"{what} has non-finite values")
    rot = arr[:3, :3]
    if not (np.allclose(rot.T @ rot, np.eye(3), atol=1e-4) and np.linalg.det(rot) > 0
            and np.allclose(arr[3], [0, 0, 0, 1])):
        raise GraspInputError(f"{what} is not a rigid transform (rotation not orthonormal or "
                              "last row not [0, 0, 0, 1])")
    return arr


def min_jerk(s: float) -> float:
    """Minimum-jerk profile on [0, 1]: zero velocity and acceleration at both ends, so the
    lift starts and stops without a jolt that a real arm would not give."""
    s = min(max(s, 0.0), 1.0)
    return s * s * s * (10.0 + s * (-15.0 + 6.0 * s))


def support_score(normals: ArrayLike, friction: float = 1.0) -> float:
    """Mean over contacts (outward unit normals, world frame, z up) of how much upward force a
    squeezing contact can give per unit of its squeeze force: ``mu sqrt(1 - n_z^2) - n_z``,
    its friction along the surface upward minus the downward push of its normal force. A side
    contact gives ``mu`` (1), one on a face tilted up by 25 deg (a bottle's shoulder) 0.49,
    one on a top face -1: the squeeze pushes the object down, onto the table while it stands
    there and out of the hand once it is lifted. 0 without contacts."""
    n = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    if not len(n):
        return 0.0
    nz = np.clip(n[:, 2], -1.0, 1.0)
    return float(np.mean(friction * np.sqrt(1.0 - nz * nz) - nz))


def lift_capacity(points: ArrayLike, normals: ArrayLike, groups: ArrayLike,
                  friction: float = 0.5, edges: int = 4) -> float:
    """The largest weight (in units of one finger's pressing force) that contacts can hold
    against gravity without turning the object: a linear program over friction-pyramid
    forces at ``points`` (K, 3, relative to the centre of mass, z up) with outward
    ``normals`` (K, 3), zero net torque, net force straight up, and the normal forces of the
    contacts of one ``groups`` label (a hand link) averaging at most 1 (a link presses with
    a bounded force, spread over its contact points; MuJoCo gives a broad contact patch
    several points, which can resist a torque that one point cannot). ``friction`` is a
    conservative coefficient (the simulation's is 1): a grasp that needs all of it holds
    only while nothing disturbs it. 0 without contacts or when the contacts cannot hold
    the object at all (a pinch whose axis passes beside the centre of mass lets it swing;
    fingers on faces that face up only push it down); the grasp wrench space of grasp
    analysis, restricted to the one wrench a lift needs."""
    from scipy.optimize import linprog

    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    n = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    labels = np.asarray(groups).reshape(-1)
    if not len(p):
        return 0.0
    helper = np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    t1 = np.cross(n, helper)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(n, t1)
    angles = 2.0 * np.pi * np.arange(edges) / edges
    # (K, E, 3) pyramid edges, each with unit normal component (pressing into the object)
    e = -n[:, None] + friction * (np.cos(angles)[None, :, None] * t1[:, None]
                                  + np.sin(angles)[None, :, None] * t2[:, None])
    wrench = np.concatenate([e, np.cross(p[:, None], e)], axis=2).reshape(-1, 6).T
    nv = wrench.shape[1]
    a_eq = np.zeros((6, nv + 1))
    a_eq[:, :nv] = wrench
    a_eq[2, nv] = -1.0  # the net force is the lifted weight, straight up
    unique = np.unique(labels)
    a_ub = np.zeros((len(unique), nv + 1))
    for row, label in enumerate(unique):
        mine = np.repeat(labels == label, edges)
        a_ub[row, :nv] = mine / int((labels == label).sum())
    cost = np.zeros(nv + 1)
    cost[nv] = -1.0
    result = linprog(cost, A_ub=a_ub, b_ub=np.ones(len(unique)), A_eq=a_eq, b_eq=np.zeros(6),
                     bounds=[(0.0, None)] * (nv + 1), method="highs")
    return float(result.x[nv]) if result.status == 0 else 0.0


def _finger_joints_per_tip(kin: HandKinematics) -> dict[str, int]:
    """For each URDF joint, on how many fingertip chains it lies (not counting mimics)."""
    model = kin.model
    counts = dict.fromkeys(kin.full_joint_names, 0)
    for tip in kin.config.fingertips:
        joint = model.frames[model.getFrameId(tip.link)].parentJoint
        for j in model.supports[joint]:
            if j > 0:
                counts[model.names[j]] += 1
    return counts


def _closing_directions(hand_id: str) -> FloatArray:
    """Per actuated joint, +1 / -1 when moving it toward its upper / lower limit closes the
    hand (curls its fingertip in front of the palm, or closes a gripper), 0 for the others
    (abduction, wrist): the closed pose of :mod:`.grasp_synthesis`."""
    from unihm_core.dataset.grasp_synthesis import hand_spheres

    hand = hand_spheres(hand_id)
    return np.sign(hand.q_closed - hand.q_open)


# ------------------------------------------------------------------------------ the checker
class LiftChecker:
    """A compiled MuJoCo scene of one hand and one object, reused for many grasps."""

    def __init__(self, hand_id: str, obj: GraspObject | str | os.PathLike[str],
                 params: LiftParams | None = None, *, mass: float | None = None) -> None:
        self.params = params or LiftParams()
        try:
            self.kin = hand_kinematics(hand_id)
        except UnknownHandError as e:
            raise HandModelError(str(e)) from e
        except (HandConfigError, FileNotFoundError) as e:
            raise HandModelError(f"hand '{hand_id}': {e}") from e
        self.hand_id = hand_id
        self.object = resolve_object(obj, mass)
        self._build()

    # ---------------------------------------------------------------------------- building
    def _object_density(self) -> float:
        """Geom density giving the object its mass: MuJoCo computes the hull volume."""
        obj = self.object
        if obj.mass is None:
            return obj.density
        mujoco = _mujoco()
        spec = mujoco.MjSpec()
        body = spec.worldbody.add_body(name="object")
        body.add_freejoint()
        self._add_object_geoms(spec, body, density=1.0)
        try:
            volume = float(spec.compile().body_mass[1])
        except ValueError as e:
            raise ObjectModelError(f"object '{obj.name}': MuJoCo cannot use its mesh: {e}") from e
        if volume <= 1e-9:
            raise ObjectModelError(f"object '{obj.name}': its meshes enclose no volume")
        return obj.mass / volume

    def _add_object_geoms(self, spec: Any, body: Any, density: float) -> None:
        mujoco = _mujoco()
        p = self.params
        for k, path in enumerate(self.object.meshes):
            name = f"object_mesh_{k}"
            spec.add_mesh(name=name, file=str(Path(path).resolve()),
                          inertia=mujoco.mjtMeshInertia.mjMESH_INERTIA_CONVEX)
            # The geom frame stays the body frame, so the pieces keep their file coordinates.
            body.add_geom(name=f"object_{k}", type=mujoco.mjtGeom.mjGEOM_MESH, meshname=name,
                          density=density, contype=1, conaffinity=3, condim=4,
                          friction=[p.friction, p.torsional_friction, 0.0001],
                          solref=[p.contact_timeconst, 1.0])

    def _hand_spec(self) -> Any:
        mujoco = _mujoco()
        urdf = self.kin.config.urdf_path
        try:
            spec = mujoco.MjSpec.from_file(str(urdf))
        except ValueError as e:
            raise HandModelError(f"hand '{self.hand_id}': MuJoCo cannot read {urdf}: {e}") from e
        spec.compiler.balanceinertia = True  # some URDF inertias break the triangle inequality
        # A <mujoco><compiler meshdir> tag (XHand) is relative to the wrong folder: mesh paths
        # are made absolute from the URDF's folder instead, which also survives attaching.
        spec.meshdir = ""
        for mesh in spec.meshes:
            if mesh.file and not Path(mesh.file).is_absolute():
                path = urdf.parent / mesh.file
                if not path.is_file():
                    raise HandModelError(f"hand '{self.hand_id}': mesh file not found: {path} "
                                         f"(referenced by {urdf})")
                mesh.file = str(path.resolve())
        return spec

    def _build(self) -> None:
        mujoco = _mujoco()
        p = self.params
        density = self._object_density()
        spec = mujoco.MjSpec()
        spec.modelname = f"lift_{self.hand_id}_{self.object.name}"
        opt = spec.option
        opt.timestep = p.timestep
        opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
        opt.impratio = 10.0  # stiffer friction than normal forces: less creep in a held grasp
        if not p.multiccd:
            opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_MULTICCD
        spec.compiler.fusestatic = False  # the mount body must stay a body (its pose is set)
        world = spec.worldbody
        world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 1],
                       contype=1, conaffinity=1, friction=[p.friction, 0.005, 0.0001],
                       solref=[p.contact_timeconst, 1.0])

        obj = world.add_body(name="object", pos=[0, 0, 0.5])
        obj.add_freejoint(name="object")
        self._add_object_geoms(spec, obj, density)

        carrier = world.add_body(name="carrier", mass=p.arm_mass, gravcomp=1.0,
                                 inertia=[0.01, 0.01, 0.01], explicitinertial=True)
        carrier.add_joint(name="lift", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, 0, 1])
        # Any pose that is not the identity, so that nothing is compiled away as trivial.
        mount = carrier.add_body(name="mount", pos=[0.0, 0.0, 0.3], quat=[0.5, 0.5, 0.5, 0.5])
        spec.attach(self._hand_spec(), prefix=HAND_PREFIX, frame=mount.add_frame())

        for body in spec.bodies:
            if body.name.startswith(HAND_PREFIX):
                body.gravcomp = 1.0
        for geom in spec.geoms:
            if not geom.name.startswith("object") and geom.name != "table" and \
                    geom.parent.name.startswith(HAND_PREFIX):
                if geom.contype == 0 and geom.conaffinity == 0:
                    continue  # a visual-only geom stays visual
                # contype 2 / conaffinity 1: hand-object and hand-table, never hand-hand.
                geom.contype, geom.conaffinity, geom.condim = 2, 1, 4
                geom.friction = [p.friction, p.torsional_friction, 0.0001]
                geom.solref = [p.contact_timeconst, 1.0]
                geom.margin = 0.0
        for eq in spec.equalities:  # mimic couplings: stiff, as the real linkages are
            eq.solref = [max(0.005, 2.0 * p.timestep), 1.0]
        self._add_actuators(spec)
        lift = spec.add_actuator(name="lift", target="lift",
                                 trntype=mujoco.mjtTrn.mjTRN_JOINT)
        lift.set_to_position(kp=p.lift_stiffness, dampratio=1.0)
        lift.forcelimited = True
        lift.forcerange = [-500.0, 500.0]
        try:
            with warnings.catch_warnings():  # OBJ files without texture coordinates (Shadow)
                warnings.filterwarnings("ignore", ".*texture coordinate", UserWarning)
                self.model = spec.compile()
        except ValueError as e:
            raise HandModelError(f"hand '{self.hand_id}' with object '{self.object.name}': "
                                 f"MuJoCo cannot compile the scene: {e}") from e
        self.data = mujoco.MjData(self.model)
        self._index()

    def _add_actuators(self, spec: Any) -> None:
        """Position servos on the actuated joints; force limits and armature on all fingers."""
        mujoco = _mujoco()
        p, kin = self.params, self.kin
        chains = _finger_joints_per_tip(kin)
        joints = {j.name: j for j in spec.joints}
        self._wrist_like = np.zeros(kin.dof, dtype=bool)
        self._prismatic = np.zeros(kin.dof, dtype=bool)
        limits = np.zeros(kin.dof)
        for name in kin.full_joint_names:
            joint = joints.get(HAND_PREFIX + name)
            if joint is None:
                raise HandModelError(f"hand '{self.hand_id}': MuJoCo did not import joint "
                                     f"'{name}' of {kin.config.urdf_path.name}")
            prismatic = joint.type == mujoco.mjtJoint.mjJNT_SLIDE
            joint.armature = p.armature_m if prismatic else p.armature_rad
            joint.frictionloss = 0.0  # URDF friction values are not the servo's (XHand: 1 N m)
            joint.damping = [0.0, 0.0, 0.0]  # the servos' damping comes from their dampratio
            if name not in kin.joint_names:
                # A mimic follower moves with its leader, whose servo range bounds it, as
                # the kinematics has it; its own URDF stop would only fight the coupling
                # (the Schunk SVH left URDF: j5 = +Thumb_Opposition in [0, 0.99] but its
                # limits are [-0.99, 0], which held the thumb's opposition at 0).
                joint.limited = mujoco.mjtLimited.mjLIMITED_FALSE
        for k, name in enumerate(kin.joint_names):
            joint = joints[HAND_PREFIX + name]
            prismatic = joint.type == mujoco.mjtJoint.mjJNT_SLIDE
            effort = float(joint.actfrcrange[1]) if joint.actfrclimited else 0.0
            if chains[name] > 1:
                limit = p.wrist_torque
            elif prismatic:
                limit = min(effort, p.max_joint_force) if effort > 0 else p.default_joint_force
            else:
                limit = min(effort, p.max_joint_torque) if effort > 0 else p.default_joint_torque
            self._wrist_like[k] = chains[name] > 1
            self._prismatic[k] = prismatic
            limits[k] = limit
            joint.actfrclimited = False  # the actuator's force range is the limit
            saturation = (0.05 if chains[name] > 1 else
                          p.squeeze_m if prismatic else p.squeeze_rad)
            act = spec.add_actuator(name=f"servo/{name}", target=HAND_PREFIX + name,
                                    trntype=mujoco.mjtTrn.mjTRN_JOINT)
            # kp: a finger blocked at the grasp, driven ``squeeze`` further, presses with its
            # force limit.
            act.set_to_position(kp=limit / saturation, dampratio=1.0)
            act.forcelimited = True
            act.forcerange = [-limit, limit]
            act.ctrllimited = True
            act.ctrlrange = [kin.lower[k], kin.upper[k]]
        self.force_limits = limits
        self._closing = _closing_directions(self.hand_id)

    def _index(self) -> None:
        mujoco = _mujoco()
        m, kin = self.model, self.kin
        self._obj_body = m.body("object").id
        self._obj_qpos = int(m.jnt_qposadr[m.joint("object").id])
        self._lift_qpos = int(m.jnt_qposadr[m.joint("lift").id])
        self._mount = m.body("mount").id
        self._hand_qpos = np.array([m.jnt_qposadr[m.joint(HAND_PREFIX + n).id]
                                    for n in kin.full_joint_names])
        carrier = m.body("carrier").id
        geom_root = m.body_rootid[m.geom_bodyid]
        self._is_hand_geom = (geom_root == carrier) & (m.geom_contype != 0)
        self._is_obj_geom = m.geom_bodyid == self._obj_body
        self._is_table_geom = np.zeros(m.ngeom, dtype=bool)
        self._is_table_geom[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "table")] = True
        self._lift_ctrl = kin.dof
        self._q_index = np.array([kin.full_joint_names.index(n) for n in kin.joint_names])
        self._is_palm_geom = self._is_hand_geom & ~self._finger_bodies()[m.geom_bodyid]
        points = []
        for g in np.flatnonzero(self._is_obj_geom):
            mesh = m.geom_dataid[g]
            verts = m.mesh_vert[m.mesh_vertadr[mesh]:m.mesh_vertadr[mesh] + m.mesh_vertnum[mesh]]
            mat = np.empty(9)
            mujoco.mju_quat2Mat(mat, m.geom_quat[g])
            points.append(verts @ mat.reshape(3, 3).T + m.geom_pos[g])
        self._object_points = np.concatenate(points)  # collision vertices, object frame
        self.object_mass = float(m.body_mass[self._obj_body])
        # A finger without collision geometry would pass through the object and make every
        # grasp fail for a reason no one would guess: refuse such a hand at once.
        colliding_welds = set(m.body_weldid[m.geom_bodyid[self._is_hand_geom]].tolist())
        for tip in kin.config.fingertips:
            body = m.body(HAND_PREFIX + tip.link).id
            if int(m.body_weldid[body]) not in colliding_welds:
                raise HandModelError(
                    f"hand '{self.hand_id}': the link carrying fingertip '{tip.link}' has no "
                    f"collision geometry in {kin.config.urdf_path.name}; add <collision> "
                    "elements (boxes or meshes) to its URDF")

    def fingertip_force(self) -> float:
        """A rough force (N) one finger presses with: the median force limit of the joints
        that close the hand over half the hand's length (wrist to farthest fingertip), or a
        gripper's finger force. It ranks hands (the Inspire's 1 N m fingers press half as
        hard as the Shadow hand's 2 N m ones), it does not predict a contact force."""
        from unihm_core.dataset.grasp_synthesis import hand_spheres

        closing = (self._closing != 0) & ~self._wrist_like
        if not closing.any():
            closing = ~self._wrist_like
        force = float(np.median(self.force_limits[closing]))
        if self._prismatic[closing].any():
            return force
        return force / (0.5 * hand_spheres(self.hand_id).length)

    # ---------------------------------------------------------------------- object helpers
    def object_points(self, object_pose: ArrayLike) -> FloatArray:
        """World vertices (N, 3) of the object's collision meshes at ``object_pose``."""
        pose = _check_pose(object_pose, "object_pose")
        return self._object_points @ pose[:3, :3].T + pose[:3, 3]

    def resting_pose(self, x: float = 0.0, y: float = 0.0, yaw: float = 0.0) -> FloatArray:
        """Upright object pose (object frame rotated by ``yaw`` about z) at (x, y) with its
        lowest collision vertex on the table: the collision pieces, not the visual mesh, are
        what stands on the table in the simulation."""
        c, s = math.cos(yaw), math.sin(yaw)
        pose = np.array([[c, -s, 0.0, x], [s, c, 0.0, y], [0.0, 0.0, 1.0, 0.0],
                         [0.0, 0.0, 0.0, 1.0]])
        pose[2, 3] = -float(self.object_points(pose)[:, 2].min())
        return pose

    # ------------------------------------------------------------------------------ inputs
    def _check_q(self, q: ArrayLike, what: str) -> FloatArray:
        arr = np.asarray(q, dtype=np.float64)
        if arr.shape != (self.kin.dof,):
            raise GraspInputError(f"{what} for {self.hand_id} must have shape ({self.kin.dof},) "
                                  f"(joints {', '.join(self.kin.joint_names)}), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise GraspInputError(f"{what} has non-finite values")
        return np.clip(arr, self.kin.lower, self.kin.upper)

    def squeeze_targets(self, q: FloatArray, q_open: FloatArray) -> FloatArray:
        """Servo targets: every joint that closes the hand (flexion, the gripper's fingers)
        driven ``squeeze_rad`` / ``squeeze_m`` past ``q`` toward the closed hand, however
        little it has closed yet, so that each finger in contact presses with up to its
        force limit; the other joints (abduction, thumb rotation) pushed away from
        ``q_open`` in proportion to how far they have moved (see :class:`LiftParams`), so
        that a spread joint near open is not forced; wrist-like joints held."""
        p = self.params
        ramp = np.where(self._prismatic, p.squeeze_ramp_m, p.squeeze_ramp_rad)
        push = np.where(self._prismatic, p.squeeze_m, p.squeeze_rad)
        closing = np.clip((q - q_open) / ramp, -1.0, 1.0)
        flexion = self._closing != 0.0
        closing[flexion] = self._closing[flexion]
        closing[self._wrist_like] = 0.0
        return np.clip(q + push * closing, self.kin.lower, self.kin.upper)

    def _touching_now(self, margin: float) -> tuple[FloatArray, FloatArray, NDArray[np.int_]]:
        """Hand-object contacts within ``margin`` of the state in :attr:`data` (see
        :meth:`touching`); the state's own contacts are restored."""
        m, d = self.model, self.data
        hand = np.flatnonzero(self._is_hand_geom)
        saved = m.geom_margin[hand].copy()
        m.geom_margin[hand] = margin
        try:
            _mujoco().mj_collision(m, d)
            geoms = self._contacts()[0].copy()  # views into d.contact, refilled below
            frames = d.contact.frame[:d.ncon, :3].copy()
            points = d.contact.pos[:d.ncon].copy()
        finally:
            m.geom_margin[hand] = saved
            _mujoco().mj_collision(m, d)
        pos, normals, bodies = [], [], []
        for (g1, g2), normal, point in zip(geoms, frames, points, strict=True):
            if self._is_obj_geom[g1] and self._is_hand_geom[g2]:  # the frame points to geom2
                pos.append(point), normals.append(normal), bodies.append(m.geom_bodyid[g2])
            elif self._is_obj_geom[g2] and self._is_hand_geom[g1]:
                pos.append(point), normals.append(-normal), bodies.append(m.geom_bodyid[g1])
        return (np.array(pos).reshape(-1, 3), np.array(normals).reshape(-1, 3),
                np.array(bodies, dtype=int))

    def set_grasp(self, object_pose: ArrayLike, wrist_pose: ArrayLike, q: ArrayLike) -> None:
        """Put :attr:`data` in the kinematic grasp (simulation reset, servos not set), e.g. to
        render the scene or to run MuJoCo directly."""
        self._set_grasp(_check_pose(object_pose, "object_pose"),
                        _check_pose(wrist_pose, "wrist_pose"), self._check_q(q, "q"))

    def _set_grasp(self, object_pose: FloatArray, wrist_pose: FloatArray, q: FloatArray) -> None:
        mujoco = _mujoco()
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        root = wrist_pose @ np.linalg.inv(self.kin.root_to_wrist)
        m.body_pos[self._mount] = root[:3, 3]
        m.body_quat[self._mount] = _quat_wxyz(root[:3, :3])
        d.qpos[self._obj_qpos:self._obj_qpos + 3] = object_pose[:3, 3]
        d.qpos[self._obj_qpos + 3:self._obj_qpos + 7] = _quat_wxyz(object_pose[:3, :3])
        d.qpos[self._hand_qpos] = self.kin.mimic_matrix @ q + self.kin.mimic_offset
        d.qpos[self._lift_qpos] = 0.0
        mujoco.mj_forward(m, d)

    def _contacts(self) -> tuple[NDArray[np.int_], FloatArray]:
        d = self.data
        n = d.ncon
        if n == 0:
            return np.zeros((0, 2), dtype=int), np.zeros(0)
        return d.contact.geom[:n], d.contact.dist[:n]

    def _pair_depth(self, mask_a: NDArray[np.bool_], mask_b: NDArray[np.bool_]
                    ) -> tuple[float, int]:
        """Deepest penetration (m, >= 0) and count of contacts between two geom sets."""
        geoms, dist = self._contacts()
        if not len(dist):
            return 0.0, 0
        g1, g2 = geoms[:, 0], geoms[:, 1]
        pair = (mask_a[g1] & mask_b[g2]) | (mask_a[g2] & mask_b[g1])
        if not pair.any():
            return 0.0, 0
        return max(0.0, float(-dist[pair].min())), int(pair.sum())

    def touching(self, object_pose: ArrayLike, wrist_pose: ArrayLike, q: ArrayLike,
                 margin: float = 0.002) -> tuple[FloatArray, FloatArray, NDArray[np.int_]]:
        """Where the hand touches the object at the kinematic grasp, counting surfaces within
        ``margin`` (m) as touching: contact points (K, 3, world), outward object normals
        (K, 3) and the hand body of each (K,). Pure collision geometry: nothing moves."""
        self._set_grasp(_check_pose(object_pose, "object_pose"),
                        _check_pose(wrist_pose, "wrist_pose"), self._check_q(q, "q"))
        return self._touching_now(margin)

    def contact_normals(self, object_pose: ArrayLike, wrist_pose: ArrayLike, q: ArrayLike,
                        margin: float = 0.002) -> FloatArray:
        """Outward object normals (K, 3, world frame) where the hand touches the object at
        the kinematic grasp (:meth:`touching`), one per hand body: the mean over its
        contacts."""
        _, normals, bodies = self.touching(object_pose, wrist_pose, q, margin)
        if not len(bodies):
            return np.zeros((0, 3))
        means = np.array([normals[bodies == b].mean(axis=0) for b in np.unique(bodies)])
        return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)

    def contact_support(self, object_pose: ArrayLike, wrist_pose: ArrayLike, q: ArrayLike,
                        margin: float = 0.002) -> float:
        """How well the grasp's contacts can carry the object against gravity, from their
        normals alone (:func:`support_score` of :meth:`contact_normals`); 0 without contact."""
        return support_score(self.contact_normals(object_pose, wrist_pose, q, margin))

    def lift_capacity(self, object_pose: ArrayLike, wrist_pose: ArrayLike, q: ArrayLike,
                      friction: float = 0.5, margin: float = 0.002) -> float:
        """:func:`lift_capacity` of the contacts at the kinematic grasp (:meth:`touching`),
        about the object's centre of mass."""
        points, normals, bodies = self.touching(object_pose, wrist_pose, q, margin)
        com = self.data.xipos[self._obj_body].copy()
        return lift_capacity(points - com, normals, bodies, friction)

    # ------------------------------------------------------------------------------ checks
    def penetration_mm(self, object_pose: ArrayLike, wrist_pose: ArrayLike,
                       q: ArrayLike) -> float:
        """Deepest penetration (mm) of the hand into the object at the kinematic grasp."""
        self._set_grasp(_check_pose(object_pose, "object_pose"),
                        _check_pose(wrist_pose, "wrist_pose"), self._check_q(q, "q"))
        return 1000.0 * self._pair_depth(self._is_hand_geom, self._is_obj_geom)[0]

    def check(self, object_pose: ArrayLike, wrist_pose: ArrayLike, q: ArrayLike,
              q_open: ArrayLike | None = None) -> LiftResult:
        """Run the lift check of one grasp (world-frame 4x4 poses, joints in config order).

        ``q_open`` (default: the hand's open pose) defines the closing direction. Joints
        outside their limits are clipped to them (the servos could not go there either).
        """
        start = time.perf_counter()
        object_pose = _check_pose(object_pose, "object_pose")
        wrist_pose = _check_pose(wrist_pose, "wrist_pose")
        q = self._check_q(q, "q")
        q_open = self.kin.open_pose if q_open is None else self._check_q(q_open, "q_open")
        self._set_grasp(object_pose, wrist_pose, q)
        depth, _ = self._pair_depth(self._is_hand_geom, self._is_obj_geom)
        table_depth, _ = self._pair_depth(self._is_hand_geom, self._is_table_geom)
        run = _Run(self, start, 1000.0 * depth, 1000.0 * table_depth)
        limit = self.params.max_penetration_mm
        if limit is not None and run.penetration_mm > limit:
            return run.result(f"the hand penetrates the object by {run.penetration_mm:.1f} mm "
                              f"(limit {limit:.1f} mm)")
        self.data.ctrl[:self.kin.dof] = self.squeeze_targets(q, q_open)
        return run.simulate()

    def _finger_bodies(self) -> NDArray[np.bool_]:
        """Bodies moved by a finger joint (one that is not wrist-like): the rest is the palm,
        which only the wrist pose can move out of the object."""
        m = self.model
        wrist_like = {HAND_PREFIX + n for n, w in zip(self.kin.joint_names, self._wrist_like,
                                                       strict=True) if w}
        moved = np.zeros(m.nbody, dtype=bool)
        for b in range(1, m.nbody):
            own = any(m.joint(j).name.startswith(HAND_PREFIX) and
                      m.joint(j).name not in wrist_like
                      for j in range(m.body_jntadr[b], m.body_jntadr[b] + m.body_jntnum[b]))
            moved[b] = own or moved[m.body_parentid[b]]
        return moved

    def seat(self, object_pose: ArrayLike, wrist_pose: ArrayLike, q: ArrayLike,
             q_open: ArrayLike | None = None) -> SeatedGrasp:
        """Turn a kinematic grasp into the grasp the hand actually reaches: the wrist moves
        back along its palm normal (wrist x axis) until the palm no longer sits inside the
        object, then the fingers squeeze (as in :meth:`check`) for ``seat_s`` with the object
        free on the table, and the joints and the object's pose are read back.

        Synthetic grasps come from an optimizer whose hand model is approximate; letting the
        contact solver settle them leaves fingers *on* the surface instead of millimetres
        inside it, which is what a recorded grasp of a real hand looks like.
        """
        p, kin = self.params, self.kin
        object_pose = _check_pose(object_pose, "object_pose")
        wrist = _check_pose(wrist_pose, "wrist_pose").copy()
        q = self._check_q(q, "q")
        q_open = kin.open_pose if q_open is None else self._check_q(q_open, "q_open")
        step, back = 0.002, 0.0
        while True:
            self._set_grasp(object_pose, wrist, q)
            depth = self._pair_depth(self._is_palm_geom, self._is_obj_geom)[0]
            if 1000.0 * depth <= p.seat_tolerance_mm or back >= p.seat_backoff_m - 1e-9:
                break
            wrist[:3, 3] -= step * wrist[:3, 0]
            back += step
        self.data.ctrl[:kin.dof] = self.squeeze_targets(q, q_open)
        stable = self._step(max(1, round(p.seat_s / self.model.opt.timestep)))
        settled, q_seated = self._sim_state()
        q_seated = self._relax(settled, wrist, q_seated, q_open)
        shift = float(np.linalg.norm(settled[:3, 3] - object_pose[:3, 3]))
        turn = math.degrees(float(rotation_angle(object_pose[:3, :3].T @ settled[:3, :3])))
        reason = ""
        if not stable:
            reason = _UNSTABLE
        elif shift > p.seat_max_shift_m or turn > p.seat_max_turn_deg:
            reason = (f"closing the hand pushed the object {100 * shift:.1f} cm and turned it "
                      f"{turn:.0f} deg (limits {100 * p.seat_max_shift_m:.1f} cm, "
                      f"{p.seat_max_turn_deg:.0f} deg)")
        return SeatedGrasp(np.linalg.inv(settled) @ wrist, q_seated, back, shift, turn, reason)

    def _relax(self, object_pose: FloatArray, wrist: FloatArray, q: FloatArray,
               q_open: FloatArray) -> FloatArray:
        """Undo the squeeze's elastic sink: move the fingers back along the reverse of the
        squeeze (bisection, at most one full squeeze) until the hand sits no deeper than
        ``seat_tolerance_mm`` in the object. Recorded grasps are touching, not pressing."""
        tolerance = self.params.seat_tolerance_mm / 1000.0
        back = q - self.squeeze_targets(q, q_open)  # points away from the object

        def depth(s: float) -> float:
            self._set_grasp(object_pose, wrist,
                            np.clip(q + s * back, self.kin.lower, self.kin.upper))
            return self._pair_depth(self._is_hand_geom, self._is_obj_geom)[0]

        if depth(0.0) <= tolerance:
            return q
        lo, hi = 0.0, 1.0
        if depth(hi) > tolerance:  # the palm or a stuck link: the fingers cannot fix it
            return q
        for _ in range(8):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if depth(mid) <= tolerance else (mid, hi)
        return np.clip(q + hi * back, self.kin.lower, self.kin.upper)

    def close_fingers(self, object_pose: ArrayLike, wrist_pose: ArrayLike,
                      q_target: ArrayLike, q_start: ArrayLike | None = None,
                      duration: float = 0.5) -> tuple[FloatArray, FloatArray]:
        """Close the hand in simulation from ``q_start`` (default: open) towards ``q_target``
        with the wrist held still; returns the object pose and the joints where they stopped.

        Fingers stop where they meet the object (force-limited servos), so this turns a rough
        hand shape into a grasp that touches the object: used for reference grasps (tests,
        benchmark) and to snap generated grasps onto the surface.
        """
        mujoco = _mujoco()
        object_pose = _check_pose(object_pose, "object_pose")
        wrist_pose = _check_pose(wrist_pose, "wrist_pose")
        q_target = self._check_q(q_target, "q_target")
        q_start = self.kin.open_pose if q_start is None else self._check_q(q_start, "q_start")
        self._set_grasp(object_pose, wrist_pose, q_start)
        m, d = self.model, self.data
        chunk = self.params.control_every
        n = max(1, round(duration / m.opt.timestep / chunk))
        ramp = max(1, int(0.7 * n))  # move for 70 % of the time, then let the fingers settle
        for i in range(n):
            d.ctrl[:self.kin.dof] = q_start + min(1.0, (i + 1) / ramp) * (q_target - q_start)
            mujoco.mj_step(m, d, chunk)
        return self._sim_state()

    def _step(self, n: int) -> bool:
        """Advance n steps; False when MuJoCo met a diverging state (it resets the data then,
        so the state alone would not tell)."""
        mujoco = _mujoco()
        d = self.data
        mujoco.mj_step(self.model, d, n)
        bad = (mujoco.mjtWarning.mjWARN_BADQACC, mujoco.mjtWarning.mjWARN_BADQPOS,
               mujoco.mjtWarning.mjWARN_BADQVEL)
        return not any(d.warning[w].number for w in bad)

    def _sim_state(self) -> tuple[FloatArray, FloatArray]:
        """The simulated object pose (4x4) and the actuated joints (clipped to limits)."""
        mujoco = _mujoco()
        d = self.data
        pose = np.eye(4)
        mat = np.empty(9)
        mujoco.mju_quat2Mat(mat, d.qpos[self._obj_qpos + 3:self._obj_qpos + 7])
        pose[:3, :3] = mat.reshape(3, 3)
        pose[:3, 3] = d.qpos[self._obj_qpos:self._obj_qpos + 3]
        q = np.clip(d.qpos[self._hand_qpos][self._q_index], self.kin.lower, self.kin.upper)
        return pose, q

    def check_many(self, object_poses: ArrayLike, wrist_poses: ArrayLike, qs: ArrayLike,
                   q_opens: ArrayLike | None = None) -> list[LiftResult]:
        """:meth:`check` for N grasps: poses (N, 4, 4) (or one (4, 4) for all), qs (N, dof)."""
        qs = np.asarray(qs, dtype=np.float64)
        if qs.ndim != 2:
            raise GraspInputError(f"qs must have shape (N, {self.kin.dof}), got {qs.shape}")
        n = qs.shape[0]

        def per_grasp(poses: ArrayLike, what: str) -> FloatArray:
            arr = np.asarray(poses, dtype=np.float64)
            if arr.shape == (4, 4):
                arr = np.broadcast_to(arr, (n, 4, 4))
            if arr.shape != (n, 4, 4):
                raise GraspInputError(f"{what} must have shape ({n}, 4, 4) or (4, 4), "
                                      f"got {arr.shape}")
            return arr

        objects = per_grasp(object_poses, "object_poses")
        wrists = per_grasp(wrist_poses, "wrist_poses")
        opens: Sequence[ArrayLike | None]
        if q_opens is None:
            opens = [None] * n
        else:
            opens_arr = np.asarray(q_opens, dtype=np.float64)
            opens = np.broadcast_to(opens_arr, qs.shape) if opens_arr.ndim == 1 else opens_arr
            if len(opens) != n:
                raise GraspInputError(f"q_opens must have {n} rows, got {len(opens)}")
        return [self.check(objects[i], wrists[i], qs[i], opens[i]) for i in range(n)]


_UNSTABLE = "the simulation became unstable (joint or contact forces exploded)"


class _Run:
    """The simulated part of one check: its phases and the bookkeeping of the result."""

    def __init__(self, checker: LiftChecker, start: float, penetration_mm: float,
                 table_penetration_mm: float) -> None:
        self.c = checker
        self.start = start
        self.penetration_mm = penetration_mm
        self.table_penetration_mm = table_penetration_mm
        self.obj_z0 = float(checker.data.xpos[checker._obj_body][2])
        self.reason = ""
        self.rise = 0.0
        self.slip_m = 0.0
        self.slip_deg = 0.0
        self.held_s = 0.0
        self.holding = True
        self.contacts = 0

    def result(self, reason: str = "") -> LiftResult:
        reason = self.reason or reason
        return LiftResult(
            success=not reason, reason=reason, penetration_mm=self.penetration_mm,
            table_penetration_mm=self.table_penetration_mm, lift_height=self.rise,
            max_slip_m=self.slip_m, max_slip_deg=self.slip_deg, held_s=self.held_s,
            sim_s=float(self.c.data.time), wall_s=time.perf_counter() - self.start,
            contacts=self.contacts)

    def fail(self, reason: str) -> bool:
        """Record the first failure; True when the check should stop now."""
        if not self.reason:
            self.reason = reason
        return self.c.params.stop_early

    def step(self, n: int) -> bool:
        return self.c._step(n)

    def object_state(self) -> tuple[FloatArray, FloatArray]:
        """Object position relative to the carrier (which only translates) and orientation."""
        d, c = self.c.data, self.c
        pos = d.xpos[c._obj_body].copy()
        pos[2] -= d.qpos[c._lift_qpos]
        return pos, d.xquat[c._obj_body].copy()

    def simulate(self) -> LiftResult:
        """Squeeze and settle, lift, hold; stops at the first failure when asked to."""
        for phase in (self._settle, self._lift, self._hold):
            if phase():
                break
        return self.result()

    def _settle(self) -> bool:
        c, p = self.c, self.c.params
        for _ in range(round(p.settle_s / c.model.opt.timestep / p.control_every)):
            if not self.step(p.control_every):
                self.fail(_UNSTABLE)  # MuJoCo has reset the state: nothing left to run
                return True
        self.contacts = c._pair_depth(c._is_hand_geom, c._is_obj_geom)[1]
        return False

    def _lift(self) -> bool:
        c, p = self.c, self.c.params
        d = c.data
        n_lift = max(1, round(p.lift_s / c.model.opt.timestep / p.control_every))
        allowed_lag = p.lift_height - p.min_lift
        for i in range(n_lift):
            d.ctrl[c._lift_ctrl] = p.lift_height * min_jerk((i + 1) / n_lift)
            if not self.step(p.control_every):
                self.fail(_UNSTABLE)  # MuJoCo has reset the state: nothing left to run
                return True
            hand = float(d.qpos[c._lift_qpos])
            self.rise = float(d.xpos[c._obj_body][2]) - self.obj_z0
            if hand - self.rise > allowed_lag and self.fail(
                    f"the object did not rise with the hand (it rose {100 * self.rise:.1f} cm "
                    f"of {100 * hand:.1f} cm)"):
                return True
        return self.rise < p.min_lift and self.fail(
            f"the object rose only {100 * self.rise:.1f} cm (needs {100 * p.min_lift:.1f} cm)")

    def _hold(self) -> bool:
        c, p = self.c, self.c.params
        dt = c.model.opt.timestep
        ref_pos, ref_quat = self.object_state()
        self.holding = not self.reason  # a failed lift (with stop_early off) holds nothing
        for i in range(round(p.hold_s / dt / p.control_every)):
            if not self.step(p.control_every):
                self.fail(_UNSTABLE)  # MuJoCo has reset the state: nothing left to run
                return True
            if self.holding:
                self.held_s = (i + 1) * p.control_every * dt
            pos, quat = self.object_state()
            self.rise = float(c.data.xpos[c._obj_body][2]) - self.obj_z0
            self.slip_m = max(self.slip_m, float(np.linalg.norm(pos - ref_pos)))
            dot = min(1.0, abs(float(np.dot(quat, ref_quat))))
            self.slip_deg = max(self.slip_deg, math.degrees(2.0 * math.acos(dot)))
            reason = self._hold_violation()
            if reason:
                self.holding = False
                if self.fail(reason):
                    return True
        return False

    def _hold_violation(self) -> str:
        c, p = self.c, self.c.params
        if c._pair_depth(c._is_obj_geom, c._is_table_geom)[1]:
            return f"the object fell back onto the table after {self.held_s:.2f} s of hold"
        if self.slip_m > p.max_slip_m:
            return (f"the object slipped {100 * self.slip_m:.1f} cm relative to the hand "
                    f"(limit {100 * p.max_slip_m:.1f} cm)")
        if self.slip_deg > p.max_slip_deg:
            return (f"the object turned {self.slip_deg:.0f} deg in the hand "
                    f"(limit {p.max_slip_deg:.0f} deg)")
        return ""
