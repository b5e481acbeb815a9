"""Target object trajectories T_tar(t) from a task, the object pose and the scene.

Perception plans with it at run time and dataset synthesis plans with it offline, so the
generator trains on the trajectories it will be given.

Motions are straight segments between a few waypoints, each timed with the minimum-jerk profile,
so the object is at rest at every waypoint (and at both ends): simple to check, and the
generator sees the same start-stop shape it was trained on. Collisions are checked for the
moved object's axis-aligned box against the other clusters' boxes, sampled densely along every
segment; the object's bounding sphere is used only to size detours. (A bounding sphere checked
against neighbours would already collide at rest for tall objects standing close together.)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation, Slerp

from unihm_core.se3 import make_pose
from unihm_core.tasks import (
    TASK_HANDOVER,
    TASK_LIFT,
    TASK_PICK_AND_PLACE,
    TASK_PUSH,
    TASK_ROTATE,
)
from unihm_core.trajectory import min_jerk

FloatArray = NDArray[np.float64]


REGIONS = ("left", "right", "center", "near", "far")
"""Named table regions a destination can be (instructions: "to the left side of the table")."""


@dataclass(frozen=True)
class Workspace:
    """The table area (planning frame, metres): the robot stands at the origin facing +x."""

    x_min: float = 0.30
    x_max: float = 0.80
    y_min: float = -0.40
    y_max: float = 0.40
    table_z: float = 0.0
    edge_margin: float = 0.08

    def region_point(self, region: str, half_extent: FloatArray) -> FloatArray:
        """Where a named table region puts an object's centre (xy), inset from the edges."""
        cx, cy = (self.x_min + self.x_max) / 2, (self.y_min + self.y_max) / 2
        inset = self.edge_margin + float(np.linalg.norm(half_extent[:2]))
        points = {"left": (cx, self.y_max - inset), "right": (cx, self.y_min + inset),
                  "center": (cx, cy), "near": (self.x_min + inset, cy),
                  "far": (self.x_max - inset, cy)}
        if region not in points:
            raise ValueError(f"unknown table region {region!r}; choose one of {REGIONS}")
        return np.asarray(points[region], dtype=np.float64)



class PlanningError(RuntimeError):
    """No collision-free trajectory was found (the message names the blocking clusters)."""


@dataclass(frozen=True)
class Obstacle:
    """Another cluster: centroid and axis-aligned extent (metres, planning frame)."""

    centroid: tuple[float, float, float] | FloatArray
    extent: tuple[float, float, float] | FloatArray
    name: str = ""

    def bounds(self, margin: float = 0.0) -> tuple[FloatArray, FloatArray]:
        c = np.asarray(self.centroid, dtype=np.float64)
        h = np.asarray(self.extent, dtype=np.float64) / 2 + margin
        return c - h, c + h


@dataclass(frozen=True)
class PlanRequest:
    """Everything a planner needs. ``destination`` is a final object pose (4x4) or centroid
    position (3,); ``support`` is the cluster the object ends on or in (touching it is allowed
    once the object is above its footprint); ``angle`` is the rotate task's angle about +z."""

    task: str
    object_pose: FloatArray
    object_extent: tuple[float, float, float] | FloatArray
    destination: FloatArray | None = None
    obstacles: Sequence[Obstacle] = ()
    support: Obstacle | None = None
    angle: float | None = None
    height: float | None = None


@dataclass(frozen=True)
class PlannerParams:
    """Tunable distances (m), speeds (m/s, rad/s) and the hand-over point."""

    table_z: float = 0.0
    clearance: float = 0.08           # object bottom above the table while carried
    obstacle_margin: float = 0.02     # gap kept to other clusters
    lift_height: float = 0.15
    max_height: float = 0.60          # highest carry height above the table before detouring
    max_speed: float = 0.25
    max_angular_speed: float = 1.0
    min_segment_time: float = 0.5
    rate_hz: float = 30.0
    default_angle: float = np.pi / 2
    handover_point: tuple[float, float, float] = (0.40, 0.0, 0.35)
    detour_offsets: tuple[float, ...] = (0.10, 0.15, 0.20, 0.30, 0.40)


