"""`unihm bench tokenizer`: encode + decode throughput on CPU.

Batched: whole sequences of every hand stacked into one call (how a dataset is tokenized for
the generator). Baseline, in the same run: the same frames one sequence per call (how a
streaming caller would use it). Joints are random configurations within each hand's limits.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import torch

from unihm_generator.tokenizer.config import TokenizerConfig, TokenizerError
from unihm_generator.tokenizer.model import HandTokenizer


def _model() -> tuple[HandTokenizer, str]:
    from unihm_generator.tokenizer.io import default_tokenizer_dir, load_tokenizer

    try:
        return load_tokenizer(), str(default_tokenizer_dir())
    except TokenizerError:
        from unihm_generator.tokenizer.train import new_model

        return new_model(TokenizerConfig(), ["shadow_right", "xhand_right"]), "untrained"


def _trajectories(model: HandTokenizer, hand: str, n: int, frames: int,
                  rng: np.random.Generator) -> np.ndarray:
    spec = model.config.hands[hand]
    lo, hi = np.asarray(spec.lower), np.asarray(spec.upper)
    # smooth random motions: interpolate between two random poses per sequence
    a, b = rng.uniform(lo, hi, (2, n, 1, spec.dof))
    s = np.linspace(0.0, 1.0, frames)[None, :, None]
    return (a + (b - a) * s).astype(np.float32)


def _time(fn: Any, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tic)
    return best


def run(quick: bool = False) -> dict[str, Any]:
    threads = 1
    torch.set_num_threads(threads)
    model, source = _model()
    rng = np.random.default_rng(0)
    frames, n = 200, (64 if quick else 512)
    hands = list(model.hands)
    per_hand: dict[str, float] = {}
    total_frames, batched_s, baseline_s = 0, 0.0, 0.0
    for hand in hands:
        q = _trajectories(model, hand, n, frames, rng)

        def batched(h: str = hand, x: np.ndarray = q) -> None:
            model.decode(h, model.encode(h, x), num_frames=frames)

        def one_by_one(h: str = hand, x: np.ndarray = q) -> None:
            for seq in x[: max(8, n // 8)]:
                model.decode(h, model.encode(h, seq), num_frames=frames)

        t = _time(batched, 2 if quick else 3)
        tb = _time(one_by_one, 1) * (n / max(8, n // 8))
        per_hand[hand] = round(n * frames / t)
        total_frames += n * frames
        batched_s += t
        baseline_s += tb
        print(f"  {hand}: {per_hand[hand]:,} frames/s batched", file=sys.stderr)
    fps = total_frames / batched_s
    base = total_frames / baseline_s
    return {"tokenizer": source, "backbone": model.config.backbone, "chunk": model.chunk,
            "codebook_size": model.config.codebook_size, "threads": threads,
            "frames_per_call": n * frames,
            "encode_decode_frames_per_s": round(fps),
            "min_hand_frames_per_s": min(per_hand.values()),
            "baseline_one_sequence_per_call_frames_per_s": round(base),
            "speedup_vs_baseline": round(fps / base, 2), "per_hand_frames_per_s": per_hand}
