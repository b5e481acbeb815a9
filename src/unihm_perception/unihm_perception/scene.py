"""Synthetic tabletop RGB-D frames with ground truth, rendered offscreen by MuJoCo.

The perception stack needs frames whose answer is known (object ids, poses, masks) to be tested
without a camera. A scene is YCB objects standing on a box table whose top is the plane z = 0 of
the planning frame, seen by one pinhole camera. MuJoCo renders color, metric depth and
segmentation in one compiled model; nothing here needs ROS.

Rendering uses EGL (``MUJOCO_GL=egl``, set by default before MuJoCo is first imported), so it
works headless. The shared YCB OBJs carry no texture coordinates, so each object is drawn in one
flat RGBA color from :data:`YCB_OBJECTS` (shaded by the lights), not with its photo texture.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

from unihm_core.assets import asset_path
from unihm_core.objects import ASSET_OBJECT_IDS, OBJECTS
from unihm_core.se3 import make_pose, transform_points
from unihm_perception.camera import CameraIntrinsics

FloatArray = NDArray[np.float64]


class ObjectInfo(NamedTuple):
    """How an object is named in language and drawn (the mesh has no texture)."""

    name: str
    color: str
    rgba: tuple[float, float, float, float]


def _object_info(ycb_id: str) -> ObjectInfo:
    obj = OBJECTS[ycb_id]
    if obj.color is None or obj.rgba is None:  # a catalog edit, caught at import
        raise ValueError(f"catalog entry {ycb_id} has a mesh in the assets but no color/rgba")
    return ObjectInfo(obj.name, obj.color, obj.rgba)


YCB_OBJECTS: dict[str, ObjectInfo] = {ycb_id: _object_info(ycb_id) for ycb_id in ASSET_OBJECT_IDS}
"""The YCB objects in the shared assets: human name, color word and render color (a view of
the shared catalog, :mod:`unihm_core.objects`)."""

# The OpenGL camera looks along -z with y up; the REP 103 optical frame looks along +z, y down.
_OPTICAL_TO_GL = np.diag([1.0, -1.0, -1.0])


def ycb_mesh_path(ycb_id: str) -> str:
    """Absolute path of an object's watertight mesh (MuJoCo needs absolute mesh paths)."""
    if ycb_id not in YCB_OBJECTS:
        raise KeyError(f"unknown YCB object {ycb_id!r}; known: {', '.join(YCB_OBJECTS)}")
    return str(asset_path(f"ycb_objects/{ycb_id}/textured_simple.obj"))


@cache
def ycb_vertices(ycb_id: str) -> FloatArray:
    """Mesh vertices (metres, object frame), read once; used for footprints and resting heights."""
    verts = []
    with open(ycb_mesh_path(ycb_id), encoding="ascii") as f:
        for line in f:
            if line.startswith("v "):
                verts.append([float(x) for x in line.split()[1:4]])
    out = np.asarray(verts, dtype=np.float64)
    out.setflags(write=False)
    return out