@dataclass(frozen=True)
class ValidationReport:
    ok: bool
    problems: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class PlannedTrajectory:
    """Object poses (T, 4, 4) at times (T,) from 0, plus what they were planned against."""

    task: str
    poses: FloatArray
    times: FloatArray
    waypoints: FloatArray
    object_extent: FloatArray
    goal: FloatArray
    obstacles: tuple[Obstacle, ...] = ()
    support: Obstacle | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def validate(self, *, goal: ArrayLike | None = None, position_tol: float = 0.01,
                 angle_tol: float = 0.05, table_z: float = 0.0,
                 margin: float = 0.0) -> ValidationReport:
        """See :func:`validate_trajectory`; the goal defaults to the planned one."""
        return validate_trajectory(self.poses, self.times, self.object_extent,
                                   self.goal if goal is None else goal, self.obstacles,
                                   support=self.support, position_tol=position_tol,
                                   angle_tol=angle_tol, table_z=table_z, margin=margin)


class TrajectoryPlanner(Protocol):
    """Anything that turns a request into a target trajectory."""

    def plan(self, request: PlanRequest) -> PlannedTrajectory: ...


def object_aabb(poses: ArrayLike, extent: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """World-axis boxes (..., 3) enclosing the object's box at each pose."""
    poses = np.asarray(poses, dtype=np.float64)
    half = np.abs(poses[..., :3, :3]) @ (np.asarray(extent, dtype=np.float64) / 2)
    return poses[..., :3, 3] - half, poses[..., :3, 3] + half


def _hits(lo: FloatArray, hi: FloatArray, obstacle: Obstacle, margin: float) -> NDArray[np.bool_]:
    olo, ohi = obstacle.bounds(margin)
    return np.all((hi > olo) & (lo < ohi), axis=-1)


def _over_footprint(poses: FloatArray, support: Obstacle) -> NDArray[np.bool_]:
    lo, hi = support.bounds()
    xy = poses[..., :2, 3]
    return np.all((xy >= lo[:2]) & (xy <= hi[:2]), axis=-1)


def _densify(poses: FloatArray, step: float = 0.005) -> FloatArray:
    """Poses linearly interpolated so that consecutive positions are at most ``step`` apart."""
    out = [poses[:1]]
    for a, b in itertools.pairwise(poses):
        n = max(1, int(np.ceil(np.linalg.norm(b[:3, 3] - a[:3, 3]) / step)))
        u = np.linspace(0, 1, n + 1)[1:]
        seg = np.repeat(b[None], n, axis=0)
        seg[:, :3, 3] = a[:3, 3] + u[:, None] * (b[:3, 3] - a[:3, 3])
        out.append(seg)
    return np.concatenate(out)


def validate_trajectory(poses: ArrayLike, times: ArrayLike, object_extent: ArrayLike,
                        goal: ArrayLike, obstacles: Sequence[Obstacle] = (), *,
                        support: Obstacle | None = None, position_tol: float = 0.01,
                        angle_tol: float = 0.05, table_z: float = 0.0,
                        margin: float = 0.0) -> ValidationReport:
    """Check a target trajectory: times start at 0 and increase, the last pose is the goal
    (a 4x4 pose, or a (3,) position), the object box never goes below the table, and it
    overlaps no obstacle (the support only while the object is over its footprint)."""
    poses = np.asarray(poses, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    goal = np.asarray(goal, dtype=np.float64)
    problems: list[str] = []
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or len(times) != len(poses):
        return ValidationReport(False, (f"bad shapes {poses.shape} / {times.shape}",))
    if abs(times[0]) > 1e-9 or np.any(np.diff(times) <= 0):
        problems.append("times must start at 0 and increase strictly")
    end = poses[-1]
    goal_xyz = goal[:3, 3] if goal.shape == (4, 4) else goal
    err = float(np.linalg.norm(end[:3, 3] - goal_xyz))
    if err > position_tol:
        problems.append(f"ends {err:.3f} m from the destination")
    if goal.shape == (4, 4):
        angle = Rotation.from_matrix(goal[:3, :3].T @ end[:3, :3]).magnitude()
        if angle > angle_tol:
            problems.append(f"ends rotated {angle:.3f} rad from the destination")
    dense = _densify(poses)
    lo, hi = object_aabb(dense, object_extent)
    if np.min(lo[:, 2]) < table_z - 1e-3:
        problems.append(f"goes {table_z - np.min(lo[:, 2]):.3f} m below the table")
    for obstacle in obstacles:
        hit = _hits(lo, hi, obstacle, margin)
        if support is not None and obstacle is support:
            hit &= ~_over_footprint(dense, support)
        if np.any(hit):
            problems.append(f"collides with {obstacle.name or 'a cluster'} at "
                            f"{np.round(np.asarray(obstacle.centroid, dtype=float), 3).tolist()}")
    return ValidationReport(not problems, tuple(problems))


class TaskPlanner:
    """The default planner: waypoints per task, min-jerk segments, box collision checks."""

    def __init__(self, params: PlannerParams | None = None) -> None:
        self.params = params or PlannerParams()

    # -- timing ---------------------------------------------------------------------------
    def _segment(self, a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Min-jerk samples from pose a to pose b (first sample excluded) and their durations.

        The duration keeps the profile's peak speed (1.875 x mean) under the limits."""
        p = self.params
        dist = float(np.linalg.norm(b[:3, 3] - a[:3, 3]))
        rot = Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]]))
        angle = float((rot[0].inv() * rot[1]).magnitude())
        duration = max(p.min_segment_time, 1.875 * dist / p.max_speed,
                       1.875 * angle / p.max_angular_speed)
        # Whole sample periods, so every segment (and the trajectory) lies on one uniform grid.
        n = max(2, int(np.ceil(duration * p.rate_hz - 1e-9)))
        duration = n / p.rate_hz
        t = np.arange(1, n + 1) / p.rate_hz
        s = min_jerk(t / duration)
        pos = a[:3, 3] + s[:, None] * (b[:3, 3] - a[:3, 3])
        rots = Slerp([0.0, 1.0], rot)(s).as_matrix()
        return make_pose(rots, pos), t

    def _timed(self, waypoints: list[FloatArray]) -> tuple[FloatArray, FloatArray]:
        poses, times, t0 = [waypoints[0][None]], [np.zeros(1)], 0.0
        for a, b in itertools.pairwise(waypoints):
            if np.allclose(a, b, atol=1e-9):
                continue
            seg, t = self._segment(a, b)
            poses.append(seg)
            times.append(t0 + t)
            t0 += float(t[-1])
        return np.concatenate(poses), np.concatenate(times)

    # -- geometry helpers -----------------------------------------------------------------
    def _carry_z(self, lo_hi_xy: list[FloatArray], half: FloatArray,
                 obstacles: Sequence[Obstacle]) -> tuple[float, list[Obstacle]]:
        """Centroid height that clears the table and every obstacle under the xy path."""
        p = self.params
        path = np.asarray(lo_hi_xy)
        z = p.table_z + p.clearance + half[2]
        under: list[Obstacle] = []
        for obstacle in obstacles:
            olo, ohi = obstacle.bounds(p.obstacle_margin)
            if _segment_hits_box_xy(path, olo[:2] - half[:2], ohi[:2] + half[:2]):
                z = max(z, ohi[2] + half[2])
                under.append(obstacle)
        return z, under

    def _free(self, waypoints: list[FloatArray], extent: FloatArray,
              obstacles: Sequence[Obstacle], support: Obstacle | None) -> list[Obstacle]:
        """The obstacles the object's box (body ``extent``) overlaps along the waypoints."""
        dense = _densify(np.stack(waypoints))
        lo, hi = object_aabb(dense, extent)
        blocking = []
        for obstacle in obstacles:
            hit = _hits(lo, hi, obstacle, self.params.obstacle_margin / 2)
            if support is not None and obstacle is support:
                hit &= ~_over_footprint(dense, support)
            if np.any(hit):
                blocking.append(obstacle)
        return blocking

    def _detours(self, a: FloatArray, b: FloatArray) -> list[list[FloatArray]]:
        """xy via points to try, straight first: a side point at mid-way, then a path shifted
        sideways as a whole (around objects near either end), nearer detours first."""
        perp = np.array([-(b[1] - a[1]), b[0] - a[0]])
        norm = float(np.linalg.norm(perp))
        perp = perp / norm if norm > 1e-9 else np.array([0.0, 1.0])
        mid = (a + b) / 2
        vias: list[list[FloatArray]] = [[]]
        for d in self.params.detour_offsets:
            for sign in (1.0, -1.0):
                vias.append([mid + sign * d * perp])
            for sign in (1.0, -1.0):
                vias.append([a + sign * d * perp, b + sign * d * perp])
        return vias

    def _transfer(self, start: FloatArray, goal: FloatArray, half: FloatArray,
                  obstacles: Sequence[Obstacle], support: Obstacle | None, *,
                  min_z: float, extent: FloatArray) -> list[FloatArray]:
        """Lift, carry over (or around) the obstacles, lower onto the goal."""
        p = self.params
        a, b = start[:3, 3], goal[:3, 3]
        ceiling = p.table_z + p.max_height + half[2]
        vias = self._detours(a[:2], b[:2])
        blocked: list[Obstacle] = []
        for via in vias:
            xy = [a[:2], *via, b[:2]]
            z, _ = self._carry_z(xy, half, obstacles)
            z = max(z, a[2], b[2], min_z)
            if z > ceiling:
                continue
            up, down = start.copy(), goal.copy()
            up[2, 3] = z
            down[2, 3] = z
            mids = []
            for v in via:
                m = down.copy()
                m[:2, 3] = v
                mids.append(m)
            wps = [start, up, *mids, down, goal]
            blocked = self._free(wps, extent, obstacles, support)
            if not blocked:
                return wps
        names = ", ".join(o.name or str(np.round(np.asarray(o.centroid, float), 2).tolist())
                          for o in (blocked or obstacles))
        raise PlanningError(f"no collision-free carry path below {p.max_height:.2f} m: "
                            f"blocked by {names or 'the workspace limits'}")

    def _slide(self, start: FloatArray, goal: FloatArray, extent: FloatArray,
               obstacles: Sequence[Obstacle]) -> list[FloatArray]:
        vias = self._detours(start[:2, 3], goal[:2, 3])
        blocked: list[Obstacle] = []
        for via in vias:
            mids = []
            for v in via:
                m = goal.copy()
                m[:2, 3] = v
                mids.append(m)
            wps = [start, *mids, goal]
            blocked = self._free(wps, extent, obstacles, None)
            if not blocked:
                return wps
        names = ", ".join(o.name or "a cluster" for o in blocked)
        raise PlanningError(f"no collision-free push path along the table: blocked by {names}")

    def _waypoints(self, request: PlanRequest, start: FloatArray, half: FloatArray,
                   obstacles: tuple[Obstacle, ...]) -> tuple[FloatArray, list[FloatArray]]:
        """The task's waypoint poses (start first, goal last)."""
        p = self.params
        extent = np.asarray(request.object_extent, dtype=np.float64)
        task = request.task
        support = request.support
        if task in (TASK_PICK_AND_PLACE, TASK_PUSH):
            if request.destination is None:
                raise ValueError(f"task {task!r} needs a destination")
            goal = _goal_pose(start, request.destination)
            if task == TASK_PUSH:
                goal[2, 3] = start[2, 3]  # keep contact height
                wps = self._slide(start, goal, extent, obstacles)
            else:
                wps = self._transfer(start, goal, half, obstacles, support, min_z=0.0,
                                     extent=extent)
        elif task == TASK_LIFT:
            goal = start.copy()
            goal[2, 3] += request.height if request.height is not None else p.lift_height
            wps = [start, goal]
            if blocked := self._free(wps, extent, obstacles, None):
                raise PlanningError(f"lift blocked by {blocked[0].name or 'a cluster'}")
        elif task == TASK_ROTATE:
            angle = request.angle if request.angle is not None else p.default_angle
            goal = start.copy()
            goal[:3, :3] = Rotation.from_rotvec([0, 0, angle]).as_matrix() @ start[:3, :3]
            wps = [start]
            for k in range(1, 5):  # quarter steps keep slerp on the requested side
                w = start.copy()
                w[:3, :3] = Rotation.from_rotvec([0, 0, angle * k / 4]).as_matrix() @ start[:3, :3]
                wps.append(w)
            wps = [start, goal] if abs(angle) < np.pi * 0.99 else wps
            if blocked := self._free(wps, extent, obstacles, None):
                raise PlanningError(f"rotating in place hits {blocked[0].name or 'a cluster'}")
        elif task == TASK_HANDOVER:
            goal = start.copy()
            goal[:3, 3] = p.handover_point
            wps = self._transfer(start, goal, half, obstacles, None,
                                 min_z=p.handover_point[2], extent=extent)
            wps = wps[:-1] if np.allclose(wps[-2], wps[-1]) else wps
        else:
            raise ValueError(f"unknown task {task!r}")
        return goal, wps

    # -- tasks ----------------------------------------------------------------------------
    def plan(self, request: PlanRequest) -> PlannedTrajectory:
        """Plan the request; raise :class:`PlanningError` or ``ValueError`` when impossible."""
        start = np.asarray(request.object_pose, dtype=np.float64)
        if start.shape != (4, 4):
            raise ValueError(f"object_pose must be 4x4, got {start.shape}")
        half = np.abs(start[:3, :3]) @ (np.asarray(request.object_extent, float) / 2)
        obstacles = tuple(request.obstacles)
        support = request.support
        if support is not None and all(o is not support for o in obstacles):
            obstacles = (*obstacles, support)
        task = request.task
        notes: list[str] = []
        goal, wps = self._waypoints(request, start, half, obstacles)
        poses, times = self._timed(wps)
        if task == TASK_ROTATE and len(wps) > 2:
            notes.append("half-turn or more: rotated in quarter steps")
        extent = np.asarray(request.object_extent, dtype=np.float64)
        return PlannedTrajectory(task, poses, times, np.stack(wps), extent, goal, obstacles,
                                 support, tuple(notes))


def _goal_pose(start: FloatArray, destination: ArrayLike) -> FloatArray:
    dest = np.asarray(destination, dtype=np.float64)
    if dest.shape == (4, 4):
        return dest.copy()
    if dest.shape != (3,):
        raise ValueError(f"destination must be a 4x4 pose or a position (3,), got {dest.shape}")
    goal = start.copy()
    goal[:3, 3] = dest
    return goal


def _segment_hits_box_xy(path: FloatArray, lo: FloatArray, hi: FloatArray) -> bool:
    """Whether a 2-D polyline crosses an axis-aligned rectangle (slab test per segment)."""
    for a, b in itertools.pairwise(path):
        d = b - a
        t0, t1 = 0.0, 1.0
        for k in range(2):
            if abs(d[k]) < 1e-12:
                if a[k] < lo[k] or a[k] > hi[k]:
                    break
                continue
            ta, tb = (lo[k] - a[k]) / d[k], (hi[k] - a[k]) / d[k]
            t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
            if t0 > t1:
                break
        else:
            return True
    return False
