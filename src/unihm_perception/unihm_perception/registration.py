"""Which known object is a cluster, and where is it: model-to-cloud registration.

Each library model is tried against the observed (single-view, partial) cluster:

1. initial poses: "resting" guesses that put the model upright on the table (its object-frame
   +z along the table normal) at ``yaw_steps`` yaws, centred on the cluster and with its
   lowest point on the plane, screened by one nearest-neighbour query; objects in a table-top
   scene mostly stand in their canonical pose. Only when none fits is a global registration
   added (FPFH features + RANSAC, seeded so that a frame gives the same answer twice): it
   covers objects lying on a side, and is ambiguous on symmetric, featureless shapes;
2. every guess gets a short point-to-plane ICP (observed points onto the model surface, whose
   normals are exact); the best is also tried turned half a turn about each of the model's
   principal axes; the best distinct results get a longer, tighter ICP. Hypotheses are ranked
   by fitness times the share of the model's camera-facing surface the camera did not see
   through (with a :class:`DepthView`), less the point-to-plane residual.

Matches are ranked by ``score = fitness * sqrt(coverage)``: ``fitness`` (the share of observed
points lying on the model) alone prefers larger models, on whose faces a small object's partial
view also fits; ``coverage`` (the share of the model's surface, or of its side facing
``viewpoint`` when given, lying on observed points) penalises them.

Models and their features are computed once per library and voxel size; the observed cluster is
thinned to the same voxel grid.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from unihm_core.se3 import invert, make_pose, transform_points

if TYPE_CHECKING:
    from unihm_core.object_model import ObjectModel
    from unihm_perception.camera import CameraIntrinsics
    from unihm_perception.segmentation import TablePlane

FloatArray = NDArray[np.float64]

YCB_LABELS: dict[str, str] = {
    "004_sugar_box": "sugar box",
    "005_tomato_soup_can": "tomato soup can",
    "006_mustard_bottle": "mustard bottle",
    "025_mug": "mug",
    "051_large_clamp": "large clamp",
    "061_foam_brick": "foam brick",
}
"""The shared YCB objects and the labels language queries refer to them by."""


@dataclass(frozen=True)
class RegistrationParams:
    """Tunables of :func:`identify` (metres)."""

    voxel: float = 0.005
    """Grid of the final ICP and of the scores."""
    coarse_voxel: float = 0.01
    """Grid of the features and of the guesses' short ICP (a quarter of the points)."""
    normal_radius: float = 0.02
    feature_radius: float = 0.05
    ransac_distance: float = 0.01
    ransac_iterations: int = 1000
    ransac_confidence: float = 0.999
    seed: int = 0
    use_features: bool = True
    """FPFH + RANSAC guesses; without them only upright resting poses are tried."""
    feature_trigger: float = 0.9
    """Features are tried only when no resting guess reaches this fitness (times one minus
    the share seen through): an upright object needs none."""
    yaw_steps: int = 12
    """Resting guesses per model (ICP converges from about half a step away)."""
    keep_guesses: int = 6
    """Resting guesses kept for ICP after a cheap nearest-neighbour screening."""
    screen_distance: float = 0.01
    """Screening counts observed points this close to a guess's model (the coarse grid's
    samples lie up to about 7 mm from the surface); a looser bound lets every yaw pass."""
    coarse_distance: float = 0.025
    coarse_iterations: int = 12
    flips: bool = True
    """Also try the best coarse pose turned by half a turn about each principal axis of the
    model: near-symmetric shapes (a box, a clamp lying flat, a mug with its handle seen from
    the side) often converge the wrong way round."""
    refine: int = 2
    """Best distinct coarse results given the long, tight ICP."""
    fine_distance: float = 0.008
    fine_iterations: int = 30
    inlier_distance: float = 0.006
    """Fitness, RMSE and coverage threshold (3 sigma of 2 mm depth noise)."""
    residual_weight: float = 0.5
    """Weight of the point-to-plane RMSE (as a share of ``inlier_distance``) against the
    fitness when hypotheses are compared."""
    view_tolerance: float = 0.015
    """Model surface this far in front of the measured depth counts as seen through."""
    min_points: int = 10
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    """Rest direction when no table is given."""