def look_at(eye: ArrayLike, target: ArrayLike, up: ArrayLike = (0.0, 0.0, 1.0)) -> FloatArray:
    """planning_from_camera_optical pose of a camera at ``eye`` looking at ``target``.

    The optical frame follows REP 103 (z forward, x right, y down), with image "up" along ``up``.
    """
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    if np.linalg.norm(z) < 1e-9:
        raise ValueError("eye and target coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("viewing direction is parallel to 'up'")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_pose(np.stack([x, y, z], axis=1), eye)


@dataclass(frozen=True)
class CameraSpec:
    """A pinhole camera with square pixels and a centred principal point (MuJoCo's model).

    ``pose`` is planning_from_camera_optical; the default sits 0.55 m behind and 0.6 m above the
    table centre, looking down at it (about 0.8 m away) along +x.
    """

    width: int = 640
    height: int = 480
    fovy_deg: float = 55.0
    pose: FloatArray = field(default_factory=lambda: look_at((-0.55, 0.0, 0.6), (0.0, 0.0, 0.0)))

    def __post_init__(self) -> None:
        if not 1.0 < self.fovy_deg < 179.0:
            raise ValueError(f"fovy_deg must be in (1, 179), got {self.fovy_deg}")
        pose = np.asarray(self.pose, dtype=np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"camera pose must be 4x4, got shape {pose.shape}")
        object.__setattr__(self, "pose", pose)

    @property
    def intrinsics(self) -> CameraIntrinsics:
        """Pinhole intrinsics; pixel centres at integers, hence the half-pixel in cx, cy."""
        f = 0.5 * self.height / np.tan(np.radians(self.fovy_deg) / 2.0)
        return CameraIntrinsics(width=self.width, height=self.height, fx=f, fy=f,
                                cx=self.width / 2.0 - 0.5, cy=self.height / 2.0 - 0.5)


@dataclass(frozen=True)
class TableSpec:
    """A box table centred on the planning origin whose top face is the plane z = 0."""

    size_x: float = 0.6
    size_y: float = 0.8
    thickness: float = 0.04
    rgba: tuple[float, float, float, float] = (0.62, 0.50, 0.38, 1.0)


@dataclass(frozen=True)
class PlacedObject:
    """One YCB object and its pose (planning_from_object, YCB model frame)."""

    ycb_id: str
    pose: FloatArray

    def __post_init__(self) -> None:
        if self.ycb_id not in YCB_OBJECTS:
            raise KeyError(f"unknown YCB object {self.ycb_id!r}; known: {', '.join(YCB_OBJECTS)}")
        pose = np.asarray(self.pose, dtype=np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"object pose must be 4x4, got shape {pose.shape}")
        object.__setattr__(self, "pose", pose)


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render one frame."""

    objects: tuple[PlacedObject, ...] = ()
    table: TableSpec = field(default_factory=TableSpec)
    camera: CameraSpec = field(default_factory=CameraSpec)


@dataclass(frozen=True)
class RenderedFrame:
    """A rendered RGB-D frame and its ground truth.

    ``depth`` is float32 metres along the optical axis (z in the optical frame); pixels that see
    no geometry, or are dropped by the missing-depth option, are NaN.
    """

    color: NDArray[np.uint8]
    """(H, W, 3) RGB."""
    depth: NDArray[np.float32]
    intrinsics: CameraIntrinsics
    camera_pose: FloatArray
    """planning_from_camera_optical (REP 103 optical frame)."""
    object_ids: tuple[str, ...]
    object_poses: FloatArray
    """(N, 4, 4) planning_from_object, in the order of ``object_ids``."""
    masks: NDArray[np.bool_]
    """(N, H, W) visible pixels of each object (occlusions applied)."""
    table_mask: NDArray[np.bool_]
    """(H, W) visible table pixels."""
    labels: tuple[str, ...]
    """Human names of the objects, e.g. "mustard bottle"."""


def resting_pose(ycb_id: str, x: float, y: float, yaw: float,
                 tilt: ArrayLike = (0.0, 0.0)) -> FloatArray:
    """Pose putting the object's lowest vertex on the table at (x, y), after roll/pitch/yaw."""
    rotation = Rotation.from_euler("xyz", [*np.asarray(tilt, dtype=np.float64), yaw]).as_matrix()
    z = -np.min(ycb_vertices(ycb_id) @ rotation[2])
    return make_pose(rotation, (x, y, z))


def random_scene(object_ids: Sequence[str] | None = None, *, n_objects: int | None = None,
                 seed: int = 0, table: TableSpec | None = None, camera: CameraSpec | None = None,
                 gap: float = 0.01, edge_margin: float = 0.03, max_tilt_deg: float = 0.0,
                 max_tries: int = 2000) -> SceneSpec:
    """Objects at random non-overlapping spots on the table, each resting with a random yaw.

    Give ``object_ids`` or ``n_objects`` (drawn without replacement from :data:`YCB_OBJECTS`).
    Footprints are the discs bounding each posed mesh, kept ``gap`` apart and ``edge_margin``
    inside the table edge. ``max_tilt_deg`` > 0 adds random roll/pitch (objects still touch the
    table at their lowest point). The same arguments always give the same scene.
    """
    rng = np.random.default_rng(seed)
    table = table or TableSpec()
    if object_ids is None:
        if n_objects is None:
            raise ValueError("give object_ids or n_objects")
        if not 0 <= n_objects <= len(YCB_OBJECTS):
            raise ValueError(f"n_objects must be in [0, {len(YCB_OBJECTS)}], got {n_objects}")
        ids = [str(i) for i in rng.choice(sorted(YCB_OBJECTS), size=n_objects, replace=False)]
    else:
        ids = list(object_ids)
    placed: list[tuple[PlacedObject, float]] = []
    for ycb_id in ids:
        for _ in range(max_tries):
            tilt = np.radians(max_tilt_deg) * rng.uniform(-1.0, 1.0, size=2)
            pose = resting_pose(ycb_id, 0.0, 0.0, rng.uniform(-np.pi, np.pi), tilt)
            points = transform_points(pose, ycb_vertices(ycb_id))
            radius = float(np.max(np.linalg.norm(points[:, :2], axis=1)))
            half = np.array([table.size_x, table.size_y]) / 2.0 - radius - edge_margin
            if np.any(half <= 0):
                raise ValueError(f"{ycb_id} does not fit on a {table.size_x}x{table.size_y} table")
            xy = rng.uniform(-half, half)
            if all(np.linalg.norm(xy - other.pose[:2, 3]) > radius + r + gap
                   for other, r in placed):
                pose[:2, 3] = xy
                placed.append((PlacedObject(ycb_id, pose), radius))
                break
        else:
            raise ValueError(f"could not place {ycb_id} without overlap in {max_tries} tries; "
                             "use fewer objects or a larger table")
    return SceneSpec(objects=tuple(p for p, _ in placed), table=table,
                     camera=camera or CameraSpec())


def _mujoco() -> ModuleType:
    """Import MuJoCo with EGL chosen unless the user picked another backend."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import mujoco
    except ModuleNotFoundError:
        raise
    except Exception as exc:  # MuJoCo sets up its GL backend at import time
        raise _gl_error() from exc
    return mujoco


def _gl_error() -> RuntimeError:
    return RuntimeError(
        f"MuJoCo could not set up offscreen rendering with MUJOCO_GL="
        f"{os.environ.get('MUJOCO_GL', '')!r}. Set MUJOCO_GL=egl before anything imports "
        "mujoco and make sure libEGL and a GPU or Mesa EGL driver are installed.")


def _quat_wxyz(rotation: FloatArray) -> list[float]:
    x, y, z, w = Rotation.from_matrix(rotation).as_quat()
    return [w, x, y, z]


def _build_model(spec: SceneSpec):  # returns mujoco.MjModel (mujoco is imported lazily)
    mujoco = _mujoco()
    cam = spec.camera
    mj = mujoco.MjSpec()
    mj.modelname = "unihm_tabletop"
    mj.stat.extent = 1.0
    mj.stat.center = [0.0, 0.0, 0.0]
    mj.visual.map.znear = 0.02  # metres, as extent is 1: keeps depth precision sub-millimetre
    mj.visual.map.zfar = 10.0
    mj.visual.global_.offwidth = max(cam.width, 64)
    mj.visual.global_.offheight = max(cam.height, 64)
    mj.visual.headlight.ambient = [0.35, 0.35, 0.35]
    mj.visual.headlight.diffuse = [0.35, 0.35, 0.35]
    world = mj.worldbody
    world.add_light(pos=[0.3, -0.4, 1.5], dir=[-0.2, 0.25, -1.0], diffuse=[0.6, 0.6, 0.6],
                    castshadow=False)
    t = spec.table
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX,
                   size=[t.size_x / 2, t.size_y / 2, t.thickness / 2],
                   pos=[0.0, 0.0, -t.thickness / 2], rgba=list(t.rgba),
                   contype=0, conaffinity=0)
    meshes: set[str] = set()
    for k, obj in enumerate(spec.objects):
        if obj.ycb_id not in meshes:
            mj.add_mesh(name=obj.ycb_id, file=ycb_mesh_path(obj.ycb_id))
            meshes.add(obj.ycb_id)
        body = world.add_body(name=f"object_{k}", pos=obj.pose[:3, 3].tolist(),
                              quat=_quat_wxyz(obj.pose[:3, :3]))
        # The geom frame must equal the body frame so the mesh stays in its file frame.
        body.add_geom(name=f"object_{k}", type=mujoco.mjtGeom.mjGEOM_MESH, meshname=obj.ycb_id,
                      rgba=list(YCB_OBJECTS[obj.ycb_id].rgba), contype=0, conaffinity=0)
    world.add_camera(name="camera", pos=cam.pose[:3, 3].tolist(),
                     quat=_quat_wxyz(cam.pose[:3, :3] @ _OPTICAL_TO_GL), fovy=cam.fovy_deg)
    return mj.compile()


def render(spec: SceneSpec, *, depth_noise_sigma: float = 0.0,
           missing_depth_fraction: float = 0.0, seed: int | None = 0) -> RenderedFrame:
    """Render color, depth and per-object masks of a scene.

    ``depth_noise_sigma`` adds zero-mean Gaussian noise (metres) to valid depth pixels;
    ``missing_depth_fraction`` sets that fraction of the valid depth pixels, chosen at random,
    to NaN, like the holes of a real sensor. ``seed`` makes both reproducible. Color and masks
    are never perturbed. Raises RuntimeError naming MUJOCO_GL when no GL context can be made.
    """
    if depth_noise_sigma < 0:
        raise ValueError(f"depth_noise_sigma must be >= 0, got {depth_noise_sigma}")
    if not 0.0 <= missing_depth_fraction <= 1.0:
        raise ValueError(f"missing_depth_fraction must be in [0, 1], got {missing_depth_fraction}")
    mujoco = _mujoco()
    model = _build_model(spec)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    cam = spec.camera
    try:
        renderer = mujoco.Renderer(model, height=cam.height, width=cam.width)
    except Exception as exc:
        raise _gl_error() from exc
    try:
        renderer.update_scene(data, camera="camera")
        color = renderer.render().copy()
        renderer.enable_depth_rendering()
        renderer.update_scene(data, camera="camera")
        depth = renderer.render().astype(np.float32)
        renderer.disable_depth_rendering()
        renderer.enable_segmentation_rendering()
        renderer.update_scene(data, camera="camera")
        seg = renderer.render()
    finally:
        renderer.close()
    geom_ids = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
    table_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "table")
    object_geoms = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"object_{k}")
                    for k in range(len(spec.objects))]
    masks = np.stack([geom_ids == g for g in object_geoms]) if object_geoms else \
        np.zeros((0, cam.height, cam.width), dtype=bool)
    depth[geom_ids < 0] = np.nan
    depth = _perturb_depth(depth, depth_noise_sigma, missing_depth_fraction, seed)
    return RenderedFrame(
        color=color, depth=depth, intrinsics=cam.intrinsics, camera_pose=cam.pose.copy(),
        object_ids=tuple(o.ycb_id for o in spec.objects),
        object_poses=np.array([o.pose for o in spec.objects]).reshape(-1, 4, 4),
        masks=masks, table_mask=geom_ids == table_id,
        labels=tuple(YCB_OBJECTS[o.ycb_id].name for o in spec.objects))


def _perturb_depth(depth: NDArray[np.float32], sigma: float, missing: float,
                   seed: int | None) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    valid = np.flatnonzero(np.isfinite(depth))
    flat = depth.reshape(-1)
    if sigma > 0:
        flat[valid] += rng.normal(0.0, sigma, size=valid.size).astype(np.float32)
    if missing > 0:
        drop = rng.choice(valid, size=round(missing * valid.size), replace=False)
        flat[drop] = np.nan
    return depth
