"""``unihm bench generator``: latency of one 120-frame request with and without KV cache.

Tiny config (the shipped checkpoint when there is one, else a randomly initialised model of
the same shape), 1 torch thread (faster than 2 for a model this small on a shared
2-core machine), greedy, generated tokens fed back (``generate``'s default), best of several
runs after a warm-up, the variants taking turns run by run; wall and process CPU time (the
latter less sensitive to other jobs on the machine). "No cache" re-runs the whole sequence
through transformers' forward at every step (the public code's way). ``kv_cache_feed_mask_s``
is the cached path with the mask token fed (the pipeline's default for curriculum
checkpoints: one pass, no step depends on a pick). The qwen3-0.6b shape is randomly
initialised (bfloat16) and timed on a shorter sequence with the cache.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from unihm_generator.generator.config import GeneratorConfig
from unihm_generator.generator.model import HandGenerator, Request
from unihm_generator.generator.text import TextVocab, collect_text_ids

INSTRUCTION = "pick up the mustard bottle and put it in the bowl"


def _request(config: GeneratorConfig, frames: int) -> Request:
    from unihm_generator.generator.data import target_features
    from unihm_generator.generator.pipeline import straight_lift

    rng = np.random.default_rng(0)
    poses = straight_lift(frames)
    return Request(text_rows=TextVocab(config).rows(INSTRUCTION),
                   points=rng.uniform(-0.04, 0.04, (config.num_points, 3)).astype(np.float32),
                   traj=target_features(poses), init_token=0,
                   init_wrist=np.zeros(10, np.float32), num_tokens=-(-frames // config.chunk))


def _best(fn: Any, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tic)
    return best


def _best_in_turns(fns: dict[str, Any], repeat: int) -> dict[str, tuple[float, float]]:
    """Best wall and process CPU time of each function, the functions taking turns run by
    run (a burst of load from other jobs falls on all of them); one warm-up run each."""
    for fn in fns.values():
        fn()
    best = {name: (float("inf"), float("inf")) for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def _tiny() -> tuple[HandGenerator, str]:
    from unihm_generator.generator.io import load_generator

    try:
        return load_generator(), "default checkpoint"
    except Exception:  # noqa: BLE001 - no shipped checkpoint yet: the same shape, random
        cfg = GeneratorConfig.from_preset("tiny")
        cfg.text_ids = collect_text_ids([INSTRUCTION])
        torch.manual_seed(0)
        return HandGenerator(cfg).eval(), "randomly initialised"


def run(quick: bool = False) -> dict[str, Any]:
    # one thread: at this size two threads only add synchronisation (and the machine is shared)
    threads = 1
    torch.set_num_threads(threads)
    model, source = _tiny()
    frames = 120
    req = _request(model.config, frames)
    n = req.num_tokens
    repeat = 3 if quick else 7
    timed = _best_in_turns({
        "cached": lambda: model.generate([req], use_cache=True),
        "uncached": lambda: model.generate([req], use_cache=False),
        "feed_mask": lambda: model.generate([req], use_cache=True, feed_mask=True)}, repeat)
    (cached, cached_cpu), (uncached, uncached_cpu) = timed["cached"], timed["uncached"]
    batch = [req] * 8
    batched = _best(lambda: model.generate(batch, use_cache=True), max(1, repeat // 2))
    result: dict[str, Any] = {
        "threads": threads, "tiny": {
            "weights": source, "frames": frames, "tokens": n,
            "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "kv_cache_s": round(cached, 4), "no_cache_s": round(uncached, 4),
            "speedup": round(uncached / cached, 2),
            "kv_cache_cpu_s": round(cached_cpu, 4), "no_cache_cpu_s": round(uncached_cpu, 4),
            "speedup_cpu": round(uncached_cpu / cached_cpu, 2),
            "kv_cache_feed_mask_s": round(timed["feed_mask"][0], 4),
            "tokens_per_s": round(n / cached, 1),
            "batch8_tokens_per_s": round(8 * n / batched, 1)}}
    if not quick:
        cfg = GeneratorConfig.from_preset("qwen3-0.6b", codebook_size=1024)
        torch.manual_seed(0)
        tic = time.perf_counter()
        big = HandGenerator(cfg).to(torch.bfloat16).eval()
        init_s = time.perf_counter() - tic
        short = _request(cfg, 32)
        # the request's point cloud and trajectory features are float32: autocast runs the
        # bfloat16 weights on them
        with torch.autocast("cpu", dtype=torch.bfloat16):
            big_s = _best(lambda: big.generate([short], use_cache=True), 1)
        result["qwen3_0.6b"] = {
            "weights": "randomly initialised", "dtype": "bfloat16", "tokens": short.num_tokens,
            "parameters_m": round(sum(p.numel() for p in big.parameters()) / 1e6, 1),
            "init_s": round(init_s, 1), "kv_cache_s": round(big_s, 3),
            "tokens_per_s": round(short.num_tokens / big_s, 2)}
    return result