@dataclass(frozen=True)
class Match:
    """One library model registered to a cluster."""

    object_id: str
    label: str
    pose: FloatArray
    """4x4 ``T_planning_object``: the model's frame in the planning frame."""
    fitness: float
    """Share of observed (thinned) points within ``inlier_distance`` of the posed model."""
    inlier_rmse: float
    coverage: float
    """Share of the (visible side of the) model within ``inlier_distance`` of observed points."""
    score: float
    seen_through: float = 0.0
    """Share of the posed model's camera-facing surface lying in front of the measured
    depth (0 without a :class:`DepthView`)."""


@dataclass
class _Prepared:
    cloud: Any  # open3d PointCloud with normals on the fine grid (ICP target)
    coarse: Any  # the same on the coarse grid
    features: Any  # open3d Feature (FPFH) of ``coarse``
    points: FloatArray
    normals: FloatArray
    centre: FloatArray
    coarse_tree: cKDTree
    tree: cKDTree
    """Of ``points`` (the fine grid)."""
    flips: list[FloatArray]
    """Half turns about the principal axes through ``centre`` (object frame, 4x4)."""
    diameter: float
    """Diagonal of the bounding box: no two surface points are farther apart."""


@dataclass
class LibraryEntry:
    """A known object: its id, a human label and its surface model (object frame)."""

    object_id: str
    label: str
    model: ObjectModel
    _prepared: dict[tuple[float, ...], _Prepared] = field(default_factory=dict, repr=False)


class ObjectLibrary:
    """Known objects keyed by id; models are thinned and described once, then cached."""

    def __init__(self) -> None:
        self._entries: dict[str, LibraryEntry] = {}

    @classmethod
    def default(cls, n_points: int = 4096) -> ObjectLibrary:
        """The six shared YCB objects (meshes in metres, YCB-Video frames)."""
        library = cls()
        for object_id, label in YCB_LABELS.items():
            library.add_asset(object_id, label, n_points)
        return library

    def add_model(self, object_id: str, label: str, model: ObjectModel) -> None:
        """Add (or replace) an object given as a surface model with outward normals."""
        if not object_id:
            raise ValueError("object id must be a non-empty string")
        self._entries[object_id] = LibraryEntry(object_id, label or object_id, model)

    def add_asset(self, object_id: str, label: str | None = None, n_points: int = 4096) -> None:
        """Add a YCB object of the shared assets by its folder name."""
        from unihm_core.object_model import ObjectModel

        self.add_model(object_id, label or YCB_LABELS.get(object_id, object_id),
                       ObjectModel.from_asset(object_id, n_points))

    def add_file(self, object_id: str, label: str, path: str | os.PathLike[str],
                 n_points: int = 4096) -> None:
        """Add any mesh or cloud file ObjectModel reads (.obj/.stl/.ply/.npy...), in metres."""
        from unihm_core.object_model import ObjectModel

        self.add_model(object_id, label, ObjectModel.from_file(path, n_points))

    def __getitem__(self, object_id: str) -> LibraryEntry:
        try:
            return self._entries[object_id]
        except KeyError:
            raise KeyError(f"object '{object_id}' is not in the library "
                           f"(known: {', '.join(self._entries) or 'none'})") from None

    def __iter__(self) -> Iterator[LibraryEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._entries

    @property
    def ids(self) -> list[str]:
        return list(self._entries)

    def prepared(self, object_id: str, params: RegistrationParams) -> _Prepared:
        """The model thinned to ``params.voxel`` with its FPFH features (cached)."""
        import open3d as o3d

        entry = self[object_id]
        key = (params.voxel, params.coarse_voxel, params.feature_radius)
        cached = entry._prepared.get(key)
        if cached is not None:
            return cached
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.array(entry.model.points)))
        cloud.normals = o3d.utility.Vector3dVector(np.array(entry.model.normals))
        coarse = cloud.voxel_down_sample(params.coarse_voxel)
        coarse.normalize_normals()
        cloud = cloud.voxel_down_sample(params.voxel)
        cloud.normalize_normals()
        features = o3d.pipelines.registration.compute_fpfh_feature(
            coarse, o3d.geometry.KDTreeSearchParamHybrid(radius=params.feature_radius, max_nn=100))
        points = np.asarray(cloud.points).copy()
        lo, hi = points.min(axis=0), points.max(axis=0)
        centre = (lo + hi) / 2.0
        _, axes = np.linalg.eigh(np.cov((points - points.mean(axis=0)).T))
        flips = [make_pose(2.0 * np.outer(a, a) - np.eye(3),
                           centre - (2.0 * np.outer(a, a) - np.eye(3)) @ centre) for a in axes.T]
        prepared = _Prepared(cloud, coarse, features, points, np.asarray(cloud.normals).copy(),
                             centre, cKDTree(np.asarray(coarse.points)), cKDTree(points), flips,
                             float(np.linalg.norm(hi - lo)))
        entry._prepared[key] = prepared
        return prepared


