"""``unihm scene render`` and ``unihm perceive``: synthetic frames to files, files to a plan.

Both commands work on plain files (PNG, npy, JSON, rosbag2) so a frame can be made, inspected
and re-run without ROS. Bad input ends with one ``unihm <command>: error: ...`` line and exit
code 1, never a traceback: the files usually come from other tools, and what is wrong with them
should be readable at a glance. One :class:`~unihm_perception.pipeline.Perception` is kept per
process, so repeated in-process calls load the sentence-embedding model once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from unihm_perception.camera import CameraIntrinsics

if TYPE_CHECKING:
    from unihm_perception.pipeline import Perception, PerceptionResult

FloatArray = NDArray[np.float64]
BAG_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
CAMERA_POSE_KEY = "planning_from_camera_optical"
DEFAULT_N_OBJECTS = 3


class CliError(Exception):
    """A problem with the user's input, reported as one line."""


def _fail(command: str, message: object) -> int:
    print(f"unihm {command}: error: {message}", file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------------- scene
def _bag_target(out: Path, force_bag: bool, storage: str | None) -> tuple[Path, str] | None:
    """(bag folder, storage) when --out names a bag; a ``x.mcap`` path becomes folder ``x``
    because rosbag2 bags are folders holding ``<name>.mcap``."""
    suffix = out.suffix.lower()
    if suffix in BAG_SUFFIXES:
        return out.with_suffix(""), storage or BAG_SUFFIXES[suffix]
    if force_bag:
        return out, storage or "mcap"
    return None


def _camera_info_dict(intrinsics: CameraIntrinsics, camera_pose: FloatArray) -> dict[str, Any]:
    k = intrinsics
    return {"width": k.width, "height": k.height, "fx": k.fx, "fy": k.fy, "cx": k.cx,
            "cy": k.cy, "k": k.matrix.reshape(-1).tolist(),
            "distortion_model": k.distortion_model, "distortion": list(k.distortion),
            "frame_id": "camera_color_optical_frame",
            CAMERA_POSE_KEY: np.asarray(camera_pose).tolist()}


def _write_frame_dir(out: Path, frame: Any) -> list[str]:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(frame.color, dtype=np.uint8), "RGB").save(out / "color.png")
    depth = np.asarray(frame.depth, dtype=np.float32)
    np.save(out / "depth.npy", depth)
    mm = np.where(np.isfinite(depth) & (depth > 0), np.rint(depth * 1000.0), 0.0)
    mm16 = np.clip(mm, 0, np.iinfo(np.uint16).max).astype(np.uint16)
    Image.fromarray(mm16).save(out / "depth_mm.png")
    (out / "camera_info.json").write_text(
        json.dumps(_camera_info_dict(frame.intrinsics, frame.camera_pose), indent=1))
    truth = {CAMERA_POSE_KEY: np.asarray(frame.camera_pose).tolist(),
             "object_ids": list(frame.object_ids), "labels": list(frame.labels),
             "planning_from_object": np.asarray(frame.object_poses).tolist()}
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1))
    return ["color.png", "depth.npy", "depth_mm.png", "camera_info.json", "ground_truth.json"]


def _run_scene_render(args: argparse.Namespace) -> int:
    from unihm_perception.scene import YCB_OBJECTS, random_scene, render

    try:
        if args.frames < 1:
            raise CliError(f"--frames must be >= 1, got {args.frames}")
        out = Path(args.out)
        bag = _bag_target(out, args.bag, args.storage)
        if bag is None and args.frames > 1:
            raise CliError("several --frames need a bag: add --bag or end --out with .mcap")
        if bag is not None and bag[0].exists():
            raise CliError(f"bag folder '{bag[0]}' already exists; remove it or pick another")
        if args.objects:
            ids = [s.strip() for s in args.objects.split(",") if s.strip()]
            unknown = [i for i in ids if i not in YCB_OBJECTS]
            if unknown:
                raise CliError(f"unknown object(s) {', '.join(unknown)}; known: "
                               f"{', '.join(YCB_OBJECTS)}")
            spec = random_scene(ids, seed=args.seed)
        else:
            n = DEFAULT_N_OBJECTS if args.n_objects is None else args.n_objects
            spec = random_scene(n_objects=n, seed=args.seed)
        start = time.perf_counter()
        frames = [render(spec, depth_noise_sigma=args.depth_noise,
                         missing_depth_fraction=args.missing_depth, seed=args.seed + i)
                  for i in range(args.frames)]
        render_ms = 1000.0 * (time.perf_counter() - start)
        if bag is not None:
            from unihm_perception.bag_io import write_frames_bag

            path = write_frames_bag(bag[0], frames, storage=bag[1])
            written = sorted(p.name for p in path.iterdir())
        else:
            path = out
            written = _write_frame_dir(out, frames[0])
    except (CliError, ValueError, KeyError, OSError, RuntimeError) as e:
        return _fail("scene", e.args[0] if isinstance(e, KeyError) and e.args else e)
    objects = ", ".join(f"{i} ({label})" for i, label in zip(frames[0].object_ids,
                                                             frames[0].labels, strict=True))
    print(f"rendered {len(frames)} frame(s) of {objects or 'an empty table'} in "
          f"{render_ms:.0f} ms -> {path}: {', '.join(written)}")
    return 0


