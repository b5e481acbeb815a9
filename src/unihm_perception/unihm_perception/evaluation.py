"""``unihm perception eval``: the perception pipeline scored on rendered scenes with known answers.

Each scene holds 3-5 YCB objects at random places; one is the target of an instruction drawn
from templates over every task (lift, pick-and-place next to / on another object, push to a
table region, rotate, hand over) and naming it by its name, a synonym or colour + noun. About a
quarter of the scenes hold two objects of one colour and name the target only by colour and
side ("the red one on the left"), so grounding has to use position.

Scores: the chosen object against the ground truth, the pose error modulo the model's
symmetries (found numerically, as in the registration tests; the mug counts as symmetric about
its axis when its handle is hidden), the IoU of the chosen cluster with the target's mask over
the back-projected pixels, and whether a valid trajectory ending at the destination was planned.
Planning failures are recorded without losing the selection: the planner is wrapped so a
``PlanningError`` is kept instead of aborting ``perceive``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from unihm_core.se3 import transform_points
from unihm_core.target_planner import PlannedTrajectory, PlanningError, PlanRequest, TaskPlanner
from unihm_perception.camera import depth_to_points
from unihm_perception.grounding import OBJECT_SYNONYMS
from unihm_perception.pipeline import Perception, PerceptionResult
from unihm_perception.scene import YCB_OBJECTS, RenderedFrame, random_scene, render

FloatArray = NDArray[np.float64]
STAGES = ("language", "points", "segmentation", "registration", "grounding", "object_cloud",
          "planning", "total")
# Objects a placed object can sensibly rest on (flat, wide tops).
_SUPPORTS = {"004_sugar_box", "061_foam_brick"}
_REGIONS = ("left", "right", "front", "back", "center")


class RecordingPlanner:
    """Delegates to a planner; a PlanningError is kept in ``error`` and a one-pose trajectory
    returned, so the evaluation still sees which object was chosen."""

    def __init__(self, planner: Any | None = None) -> None:
        self.planner = planner or TaskPlanner()
        self.error: str | None = None

    def plan(self, request: PlanRequest) -> PlannedTrajectory:
        self.error = None
        try:
            return self.planner.plan(request)
        except PlanningError as exc:
            self.error = str(exc)
            start = np.asarray(request.object_pose, dtype=np.float64)
            return PlannedTrajectory(request.task, start[None], np.zeros(1), start[None],
                                     np.asarray(request.object_extent, dtype=np.float64),
                                     start)


@dataclass(frozen=True)
class Trial:
    """One scene and instruction with its answer."""

    index: int
    scene_seed: int
    object_ids: tuple[str, ...]
    target: int  # index into object_ids
    instruction: str
    task: str
    reference: int | None = None  # the destination object, when one is named
    similar: bool = False


def _phrase(ycb_id: str, rng: np.random.Generator) -> str:
    """The target's name, a synonym, or colour + name."""
    info = YCB_OBJECTS[ycb_id]
    synonyms = [s for s in OBJECT_SYNONYMS.get(ycb_id, ("", ()))[1]
                if s not in {"dish", "red block", "yellow bottle"}]
    kind = rng.integers(3)
    if kind == 1 and synonyms:
        return str(rng.choice(synonyms))
    if kind == 2:
        return f"{info.color} {info.name}"
    return info.name


