"""Task sequences from a grasp: approach, pre-shape, close, move the object, release, retreat.

The object trajectory of the manipulation phase comes from the same planner perception uses
(:mod:`unihm_core.target_planner`), sampled at the dataset's fps, so the generator is trained on
target trajectories shaped like the ones it is given at run time. While grasped, the object
rigidly follows the hand (the wrist keeps its grasp pose in the object frame); before the grasp
and after the release the object rests. Every phase is timed with the minimum-jerk profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation, Slerp

from unihm_core.se3 import FloatArray, make_pose
from unihm_core.target_planner import (
    REGIONS,
    PlannerParams,
    PlanRequest,
    TaskPlanner,
    Workspace,
)
from unihm_core.tasks import (
    TASK_HANDOVER,
    TASK_LIFT,
    TASK_PICK_AND_PLACE,
    TASK_PUSH,
    TASK_ROTATE,
    TASKS,
)
from unihm_core.trajectory import hold_ends, min_jerk

PUSH_DIRECTIONS = {"left": (0.0, 1.0), "right": (0.0, -1.0), "far": (1.0, 0.0),
                   "near": (-1.0, 0.0)}
"""Push direction (named by the table side it heads for) -> unit xy direction (robot at the
origin, x away from it, y to its left)."""


class SequenceError(ValueError):
    """A sequence that cannot be built from the given grasp, task or placement."""


@dataclass(frozen=True)
class HandGrasp:
    """One hand's grasp of the object: wrist pose in the object frame and three finger poses."""

    wrist_in_object: FloatArray
    q_grasp: FloatArray
    q_pregrasp: FloatArray
    q_open: FloatArray


@dataclass(frozen=True)
class Timing:
    """Phase durations (s); the manipulation phase is timed by the planner's speed limits."""

    approach: float = 1.0
    reach: float = 0.5
    close: float = 0.5
    hold: float = 0.3
    release: float = 0.4
    retreat: float = 0.7
    approach_distance: float = 0.18   # wrist start, back along the palm normal (m)
    approach_rise: float = 0.06       # and up (m)
    pregrasp_distance: float = 0.04   # pre-grasp pose, back along the palm normal (m)
    retreat_distance: float = 0.12

    def object_rest_s(self) -> tuple[float, float]:
        """Seconds the object rests before its motion (approach, reach, close) and after it
        (hold, release, retreat); perception pads run-time targets with the defaults'."""
        return (self.approach + self.reach + self.close,
                self.hold + self.release + self.retreat)

    @classmethod
    def random(cls, rng: np.random.Generator) -> Timing:
        """Randomized speeds and approach distances (a slower or faster demonstrator)."""
        s = rng.uniform(0.75, 1.35)
        return cls(approach=1.0 * s, reach=0.5 * s, close=0.5 * s, hold=rng.uniform(0.2, 0.5),
                   release=0.4 * s, retreat=0.7 * s, approach_distance=rng.uniform(0.12, 0.25),
                   approach_rise=rng.uniform(0.02, 0.10), pregrasp_distance=rng.uniform(0.03, 0.06),
                   retreat_distance=rng.uniform(0.08, 0.16))


@dataclass(frozen=True)
class TaskSpec:
    """What the object should do, with the words an instruction needs to say it."""

    task: str
    region: str | None = None
    direction: str | None = None
    distance_m: float | None = None
    angle_deg: float | None = None
    height_m: float | None = None

    def instruction_kwargs(self) -> dict[str, Any]:
        out = {"destination": self.region, "direction": self.direction,
               "distance_m": self.distance_m, "angle_deg": self.angle_deg,
               "height_m": self.height_m}
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class ComposedSequence:
    """Object poses and per-hand wrist poses / joints on one time grid, plus phase bounds."""

    fps: float
    object_poses: FloatArray
    wrist_poses: dict[str, FloatArray]
    joints: dict[str, FloatArray]
    phases: dict[str, tuple[int, int]] = field(default_factory=dict)


def sample_task(task: str, start: FloatArray, extent: FloatArray, rng: np.random.Generator,
                workspace: Workspace | None = None) -> tuple[TaskSpec, PlanRequest]:
    """A random instance of ``task`` for an object resting at ``start`` (and its plan request)."""
    ws = workspace or Workspace()
    half = np.abs(start[:3, :3]) @ (extent / 2)
    if task == TASK_PICK_AND_PLACE:
        # a region far enough from the start that the object really moves
        regions = [r for r in REGIONS
                   if np.linalg.norm(ws.region_point(r, half) - start[:2, 3]) > 0.12]
        region = str(rng.choice(regions or list(REGIONS)))
        goal = np.array([*ws.region_point(region, half), start[2, 3]])
        goal[:2] += rng.uniform(-0.03, 0.03, 2)
        return TaskSpec(task, region=region), PlanRequest(task, start, extent, destination=goal)
    if task == TASK_PUSH:
        names = list(PUSH_DIRECTIONS)
        rng.shuffle(names)
        for name in names:
            distance = float(np.round(rng.uniform(0.08, 0.2), 2))
            goal = start[:3, 3].copy()
            goal[:2] += distance * np.asarray(PUSH_DIRECTIONS[name])
            if ws.x_min + half[0] <= goal[0] <= ws.x_max - half[0] and \
                    ws.y_min + half[1] <= goal[1] <= ws.y_max - half[1]:
                return (TaskSpec(task, direction=name, distance_m=distance),
                        PlanRequest(task, start, extent, destination=goal))
        raise SequenceError("no push direction stays on the table from this start")
    if task == TASK_LIFT:
        height = float(np.round(rng.uniform(0.08, 0.25), 2))
        return TaskSpec(task, height_m=height), PlanRequest(task, start, extent, height=height)
    if task == TASK_ROTATE:
        angle = float(rng.choice([-1.0, 1.0]) * rng.choice([30.0, 45.0, 60.0, 90.0, 120.0]))
        return (TaskSpec(task, angle_deg=angle),
                PlanRequest(task, start, extent, angle=np.deg2rad(angle)))
    if task == TASK_HANDOVER:
        return TaskSpec(task), PlanRequest(task, start, extent)
    raise SequenceError(f"unknown task {task!r}; choose one of {TASKS}")