def register_scene(subparsers: argparse._SubParsersAction) -> None:
    """``unihm scene render``: a random tabletop scene to image files or a rosbag2."""
    parser = subparsers.add_parser(
        "scene", help="synthetic tabletop RGB-D frames with ground truth",
        description="Synthetic tabletop scenes (YCB objects on a table, MuJoCo offscreen).")
    sub = parser.add_subparsers(title="actions", metavar="ACTION")
    render_p = sub.add_parser(
        "render", help="render a random scene to files or a bag",
        description="Render a random scene. Into a folder: color.png, depth.npy (float32 "
                    "metres, NaN = no reading), depth_mm.png (16-bit millimetres, 0 = no "
                    "reading), camera_info.json (intrinsics and planning_from_camera_optical) "
                    "and ground_truth.json. With --bag, or --out ending in .mcap/.db3, a "
                    "rosbag2 folder of --frames frames (color rgb8, depth 32FC1, CameraInfo) "
                    "with ground_truth.json inside.")
    which = render_p.add_mutually_exclusive_group()
    which.add_argument("--objects", metavar="ID,ID,...",
                       help="YCB ids to place, e.g. 006_mustard_bottle,025_mug")
    which.add_argument("--n-objects", type=int, metavar="N",
                       help=f"number of random objects (default {DEFAULT_N_OBJECTS})")
    render_p.add_argument("--seed", type=int, default=0, help="scene and noise seed (default 0)")
    render_p.add_argument("--frames", type=int, default=1, metavar="K",
                          help="frames of the same scene (bags only; noise differs per frame)")
    render_p.add_argument("--depth-noise", type=float, default=0.0, metavar="SIGMA",
                          help="Gaussian depth noise, metres (default 0)")
    render_p.add_argument("--missing-depth", type=float, default=0.0, metavar="FRACTION",
                          help="fraction of valid depth pixels dropped (default 0)")
    render_p.add_argument("--bag", action="store_true", help="write a rosbag2 instead of files")
    render_p.add_argument("--storage", choices=sorted(set(BAG_SUFFIXES.values())),
                          help="bag storage (default from the suffix, else mcap)")
    render_p.add_argument("--out", required=True, metavar="DIR|BAG", help="output folder or bag")
    render_p.set_defaults(func=_run_scene_render)
    parser.set_defaults(func=lambda _args: (parser.print_help(), 2)[1])


# ---------------------------------------------------------------------------------- inputs
def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise CliError(f"{what} file '{path}' does not exist")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CliError(f"cannot read {what} '{path}' as JSON ({e})") from e


def _pose_matrix(value: Any, source: str) -> FloatArray:
    """A 4x4 rigid transform, checked so that a transposed or scaled matrix fails early."""
    try:
        pose = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise CliError(f"camera pose in {source} is not numeric ({e})") from e
    if pose.shape != (4, 4):
        raise CliError(f"camera pose in {source} must be 4x4, got shape {pose.shape}")
    if not np.isfinite(pose).all():
        raise CliError(f"camera pose in {source} has NaN/inf values")
    rot = pose[:3, :3]
    if not np.allclose(pose[3], [0, 0, 0, 1], atol=1e-6) or \
            not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) or np.linalg.det(rot) < 0:
        raise CliError(f"camera pose in {source} is not a rigid transform (rotation must be "
                       "orthonormal, last row 0 0 0 1)")
    return pose


