"""``unihm refine``: physics-guided refinement of a hand trajectory around an object (npz in/out).

Bad input ends with one ``unihm refine: error: ...`` line and exit code 1, never a traceback:
the command is meant for files written by other tools, and what is wrong with them should be
readable at a glance. ``--demo`` runs on the synthetic grasp of :mod:`unihm_refiner.scenario`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from unihm_core.object_model import ObjectModel

FloatArray = NDArray[np.float64]
DEMO_HAND, DEMO_OBJECT = "xhand_right", "006_mustard_bottle"
# metric key -> (label, format) of the before/after table
TABLE_ROWS = {
    "penetration_mean_mm": ("penetration mean (mm)", "{:.2f}"),
    "penetration_max_mm": ("penetration max (mm)", "{:.2f}"),
    "penetrating_frames": ("penetrating frames", "{:.0f}"),
    "contact_dist_mean_mm": ("closest fingertip mean (mm)", "{:.2f}"),
    "contact_ratio": ("fingertips in contact", "{:.3f}"),
    "jitter_mean": ("jitter mean", "{:.4g}"),
    "limit_violations": ("joint limit violations", "{:.0f}"),
    "joint_dev_mean_rad": ("joint deviation mean (rad)", "{:.4f}"),
    "joint_dev_max_rad": ("joint deviation max (rad)", "{:.4f}"),
    "wrist_trans_dev_mean_mm": ("wrist deviation mean (mm)", "{:.2f}"),
    "wrist_rot_dev_mean_rad": ("wrist rotation deviation mean (rad)", "{:.4f}"),
}


@dataclass
class Inputs:
    """A trajectory to refine, checked against its hand."""

    wrist_poses: FloatArray
    q: FloatArray
    object_poses: FloatArray
    fps: float | None


def _quat_to_poses(pos: FloatArray, quat_xyzw: FloatArray) -> FloatArray:
    from scipy.spatial.transform import Rotation

    norm = np.linalg.norm(quat_xyzw, axis=1)
    bad = np.flatnonzero(norm < 1e-9)
    if bad.size:
        raise ValueError(f"wrist_quat_xyzw has zero-length quaternions at frame(s) "
                         f"{bad[:10].tolist()}")
    poses = np.repeat(np.eye(4)[None], len(pos), axis=0)
    poses[:, :3, :3] = Rotation.from_quat(quat_xyzw / norm[:, None]).as_matrix()
    poses[:, :3, 3] = pos
    return poses


def _finite(name: str, array: FloatArray) -> FloatArray:
    rows = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    if bad.size:
        raise ValueError(f"'{name}' has NaN/inf values at frame(s) {bad[:10].tolist()}")
    return array


def _array(data: Any, key: str, path: Path) -> FloatArray:
    try:
        return np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: '{key}' is not a numeric array ({e})") from e


def _read_wrist(data: Any, keys: set[str], prefix: str, path: Path) -> FloatArray:
    """Wrist poses from ``<prefix>wrist_poses`` or from ``wrist_pos`` + ``wrist_quat_xyzw``."""
    if f"{prefix}wrist_poses" in keys:
        return _array(data, f"{prefix}wrist_poses", path)
    if not {"wrist_pos", "wrist_quat_xyzw"} <= keys:
        raise ValueError(f"{path} has no '{prefix}wrist_poses' (T, 4, 4) nor 'wrist_pos' + "
                         f"'wrist_quat_xyzw'; it has: {', '.join(sorted(keys))}")
    pos, quat = _array(data, "wrist_pos", path), _array(data, "wrist_quat_xyzw", path)
    if pos.ndim != 2 or pos.shape[1] != 3 or quat.shape != (len(pos), 4):
        raise ValueError(f"wrist_pos must be (T, 3) and wrist_quat_xyzw (T, 4) with the same T, "
                         f"got {pos.shape} and {quat.shape}")
    return _quat_to_poses(_finite("wrist_pos", pos), _finite("wrist_quat_xyzw", quat))


def _object_poses(objects: FloatArray | None, frames: int) -> FloatArray:
    """(T, 4, 4) world-from-object poses; absent means the identity, (4, 4) a static object."""
    if objects is None:
        return np.repeat(np.eye(4)[None], frames, axis=0)
    if objects.shape == (4, 4):
        return np.repeat(objects[None], frames, axis=0)
    if objects.shape != (frames, 4, 4):
        raise ValueError(f"'object_poses' must have shape ({frames}, 4, 4) or (4, 4) to match "
                         f"the {frames} frames of 'q', got {objects.shape}")
    return objects


def load_inputs(path: Path, hand_id: str, dof: int) -> Inputs:
    """Read IN.npz (see ``unihm refine --help``) and check shapes, frame counts, dof, NaN."""
    if not path.is_file():
        raise ValueError(f"input file '{path}' does not exist")
    try:
        data = np.load(path, allow_pickle=False)
        keys = set(data.files)
    except Exception as e:  # zip, pickle and format errors all mean "unreadable"
        raise ValueError(f"cannot read '{path}' as an npz file ({type(e).__name__}: {e})") from e
    with data:
        prefix = f"{hand_id}/" if f"{hand_id}/q" in keys else ""
        if f"{prefix}q" not in keys:
            raise ValueError(f"{path} has no 'q' (T, {dof}) or '{hand_id}/q' array; it has: "
                             f"{', '.join(sorted(keys)) or 'nothing'}")
        q = _array(data, f"{prefix}q", path)
        wrist = _read_wrist(data, keys, prefix, path)
        objects = _array(data, "object_poses", path) if "object_poses" in keys else None
        fps = _array(data, "fps", path) if "fps" in keys else None
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValueError(f"'q' must have shape (T, {dof}) with T >= 1, got {q.shape}")
    if q.shape[1] != dof:
        raise ValueError(f"'q' has {q.shape[1]} joints per frame but {hand_id} has {dof}")
    frames = len(q)
    if wrist.shape != (frames, 4, 4):
        raise ValueError(f"wrist poses must have shape ({frames}, 4, 4) to match the {frames} "
                         f"frames of 'q', got {wrist.shape}")
    if fps is not None and not (fps.size == 1 and np.isfinite(fps).all() and fps.item() > 0):
        raise ValueError(f"'fps' must be one positive number, got {fps.tolist()}")
    return Inputs(_finite("wrist_poses", wrist), _finite("q", q),
                  _finite("object_poses", _object_poses(objects, frames)),
                  None if fps is None else float(fps.item()))


def _unknown_object(spec: str) -> ValueError:
    from unihm_core.assets import AssetNotFoundError, asset_path

    try:
        known = sorted(p.name for p in asset_path("ycb_objects").iterdir() if p.is_dir())
    except (AssetNotFoundError, OSError):
        known = []
    return ValueError(f"unknown object '{spec}': neither a file nor a YCB asset id (known: "
                      f"{', '.join(known) or 'none found'})")


def load_object(spec: str, n_points: int = 2048) -> ObjectModel:
    """A YCB asset id or a file path (cloud or mesh); a clear ValueError otherwise."""
    from unihm_core.assets import AssetNotFoundError
    from unihm_core.object_model import ObjectModel

    path = Path(spec).expanduser()
    if path.suffix or "/" in spec or path.exists():
        return ObjectModel.from_file(path, n_points=n_points)
    try:
        return ObjectModel.from_asset(spec, n_points=n_points)
    except AssetNotFoundError:
        raise _unknown_object(spec) from None


def _print_table(before: dict[str, float], after: dict[str, float], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col, justify in (("metric", "left"), ("before", "right"), ("after", "right")):
        table.add_column(col, justify=justify)
    for key, (label, fmt) in TABLE_ROWS.items():
        if key in before:
            table.add_row(label, fmt.format(before[key]), fmt.format(after[key]))
    Console(width=max(100, Console().width)).print(table)


def _metrics(hand_id: str, wrist: FloatArray, q: FloatArray, surface: Any, inp: Inputs,
             ) -> dict[str, float]:
    from unihm_refiner.metrics import trajectory_metrics

    return trajectory_metrics(hand_id, wrist, q, surface, inp.object_poses,
                              reference_joints=inp.q, reference_wrist_poses=inp.wrist_poses,
                              fps=inp.fps)


def _prepare(args: argparse.Namespace) -> tuple[str, str, Inputs, Any]:
    """(hand id, object label, inputs, surface) from the arguments or the demo scenario."""
    from unihm_core.hands.kinematics import hand_kinematics

    if args.demo:
        if args.input is not None:
            raise ValueError("--demo takes no input file")
        if args.frames < 3:
            raise ValueError(f"--frames must be at least 3, got {args.frames}")
        from unihm_core.assets import AssetNotFoundError
        from unihm_refiner.scenario import grasp_scenario

        hand_id, object_id = args.hand or DEMO_HAND, args.object or DEMO_OBJECT
        try:
            s = grasp_scenario(hand_id, object_id, frames=args.frames)
        except AssetNotFoundError:
            raise _unknown_object(object_id) from None
        return hand_id, object_id, Inputs(s.wrist_poses, s.q, s.target_poses, s.fps), s.surface
    missing = [flag for flag, value in (("IN.npz", args.input), ("--hand", args.hand),
                                        ("--object", args.object)) if value is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (or use --demo)")
    kin = hand_kinematics(args.hand)
    inp = load_inputs(Path(args.input), kin.hand_id, kin.dof)
    return kin.hand_id, args.object, inp, load_object(args.object)


def run_refine(args: argparse.Namespace) -> int:
    """Entry of ``unihm refine``; returns the exit code (1 for bad input)."""
    from unihm_core.hands.config import HandConfigError
    from unihm_core.hands.registry import UnknownHandError
    from unihm_refiner.config import load_refiner_config
    from unihm_refiner.solver import Refiner

    try:
        hand_id, object_label, inp, surface = _prepare(args)
        overrides = {"solver": {"fingers_only": True}} if args.fingers_only else None
        config = load_refiner_config(args.config, overrides)
        result = Refiner(hand_id, config).refine(inp.wrist_poses, inp.q, surface,
                                                 inp.object_poses)
        before = _metrics(hand_id, inp.wrist_poses, inp.q, surface, inp)
        after = _metrics(hand_id, result.wrist_poses, result.q, surface, inp)
    except (UnknownHandError, HandConfigError, ValueError, OSError) as e:
        message = " ".join(line.strip() for line in str(e).splitlines())
        print(f"unihm refine: error: {message}", file=sys.stderr)
        return 1
    out = Path(args.out)
    arrays: dict[str, np.ndarray] = {
        "hand": np.array(hand_id), "object": np.array(object_label),
        "wrist_poses": result.wrist_poses, "q": result.q,
        "generated_wrist_poses": inp.wrist_poses, "generated_q": inp.q,
        "object_poses": inp.object_poses, "iterations": result.iterations,
        "accepted": result.accepted, "seconds": np.array(result.seconds)}
    if inp.fps is not None:
        arrays["fps"] = np.array(inp.fps)
    for name, values in result.energy_before.items():
        arrays[f"energy_before/{name}"] = values
    for name, values in result.energy_after.items():
        arrays[f"energy_after/{name}"] = values
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, **arrays)
    except OSError as e:
        print(f"unihm refine: error: cannot write '{out}': {e.strerror or e}", file=sys.stderr)
        return 1
    source = "--demo" if args.demo else args.input
    _print_table(before, after, f"unihm refine {source}: {hand_id} on {object_label}, "
                                f"{len(result.q)} frames at {result.frames_per_second:.0f}/s")
    if args.json:
        print(json.dumps({
            "input": source, "out": str(out), "hand": hand_id, "object": object_label,
            "frames": len(result.q), "fps": round(result.frames_per_second, 1),
            "energy_before": float(result.energy_before["total"].sum()),
            "energy_after": float(result.energy_after["total"].sum()),
            "before": before, "after": after}))
    return 0


def register_refine(subparsers: argparse._SubParsersAction) -> None:
    """Add ``unihm refine`` (entry point of the ``unihm.commands`` group)."""
    parser = subparsers.add_parser(
        "refine", help="refine a hand trajectory against an object (contact, penetration)",
        description="Read IN.npz (wrist_poses (T, 4, 4) or wrist_pos (T, 3) + wrist_quat_xyzw "
                    "(T, 4); q (T, dof); or <hand>/q and <hand>/wrist_poses as written by "
                    "`unihm retarget`; optional object_poses (T, 4, 4) world-from-object, "
                    "default identity; optional fps), refine it against the object and write "
                    "OUT.npz with the refined wrist_poses and q, per-frame energies "
                    "energy_before/<term> and energy_after/<term>, and iterations. "
                    "`unihm refine --demo --out OUT.npz` runs on a synthetic grasp "
                    "(docs/refiner.md).")
    parser.add_argument("input", nargs="?", metavar="IN.npz", help="trajectory to refine")
    parser.add_argument("--hand", metavar="ID", help="hand type id (see `unihm hands`)")
    parser.add_argument("--object", metavar="ID|PATH",
                        help="YCB asset id (e.g. 006_mustard_bottle) or a cloud/mesh file")
    parser.add_argument("--out", required=True, metavar="OUT.npz", help="where to write")
    parser.add_argument("--config", metavar="YAML", help="refiner config overriding the default")
    parser.add_argument("--fingers-only", action="store_true",
                        help="keep the wrist as given; refine the finger joints only")
    parser.add_argument("--demo", action="store_true",
                        help="refine the synthetic grasp-and-lift scenario (no input needed)")
    parser.add_argument("--frames", type=int, default=120,
                        help="frames of the --demo scenario (default 120)")
    parser.add_argument("--json", action="store_true",
                        help="also print one JSON object as the last line")
    parser.set_defaults(func=run_refine)
