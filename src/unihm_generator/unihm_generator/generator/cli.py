"""``unihm generator train|eval`` and ``unihm generate``.

Registered through the ``unihm.commands`` entry-point group (see unihm_core.cli). The last
line of ``train`` and ``eval`` is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "test", "unseen", "all")


def _echo(msg: str) -> None:
    print(msg, file=sys.stderr)


def _err(prog: str, msg: str) -> int:
    print(f"unihm {prog}: error: {msg}", file=sys.stderr)
    return 2


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(n)))


def _load_split(data: str, split: str, tokenizer, config, limit: int | None,  # noqa: PLR0917
                progress: bool) -> list:
    from unihm_generator.generator.data import load_examples

    if split == "all":
        return [ex for s in ("train", "test", "unseen")
                for ex in load_examples(data, s, tokenizer, config, limit=limit,
                                        progress=progress)]
    return load_examples(data, split, tokenizer, config, limit=limit, progress=progress)


# ------------------------------------------------------------------------------------ train
def _run_train(args: argparse.Namespace) -> int:
    from unihm_generator.generator.config import GeneratorConfig, GeneratorError
    from unihm_generator.generator.evaluate import evaluate
    from unihm_generator.generator.pipeline import Generator
    from unihm_generator.generator.retrieval import RetrievalIndex
    from unihm_generator.generator.train import train_generator
    from unihm_generator.tokenizer import TokenizerError, default_tokenizer_dir, load_tokenizer

    _threads(args.threads)
    tok_dir = Path(args.tokenizer) if args.tokenizer else default_tokenizer_dir()
    try:
        tokenizer = load_tokenizer(tok_dir)
        overrides: dict[str, Any] = {k: getattr(args, k) for k in (
            "epochs", "batch_size", "lr", "seed") if getattr(args, k) is not None}
        if args.base_model:
            from transformers import AutoConfig

            overrides["base_model"] = str(args.base_model)
            overrides["qwen_vocab_size"] = int(AutoConfig.from_pretrained(
                args.base_model).vocab_size)
        config = GeneratorConfig.from_preset(
            args.config, codebook_size=tokenizer.config.codebook_size,
            chunk=tokenizer.chunk, masking=not args.no_masking, **overrides)
    except (GeneratorError, TokenizerError, OSError) as exc:
        return _err("generator train", str(exc))
    progress = not args.no_progress
    tic = time.perf_counter()
    train = _load_split(args.data, "train", tokenizer, config, args.limit, progress)
    val = _load_split(args.data, "test", tokenizer, config, args.limit, progress)
    if not train:
        return _err("generator train", f"{args.data}: no training sequence with a hand the "
                                       f"tokenizer knows ({', '.join(tokenizer.hands)})")
    _echo(f"training data: {len(train)} sequences, validation {len(val)}")
    out = Path(args.out)
    model = train_generator(config, train, val, out, tok_dir, progress=progress, echo=_echo,
                            half=args.half)
    RetrievalIndex.build(train).save(out)
    report: dict[str, Any] = {"out": str(out), "train_s": round(time.perf_counter() - tic, 1)}
    if args.ablation:
        import copy

        ab_cfg = copy.deepcopy(model.config)
        ab_cfg.masking = False
        _echo("ablation: the same model trained without masking -> " + str(out / "no_masking"))
        train_generator(ab_cfg, train, val, out / "no_masking", tok_dir, progress=progress,
                        echo=_echo, half=args.half)
    if val:
        gen = Generator.load(out)
        result = evaluate(gen, val, index=RetrievalIndex.load(out))
        (out / "eval_test.json").write_text(json.dumps(result, indent=1) + "\n")
        report["test"] = {k: result[k]["mpjpe_mm"] for k in ("model", "retrieval")}
    print(json.dumps(report))
    return 0


# ------------------------------------------------------------------------------------- eval
def _run_eval(args: argparse.Namespace) -> int:
    from unihm_generator.generator.config import GeneratorError
    from unihm_generator.generator.evaluate import evaluate
    from unihm_generator.generator.io import default_generator_dir
    from unihm_generator.generator.pipeline import Generator
    from unihm_generator.generator.retrieval import RetrievalIndex

    _threads(args.threads)
    ckpt = Path(args.checkpoint) if args.checkpoint else default_generator_dir()
    try:
        gen = Generator.load(ckpt)
    except (GeneratorError, OSError) as exc:
        return _err("generator eval", str(exc))
    tic = time.perf_counter()
    examples = _load_split(args.data, args.split, gen.tokenizer, gen.model.config, args.limit,
                           not args.no_progress)
    if not examples:
        return _err("generator eval", f"{args.data}: no {args.split} sequence to evaluate")
    index = RetrievalIndex.load(ckpt) if (ckpt / "retrieval.safetensors").is_file() else None
    ablation = Generator.load(ckpt / "no_masking") if (
        ckpt / "no_masking" / "generator.json").is_file() else None
    result = evaluate(gen, examples, index=index, ablation=ablation, feed_mask=args.feed_mask)
    result = {"checkpoint": str(ckpt), "split": args.split, **result,
              "eval_s": round(time.perf_counter() - tic, 1)}
    if not args.json:
        for key in ("model", "retrieval", "no_masking"):
            if key in result:
                r = result[key]
                _echo(f"{key:>10}: MPJPE {r['mpjpe_mm']:.1f} mm (joint-angle "
                      f"{r['mpjpe_joint_angle_rad']:.3f} rad), FPL {r['fpl_mm']:.1f} mm, FOL "
                      f"{r['fol_deg']:.1f} deg, Diversity {r['diversity_mm']:.1f} mm "
                      f"(ground truth {r['diversity_gt_mm']:.1f})")
    print(json.dumps(result))
    return 0


def register_generator(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generator", help="train and evaluate the language-conditioned hand generator",
        description="The Qwen3-architecture generator of hand tokens (docs/generator.md).")
    sub = parser.add_subparsers(title="actions", metavar="ACTION")
    tr = sub.add_parser("train", help="train a generator on a dataset's train split",
                        description="Progressive masking curriculum, AdamW; Ctrl-C saves, "
                                    "running the same command again resumes.")
    tr.add_argument("--data", required=True, help="dataset folder")
    tr.add_argument("--tokenizer", help="hand tokenizer folder (default: the shipped one)")
    tr.add_argument("--config", default="tiny", choices=("tiny", "qwen3-0.6b"))
    tr.add_argument("--base-model", help="local Qwen3-0.6B folder to start from")
    tr.add_argument("--out", required=True, help="checkpoint folder to write")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--no-masking", action="store_true", help="train without the curriculum")
    tr.add_argument("--ablation", action="store_true",
                    help="also train the same model without masking into OUT/no_masking")
    tr.add_argument("--half", action="store_true", help="store float16 weights")
    tr.add_argument("--limit", type=int, help="at most this many sequences per split")
    tr.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 is fastest for the tiny model here)")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=_run_train)
    ev = sub.add_parser("eval", help="MPJPE, FPL, FOL, Diversity on a split (last line JSON)")
    ev.add_argument("--checkpoint", help="generator folder (default: the shipped one)")
    ev.add_argument("--data", required=True)
    ev.add_argument("--split", default="unseen", choices=SPLITS)
    ev.add_argument("--limit", type=int)
    ev.add_argument("--feed-mask", action="store_true", default=None,
                    help="feed the mask token instead of the generated one (default: when "
                         "the checkpoint was trained with the masking curriculum)")
    ev.add_argument("--feed-tokens", dest="feed_mask", action="store_false",
                    help="feed the generated tokens back")
    ev.add_argument("--json", action="store_true", help="only the JSON line")
    ev.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 is fastest for the tiny model here)")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=_run_eval)
    parser.set_defaults(func=lambda a: (parser.print_help(), 2)[1])


# ---------------------------------------------------------------------------------- generate
def _object_points(value: str) -> tuple[np.ndarray, str, str]:
    """Points of a library object id or a .ply/.npy/.xyz cloud (object frame)."""
    from unihm_generator.generator.config import GeneratorError

    path = Path(value)
    if path.suffix.lower() in (".ply", ".pcd", ".xyz", ".pts"):
        if not path.is_file():
            raise GeneratorError(f"{path}: no such point cloud")
        import open3d as o3d

        pts = np.asarray(o3d.io.read_point_cloud(str(path)).points)
        return pts, path.stem, str(path)
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False), path.stem, str(path)
    from unihm_core.assets import asset_path

    mesh_rel = f"ycb_objects/{value}/textured_simple.obj"
    try:
        mesh = asset_path(mesh_rel)
    except Exception as exc:
        raise GeneratorError(f"unknown object {value!r}: give a library object id "
                             f"(ycb_objects/<id>) or a .ply point cloud") from exc
    import trimesh

    m = trimesh.load(str(mesh), force="mesh")
    pts, _ = trimesh.sample.sample_surface(m, 2048, seed=0)
    return np.asarray(pts), value, mesh_rel


def _target(path: str) -> np.ndarray:
    from unihm_generator.generator.config import GeneratorError

    try:
        with np.load(path, allow_pickle=False) as f:
            for key in ("poses", "object/poses", "target"):
                if key in f:
                    arr = np.asarray(f[key], dtype=np.float64)
                    break
            else:
                raise GeneratorError(f"{path}: needs an array 'poses' ((T, 4, 4) or (T, 7) "
                                     f"x y z qx qy qz qw)")
    except (OSError, ValueError) as exc:
        raise GeneratorError(f"{path}: unreadable target trajectory: {exc}") from exc
    if arr.ndim == 2 and arr.shape[1] == 7:
        from scipy.spatial.transform import Rotation

        m = np.tile(np.eye(4), (len(arr), 1, 1))
        m[:, :3, :3] = Rotation.from_quat(arr[:, 3:]).as_matrix()
        m[:, :3, 3] = arr[:, :3]
        arr = m
    return arr


def write_result(out: Path, motion, spec, fps: float, object_id: str,  # noqa: PLR0917
                 mesh_path: str, instruction: str, picture: bool = True) -> list[Path]:
    """OUT.npz in the dataset's sequence layout (one file) and OUT.png per first hand."""
    from unihm_core.dataset.format import HandMotion, SequenceRecord, save_sequence

    hands = {}
    for hand, q in motion.joints.items():
        from unihm_core.hands import hand_kinematics

        kin = hand_kinematics(hand)
        tips = tuple(k.name for k in kin.config.fingertips)
        hands[hand] = HandMotion(hand_id=hand, joint_names=kin.joint_names,
                                 wrist_poses=np.asarray(motion.wrist_poses, dtype=np.float64),
                                 joints=np.asarray(q, dtype=np.float64), fingertips=tips,
                                 contacts=np.zeros((len(q), len(tips)), dtype=bool))
    normals = np.zeros_like(np.asarray(spec.points, dtype=np.float32))
    normals[:, 2] = 1.0
    rec = SequenceRecord(sequence_id=out.stem, fps=fps, object_id=object_id,
                         mesh_path=mesh_path, object_points=np.asarray(spec.points),
                         object_normals=normals, object_poses=np.asarray(spec.target),
                         task="generated", instructions=(instruction,), heldout_instructions=(),
                         hands=hands, source="generated",
                         metadata={"tokens": [int(t) for t in motion.tokens]})
    save_sequence(rec, out)
    written = [out]
    if picture:
        from unihm_core.dataset.render import render_sequence

        written.append(render_sequence(rec, out.with_suffix(".png")))
    return written