@dataclass(frozen=True)
class DepthView:
    """The depth image a cluster was cut from: poses are checked against what the camera saw.

    A posed model surface that faces the camera but lies in front of the depth the camera
    measured at its pixel would have hidden that depth: the camera saw through it, so the pose
    is wrong there. Surface behind the measured depth is only occluded (by another object, or
    by the object itself), which says nothing.
    """

    depth: FloatArray
    """(H, W) metres along the optical axis; NaN (or 0) where there is no reading."""
    intrinsics: CameraIntrinsics
    camera_pose: FloatArray
    """4x4 ``T_planning_camera_optical``."""

    @property
    def viewpoint(self) -> FloatArray:
        return np.asarray(self.camera_pose, dtype=np.float64)[:3, 3]

    def seen_through(self, points: FloatArray, normals: FloatArray, tolerance: float,
                     facing: float = 0.3) -> float:
        """Share of the planning-frame ``points`` whose outward ``normals`` face the camera
        (cosine above ``facing``) that lie more than ``tolerance`` in front of the measured
        depth at their pixel; points outside the image or on pixels without a reading are
        not counted."""
        pose = np.asarray(self.camera_pose, dtype=np.float64)
        to_camera = pose[:3, 3] - points
        cos = np.einsum("ij,ij->i", normals, to_camera) / np.maximum(
            np.linalg.norm(to_camera, axis=1), 1e-9)
        cam = (points[cos > facing] - pose[:3, 3]) @ pose[:3, :3]
        cam = cam[cam[:, 2] > 1e-6]
        k = self.intrinsics
        u = np.rint(k.fx * cam[:, 0] / cam[:, 2] + k.cx).astype(np.int64)
        v = np.rint(k.fy * cam[:, 1] / cam[:, 2] + k.cy).astype(np.int64)
        inside = (u >= 0) & (u < k.width) & (v >= 0) & (v < k.height)
        measured = self.depth[v[inside], u[inside]]
        z = cam[inside, 2]
        known = np.isfinite(measured) & (measured > 0)
        if not np.any(known):
            return 0.0
        return float(np.mean(measured[known] > z[known] + tolerance))


@dataclass
class ObservedCluster:
    """A cluster prepared for registration against any number of models (see
    :func:`observe`): thinned to both grids, with its rest plane and, when known, the view."""

    fine: Any
    coarse: Any
    tree: cKDTree
    up: FloatArray
    floor: float
    viewpoint: FloatArray | None
    view: DepthView | None = None
    features: Any = None
    """FPFH of ``coarse``, computed on first use."""
    resting: dict[tuple[Any, ...], list[_Hypothesis]] = field(default_factory=dict, repr=False)
    """Coarse hypotheses from the resting guesses, per model and coarse settings: a quick
    registration (no features, no half turns) and a later full one of the same model start
    from the same guesses, so the full one only adds what the quick one left out."""
    refined: dict[tuple[Any, ...], _Hypothesis] = field(default_factory=dict, repr=False)
    """Fine ICP results per model, start pose and fine settings (same reason)."""

    @property
    def points(self) -> FloatArray:
        return self.tree.data

    @property
    def diameter(self) -> float:
        """A lower bound of the distance between the cluster's two farthest points."""
        return float(np.max(np.ptp(self.tree.data, axis=0)))


def _with_normals(cloud: Any, radius: float, viewpoint: FloatArray | None) -> Any:
    """Normals facing the camera, or away from the cluster's middle without one (a single
    view's surface mostly faces outward from the part of the object it shows)."""
    import open3d as o3d

    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=30))
    if viewpoint is not None:
        cloud.orient_normals_towards_camera_location(viewpoint)
        return cloud
    points = np.asarray(cloud.points)
    normals = np.asarray(cloud.normals)
    flip = np.einsum("ij,ij->i", normals, points - points.mean(axis=0)) < 0
    normals[flip] *= -1.0
    cloud.normals = o3d.utility.Vector3dVector(normals)
    return cloud


