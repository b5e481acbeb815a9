"""`unihm bench dataset`: synthesis throughput, with per-frame retargeting as the baseline.

Synthesis retargets a grasp's three key poses (open, pre-shape, grasp) per hand once and
interpolates joints along each sequence; the obvious alternative retargets every frame of every
sequence for every hand. The benchmark builds a small grasp bank, writes sequences from it, and
times the per-frame alternative on the same sequences in the same run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from unihm_core.dataset.format import save_sequence
from unihm_core.dataset.reference import human_like_local
from unihm_core.dataset.synth import SynthConfig, build_grasp_bank, build_sequence
from unihm_core.hands.retargeting import Retargeter


def run(quick: bool = False) -> dict[str, Any]:
    config = SynthConfig(objects=("061_foam_brick",), num=4 if quick else 12, seed=0,
                         grasps_per_object=3 if quick else 6,
                         grasp_candidates=8 if quick else 16, workers=1)
    tic = time.perf_counter()
    bank = build_grasp_bank(config.objects[0], config, 0)
    bank_s = time.perf_counter() - tic
    records, seq_s = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(config.num):
            t0 = time.perf_counter()
            record = build_sequence(bank, config, n)
            save_sequence(record, Path(tmp) / f"{record.sequence_id}.npz")
            seq_s += time.perf_counter() - t0
            records.append(record)
    # baseline: retarget every frame of the reference hand's motion to every other hand
    ref = config.reference_hand
    others = [h for h in config.hand_list() if h != ref]
    retargeters = {h: Retargeter(h, low_pass=False) for h in others}
    t0 = time.perf_counter()
    frames = 0
    for record in records:
        local = human_like_local(record.hands[ref].joints, ref)
        for h, r in retargeters.items():
            if h in record.hands:
                r.retarget(local, frame="wrist")
                frames += len(local)
    per_frame_s = time.perf_counter() - t0
    keyframe_per_seq = seq_s / len(records)
    baseline_per_seq = keyframe_per_seq + per_frame_s / len(records)
    checks = [c[h] for c in bank.checks for h in c]
    return {
        "object": config.objects[0], "hands": len(config.hand_list()),
        "grasps_validated": len(bank.grasps), "sequences": len(records),
        "grasp_bank_s": round(bank_s, 2),
        "sequence_ms": round(1000 * keyframe_per_seq, 1),
        "baseline_per_frame_retargeting_sequence_ms": round(1000 * baseline_per_seq, 1),
        "speedup_vs_per_frame": round(baseline_per_seq / keyframe_per_seq, 2),
        "sequences_per_minute_incl_bank": round(60 * len(records) / (bank_s + seq_s), 1),
        "lift_success_rate": round(float(np.mean([c["success"] for c in checks])), 3)
        if checks else 0.0,
        "mean_frames": round(float(np.mean([r.num_frames for r in records])), 1),
        "baseline_frames_retargeted": frames,
        "stage_seconds": {k: round(v, 2) for k, v in bank.seconds.items()},
    }