def _load_camera_pose(path: Path) -> FloatArray:
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise CliError(f"camera pose file '{path}' does not exist")
        try:
            return _pose_matrix(np.load(path, allow_pickle=False), str(path))
        except (OSError, ValueError) as e:
            raise CliError(f"cannot read camera pose '{path}' as npy ({e})") from e
    data = _read_json(path, "camera pose")
    if isinstance(data, dict):
        if CAMERA_POSE_KEY not in data:
            raise CliError(f"{path} has no '{CAMERA_POSE_KEY}' 4x4 matrix")
        data = data[CAMERA_POSE_KEY]
    return _pose_matrix(data, str(path))


def _load_camera_info(path: Path) -> tuple[CameraIntrinsics, FloatArray | None]:
    info = _read_json(path, "camera info")
    if not isinstance(info, dict):
        raise CliError(f"camera info '{path}' must be a JSON object")
    try:
        width, height = int(info["width"]), int(info["height"])
        k = info.get("k", info.get("K"))
        extra = {"distortion_model": str(info.get("distortion_model", "plumb_bob")),
                 "distortion": info.get("distortion", info.get("d", ()))}
        if k is not None:
            intrinsics = CameraIntrinsics.from_matrix(k, width, height, **extra)
        else:
            intrinsics = CameraIntrinsics(width, height, float(info["fx"]), float(info["fy"]),
                                          float(info["cx"]), float(info["cy"]), **extra)
    except KeyError as e:
        raise CliError(f"camera info '{path}' lacks {e.args[0]!r} (needs width, height and "
                       "k or fx, fy, cx, cy)") from e
    except (TypeError, ValueError) as e:
        raise CliError(f"camera info '{path}' is invalid: {e}") from e
    pose = info.get(CAMERA_POSE_KEY)
    return intrinsics, None if pose is None else _pose_matrix(pose, str(path))


def _load_color(path: Path) -> NDArray[np.uint8]:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise CliError(f"color image '{path}' does not exist")
    try:
        with Image.open(path) as image:
            if image.mode not in ("RGB", "RGBA"):
                raise CliError(f"color image '{path}' must be 8-bit RGB(A), got mode "
                               f"{image.mode!r}")
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise CliError(f"cannot read color image '{path}' ({e})") from e


def _load_depth(path: Path) -> NDArray[np.float32]:
    """Metres with NaN holes: float npy is metres, integer npy and 16-bit PNG millimetres."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise CliError(f"depth image '{path}' does not exist")
    if path.suffix.lower() == ".npy":
        try:
            raw = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CliError(f"cannot read depth '{path}' as npy ({e})") from e
    else:
        try:
            with Image.open(path) as image:
                if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
                    raise CliError(f"depth PNG '{path}' must be 16-bit millimetres, got mode "
                                   f"{image.mode!r}")
                raw = np.asarray(image).astype(np.int64)
        except (UnidentifiedImageError, OSError) as e:
            raise CliError(f"cannot read depth image '{path}' ({e})") from e
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[..., 0]
    if raw.ndim != 2:
        raise CliError(f"depth '{path}' must be one channel (H, W), got shape {raw.shape}")
    if np.issubdtype(raw.dtype, np.floating):
        depth = raw.astype(np.float32)
    elif np.issubdtype(raw.dtype, np.integer):
        depth = raw.astype(np.float32) / np.float32(1000.0)
        depth[raw <= 0] = np.nan
    else:
        raise CliError(f"depth '{path}' has dtype {raw.dtype}; expected float metres or "
                       "integer millimetres")
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def _bag_folder(path: Path) -> Path:
    """The bag folder from the folder itself, its .mcap/.db3 file, or ``x.mcap`` for ``x/``."""
    if path.is_dir():
        return path
    if path.is_file() and path.suffix.lower() in BAG_SUFFIXES:
        return path.parent
    if path.suffix.lower() in BAG_SUFFIXES and path.with_suffix("").is_dir():
        return path.with_suffix("")
    raise CliError(f"bag '{path}' does not exist")


def _load_bag(path: Path, index: int) -> tuple[Any, FloatArray | None, dict[str, Any] | None]:
    from unihm_perception.bag_io import read_frames_bag, read_ground_truth

    folder = _bag_folder(path)
    try:
        frames = read_frames_bag(folder)
    except (ValueError, OSError, KeyError) as e:
        raise CliError(f"cannot read bag '{folder}' ({e})") from e
    except Exception as e:  # rosbags raises its own error types for broken bags
        raise CliError(f"cannot read bag '{folder}' ({type(e).__name__}: {e})") from e
    if not frames:
        raise CliError(f"bag '{folder}' has no complete color + depth + camera_info frame")
    if not -len(frames) <= index < len(frames):
        raise CliError(f"--frame {index} is out of range: the bag has {len(frames)} frame(s)")
    frame = frames[index]
    try:
        records = {r["stamp_ns"]: r for r in read_ground_truth(folder)}
    except FileNotFoundError:
        records = {}
    except (ValueError, KeyError, TypeError) as e:
        raise CliError(f"ground truth of bag '{folder}' is unreadable ({e})") from e
    truth = records.get(frame.stamp)
    pose = None
    if truth is not None and CAMERA_POSE_KEY in truth:
        pose = _pose_matrix(truth[CAMERA_POSE_KEY], f"{folder}/ground_truth.json")
    return frame, pose, truth


# ---------------------------------------------------------------------------------- outputs
def _project(points: FloatArray, intrinsics: CameraIntrinsics,
             camera_pose: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Pixel (u, v) of planning-frame points, and which lie in front of the camera."""
    rot, t = camera_pose[:3, :3], camera_pose[:3, 3]
    cam = (np.asarray(points, dtype=np.float64) - t) @ rot
    z = cam[:, 2]
    front = z > 1e-6
    safe = np.where(front, z, 1.0)
    uv = np.stack([intrinsics.fx * cam[:, 0] / safe + intrinsics.cx,
                   intrinsics.fy * cam[:, 1] / safe + intrinsics.cy], axis=1)
    return uv, front