def observe(points: ArrayLike, params: RegistrationParams | None = None, *,
            table: TablePlane | None = None, viewpoint: ArrayLike | None = None,
            view: DepthView | None = None) -> ObservedCluster:
    """Thin a cluster's planning-frame points (N, 3) for :func:`register` (done once per
    cluster, shared by every model tried). ``view`` implies ``viewpoint``."""
    import open3d as o3d

    p = params or RegistrationParams()
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"cluster points must have shape (N, 3), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("cluster points contain NaN or inf")
    raw = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    fine = raw.voxel_down_sample(p.voxel)
    if len(fine.points) < p.min_points:
        raise ValueError(f"cluster has {len(fine.points)} points after thinning to "
                         f"{p.voxel} m, fewer than min_points={p.min_points}")
    coarse = raw.voxel_down_sample(p.coarse_voxel)
    fine_points = np.asarray(fine.points)
    if table is not None:
        up = np.asarray(table.normal, dtype=np.float64)
        floor = -float(table.offset)
    else:
        up = _unit(p.up)
        floor = float(np.min(fine_points @ up))
    if view is not None:
        eye: FloatArray | None = view.viewpoint
    else:
        eye = None if viewpoint is None else np.asarray(viewpoint, dtype=np.float64).reshape(3)
    return ObservedCluster(fine, coarse, cKDTree(fine_points), up, floor, eye, view)


def _unit(vector: ArrayLike) -> FloatArray:
    vec = np.asarray(vector, dtype=np.float64).reshape(3)
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"expected a finite non-zero 3-vector, got {vector}")
    return vec / norm


def _resting_guesses(observed: ObservedCluster, model: _Prepared,
                     steps: int) -> list[FloatArray]:
    """``T_planning_object`` guesses: model +z along up, yawed, centred on the cluster's
    horizontal middle and lowered until its lowest point touches the floor height.

    A yaw about ``up`` leaves every height along ``up`` unchanged, so the model's lowest
    point (its smallest object-frame z once +z is aligned with up) is found once for all
    yaws, and the rotations are built in one batch (Rodrigues' formula)."""
    up = observed.up
    align = Rotation.align_vectors([up], [[0.0, 0.0, 1.0]])[0].as_matrix()
    points = np.asarray(observed.coarse.points)
    mid = (points.min(axis=0) + points.max(axis=0)) / 2.0
    yaws = np.arange(steps) * (2.0 * np.pi / max(steps, 1))
    cross = np.array([[0.0, -up[2], up[1]], [up[2], 0.0, -up[0]], [-up[1], up[0], 0.0]])
    turns = (np.eye(3) + np.sin(yaws)[:, None, None] * cross
             + (1.0 - np.cos(yaws))[:, None, None] * (cross @ cross))
    rotations = turns @ align
    lift = float(np.min(model.points @ (align.T @ up)))  # lowest point above the origin
    translations = mid - rotations @ model.centre
    lowest = translations @ up + lift
    translations += (observed.floor - lowest)[:, None] * up
    poses = np.zeros((steps, 4, 4))
    poses[:, :3, :3] = rotations
    poses[:, :3, 3] = translations
    poses[:, 3, 3] = 1.0
    return list(poses)


def _screen(observed: ObservedCluster, model: _Prepared, guesses: list[FloatArray],
            params: RegistrationParams) -> list[FloatArray]:
    """The ``keep_guesses`` guesses under which most observed points lie near the model: one
    batched KD-tree query instead of an ICP per guess."""
    if len(guesses) <= params.keep_guesses:
        return guesses
    points = np.asarray(observed.coarse.points)
    inverse = invert(np.stack(guesses))
    local = transform_points(inverse, points)
    dist = model.coarse_tree.query(local.reshape(-1, 3), k=1,
                                   distance_upper_bound=params.screen_distance)[0]
    near = np.isfinite(dist).reshape(len(guesses), -1).mean(axis=1)
    order = np.argsort(-near, kind="stable")[:params.keep_guesses]
    return [guesses[i] for i in order]


