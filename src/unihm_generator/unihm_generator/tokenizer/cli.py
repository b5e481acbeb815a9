"""``unihm tokenizer``: train, add a hand, evaluate, translate.

Registered through the ``unihm.commands`` entry-point group (see unihm_core.cli).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

SPLITS = ("train", "test", "unseen", "all")


def _err(msg: str) -> None:
    print(f"unihm tokenizer: error: {msg}", file=sys.stderr)


def _echo(msg: str) -> None:
    print(msg, file=sys.stderr)


def _hands_arg(value: str | None) -> list[str] | None:
    return [h.strip() for h in value.split(",") if h.strip()] if value else None


def _run_train(args: argparse.Namespace) -> int:
    from unihm_generator.tokenizer.config import TokenizerConfig
    from unihm_generator.tokenizer.data import load_bank
    from unihm_generator.tokenizer.evaluate import evaluate, plot_report
    from unihm_generator.tokenizer.io import set_threads
    from unihm_generator.tokenizer.train import train_tokenizer

    set_threads(args.threads)
    overrides: dict[str, Any] = {k: getattr(args, k) for k in (
        "backbone", "chunk", "codebook_size", "code_dim", "hidden", "lr", "lr_final",
        "batch_size", "seed", "reference_epochs", "distill_epochs", "finetune_epochs",
        "steps_per_epoch", "reference_hand") if getattr(args, k) is not None}
    if args.refresh_epochs is not None:
        overrides["refresh_epochs"] = [int(e) for e in args.refresh_epochs.split(",") if e]
    config = TokenizerConfig(**overrides)
    hands = _hands_arg(args.hands)
    tic = time.perf_counter()
    bank = load_bank(args.data, "train", hands=hands, progress=not args.no_progress)
    _echo(f"training data: {len(bank.seq_ids)} sequences, {bank.num_frames} frames, "
          f"hands {', '.join(bank.hands)}")
    model = train_tokenizer(config, bank, args.out, hands=bank.hands,
                            progress=not args.no_progress, echo=_echo)
    train_s = time.perf_counter() - tic
    _echo(f"tokenizer written to {args.out} ({train_s:.0f} s with data loading)")
    report: dict[str, Any] = {"out": str(args.out), "train_s": round(train_s, 1)}
    if not args.no_eval:
        test = load_bank(args.data, "test", hands=model.hands, progress=not args.no_progress)
        result = evaluate(model, test)
        plot_report(model, test, Path(args.out) / "plots")
        report.update(split="test", mae=result["mae"], worst_hand=result["worst_hand"],
                      per_hand_mae={h: v["mae"] for h, v in result["hands"].items()},
                      codebook=result["codebook"])
        (Path(args.out) / "eval_test.json").write_text(json.dumps(result, indent=1) + "\n")
        _echo(f"test split: MAE {result['mae']:.4f} rad, worst {result['worst_hand']} "
              f"{result['hands'][result['worst_hand']]['mae']:.4f} rad; plots in "
              f"{Path(args.out) / 'plots'}")
    print(json.dumps(report))
    return 0


def _run_add_hand(args: argparse.Namespace) -> int:
    from unihm_generator.tokenizer.data import load_bank
    from unihm_generator.tokenizer.evaluate import evaluate
    from unihm_generator.tokenizer.io import load_tokenizer, set_threads
    from unihm_generator.tokenizer.train import add_hand

    set_threads(args.threads)
    model = load_tokenizer(args.tokenizer)
    out = args.out or args.tokenizer
    if args.hand in model.hands:
        _err(f"hand {args.hand!r} is already in {args.tokenizer}")
        return 2
    ref = model.config.reference_hand
    bank = load_bank(args.data, "train", hands=[ref, args.hand], progress=not args.no_progress)
    tic = time.perf_counter()
    model = add_hand(model, args.hand, bank, out, progress=not args.no_progress, echo=_echo)
    report: dict[str, Any] = {"hand": args.hand, "out": str(out),
                              "train_s": round(time.perf_counter() - tic, 1)}
    test = load_bank(args.data, "test", hands=[ref, args.hand], progress=False)
    if args.hand in test.hands and test.present[args.hand].any():
        result = evaluate(model, test, hands=[ref, args.hand])
        report.update(test_mae=result["hands"][args.hand]["mae"],
                      test_fingertip_mm=result["hands"][args.hand]["fingertip_mm"],
                      translation_from_reference_mm=result.get("translation", {}).get(
                          "from_reference_mm", {}).get(args.hand))
    print(json.dumps(report))
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from unihm_generator.tokenizer.data import load_bank
    from unihm_generator.tokenizer.evaluate import evaluate, plot_report
    from unihm_generator.tokenizer.io import default_tokenizer_dir, load_tokenizer, set_threads

    set_threads(args.threads)
    model = load_tokenizer(args.tokenizer)
    hands = _hands_arg(args.hands) or list(model.hands)
    for h in hands:
        model.check_hand(h)
    from unihm_core.dataset.index import Dataset

    present = set(Dataset(args.data).hands)
    bank = load_bank(args.data, args.split, hands=[h for h in hands if h in present],
                     progress=not args.no_progress)
    tic = time.perf_counter()
    result = evaluate(model, bank, translation=not args.no_translation)
    result = {"tokenizer": str(args.tokenizer or default_tokenizer_dir()), "split": args.split,
              "sequences": len(bank.seq_ids), "eval_s": round(time.perf_counter() - tic, 1),
              **result}
    if args.plots:
        result["plots"] = [str(p) for p in plot_report(model, bank, args.plots)]
    if not args.json or args.verbose:
        print(f"{args.split}: {result['sequences']} sequences; overall MAE "
              f"{result['mae']:.4f}, RMSE {result['rmse']:.4f} (rad)")
        print(f"  {'hand':18s} {'MAE':>8s} {'RMSE':>8s} {'tip mm':>8s} {'frames':>8s}")
        for h, v in result["hands"].items():
            print(f"  {h:18s} {v['mae']:8.4f} {v['rmse']:8.4f} {v['fingertip_mm']:8.2f} "
                  f"{v['frames']:8d}")
        cb = result["codebook"]
        print(f"  codebook: {cb['used_codes']}/{cb['size']} codes used ({cb['usage']:.0%}), "
              f"perplexity {cb['perplexity']:.1f}")
        c = result["continuity"]
        print(f"  whole sequences (seam smoothing {c['seam_smoothing']:g}): MAE "
              f"{c['mae_raw']:.4f} as decoded, {c['mae_smoothed']:.4f} smoothed; largest "
              f"frame-to-frame step {c['max_step_raw']:.3f} / {c['max_step_smoothed']:.3f} "
              f"(data {c['max_step_data']:.3f})")
        if "translation" in result:
            print(f"  translation fingertip error, all pairs: "
                  f"{result['translation']['mean_mm']:.2f} mm")
    if args.json:
        print(json.dumps(result))
    return 0


def _run_translate(args: argparse.Namespace) -> int:
    import numpy as np

    from unihm_core.dataset.index import Dataset
    from unihm_generator.tokenizer.evaluate import fingertip_error_mm
    from unihm_generator.tokenizer.io import load_tokenizer

    model = load_tokenizer(args.tokenizer)
    model.check_hand(args.source)
    model.check_hand(args.target)
    record = Dataset(args.data).load(args.seq if not args.seq.isdigit() else int(args.seq))
    if args.source not in record.hands:
        _err(f"sequence {record.sequence_id} has no {args.source} motion; it has "
             f"{', '.join(record.hands)}")
        return 2
    q = np.asarray(record.hands[args.source].joints, np.float32)
    tokens = model.encode(args.source, q)
    out = model.decode(args.target, tokens, num_frames=len(q))
    report: dict[str, Any] = {"sequence": record.sequence_id, "source": args.source,
                              "target": args.target, "frames": len(q),
                              "tokens": int(tokens.size)}
    if args.target in record.hands:
        truth = np.asarray(record.hands[args.target].joints, np.float32)
        report["fingertip_error_mm"] = fingertip_error_mm(args.target, out, truth)
        report["mae"] = float(np.abs(out - truth).mean())
    if args.out:
        np.savez(args.out, joints=out, tokens=tokens,
                 joint_names=np.asarray(model.config.hands[args.target].joint_names))
        report["out"] = args.out
    print(json.dumps(report))
    return 0


def _guard(func: Any) -> Any:
    """Known input errors become one line on stderr and exit code 2, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        from unihm_core.dataset.format import DatasetFormatError
        from unihm_core.hands import UnknownHandError
        from unihm_generator.tokenizer.config import TokenizerError

        try:
            return int(func(args))
        except (TokenizerError, DatasetFormatError, UnknownHandError) as exc:
            _err(str(exc))
            return 2

    return run


