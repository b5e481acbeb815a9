"""``unihm data``: synthesize, import, inspect, split and render HOI datasets (docs/dataset.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from unihm_core.dataset.format import DatasetFormatError
from unihm_core.dataset.objects_source import ObjectSourceError
from unihm_core.dataset.sequences import SequenceError
from unihm_core.hands.config import HandConfigError
from unihm_core.hands.registry import UnknownHandError

_USER_ERRORS: tuple[type[Exception], ...] = (DatasetFormatError, ObjectSourceError,
                                             SequenceError, HandConfigError, UnknownHandError,
                                             FileNotFoundError, ValueError)
DEFAULT_OBJECTS = ("004_sugar_box", "005_tomato_soup_can", "006_mustard_bottle", "025_mug",
                   "051_large_clamp", "061_foam_brick")
DEFAULT_UNSEEN = ("025_mug", "051_large_clamp")


def _fail(exc: BaseException) -> int:
    print(f"unihm data: error: {exc}", file=sys.stderr)
    return 1


def _csv(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


class _Bars:
    """One tqdm bar per stage, created on first report."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit="item", file=sys.stderr)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _synth(args: argparse.Namespace) -> int:
    from unihm_core.dataset.synth import SynthConfig, synthesize

    objects = _csv(args.objects)
    unseen = _csv(args.unseen) if args.unseen is not None else \
        tuple(o for o in DEFAULT_UNSEEN if o in objects and len(objects) > 2)
    config = SynthConfig(objects=objects, num=args.num, seed=args.seed, fps=args.fps,
                         hands=_csv(args.hands) if args.hands else (),
                         grasps_per_object=args.grasps_per_object,
                         # about a quarter of the candidates pass the quality filters
                         grasp_candidates=max(args.grasps_per_object * 6, 48),
                         unseen_objects=unseen, test_fraction=args.test_fraction,
                         workers=args.workers)
    bars = _Bars()
    try:
        report = synthesize(config, args.out, overwrite=args.overwrite, progress=bars)
    finally:
        bars.close()
    summary = {"out": args.out, "sequences": report.sequences, "skipped": report.skipped,
               "seconds": round(report.seconds, 1),
               "grasp_seconds": round(report.grasp_seconds, 1),
               "sequence_seconds": round(report.sequence_seconds, 1),
               "sequences_per_minute": round(report.sequences_per_minute, 1),
               "interrupted": report.interrupted,
               "hands": {h: {k: round(v, 3) if isinstance(v, float) else v
                             for k, v in row.items()} for h, row in report.per_hand.items()}}
    print(json.dumps(summary))
    return 130 if report.interrupted else 0


def _stats(args: argparse.Namespace) -> int:
    from unihm_core.dataset.stats import dataset_stats

    stats = dataset_stats(args.dir, read_sequences=not args.index_only)
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"{stats['root']}: {stats['sequences']} sequences, {stats['frames']} frames")
    print(f"  splits: {stats['splits']}  unseen objects: {stats['unseen_objects']}")
    print(f"  tasks: {stats['tasks']}")
    print(f"  objects: {stats['objects']}")
    print(f"  {'hand':<18}{'seqs':>6}{'pen mean':>10}{'pen max':>9}{'lift ok':>9}")
    for hand_id, row in stats["hands"].items():
        rate = row.get("lift_success_rate", row.get("lift_success_in_sequences"))
        print(f"  {hand_id:<18}{row['sequences']:>6}"
              f"{_mm(row.get('mean_penetration_mm')):>10}{_mm(row.get('max_penetration_mm')):>9}"
              f"{'' if rate is None else f'{100 * rate:.0f}%':>9}")
    return 0


def _mm(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}mm"


def _split(args: argparse.Namespace) -> int:
    from unihm_core.dataset.index import Dataset, make_splits

    ds = Dataset(args.dir)
    unseen = _csv(args.unseen)
    ds.index.splits = make_splits(ds.entries, unseen, args.test_fraction, args.seed)
    ds.index.unseen_objects = list(unseen)
    ds.write_index()
    print(json.dumps({s: len(v) for s, v in ds.index.splits.items()}))
    return 0


def _render(args: argparse.Namespace) -> int:
    from unihm_core.dataset.index import Dataset
    from unihm_core.dataset.render import render_sequence

    ds = Dataset(args.dir)
    seq: str | int = int(args.seq) if args.seq.lstrip("-").isdigit() else args.seq
    record = ds.load(seq)
    path = render_sequence(record, args.out, hand=args.hand, frames=args.frames)
    print(path)
    return 0