def _pixels(uv: FloatArray, front: NDArray[np.bool_], width: int,
            height: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    u, v = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
    keep = front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return u[keep], v[keep]


def draw_overlay(color: NDArray[np.uint8], intrinsics: CameraIntrinsics, camera_pose: FloatArray,
                 result: PerceptionResult) -> Any:
    """The frame with other clusters tinted blue, the chosen object's completed cloud green
    and the object-centre path of the target trajectory (circle: start, square: end)."""
    from PIL import Image, ImageDraw

    canvas = np.asarray(color, dtype=np.float64).copy()
    h, w = canvas.shape[:2]
    for i, obj in enumerate(result.objects):
        if i == result.selection.index:
            continue
        u, v = _pixels(*_project(obj.cluster.points, intrinsics, camera_pose), w, h)
        canvas[v, u] = 0.5 * canvas[v, u] + 0.5 * np.array([40.0, 110.0, 255.0])
    uv, front = _project(result.cloud_points, intrinsics, camera_pose)
    green = np.zeros((h, w), dtype=bool)
    for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1)):  # 2x2 dots: a sparse cloud reads as a blob
        u, v = _pixels(uv + np.array([du, dv]), front, w, h)
        green[v, u] = True
    canvas[green] = 0.35 * canvas[green] + 0.65 * np.array([0.0, 255.0, 0.0])
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for i, obj in enumerate(result.objects):
        if i == result.selection.index or obj.candidate.label is None:
            continue
        uv, front = _project(np.asarray([obj.candidate.centroid]), intrinsics, camera_pose)
        if front[0]:
            draw.text((uv[0, 0] + 4, uv[0, 1]), obj.candidate.label, fill=(200, 225, 255))
    # follow the cloud centre rigidly attached to the object along T_tar(t)
    centre = np.append(np.asarray(result.cloud_points).mean(axis=0), 1.0)
    local = np.linalg.solve(result.pose, centre)
    path = (result.target_poses @ local)[:, :3]
    uv, front = _project(path, intrinsics, camera_pose)
    line = [(float(a), float(b)) for (a, b), f in zip(uv, front, strict=True) if f]
    if len(line) > 1:
        draw.line(line, fill=(255, 0, 255), width=3)
    if line:
        (x0, y0), (x1, y1) = line[0], line[-1]
        draw.ellipse((x0 - 6, y0 - 6, x0 + 6, y0 + 6), outline=(255, 255, 255), width=3)
        draw.rectangle((x1 - 6, y1 - 6, x1 + 6, y1 + 6), outline=(255, 0, 255), width=3)
    title = f"{result.instruction.task}: {result.label or 'unidentified object'}"
    draw.text((8, 8), title, fill=(255, 255, 255))
    return image