def _feature_guess(observed: ObservedCluster, model: _Prepared,
                   params: RegistrationParams) -> FloatArray:
    """``T_object_planning`` from FPFH correspondences and RANSAC (seeded)."""
    import open3d as o3d

    reg = o3d.pipelines.registration
    if observed.features is None:
        _with_normals(observed.coarse, params.normal_radius, observed.viewpoint)
        observed.features = reg.compute_fpfh_feature(
            observed.coarse,
            o3d.geometry.KDTreeSearchParamHybrid(radius=params.feature_radius, max_nn=100))
    o3d.utility.random.seed(params.seed)
    result = reg.registration_ransac_based_on_feature_matching(
        observed.coarse, model.coarse, observed.features, model.features, False,
        params.ransac_distance, reg.TransformationEstimationPointToPoint(False), 3,
        [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9),
         reg.CorrespondenceCheckerBasedOnDistance(params.ransac_distance)],
        reg.RANSACConvergenceCriteria(params.ransac_iterations, params.ransac_confidence))
    return np.asarray(result.transformation)


@dataclass
class _Hypothesis:
    """One candidate ``T_object_planning`` with its scores on the fine grid."""

    transform: FloatArray
    fitness: float
    rmse: float
    plane_rmse: float
    seen_through: float
    residual_weight: float

    @property
    def key(self) -> tuple[float, float]:
        """Higher is better: fitness, less the share seen through, less the surface residual
        (a near-symmetric shape the wrong way round fits almost every point, but not as
        closely: 0.5 mm against 0.2 mm on the sugar box upside down)."""
        return (self.fitness * (1.0 - self.seen_through)
                - self.residual_weight * self.plane_rmse, -self.rmse)


def _score(observed: ObservedCluster, model: _Prepared, transform: FloatArray,
           params: RegistrationParams, coarse: bool = False) -> _Hypothesis:
    """Fitness, RMSE (to the nearest model sample) and point-to-plane RMSE (to the sample's
    tangent plane, free of the sampling's spacing) of the observed points on the model under
    ``transform``, and the share of the posed model's camera-facing surface the camera saw
    through. ``coarse`` scores the coarse grids (a quarter of the points: for ranking the
    coarse hypotheses only)."""
    points = np.asarray(observed.coarse.points) if coarse else observed.points
    local = points @ transform[:3, :3].T + transform[:3, 3]
    dist, nearest = model.tree.query(local, k=1, distance_upper_bound=params.inlier_distance)
    inlier = np.isfinite(dist)
    fitness = float(np.mean(inlier))
    rmse, plane_rmse = np.inf, np.inf
    if np.any(inlier):
        rmse = float(np.sqrt(np.mean(dist[inlier] ** 2)))
        index = nearest[inlier]
        off = np.einsum("ij,ij->i", local[inlier] - model.points[index], model.normals[index])
        plane_rmse = float(np.sqrt(np.mean(off ** 2)))
    seen = 0.0
    if observed.view is not None:
        pose = invert(transform)
        surface = (np.asarray(model.coarse.points), np.asarray(model.coarse.normals)) \
            if coarse else (model.points, model.normals)
        seen = observed.view.seen_through(surface[0] @ pose[:3, :3].T + pose[:3, 3],
                                          surface[1] @ pose[:3, :3].T, params.view_tolerance)
    return _Hypothesis(transform, fitness, rmse, plane_rmse, seen,
                       params.residual_weight / params.inlier_distance)


def _distinct(hypotheses: list[_Hypothesis], count: int) -> list[_Hypothesis]:
    """The best ``count`` hypotheses, skipping near-duplicates of better ones (5 mm, 5 deg)."""
    kept: list[_Hypothesis] = []
    for hyp in sorted(hypotheses, key=lambda h: h.key, reverse=True):
        if len(kept) == count:
            break
        if any(np.linalg.norm(hyp.transform[:3, 3] - k.transform[:3, 3]) < 0.005 and
               np.trace(hyp.transform[:3, :3] @ k.transform[:3, :3].T) > 1 + 2 * np.cos(
                   np.radians(5.0)) for k in kept):
            continue
        kept.append(hyp)
    return kept


