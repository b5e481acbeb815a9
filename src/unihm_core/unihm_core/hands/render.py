"""Draw a hand at one configuration into a PNG (matplotlib, no display, no ROS).

Meant for a person checking a hand config: the meshes are placed by pinocchio's URDF geometry
and :meth:`HandKinematics.link_poses`, so the picture shows exactly the frames the rest of the
suite uses. The canonical wrist axes and the keypoints (fingertips labelled, thumb first) are
drawn over the meshes. Meshes are decimated by vertex clustering to a face budget: matplotlib
sorts every polygon on each draw, and a few thousand faces keep a render well under 5 s while
the shape stays recognisable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from mpl_toolkits.mplot3d.axes3d import Axes3D

from unihm_core.hands.kinematics import HandKinematics
from unihm_core.se3 import FloatArray, invert

MAX_FACES = 6000
FINGER_COLORS = {"thumb": "#d62728", "index": "#ff7f0e", "middle": "#2ca02c",
                 "ring": "#1f77b4", "pinky": "#9467bd"}
AXIS_COLORS = ("#e41a1c", "#4daf4a", "#377eb8")
# (elevation, azimuth) in degrees: the palm side (+x faces the camera), then the thumb side.
VIEWS = (("palm side", 15.0, 20.0), ("side", 15.0, 100.0))


class HandRenderError(RuntimeError):
    """The hand's meshes could not be loaded (the message names the file)."""


@dataclass(frozen=True)
class RenderInfo:
    """What a render drew, for the caller to report."""

    path: Path
    geometry: str  # "visual", "collision" or "none"
    faces: int
    seconds: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Part:
    frame: str  # the URDF link the geometry hangs on
    joint_from_geom: FloatArray  # geometry placement in its parent joint frame
    vertices: FloatArray  # in the geometry frame, scaled
    faces: np.ndarray


@cache
def _load_mesh(path: str) -> tuple[FloatArray, np.ndarray]:
    import trimesh

    mesh = trimesh.load(path, force="mesh", process=False)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def _primitive(geometry: object) -> tuple[FloatArray, np.ndarray] | None:
    import trimesh

    kind = type(geometry).__name__
    if kind == "Box":
        mesh = trimesh.creation.box(extents=2.0 * np.asarray(geometry.halfSide))  # type: ignore[attr-defined]
    elif kind == "Sphere":
        mesh = trimesh.creation.icosphere(subdivisions=1, radius=geometry.radius)  # type: ignore[attr-defined]
    elif kind in ("Cylinder", "Capsule"):
        mesh = trimesh.creation.cylinder(radius=geometry.radius,  # type: ignore[attr-defined]
                                         height=2.0 * geometry.halfLength,  # type: ignore[attr-defined]
                                         sections=12)
    else:
        return None
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def _parts(kin: HandKinematics, kind: str) -> list[_Part]:
    """Every visual (or collision) geometry of the URDF, loaded and scaled."""
    import pinocchio as pin

    urdf = kin.config.urdf_path
    geom_type = pin.GeometryType.VISUAL if kind == "visual" else pin.GeometryType.COLLISION
    try:
        geom_model = pin.buildGeomFromUrdf(kin.model, str(urdf), geom_type,
                                           package_dirs=[str(urdf.parent)])
    except (ValueError, RuntimeError, OSError) as e:
        raise HandRenderError(f"cannot load the {kind} geometry of {urdf}: {e}") from e
    parts = []
    for obj in geom_model.geometryObjects:
        shape = _primitive(obj.geometry)
        if shape is None:
            try:
                vertices, faces = _load_mesh(obj.meshPath)
            except (ValueError, OSError) as e:
                raise HandRenderError(f"cannot read mesh {obj.meshPath}: {e}") from e
            vertices = vertices * np.asarray(obj.meshScale)
        else:
            vertices, faces = shape
        if len(faces):
            parts.append(_Part(kin.model.frames[obj.parentFrame].name,
                               obj.placement.homogeneous.copy(), vertices, faces))
    return parts