def plan_object_motion(request: PlanRequest, fps: float, rng: np.random.Generator,
                       planner_params: PlannerParams | None = None) -> FloatArray:
    """Object poses (K, 4, 4) of the manipulation phase at ``fps`` with randomized speeds.

    A lift ends by lowering the object back onto the table: the sequence releases it at rest.
    """
    base = planner_params or PlannerParams()
    params = PlannerParams(**{**base.__dict__, "rate_hz": fps,
                              "max_speed": rng.uniform(0.15, 0.35),
                              "max_angular_speed": rng.uniform(0.6, 1.4)})
    poses = TaskPlanner(params).plan(request).poses
    if request.task == TASK_LIFT:
        hold = np.repeat(poses[-1:], max(1, round(0.4 * fps)), axis=0)
        poses = np.concatenate([poses, hold, poses[::-1][1:]])
    return poses


def _blend(a: FloatArray, b: FloatArray, s: NDArray[np.float64]) -> FloatArray:
    """Poses from a to b at fractions s (linear position, slerp rotation)."""
    rot = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]])))(s)
    return make_pose(rot.as_matrix(), a[:3, 3] + s[:, None] * (b[:3, 3] - a[:3, 3]))


def _frames(seconds: float, fps: float) -> int:
    return max(2, round(seconds * fps))


def _backed_off(wrist: FloatArray, back: float, up: float) -> FloatArray:
    """The wrist moved back along its palm normal (x) and up (world z)."""
    out = wrist.copy()
    out[:3, 3] += -back * wrist[:3, 0] + np.array([0.0, 0.0, up])
    return out


def compose(object_start: FloatArray, motion: FloatArray, grasps: Mapping[str, HandGrasp],
            fps: float, timing: Timing) -> ComposedSequence:
    """Every hand's full sequence around the object ``motion`` (K, 4, 4), which starts at
    ``object_start``; all hands share the time grid and the object trajectory."""
    if not np.allclose(motion[0], object_start, atol=1e-6):
        raise SequenceError("the object motion must start at the object's resting pose")
    if not grasps:
        raise SequenceError("no hand grasps to compose")
    n_app, n_reach, n_close = (_frames(timing.approach, fps), _frames(timing.reach, fps),
                               _frames(timing.close, fps))
    n_hold, n_rel, n_ret = (_frames(timing.hold, fps), _frames(timing.release, fps),
                            _frames(timing.retreat, fps))
    k = len(motion)
    before = n_app + n_reach + n_close
    object_poses = hold_ends(motion, before, n_hold + n_rel + n_ret)
    object_poses[:before] = object_start  # the resting pose as given (motion[0] within 1e-6)
    bounds = np.cumsum([0, n_app, n_reach, n_close, k, n_hold, n_rel, n_ret])
    names = ("approach", "reach", "close", "manipulate", "hold", "release", "retreat")
    phases = {n: (int(a), int(b)) for n, a, b in zip(names, bounds[:-1], bounds[1:],
                                                       strict=True)}

    def ramp(n: int, delay: float = 0.0) -> NDArray[np.float64]:
        u = np.linspace(0.0, 1.0, n)
        return min_jerk((u - delay) / (1.0 - delay))

    wrists: dict[str, FloatArray] = {}
    joints: dict[str, FloatArray] = {}
    for hand_id, g in grasps.items():
        w_grasp0 = object_start @ g.wrist_in_object
        w_start = _backed_off(w_grasp0, timing.approach_distance, timing.approach_rise)
        w_pre = _backed_off(w_grasp0, timing.pregrasp_distance, 0.0)
        w_held = motion @ g.wrist_in_object
        w_end = w_held[-1]
        w_away = _backed_off(w_end, timing.retreat_distance, 0.03)
        wrist = np.concatenate([
            _blend(w_start, w_pre, ramp(n_app)), _blend(w_pre, w_grasp0, ramp(n_reach)),
            np.repeat(w_grasp0[None], n_close, axis=0), w_held,
            np.repeat(w_end[None], n_hold + n_rel, axis=0), _blend(w_end, w_away, ramp(n_ret))])

        def lerp(a: FloatArray, b: FloatArray, s: NDArray[np.float64]) -> FloatArray:
            return a + s[:, None] * (b - a)

        q = np.concatenate([
            lerp(g.q_open, g.q_pregrasp, ramp(n_app, 0.3)),
            np.repeat(g.q_pregrasp[None], n_reach, axis=0),
            lerp(g.q_pregrasp, g.q_grasp, ramp(n_close)),
            np.repeat(g.q_grasp[None], k + n_hold, axis=0),
            lerp(g.q_grasp, g.q_pregrasp, ramp(n_rel)),
            lerp(g.q_pregrasp, g.q_open, ramp(n_ret))])
        wrists[hand_id], joints[hand_id] = wrist, q
    return ComposedSequence(fps, object_poses, wrists, joints, phases)


def resting_start(rest: FloatArray, x: float, y: float, yaw: float) -> FloatArray:
    """The object's resting pose (``rest``: upright, on z = 0 at the origin) moved to (x, y)
    and turned by ``yaw`` about the vertical."""
    turn = make_pose(Rotation.from_rotvec([0.0, 0.0, yaw]).as_matrix(), [x, y, 0.0])
    return turn @ rest