def register_tokenizer(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tokenizer", help="unified hand tokenizer: train, add-hand, eval, translate",
        description="One shared codebook, an encoder/decoder pair per hand type "
                    "(docs/tokenizer.md).")
    sub = parser.add_subparsers(title="tokenizer commands", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--threads", type=int, default=1,
                       help="torch CPU threads (default 1: the per-hand networks are small, "
                            "and a second thread mostly waits on a shared machine)")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    tr = sub.add_parser("train", help="train a tokenizer on a dataset's train split",
                        description="Stage 1: the reference hand and the codebook (cold-code "
                                    "refresh); stage 2: every other hand, distilled onto the "
                                    "reference encoder, then fine-tuned. Re-running the same "
                                    "command after Ctrl-C resumes.")
    tr.add_argument("--data", required=True, help="dataset folder (unihm data synth/import)")
    tr.add_argument("--out", required=True, help="checkpoint folder to write")
    tr.add_argument("--hands", help="comma-separated hand ids (default: every hand in the data)")
    tr.add_argument("--backbone", choices=("mlp", "conv"))
    for name, typ in (("chunk", int), ("codebook-size", int), ("code-dim", int),
                      ("hidden", int), ("lr", float), ("lr-final", float),
                      ("batch-size", int), ("seed", int), ("reference-epochs", int),
                      ("distill-epochs", int), ("finetune-epochs", int),
                      ("steps-per-epoch", int)):
        tr.add_argument(f"--{name}", type=typ, dest=name.replace("-", "_"))
    tr.add_argument("--reference-hand", help="reference hand (default shadow_right)")
    tr.add_argument("--refresh-epochs", help="comma-separated epochs of the cold-code refresh")
    tr.add_argument("--no-eval", action="store_true", help="skip the test-split report")
    common(tr)
    tr.set_defaults(func=_guard(_run_train))

    ad = sub.add_parser("add-hand", help="add a hand to a trained tokenizer",
                        description="Distil the new hand's encoder onto the reference encoder "
                                    "over retargeted pairs, then fine-tune it; the codebook "
                                    "and the other hands are not changed.")
    ad.add_argument("hand", help="hand type id (unihm hands list)")
    ad.add_argument("--tokenizer", required=True, help="trained tokenizer folder")
    ad.add_argument("--data", required=True, help="dataset with the new hand and the reference")
    ad.add_argument("--out", help="write the result here (default: update --tokenizer)")
    common(ad)
    ad.set_defaults(func=_guard(_run_add_hand))

    ev = sub.add_parser("eval", help="errors, codebook use and translation on a split",
                        description="Per-hand MAE and RMSE (rad; m for prismatic joints), "
                                    "fingertip error (mm) after decoding, codebook usage and "
                                    "perplexity, cross-hand translation fingertip error.")
    ev.add_argument("--tokenizer", help="tokenizer folder (default: the shipped one)")
    ev.add_argument("--data", required=True)
    ev.add_argument("--split", choices=SPLITS, default="test")
    ev.add_argument("--hands", help="comma-separated subset of the tokenizer's hands")
    ev.add_argument("--plots", help="write codebook_usage.png and reconstructions.png here")
    ev.add_argument("--no-translation", action="store_true")
    ev.add_argument("--json", action="store_true", help="last line: one JSON object")
    ev.add_argument("--verbose", action="store_true", help="the table too with --json")
    common(ev)
    ev.set_defaults(func=_guard(_run_eval))

    tl = sub.add_parser("translate", help="one sequence of hand i realised by hand j",
                        description="x_j = D_j(e_Q(E_i(x_i))) on one dataset sequence.")
    tl.add_argument("source")
    tl.add_argument("target")
    tl.add_argument("--data", required=True)
    tl.add_argument("--seq", default="0", help="sequence id or number (default 0)")
    tl.add_argument("--tokenizer", help="tokenizer folder (default: the shipped one)")
    tl.add_argument("--out", help="write joints and tokens to this .npz")
    tl.set_defaults(func=_guard(_run_translate))

    def usage(_: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
