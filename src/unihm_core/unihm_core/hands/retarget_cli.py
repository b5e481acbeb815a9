"""``unihm retarget``: human 21-joint sequences (npz) -> joint trajectories for robot hands.

Also :func:`measure_retargeting`, the figures ``unihm bench`` reports for retargeting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

PROGRESS_MIN_FRAMES = 200  # shorter sequences finish before a progress bar is worth drawing


def measure_retargeting(hand_id: str, joints_21: ArrayLike, valid: ArrayLike | None = None,
                        wrist_poses: ArrayLike | None = None) -> dict[str, Any]:
    """Retarget one sequence; frames/s of optimizer time and fingertip error statistics."""
    from unihm_core.hands.retargeting import Retargeter

    tic = time.perf_counter()
    retargeter = Retargeter(hand_id)
    build_s = time.perf_counter() - tic
    tic = time.perf_counter()
    result = retargeter.retarget(joints_21, wrist_poses, valid)
    wall_s = time.perf_counter() - tic
    out = {"hand": hand_id, "optimizer": retargeter.spec.optimizer,
           "frames": len(result.q), "held": int(result.held.sum()), "fps": result.fps,
           "wall_fps": (len(result.q) - int(result.held.sum())) / wall_s if wall_s else 0.0,
           "build_s": build_s}
    out.update(retargeter.fingertip_errors(result).summary())
    return out


def _load_input(path: Path) -> dict[str, Any]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    if "joints_21" not in data:
        raise ValueError(f"{path} has no 'joints_21' array (T, 21, 3); it has: "
                         f"{', '.join(data.files) or 'nothing'}")
    out: dict[str, Any] = {"joints_21": data["joints_21"]}
    for key in ("valid", "wrist_poses"):
        out[key] = data.get(key)
    out["fps"] = float(data["fps"]) if "fps" in data else None
    out["side"] = str(data["side"]) if "side" in data else "right"
    return out


def _retarget_hand(hand_id: str, inp: dict[str, Any], frame: str | None,
                   show_progress: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from tqdm import tqdm

    from unihm_core.hands.retargeting import Retargeter

    retargeter = Retargeter(hand_id)
    total = len(np.atleast_3d(inp["joints_21"]))
    with tqdm(total=total, desc=hand_id, unit="frame", file=sys.stderr, leave=False,
              disable=not show_progress or total < PROGRESS_MIN_FRAMES) as bar:
        result = retargeter.retarget(inp["joints_21"], inp["wrist_poses"], inp["valid"],
                                     frame=frame, human_side=inp["side"],
                                     progress=lambda n: bar.update(n - bar.n))
    errors = retargeter.fingertip_errors(result)
    metrics = {"hand": hand_id, "optimizer": retargeter.spec.optimizer,
               "frames": len(result.q), "held": int(result.held.sum()), "fps": result.fps}
    metrics.update(errors.summary())
    arrays = {f"{hand_id}/q": result.q, f"{hand_id}/wrist_poses": result.wrist_poses,
              f"{hand_id}/joint_names": np.array(result.joint_names),
              f"{hand_id}/held": result.held,
              f"{hand_id}/fingers": np.array(errors.fingers),
              f"{hand_id}/fingertip_error_mm": errors.errors_m * 1e3,
              f"{hand_id}/metrics_json": np.array(json.dumps(metrics))}
    return arrays, metrics


def _print_table(rows: list[dict[str, Any]], source: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"unihm retarget {source}")
    cols = ("hand", "optimizer", "frames", "held", "frames/s", "mean mm", "p95 mm",
            "mean mm (human)", "p95 mm (human)", "mean % length")
    for col in cols:
        table.add_column(col, justify="left" if col in ("hand", "optimizer") else "right")
    for r in rows:
        if r.get("mean_mm") is None:
            table.add_row(r["hand"], r["optimizer"], str(r["frames"]), str(r["held"]),
                          f"{r['fps']:.0f}", *["-"] * 5)
            continue
        table.add_row(r["hand"], r["optimizer"], str(r["frames"]), str(r["held"]),
                      f"{r['fps']:.0f}", f"{r['mean_mm']:.1f}", f"{r['p95_mm']:.1f}",
                      f"{r['mean_norm_mm']:.1f}", f"{r['p95_norm_mm']:.1f}",
                      f"{r['mean_pct']:.1f}")
    Console(width=max(120, Console().width)).print(table)


def run_retarget(args: argparse.Namespace) -> int:
    """Entry of ``unihm retarget``; returns the exit code (2 for bad input)."""
    from unihm_core.hands.config import HandConfigError
    from unihm_core.hands.registry import UnknownHandError, get_hand_config

    hands = [h.strip() for h in args.hand.split(",") if h.strip()]
    try:
        if not hands:
            raise ValueError("--hand needs at least one hand id")
        for hand in hands:
            get_hand_config(hand)
        inp = _load_input(Path(args.input))
        arrays: dict[str, np.ndarray] = {"hands": np.array(hands)}
        if inp["fps"] is not None:
            arrays["fps"] = np.array(inp["fps"])
        rows = []
        for hand in hands:
            hand_arrays, metrics = _retarget_hand(hand, inp, args.frame, not args.json)
            arrays.update(hand_arrays)
            rows.append(metrics)
    except (UnknownHandError, HandConfigError, ValueError) as e:
        print(f"unihm retarget: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    _print_table(rows, args.input)
    if args.json:
        print(json.dumps({"input": str(args.input), "out": str(out), "hands": rows}))
    return 0


def register_retarget(subparsers: argparse._SubParsersAction) -> None:
    """Add ``unihm retarget`` (entry point of the ``unihm.commands`` group)."""
    parser = subparsers.add_parser(
        "retarget", help="retarget human 21-joint hand sequences to robot hands",
        description="Read IN.npz (joints_21 (T, 21, 3) in the MANO/MediaPipe order, metres; "
                    "optional valid (T,), wrist_poses (T, 4, 4), fps, side), retarget it to "
                    "each hand with dex-retargeting and write OUT.npz with <hand>/q, "
                    "<hand>/wrist_poses, joint names and fingertip errors "
                    "(docs/retargeting.md).")
    parser.add_argument("input", metavar="IN.npz", help="human hand sequence")
    parser.add_argument("--hand", required=True, metavar="ID[,ID...]",
                        help="hand type ids (see `unihm hands`)")
    parser.add_argument("--out", required=True, metavar="OUT.npz", help="where to write")
    parser.add_argument("--frame", choices=("world", "wrist"), default=None,
                        help="frame of joints_21 (default: world with wrist_poses, else wrist)")
    parser.add_argument("--json", action="store_true",
                        help="also print one JSON object as the last line")
    parser.set_defaults(func=run_retarget)
