"""Table-top scene segmentation: the supporting plane, then one cluster per object above it.

Everything runs in the planning frame, whose up direction is assumed to be +z (``up`` can be
changed): the table is the largest plane whose normal lies within ``max_tilt_deg`` of up. Objects
are the points more than ``min_height`` above that plane, grouped by DBSCAN on a voxel grid so
that the cost depends on the scene's extent rather than on the camera's resolution.

Backends other than DBSCAN (a learned segmenter, for instance) plug in through the
:class:`Segmenter` protocol: points and colors in, :class:`Cluster` list out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class TableNotFoundError(ValueError):
    """No roughly horizontal plane with enough support was found."""


@dataclass(frozen=True)
class SegmentationParams:
    """Tunables of :func:`find_table` and :func:`cluster_objects` (metres, degrees)."""

    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    """Planning-frame up direction; the table normal is oriented along it."""
    plane_voxel: float = 0.01
    """The plane is fitted on a cloud thinned to this grid, then applied to every point."""
    plane_distance: float = 0.008
    """RANSAC inlier distance; covers 2-3 mm depth noise and slight table warp."""
    max_tilt_deg: float = 20.0
    """A plane whose normal is further than this from ``up`` is a wall, not a table."""
    min_table_points: int = 500
    """Minimum full-resolution inliers for a plane to count as a table."""
    max_planes: int = 4
    """Planes tried (each time removing the previous, non-horizontal one) before giving up."""
    ransac_iterations: int = 200
    seed: int = 0
    min_height: float = 0.008
    """Points closer than this to the table belong to it, not to an object."""
    max_height: float = 0.6
    """Points higher than this above the table are ignored (arms, shelves, ceilings)."""
    voxel: float = 0.005
    """Grid of the clustering; each voxel keeps the mean of its points."""
    eps: float = 0.015
    """DBSCAN neighbourhood: objects closer than this merge."""
    min_points: int = 8
    """DBSCAN core-point density, counted in voxels."""
    min_cluster_voxels: int = 25
    """Smaller clusters are discarded as noise (a 5 mm grid: about 6 cm^2 of visible surface)."""


@dataclass(frozen=True)
class TablePlane:
    """The plane ``normal . p + offset = 0``, with ``normal`` a unit vector along up."""

    normal: FloatArray
    offset: float
    inliers: IntArray
    """Indices of the input points within ``plane_distance`` of the plane."""

    def height(self, points: ArrayLike) -> FloatArray:
        """Signed distance of points (N, 3) above the plane (negative below)."""
        return np.asarray(points, dtype=np.float64) @ self.normal + self.offset

    def project(self, points: ArrayLike) -> FloatArray:
        """Points (N, 3) dropped onto the plane."""
        pts = np.asarray(points, dtype=np.float64)
        return pts - self.height(pts)[:, None] * self.normal


@dataclass(frozen=True)
class Cluster:
    """One object candidate: its points and an upright bounding box resting on the table."""

    indices: IntArray
    """Rows of the input cloud that belong to the cluster."""
    points: FloatArray
    colors: FloatArray | None
    centroid: FloatArray
    extent: FloatArray
    """Box size along ``axes`` (metres): two horizontal axes, then the table normal."""
    axes: FloatArray
    """(3, 3) box axes as columns: principal horizontal axis, its perpendicular, up."""
    center: FloatArray
    """Box centre (differs from the centroid: a single view sees one side of an object)."""
    mean_color: FloatArray | None = field(default=None)

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@runtime_checkable
class Segmenter(Protocol):
    """Anything that splits a planning-frame cloud into object clusters."""

    def segment(self, points: ArrayLike, colors: ArrayLike | None = None) -> list[Cluster]:
        """Clusters of the objects in ``points`` (N, 3); ``colors`` (N, 3) in [0, 1] or None."""
        ...


def _check_cloud(points: ArrayLike, colors: ArrayLike | None) -> tuple[FloatArray,
                                                                       FloatArray | None]:
    """Reject what would make open3d fail obscurely: wrong shapes, no points, NaN/inf."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
    if pts.shape[0] == 0:
        raise ValueError("the point cloud is empty")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points contain NaN or inf: filter invalid depth first "
                         "(depth_to_points drops it)")
    cols = None
    if colors is not None:
        cols = np.asarray(colors, dtype=np.float64)
        if cols.shape != pts.shape:
            raise ValueError(f"colors {cols.shape} must match points {pts.shape}")
    return pts, cols


def _unit_up(up: ArrayLike) -> FloatArray:
    vec = np.asarray(up, dtype=np.float64)
    norm = float(np.linalg.norm(vec))
    if vec.shape != (3,) or not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"up must be a finite non-zero 3-vector, got {up}")
    return vec / norm


def voxel_means(points: FloatArray, voxel: float) -> tuple[FloatArray, IntArray]:
    """Mean point per occupied voxel and, for every input point, the index of its voxel.

    Done in numpy rather than with open3d's voxel filter because the point-to-voxel map is
    what lets clusters found on the coarse grid be handed back as full-resolution indices.
    """
    if not voxel > 0:
        raise ValueError(f"voxel size must be positive, got {voxel}")
    keys = np.floor(points / voxel).astype(np.int64)
    # per-column reductions: an axis-0 reduction of an (N, 3) array is several times slower
    keys -= np.array([keys[:, axis].min() for axis in range(3)])
    span = [int(keys[:, axis].max()) + 1 for axis in range(3)]
    flat = (keys[:, 0] * span[1] + keys[:, 1]) * span[2] + keys[:, 2]
    cells = span[0] * span[1] * span[2]
    if cells <= max(4 * flat.shape[0], 1 << 20):
        # a table over the grid's cells instead of sorting the keys (same order: ascending)
        counts = np.bincount(flat, minlength=cells)
        occupied = np.flatnonzero(counts)
        index = np.empty(cells, dtype=np.int64)
        index[occupied] = np.arange(occupied.shape[0])
        inverse, counts = index[flat], counts[occupied]
    else:
        _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
    sums = np.stack([np.bincount(inverse, weights=points[:, axis], minlength=counts.shape[0])
                     for axis in range(3)], axis=1)
    return sums / counts[:, None], inverse.astype(np.int64)