def make_trial(index: int, seed: int, objects_per_scene: tuple[int, int]) -> Trial:
    """A reproducible scene and instruction (see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    n = int(rng.integers(objects_per_scene[0], objects_per_scene[1] + 1))
    ids = sorted(YCB_OBJECTS)
    by_color: dict[str, list[str]] = {}
    for ycb_id in ids:
        by_color.setdefault(YCB_OBJECTS[ycb_id].color, []).append(ycb_id)
    similar = bool(rng.random() < 0.25)
    if similar:
        group = [g for g in by_color.values() if len(g) >= 2]
        pair = list(rng.choice(group[int(rng.integers(len(group)))], size=2, replace=False))
        rest = [i for i in ids if i not in pair]
        chosen = pair + list(rng.choice(rest, size=n - 2, replace=False))
    else:
        chosen = list(rng.choice(ids, size=n, replace=False))
    chosen = [str(c) for c in chosen]
    scene_seed = int(rng.integers(2**31))
    return _instruction(index, scene_seed, tuple(chosen), similar, rng)


def _instruction(index: int, scene_seed: int, ids: tuple[str, ...], similar: bool,
                 rng: np.random.Generator) -> Trial:
    spec = random_scene(ids, seed=scene_seed)
    poses = np.array([o.pose for o in spec.objects])
    if similar:
        color = YCB_OBJECTS[ids[0]].color
        same = [i for i, o in enumerate(ids) if YCB_OBJECTS[o].color == color]
        side = str(rng.choice(["left", "right"]))
        ys = {i: poses[i][1, 3] for i in same}  # planning y points left
        target = max(same, key=ys.get) if side == "left" else min(same, key=ys.get)
        phrase = f"{color} one on the {side}"
    else:
        target = int(rng.integers(len(ids)))
        phrase = _phrase(ids[target], rng)
    others = [i for i in range(len(ids)) if i != target]
    task = str(rng.choice(["lift", "pick_and_place", "push", "rotate", "handover"]))
    reference = None
    if task == "lift":
        text = str(rng.choice([f"pick up the {phrase}", f"lift the {phrase}",
                               f"raise the {phrase} by 10 cm"]))
    elif task == "pick_and_place":
        reference = int(rng.choice(others))
        ref_name = YCB_OBJECTS[ids[reference]].name
        if ids[reference] in _SUPPORTS and rng.random() < 0.5:
            text = f"put the {phrase} on the {ref_name}"
        else:
            text = str(rng.choice([f"put the {phrase} next to the {ref_name}",
                                   f"place the {phrase} beside the {ref_name}",
                                   f"move the {phrase} to the left of the {ref_name}"]))
    elif task == "push":
        text = f"push the {phrase} to the {rng.choice(_REGIONS)} of the table"
    elif task == "rotate":
        text = str(rng.choice([f"rotate the {phrase} by 90 degrees",
                               f"turn the {phrase} a quarter turn"]))
    else:
        text = str(rng.choice([f"hand me the {phrase}", f"give me the {phrase}"]))
    return Trial(index, scene_seed, ids, target, text, task, reference, similar)


# ------------------------------------------------------------------------------- pose error
_SYMMETRIES: dict[str, tuple[FloatArray, ...]] = {}


def symmetries(object_id: str, pts: FloatArray) -> tuple[FloatArray, ...]:
    """Rotations about the bounding-box centre that map the model's samples onto themselves
    (2 mm mean distance): quarter/half turns about each axis, and 30 degrees about z for
    a continuous symmetry. Cached per object id (the search takes ~0.1 s)."""
    if object_id in _SYMMETRIES:
        return _SYMMETRIES[object_id]
    local = pts - (pts.min(axis=0) + pts.max(axis=0)) / 2.0
    tree = cKDTree(local)
    tries = [Rotation.from_rotvec(axis * angle).as_matrix()
             for axis in np.eye(3) for angle in (np.pi / 2, np.pi)]
    tries.append(Rotation.from_euler("z", np.radians(30)).as_matrix())
    found = [np.eye(3)] + [r for r in tries if np.mean(tree.query(local @ r.T)[0]) < 0.002]
    _SYMMETRIES[object_id] = tuple(found)
    return _SYMMETRIES[object_id]


def _handle_hidden(frame: RenderedFrame, k: int, points: FloatArray) -> bool:
    """Whether the mug's handle (samples well outside its body radius) is unseen."""
    local = points - (points.min(axis=0) + points.max(axis=0)) / 2.0
    radial = np.hypot(local[:, 0], local[:, 1])
    handle = points[radial > np.percentile(radial, 50) + 0.012]
    if len(handle) == 0:
        return False
    world = transform_points(frame.object_poses[k], handle)
    cam = transform_points(np.linalg.inv(frame.camera_pose), world)
    k_ = frame.intrinsics
    z = cam[:, 2]
    u = np.round(k_.fx * cam[:, 0] / z + k_.cx).astype(int)
    v = np.round(k_.fy * cam[:, 1] / z + k_.cy).astype(int)
    inside = (u >= 0) & (u < k_.width) & (v >= 0) & (v < k_.height) & (z > 0)
    u, v, z = u[inside], v[inside], z[inside]
    with np.errstate(invalid="ignore"):
        seen = frame.masks[k][v, u] & (np.abs(frame.depth[v, u] - z) < 0.01)
    return int(seen.sum()) < 10