def _cluster(vertices: FloatArray, faces: np.ndarray, voxel: float) -> tuple[FloatArray,
                                                                           np.ndarray]:
    """Vertex-clustering decimation: merge vertices per voxel, drop collapsed faces."""
    cells = np.floor(vertices / voxel).astype(np.int64)
    cells -= cells.min(axis=0)
    span = cells.max(axis=0) + 1
    keys = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]  # one int: fast unique
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    merged = np.zeros((len(counts), 3))
    np.add.at(merged, inverse, vertices)
    merged /= counts[:, None]
    f = inverse[faces]
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return merged, f[keep]


def posed_triangles(kin: HandKinematics, q: ArrayLike | None = None, kind: str = "visual",
                    max_faces: int = MAX_FACES) -> list[tuple[str, FloatArray]]:
    """``(link, triangles (F, 3, 3))`` in the canonical wrist frame, at most ``max_faces``."""
    q = kin.open_pose if q is None else kin.check_q(q)
    links = kin.link_poses(q)
    posed = []
    for part in _parts(kin, kind):
        frame = kin.model.frames[kin.model.getFrameId(part.frame)]
        wrist_from_geom = links[part.frame] @ invert(frame.placement.homogeneous) @ \
            part.joint_from_geom
        posed.append((part.frame, part.vertices @ wrist_from_geom[:3, :3].T +
                      wrist_from_geom[:3, 3], part.faces))
    if not posed:
        return []
    everything = np.concatenate([v for _, v, _ in posed])
    voxel = float(np.linalg.norm(np.ptp(everything, axis=0))) / 600.0
    total = sum(len(f) for _, _, f in posed)
    result = [(link, v, f) for link, v, f in posed]
    while total > max_faces and voxel < 1.0:
        # Faces left scale roughly with 1 / voxel**2: aim straight at the budget.
        voxel *= max(1.1, 1.05 * np.sqrt(total / max_faces))
        result = [(link, *_cluster(v, f, voxel)) for link, v, f in posed]
        total = sum(len(f) for _, _, f in result)
    return [(link, v[f]) for link, v, f in result if len(f)]


def _shade(triangles: FloatArray, base: ArrayLike, light: FloatArray) -> FloatArray:
    """Per-face RGBA: two-sided Lambert shading (meshes are not always consistently wound)."""
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    lambert = np.abs(normals @ light)
    rgba = np.tile(np.asarray(base, dtype=np.float64), (len(triangles), 1))
    rgba[:, :3] *= (0.35 + 0.65 * lambert)[:, None]
    return rgba


def _view_light(elev: float, azim: float) -> FloatArray:
    e, a = np.radians(elev), np.radians(azim)
    return np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])


def _geometry(kin: HandKinematics, q: FloatArray, max_faces: int
              ) -> tuple[str, list[tuple[str, FloatArray]], list[str]]:
    """Visual geometry, else collision geometry, else none; with notes on what fell back."""
    notes: list[str] = []
    for kind in ("visual", "collision"):
        try:
            parts = posed_triangles(kin, q, kind, max_faces)
        except HandRenderError as e:
            notes.append(str(e))
            continue
        if parts:
            if kind != "visual":
                notes.append("drawn with the collision geometry")
            return kind, parts, notes
        notes.append(f"the URDF has no {kind} geometry")
    return "none", [], notes