def _import(args: argparse.Namespace) -> int:
    from unihm_core.dataset.importers import IMPORTERS, run_import

    if args.format not in IMPORTERS:
        raise DatasetFormatError(f"unknown import format {args.format!r}; known: "
                                 f"{', '.join(sorted(IMPORTERS))}")
    bars = _Bars()
    try:
        report = run_import(args.format, args.src, args.out,
                            hands=_csv(args.hands) if args.hands else None, fps=args.fps,
                            seed=args.seed, overwrite=args.overwrite,
                            on_error="skip" if args.skip_bad else "raise",
                            progress=lambda done, total: bars("import", done, total))
    finally:
        bars.close()
    print(json.dumps(report.summary(), default=str))
    return 0


def _run(func: Any) -> Any:
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except _USER_ERRORS as exc:
            return _fail(exc)
    return wrapped


def register_data(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="hand-object datasets: synthesize, import, stats, split, render",
        description="Build and inspect the hand-object interaction datasets the tokenizer and "
                    "the generator train on (docs/dataset.md).")
    sub = parser.add_subparsers(dest="data_command", required=True)

    synth = sub.add_parser("synth", help="synthesize physically validated sequences",
                           description="Grasps optimized for the reference hand, retargeted "
                                       "and polished for every hand, checked in MuJoCo, then "
                                       "composed into task sequences.")
    synth.add_argument("--objects", default=",".join(DEFAULT_OBJECTS),
                       help="comma-separated library ids, object folders or mesh files "
                            "(default: the six shared YCB objects)")
    synth.add_argument("--out", required=True, help="dataset folder to create")
    synth.add_argument("--num", type=int, required=True, help="number of sequences")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--fps", type=float, default=30.0)
    synth.add_argument("--hands", default="", help="comma-separated hand ids (default: all)")
    synth.add_argument("--grasps-per-object", type=int, default=24)
    synth.add_argument("--unseen", default=None,
                       help="objects held out as the unseen split (default: 025_mug and "
                            "051_large_clamp when present among more than two objects)")
    synth.add_argument("--test-fraction", type=float, default=0.1)
    synth.add_argument("--workers", type=int, default=2, help="worker processes")
    synth.add_argument("--overwrite", action="store_true", help="replace a dataset in --out")
    synth.set_defaults(func=_run(_synth))

    stats = sub.add_parser("stats", help="counts, penetration and lift success per hand")
    stats.add_argument("dir")
    stats.add_argument("--json", action="store_true", help="one JSON object on stdout")
    stats.add_argument("--index-only", action="store_true",
                       help="counts from the index only (no physics figures; fast)")
    stats.set_defaults(func=_run(_stats))

    split = sub.add_parser("split", help="re-split a dataset by object",
                           description="Rewrite the index's splits: the --unseen objects form "
                                       "'unseen'; a seeded --test-fraction of the rest forms "
                                       "'test'. Unseen phrasings are in every record "
                                       "(heldout_instructions).")
    split.add_argument("dir")
    split.add_argument("--unseen", default="", help="comma-separated object ids")
    split.add_argument("--test-fraction", type=float, default=0.1)
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(func=_run(_split))

    render = sub.add_parser("render", help="draw a sequence (PNG filmstrip or animated GIF)")
    render.add_argument("dir")
    render.add_argument("--seq", required=True, help="sequence id or number in the index")
    render.add_argument("--out", required=True, help="output .png (filmstrip) or .gif (animation)")
    render.add_argument("--hand", default=None, help="hand id (default: the first)")
    render.add_argument("--frames", type=int, default=8, help="frames in a filmstrip")
    render.set_defaults(func=_run(_render))

    imp = sub.add_parser("import", help="import real captures (retargeted to every hand)")
    imp.add_argument("format", help="human21, unihm_npz, dexycb or oakink")
    imp.add_argument("src", help="file or folder to import")
    imp.add_argument("--out", required=True, help="dataset folder to create")
    imp.add_argument("--hands", default="", help="comma-separated hand ids (default: all)")
    imp.add_argument("--fps", type=float, default=None, help="resample (default: source rate)")
    imp.add_argument("--seed", type=int, default=0, help="seed of the instruction paraphrases")
    imp.add_argument("--skip-bad", action="store_true",
                     help="skip unreadable items (listed in the report) instead of stopping")
    imp.add_argument("--overwrite", action="store_true", help="replace a dataset in --out")
    imp.set_defaults(func=_run(_import))