def pose_error(estimate: FloatArray, truth: FloatArray, points: FloatArray,
               symmetries: tuple[FloatArray, ...], axis_only: bool = False) -> tuple[float, float]:
    """Translation error at the model centre (m) and rotation error (deg) modulo symmetries
    (the smallest error over the rotations that map the model onto itself, as in BOP's
    symmetry-aware errors); for a continuous symmetry (or ``axis_only``) only the z axes are
    compared, the truth's axis turned by each symmetry (a can upside down is the same can)."""
    centre = ((points.min(axis=0) + points.max(axis=0)) / 2.0)[None]
    t_err = float(np.linalg.norm(transform_points(estimate, centre) -
                                 transform_points(truth, centre)))
    continuous = any(np.isclose(Rotation.from_matrix(s).magnitude(), np.radians(30))
                     for s in symmetries)
    if continuous or axis_only:
        axes = [truth[:3, :3] @ s[:, 2] for s in symmetries]
        cos = max(float(np.clip(estimate[:3, 2] @ axis, -1.0, 1.0)) for axis in axes)
        return t_err, float(np.degrees(np.arccos(cos)))
    r_err = min(Rotation.from_matrix(truth[:3, :3] @ s @ estimate[:3, :3].T).magnitude()
                for s in symmetries)
    return t_err, float(np.degrees(r_err))


# ------------------------------------------------------------------------------- scoring
def _cluster_truth(result: PerceptionResult, frame: RenderedFrame,
                   pixels: NDArray[np.intp]) -> list[int | None]:
    """Ground-truth object index of every cluster: the majority of its pixels' masks."""
    labels = np.full(len(pixels), -1)
    for k, mask in enumerate(frame.masks):
        labels[mask[pixels[:, 0], pixels[:, 1]]] = k
    owners: list[int | None] = []
    for obj in result.objects:
        own = labels[obj.cluster.indices]
        own = own[own >= 0]
        owners.append(int(np.bincount(own).argmax()) if len(own) else None)
    return owners


def _iou(indices: NDArray[np.intp], labels_mask: NDArray[np.bool_]) -> float:
    pred = np.zeros(len(labels_mask), dtype=bool)
    pred[indices] = True
    union = int((pred | labels_mask).sum())
    return float((pred & labels_mask).sum()) / union if union else 0.0