def _draw_view(ax: Axes3D, kin: HandKinematics, q: FloatArray, tris: FloatArray,
               view: tuple[str, float, float]) -> None:
    """One 3D view: shaded meshes, wrist axes, keypoint chains and fingertip frames."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    label, elev, azim = view
    cfg = kin.config
    keypoints = kin.keypoints_local(q)
    links = kin.link_poses(q)
    cloud = np.concatenate([tris.reshape(-1, 3), keypoints, np.zeros((1, 3))])
    lo, hi = cloud.min(axis=0), cloud.max(axis=0)
    center, half = (lo + hi) / 2.0, max(float(np.max(hi - lo)) / 2.0, 0.02) * 1.05
    axis_len = 0.33 * half

    ax.set_title(f"{label} (canonical wrist frame, metres)", fontsize=9)
    if len(tris):
        colors = _shade(tris, (0.72, 0.74, 0.78, 0.75), _view_light(elev, azim))
        ax.add_collection3d(Poly3DCollection(tris, facecolors=colors, edgecolors="none",
                                             zorder=1))
    for k, (name, color) in enumerate(zip("xyz", AXIS_COLORS, strict=True)):
        tip = np.zeros(3)
        tip[k] = 2.0 * axis_len
        ax.plot(*zip(np.zeros(3), tip, strict=True), color=color, lw=2.5, zorder=5)
        ax.text(*(tip * 1.08), name, color=color, fontsize=10, weight="bold", zorder=6)
    palm = keypoints[0]
    ax.scatter(*palm, color="black", s=25, zorder=6)
    first = 1
    for rank, (finger, points) in enumerate(cfg.fingers.items(), start=1):
        chain = keypoints[first:first + len(points)]
        first += len(points)
        color = FINGER_COLORS[finger]
        line = np.vstack([palm, chain])
        ax.plot(line[:, 0], line[:, 1], line[:, 2], color=color, lw=1.2, zorder=5)
        ax.scatter(chain[:-1, 0], chain[:-1, 1], chain[:-1, 2], color=color, s=10, zorder=6)
        tip = chain[-1]
        ax.scatter(*tip, color=color, s=60, edgecolors="black", zorder=7)
        rot = links[points[-1].link][:3, :3]
        for k, axis_color in enumerate(AXIS_COLORS):
            end = tip + rot[:, k] * axis_len * 0.5
            ax.plot(*zip(tip, end, strict=True), color=axis_color, lw=1.0, zorder=6)
        ax.text(*tip, f" {rank}", color=color, fontsize=10, weight="bold", zorder=8)
    ax.set_xlim(center[0] - half, center[0] + half)
    ax.set_ylim(center[1] - half, center[1] + half)
    ax.set_zlim(center[2] - half, center[2] + half)
    ax.set_box_aspect((1.0, 1.0, 1.0))
    ax.set_xlabel("x (palm normal)", fontsize=8)
    ax.set_ylabel("y", fontsize=8)
    ax.set_zlabel("z (to middle tip)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.view_init(elev=elev, azim=azim)


def render_hand(kin: HandKinematics, path: str | Path, q: ArrayLike | None = None, *,
                title: str | None = None, max_faces: int = MAX_FACES,
                size_px: tuple[int, int] = (1400, 760)) -> RenderInfo:
    """Write a PNG of ``kin``'s hand at ``q`` (default: its open pose), two views side by side.

    Falls back to the collision geometry when the visual one cannot be loaded, and to keypoints
    and axes only when neither can; ``RenderInfo.notes`` says so.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    start = time.perf_counter()
    q = kin.open_pose if q is None else kin.check_q(q)
    cfg = kin.config
    geometry, parts, notes = _geometry(kin, q, max_faces)
    tris = np.concatenate([t for _, t in parts]) if parts else np.zeros((0, 3, 3))

    dpi = 100
    fig = plt.figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    fig.suptitle(title or f"{cfg.id}: {cfg.name} ({cfg.dof} DoF)", fontsize=13)
    for col, view in enumerate(VIEWS):
        ax = fig.add_subplot(1, len(VIEWS), col + 1, projection="3d", computed_zorder=False)
        _draw_view(ax, kin, q, tris, view)
    handles = [Line2D([], [], marker="o", ls="", color=FINGER_COLORS[finger], mec="black",
                      label=f"{rank} {finger}: {points[-1].link}")
               for rank, (finger, points) in enumerate(cfg.fingers.items(), start=1)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9,
               frameon=False, bbox_to_anchor=(0.5, 0.04))
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.1, top=0.9, wspace=0.0)
    fig.text(0.01, 0.01, f"side: {cfg.side}; {geometry} geometry, {len(tris)} faces; "
             "fingertips numbered thumb first; axes x red, y green, z blue",
             fontsize=8, color="#444444")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return RenderInfo(path, geometry, len(tris), time.perf_counter() - start, tuple(notes))