def _floats(values: Any) -> list[Any]:
    return np.round(np.asarray(values, dtype=np.float64), 6).tolist()


def result_summary(result: PerceptionResult) -> dict[str, Any]:
    """What result.json holds: the choice, why, where it goes, and each stage's time."""
    dest = result.destination
    traj = result.trajectory
    return {
        "instruction": result.instruction.text,
        "task": result.instruction.task,
        "object_id": result.object_id,
        "label": result.label,
        "pose": _floats(result.pose),
        "fitness": round(float(result.fitness), 4),
        "selection": {"index": result.selection.index, "rule": result.selection.rule,
                      "score": round(float(result.selection.score), 4),
                      "why": result.selection.why},
        "destination": None if dest is None else {
            "position": _floats(dest.position), "relation": dest.relation,
            "region": dest.region, "support_index": dest.support_index, "why": dest.why},
        "trajectory": {"frames": len(traj.times),
                       "duration_s": round(float(traj.times[-1]), 3) if len(traj.times) else 0.0,
                       "goal": _floats(traj.goal), "notes": list(traj.notes)},
        "objects": [{"index": i, "object_id": o.candidate.id, "label": o.candidate.label,
                     "points": len(o.cluster),
                     "fitness": None if o.match is None else round(float(o.match.fitness), 4),
                     "centroid": _floats(o.candidate.centroid),
                     "extent": _floats(o.candidate.extent)}
                    for i, o in enumerate(result.objects)],
        "cloud_points": len(result.cloud_points),
        "timings_ms": result.timings_ms,
    }