def _run_generate(args: argparse.Namespace) -> int:
    from unihm_generator.generator.config import GeneratorError
    from unihm_generator.generator.pipeline import GenerationSpec, Generator

    _threads(args.threads)
    try:
        gen = Generator.load(args.checkpoint)
        hands = gen.check_hands([h.strip() for h in args.hands.split(",") if h.strip()])
        points, object_id, mesh_path = _object_points(args.object)
        target = _target(args.target)
        spec = GenerationSpec(instruction=args.instruction, points=points, target=target,
                              hands=hands)
        tic = time.perf_counter()
        motion = gen.generate([spec], greedy=not args.sample, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed)[0]
        gen_s = time.perf_counter() - tic
    except (GeneratorError, KeyError, ValueError) as exc:
        return _err("generate", str(exc))
    out = Path(args.out)
    written = write_result(out, motion, spec, args.fps, object_id, mesh_path,
                           args.instruction, picture=not args.no_picture)
    print(json.dumps({"out": [str(p) for p in written], "hands": hands,
                      "frames": len(target), "tokens": len(motion.tokens),
                      "generate_s": round(gen_s, 3)}))
    return 0


def register_generate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate", help="generate hand trajectories for an instruction, object and target",
        description="Writes OUT.npz (dataset sequence layout) and OUT.png.")
    p.add_argument("--instruction", required=True)
    p.add_argument("--object", required=True, help="library object id or a .ply point cloud "
                                                   "(object frame)")
    p.add_argument("--target", required=True, help=".npz with 'poses' (T,4,4) or (T,7)")
    p.add_argument("--hands", default="xhand_right", help="comma-separated hand ids")
    p.add_argument("--out", required=True, help="result .npz")
    p.add_argument("--checkpoint", help="generator folder (default: the shipped one)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-picture", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 is fastest for the tiny model here)")
    p.set_defaults(func=_run_generate)