def register(observed: ObservedCluster, library: ObjectLibrary, object_id: str,
             params: RegistrationParams | None = None) -> Match:
    """Register one library model to an observed cluster (see the module docstring)."""
    import open3d as o3d

    p = params or RegistrationParams()
    entry = library[object_id]
    reg = o3d.pipelines.registration
    model = library.prepared(entry.object_id, p)
    point_to_plane = reg.TransformationEstimationPointToPlane()
    coarse_criteria = reg.ICPConvergenceCriteria(max_iteration=p.coarse_iterations)

    def coarse_icp(start: FloatArray) -> _Hypothesis:
        result = reg.registration_icp(observed.coarse, model.coarse, p.coarse_distance, start,
                                      point_to_plane, coarse_criteria)
        return _score(observed, model, np.asarray(result.transformation), p, coarse=True)

    def plausible(hypotheses: list[_Hypothesis]) -> bool:
        return max(h.fitness * (1.0 - h.seen_through) for h in hypotheses) >= p.feature_trigger

    scoring = (p.voxel, p.coarse_voxel, p.feature_radius, p.inlier_distance,
               p.view_tolerance, p.residual_weight)
    resting_key = (object_id, *scoring, p.yaw_steps, p.keep_guesses, p.screen_distance,
                   p.coarse_distance, p.coarse_iterations)
    resting = observed.resting.get(resting_key)
    if resting is None:
        guesses = _screen(observed, model, _resting_guesses(observed, model, p.yaw_steps), p)
        resting = [coarse_icp(invert(guess)) for guess in guesses]
        observed.resting[resting_key] = resting
    hypotheses = list(resting)
    if p.use_features and not plausible(hypotheses):
        hypotheses.append(coarse_icp(_feature_guess(observed, model, p)))
    if p.flips and plausible(hypotheses):  # a model that fits nowhere needs no flips
        best = max(hypotheses, key=lambda h: h.key)
        hypotheses += [coarse_icp(flip @ best.transform) for flip in model.flips]
    fine_criteria = reg.ICPConvergenceCriteria(1e-5, 1e-5, p.fine_iterations)
    chosen: _Hypothesis | None = None
    for start in _distinct(hypotheses, max(1, p.refine)):
        fine_key = (object_id, *scoring, p.fine_distance, p.fine_iterations,
                    start.transform.tobytes())
        hyp = observed.refined.get(fine_key)
        if hyp is None:
            fine = reg.registration_icp(observed.fine, model.cloud, p.fine_distance,
                                        start.transform, point_to_plane, fine_criteria)
            hyp = _score(observed, model, np.asarray(fine.transformation), p)
            observed.refined[fine_key] = hyp
        if chosen is None or hyp.key > chosen.key:
            chosen = hyp
    assert chosen is not None
    pose = invert(chosen.transform)
    posed = transform_points(pose, model.points)
    relevant = np.ones(posed.shape[0], dtype=bool)
    if observed.viewpoint is not None:
        posed_normals = model.normals @ pose[:3, :3].T
        relevant = np.einsum("ij,ij->i", posed_normals, observed.viewpoint - posed) > 0
    near = observed.tree.query(posed[relevant], k=1,
                               distance_upper_bound=p.inlier_distance)[0]
    coverage = float(np.mean(np.isfinite(near))) if near.size else 0.0
    return Match(object_id=entry.object_id, label=entry.label, pose=pose,
                 fitness=chosen.fitness, inlier_rmse=chosen.rmse, coverage=coverage,
                 score=chosen.fitness * float(np.sqrt(coverage)),
                 seen_through=chosen.seen_through)


def identify(cluster_points: ArrayLike, library: ObjectLibrary,
             params: RegistrationParams | None = None, *, table: TablePlane | None = None,
             viewpoint: ArrayLike | None = None, view: DepthView | None = None,
             candidates: list[str] | None = None) -> list[Match]:
    """Register every library model (or only ``candidates``) to a cluster, best first.

    ``table`` gives the rest plane of the upright guesses (else ``params.up`` and the cluster's
    lowest point); ``viewpoint``, the camera position in the planning frame, orients the
    cluster's normals and restricts coverage to the model's side facing the camera; ``view``
    (the depth image the cluster came from) also rejects poses the camera saw through.
    """
    p = params or RegistrationParams()
    if len(library) == 0:
        raise ValueError("the object library is empty")
    observed = observe(cluster_points, p, table=table, viewpoint=viewpoint, view=view)
    ids = library.ids if candidates is None else candidates
    matches = [register(observed, library, object_id, p) for object_id in ids]
    matches.sort(key=lambda m: (m.score, m.fitness), reverse=True)
    return matches


def complete_cloud(match: Match, library: ObjectLibrary) -> tuple[FloatArray, FloatArray]:
    """The matched model's surface samples and outward normals in the planning frame: the
    whole object, including the sides the camera did not see."""
    model = library[match.object_id].model
    return (transform_points(match.pose, model.points),
            model.normals @ np.asarray(match.pose)[:3, :3].T)