def find_table(points: ArrayLike, params: SegmentationParams | None = None, *,
               required: bool = False) -> TablePlane | None:
    """The largest plane within ``max_tilt_deg`` of horizontal, or None when there is none.

    With ``required`` a missing table raises :class:`TableNotFoundError` instead. Planes that
    are too tilted (walls) are removed and RANSAC is run again, up to ``max_planes`` times.
    """
    import open3d as o3d

    p = params or SegmentationParams()
    pts, _ = _check_cloud(points, None)
    up = _unit_up(p.up)
    coarse, _ = voxel_means(pts, p.plane_voxel)
    cos_tilt = np.cos(np.deg2rad(p.max_tilt_deg))
    o3d.utility.random.seed(p.seed)
    remaining = coarse
    reason = "too few points"
    for _ in range(p.max_planes):
        if remaining.shape[0] < 3:
            break
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(remaining))
        model, inliers = cloud.segment_plane(p.plane_distance, 3, p.ransac_iterations)
        normal = np.asarray(model[:3], dtype=np.float64)
        scale = float(np.linalg.norm(normal))
        if scale < 1e-12 or len(inliers) < 3:
            break
        normal, offset = normal / scale, float(model[3]) / scale
        if normal @ up < 0:
            normal, offset = -normal, -offset
        if normal @ up >= cos_tilt:
            full = np.flatnonzero(np.abs(pts @ normal + offset) <= p.plane_distance)
            if full.shape[0] >= p.min_table_points:
                return TablePlane(normal=normal, offset=offset, inliers=full.astype(np.int64))
            reason = (f"the best horizontal plane has {full.shape[0]} points, fewer than "
                      f"min_table_points={p.min_table_points}")
            break
        reason = "every plane found is tilted more than max_tilt_deg from up"
        keep = np.ones(remaining.shape[0], dtype=bool)
        keep[np.asarray(inliers)] = False
        remaining = remaining[keep]
    if required:
        raise TableNotFoundError(f"no table plane: {reason} (up={tuple(up)}, "
                                 f"{pts.shape[0]} points)")
    return None


def _upright_box(points: FloatArray, up: FloatArray) -> tuple[FloatArray, FloatArray,
                                                              FloatArray]:
    """Extent, axes and centre of a box with one axis along ``up`` and the others along the
    principal horizontal directions: objects rest on the table, so a free 3-D box would only
    tilt with the view's missing side."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(up, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    planar = points @ np.stack([e1, e2], axis=1)
    centred = planar - planar.mean(axis=0)
    if points.shape[0] >= 2:
        _, vecs = np.linalg.eigh(centred.T @ centred)
        major = vecs[:, 1]
    else:
        major = np.array([1.0, 0.0])
    a1 = major[0] * e1 + major[1] * e2
    a2 = np.cross(up, a1)
    axes = np.stack([a1, a2, up], axis=1)
    local = points @ axes
    lo, hi = local.min(axis=0), local.max(axis=0)
    return hi - lo, axes, axes @ ((lo + hi) / 2.0)


def cluster_objects(points: ArrayLike, colors: ArrayLike | None, table: TablePlane,
                    params: SegmentationParams | None = None) -> list[Cluster]:
    """Clusters of the points between ``min_height`` and ``max_height`` above ``table``,
    largest first; each carries its full-resolution indices into ``points``."""
    import open3d as o3d

    p = params or SegmentationParams()
    pts, cols = _check_cloud(points, colors)
    height = table.height(pts)
    above = np.flatnonzero((height > p.min_height) & (height < p.max_height))
    if above.shape[0] == 0:
        return []
    centres, voxel_of = voxel_means(pts[above], p.voxel)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(centres))
    labels = np.asarray(cloud.cluster_dbscan(eps=p.eps, min_points=p.min_points,
                                             print_progress=False), dtype=np.int64)
    point_labels = labels[voxel_of]
    clusters = []
    for label in range(int(labels.max()) + 1 if labels.size else 0):
        if np.count_nonzero(labels == label) < p.min_cluster_voxels:
            continue
        idx = above[point_labels == label]
        members = pts[idx]
        member_colors = None if cols is None else cols[idx]
        extent, axes, center = _upright_box(members, table.normal)
        clusters.append(Cluster(
            indices=idx, points=members, colors=member_colors, centroid=members.mean(axis=0),
            extent=extent, axes=axes, center=center,
            mean_color=None if member_colors is None else member_colors.mean(axis=0)))
    clusters.sort(key=len, reverse=True)
    return clusters


class DbscanSegmenter:
    """The default :class:`Segmenter`: RANSAC table, then DBSCAN above it.

    A frame without a table raises :class:`TableNotFoundError`; the last table found is kept in
    ``table`` for callers that need it (registration uses it to rest objects on the plane).
    """

    def __init__(self, params: SegmentationParams | None = None) -> None:
        self.params = params or SegmentationParams()
        self.table: TablePlane | None = None

    def segment(self, points: ArrayLike, colors: ArrayLike | None = None) -> list[Cluster]:
        """Clusters of the objects standing on the table of ``points`` (planning frame)."""
        pts, cols = _check_cloud(points, colors)
        table = find_table(pts, self.params, required=True)
        assert table is not None
        self.table = table
        return cluster_objects(pts, cols, table, self.params)