def write_outputs(out: Path, result: PerceptionResult, *, color: NDArray[np.uint8],
                  intrinsics: CameraIntrinsics, camera_pose: FloatArray,
                  extra: dict[str, Any]) -> dict[str, Any]:
    """object_cloud.npz, trajectory.npz, overlay.png and result.json; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "object_cloud.npz", points=np.asarray(result.cloud_points, dtype=np.float64),
             normals=np.asarray(result.cloud_normals, dtype=np.float64))
    traj = result.trajectory
    # poses: T_tar(t) of the object (the frame of result.pose); box_poses: the planner's box
    np.savez(out / "trajectory.npz", poses=result.target_poses, times=traj.times,
             box_poses=traj.poses, waypoints=traj.waypoints, goal=traj.goal,
             task=np.asarray(traj.task))
    draw_overlay(color, intrinsics, camera_pose, result).save(out / "overlay.png")
    summary = {**result_summary(result), **extra}
    summary["outputs"] = {name: str(out / name) for name in
                          ("result.json", "object_cloud.npz", "trajectory.npz", "overlay.png")}
    (out / "result.json").write_text(json.dumps(summary, indent=1))
    return summary


# ---------------------------------------------------------------------------------- perceive
@cache
def shared_perception() -> Perception:
    """The process-wide default pipeline (the embedding model loads on first use)."""
    from unihm_perception.pipeline import Perception

    return Perception()


def _gather(args: argparse.Namespace) -> tuple[NDArray[np.uint8], NDArray[np.float32],
                                               CameraIntrinsics, FloatArray, dict[str, Any]]:
    """Color, depth, intrinsics, camera pose and provenance from the files or the bag."""
    explicit = None if args.camera_pose is None else _load_camera_pose(Path(args.camera_pose))
    extra: dict[str, Any] = {}
    if args.bag is not None:
        if args.rgb or args.depth or args.camera_info:
            raise CliError("give either --bag or --rgb/--depth/--camera-info, not both")
        frame, pose, truth = _load_bag(Path(args.bag), args.frame)
        color, depth, intrinsics = frame.color, frame.depth_m, frame.intrinsics
        extra["input"] = {"bag": str(args.bag), "frame": args.frame, "stamp_ns": frame.stamp}
        if truth is not None:
            extra["ground_truth"] = {"object_ids": truth.get("object_ids"),
                                     "labels": truth.get("labels")}
        source = "bag ground truth"
    else:
        missing = [f"--{n.replace('_', '-')}" for n in ("rgb", "depth", "camera_info")
                   if getattr(args, n) is None]
        if missing:
            raise CliError(f"missing {', '.join(missing)} (or give --bag)")
        intrinsics, pose = _load_camera_info(Path(args.camera_info))
        color, depth = _load_color(Path(args.rgb)), _load_depth(Path(args.depth))
        extra["input"] = {"rgb": args.rgb, "depth": args.depth, "camera_info": args.camera_info}
        source = "camera_info.json"
    size = (intrinsics.height, intrinsics.width)
    if color.shape[:2] != size or depth.shape != size:
        raise CliError(f"image sizes disagree: camera info says {size[1]}x{size[0]}, color is "
                       f"{color.shape[1]}x{color.shape[0]}, depth {depth.shape[-1]}x"
                       f"{depth.shape[0]}")
    if explicit is not None:
        pose, source = explicit, str(args.camera_pose)
    if pose is None:
        raise CliError(f"no camera pose: {source} has no '{CAMERA_POSE_KEY}'; give "
                       "--camera-pose FILE (.json or .npy 4x4)")
    extra["camera_pose_from"] = source
    return color, depth, intrinsics, pose, extra


def _run_perceive(args: argparse.Namespace) -> int:
    from unihm_core.target_planner import PlanningError
    from unihm_perception.grounding import ObjectNotFoundError

    try:
        color, depth, intrinsics, pose, extra = _gather(args)
        result = shared_perception().perceive(color, depth, intrinsics, pose, args.instruction)
        summary = write_outputs(Path(args.out), result, color=color, intrinsics=intrinsics,
                                camera_pose=pose, extra=extra)
    except ObjectNotFoundError as e:  # a LookupError: its message lists the objects seen
        return _fail("perceive", e.args[0] if e.args else e)
    except (CliError, ValueError, PlanningError, OSError) as e:
        # InstructionError and TableNotFoundError are ValueErrors
        return _fail("perceive", e)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{summary['task']}: {result.label or 'unidentified object'} "
          f"({result.object_id or '-'}), fitness {result.fitness:.2f}; {result.selection.why}")
    if result.destination is not None:
        print(f"destination: {result.destination.why or result.destination.relation}")
    print(f"trajectory: {summary['trajectory']['frames']} poses over "
          f"{summary['trajectory']['duration_s']:.2f} s; total {result.timings_ms['total']:.0f} "
          f"ms ({', '.join(f'{k} {v:.0f}' for k, v in result.timings_ms.items() if k != 'total')})")
    print(f"wrote {', '.join(summary['outputs'].values())}")
    return 0


def register_perceive(subparsers: argparse._SubParsersAction) -> None:
    """``unihm perceive``: one frame and an instruction -> object cloud, pose and trajectory."""
    parser = subparsers.add_parser(
        "perceive", help="object cloud, pose and target trajectory from one RGB-D frame",
        description="Run the perception pipeline on one frame, from files (--rgb, --depth, "
                    "--camera-info) or a rosbag2 (--bag). The camera pose "
                    "(planning_from_camera_optical) comes from --camera-pose when given, else "
                    "from camera_info.json or the bag's ground_truth.json. Writes "
                    "object_cloud.npz, trajectory.npz, result.json and overlay.png to --out.")
    parser.add_argument("--rgb", metavar="PNG", help="8-bit RGB image")
    parser.add_argument("--depth", metavar="NPY|PNG",
                        help="float npy in metres, or 16-bit PNG / integer npy in millimetres "
                             "(0 or NaN = no reading); registered to the color image")
    parser.add_argument("--camera-info", metavar="JSON",
                        help="width, height, k (or fx, fy, cx, cy) and optionally "
                             f"{CAMERA_POSE_KEY} (as unihm scene render writes it)")
    parser.add_argument("--bag", metavar="BAG", help="rosbag2 folder (or its .mcap file)")
    parser.add_argument("--frame", type=int, default=0, metavar="I",
                        help="frame of the bag, in stamp order (default 0; negative from end)")
    parser.add_argument("--camera-pose", metavar="JSON|NPY",
                        help="4x4 planning_from_camera_optical; overrides the one in the inputs")
    parser.add_argument("--instruction", required=True, help='e.g. "put the mug on the box"')
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--json", action="store_true",
                        help="print the result as one JSON object (last line)")
    parser.set_defaults(func=_run_perceive)