def run_trial(perception: Perception, trial: Trial, *, depth_noise: float = 0.0,
              missing_depth: float = 0.0) -> dict[str, Any]:
    """Render the trial's scene, perceive it, and score the result."""
    spec = random_scene(trial.object_ids, seed=trial.scene_seed)
    frame = render(spec, depth_noise_sigma=depth_noise, missing_depth_fraction=missing_depth,
                   seed=trial.scene_seed)
    record: dict[str, Any] = {"scene": trial.index, "instruction": trial.instruction,
                              "task": trial.task, "target": trial.object_ids[trial.target],
                              "objects": list(trial.object_ids), "similar": trial.similar}
    planner = perception.planner
    try:
        result = perception.perceive(frame.color, frame.depth, frame.intrinsics,
                                     frame.camera_pose, trial.instruction)
    except (LookupError, ValueError, RuntimeError) as exc:  # pipeline errors are findings
        record.update(correct=False, id_correct=False, error=f"{type(exc).__name__}: {exc}")
        return record
    p = perception.params
    cloud = depth_to_points(frame.depth, frame.intrinsics, min_depth=p.min_depth,
                            max_depth=p.max_depth, stride=p.stride)
    owners = _cluster_truth(result, frame, cloud.pixels)
    target_mask = frame.masks[trial.target][cloud.pixels[:, 0], cloud.pixels[:, 1]]
    chosen = result.selected
    # correct: the right label on the right cluster (a label on a neighbour's cluster is not)
    owner = owners[result.selection.index]
    record.update(chosen=result.object_id, id_correct=result.object_id == record["target"],
                  chosen_cluster_of=None if owner is None else trial.object_ids[owner],
                  correct=result.object_id == record["target"] and owner == trial.target,
                  iou=round(_iou(chosen.cluster.indices, target_mask), 4),
                  rule=result.selection.rule, timings_ms=result.timings_ms)
    if record["correct"] and chosen.match is not None:
        entry = perception.library[result.object_id]
        points = entry.model.points
        syms = symmetries(result.object_id, points)
        axis_only = result.object_id == "025_mug" and _handle_hidden(frame, trial.target, points)
        t_err, r_err = pose_error(result.pose, frame.object_poses[trial.target], points, syms,
                                  axis_only)
        record.update(pose_error_cm=round(100 * t_err, 3), pose_error_deg=round(r_err, 3),
                      handle_hidden=axis_only if result.object_id == "025_mug" else None)
    if trial.reference is not None and result.destination is not None:
        ref = result.destination.reference
        record["destination_correct"] = ref is not None and owners[ref.index] == trial.reference
    error = getattr(planner, "error", None)
    if error is not None:
        record.update(planned=False, planner_error=error)
    else:
        report = result.trajectory.validate()
        reached = True
        if result.destination is not None:  # the object's box centre over the destination
            end = result.trajectory.poses[-1][:3, 3]
            reached = bool(np.linalg.norm(end[:2] - result.destination.position[:2]) < 0.01)
        record.update(planned=bool(report.ok and reached),
                      planner_problems=list(report.problems) +
                      ([] if reached else ["does not end at the destination"]))
    if not record["correct"]:
        record["error"] = (f"chose {result.object_id or 'an unidentified cluster'} on the "
                           f"cluster of {record['chosen_cluster_of']} ({result.selection.why})")
    return record


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": float("nan"), "median": float("nan"), "p95": float("nan")}
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(arr.mean()), 3), "median": round(float(np.median(arr)), 3),
            "p95": round(float(np.percentile(arr, 95)), 3)}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-trial records (see :func:`evaluate`)."""
    n = len(records)
    ran = [r for r in records if "timings_ms" in r]
    posed = [r for r in records if "pose_error_cm" in r]
    cm = [r["pose_error_cm"] for r in posed]
    deg = [r["pose_error_deg"] for r in posed]
    within = sum(1 for r in posed if r["pose_error_cm"] <= 1.0 and r["pose_error_deg"] <= 5.0)
    planned = [r for r in ran if r.get("planned")]
    dest = [r for r in records if "destination_correct" in r]
    similar = [r for r in records if r["similar"]]
    timings = {s: {"mean": round(float(np.mean([r["timings_ms"][s] for r in ran])), 2),
                   "p95": round(float(np.percentile([r["timings_ms"][s] for r in ran], 95)), 2)}
               for s in STAGES} if ran else {}
    failures = [{"scene": r["scene"], "instruction": r["instruction"], "target": r["target"],
                 "message": r.get("error") or r.get("planner_error")
                 or "; ".join(r.get("planner_problems", []))}
                for r in records if not r["correct"] or not r.get("planned")]
    by_task: dict[str, dict[str, float]] = {}
    for task in sorted({r["task"] for r in records}):
        rs = [r for r in records if r["task"] == task]
        by_task[task] = {"n": len(rs),
                         "accuracy_pct": round(100 * sum(r["correct"] for r in rs) / len(rs), 1),
                         "planner_success_pct":
                             round(100 * sum(bool(r.get("planned")) for r in rs) / len(rs), 1)}
    return {
        "scenes": n,
        "accuracy_pct": round(100 * sum(r["correct"] for r in records) / max(n, 1), 1),
        "cluster_accuracy_pct": round(100 * sum(r.get("chosen_cluster_of") == r["target"]
                                                for r in records) / max(n, 1), 1),
        "id_accuracy_pct": round(100 * sum(r["id_correct"] for r in records) / max(n, 1), 1),
        "similar_scenes": len(similar),
        "similar_accuracy_pct": round(100 * sum(r["correct"] for r in similar)
                                      / max(len(similar), 1), 1),
        "perceive_errors": sum(1 for r in records if "timings_ms" not in r),
        "posed": len(posed),
        "pose_error_cm": _stats(cm), "pose_error_deg": _stats(deg),
        "within_1cm_5deg_pct": round(100 * within / max(len(posed), 1), 1),
        "iou_mean": round(float(np.mean([r["iou"] for r in ran])), 4) if ran else 0.0,
        "iou_mean_correct": round(float(np.mean([r["iou"] for r in ran if r["correct"]])), 4)
        if any(r["correct"] for r in ran) else 0.0,
        "destination_accuracy_pct": round(100 * sum(r["destination_correct"] for r in dest)
                                          / max(len(dest), 1), 1),
        "planner_success_pct": round(100 * len(planned) / max(n, 1), 1),
        "by_task": by_task,
        "timings_ms": timings,
        "failures": failures,
    }


def evaluate(n_scenes: int = 50, seed: int = 0, objects_per_scene: tuple[int, int] = (3, 5), *,
             depth_noise: float = 0.0, missing_depth: float = 0.0,
             perception: Perception | None = None, progress: bool = True,
             keep_records: bool = False) -> dict[str, Any]:
    """Score the pipeline on ``n_scenes`` rendered scenes (reproducible from ``seed``).

    A given ``perception`` has its planner wrapped in :class:`RecordingPlanner` for the run.
    Returns the :func:`summarize` figures (plus ``records`` with ``keep_records``)."""
    perception = perception or Perception()
    original = perception.planner
    perception.planner = RecordingPlanner(original)
    perception.warm_up()
    records: list[dict[str, Any]] = []
    try:
        from tqdm import tqdm
        bar = tqdm(range(n_scenes), desc="perception eval", file=sys.stderr,
                   disable=not progress)
        for index in bar:
            trial = make_trial(index, seed, objects_per_scene)
            records.append(run_trial(perception, trial, depth_noise=depth_noise,
                                     missing_depth=missing_depth))
            bar.set_postfix(correct=sum(r["correct"] for r in records))
    finally:
        perception.planner = original
    summary = summarize(records)
    summary.update(seed=seed, depth_noise_m=depth_noise, missing_depth=missing_depth)
    if keep_records:
        summary["records"] = records
    return summary


def register_perception(subparsers: argparse._SubParsersAction) -> None:
    """``unihm perception eval``."""
    parser = subparsers.add_parser("perception", help="evaluate the perception pipeline")
    sub = parser.add_subparsers(title="actions", metavar="ACTION")
    ev = sub.add_parser("eval", help="score perception on rendered scenes (JSON last with --json)")
    ev.add_argument("--scenes", type=int, default=50, help="number of scenes (default 50)")
    ev.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    ev.add_argument("--depth-noise", type=float, default=0.0, metavar="SIGMA",
                    help="Gaussian depth noise in metres (default 0)")
    ev.add_argument("--missing-depth", type=float, default=0.0, metavar="FRACTION",
                    help="fraction of depth pixels dropped (default 0)")
    ev.add_argument("--json", action="store_true", help="end with one JSON line")

    def run(args: argparse.Namespace) -> int:
        result = evaluate(args.scenes, args.seed, depth_noise=args.depth_noise,
                          missing_depth=args.missing_depth)
        for key, value in result.items():
            if key != "failures":
                print(f"{key}: {json.dumps(value)}")
        print(f"failures ({len(result['failures'])}):")
        for f in result["failures"]:
            print(f"  scene {f['scene']}: {f['instruction']!r} -> {f['message']}")
        if args.json:
            sys.stdout.write(json.dumps(result) + "\n")
        return 0

    def usage(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
    ev.set_defaults(func=run)
