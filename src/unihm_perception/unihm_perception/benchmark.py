"""``unihm bench perception``: one 640x480 frame perceived repeatedly, per stage.

The baseline is the same pipeline with language-first identification off: every cluster is
registered against every library model, which is what the pipeline did before the instruction
was used to restrict registration. Both run on the same frame and instruction in one process,
so the ratio is meaningful on a noisy machine even when the absolute times are not.
"""

from __future__ import annotations

import statistics
import sys
from typing import Any

from unihm_perception.instructions import Instruction
from unihm_perception.pipeline import Perception
from unihm_perception.scene import RenderedFrame, random_scene, render

SCENE_SEED = 3
N_OBJECTS = 4


class AllModelsPerception(Perception):
    """The pipeline with language-first registration off (the benchmark's baseline)."""

    def _named_ids(self, instruction: Instruction) -> list[str] | None:
        return None


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _time(perception: Perception, frame: RenderedFrame, instruction: str,
          repeats: int) -> dict[str, Any]:
    """Best and median per stage over ``repeats`` runs (after one warm-up run)."""
    perception.warm_up()
    first = perception.perceive(frame.color, frame.depth, frame.intrinsics, frame.camera_pose,
                                instruction)
    runs = []
    for _ in range(repeats):
        result = perception.perceive(frame.color, frame.depth, frame.intrinsics,
                                     frame.camera_pose, instruction)
        runs.append(result.timings_ms)
    stages = list(runs[0])
    return {"object_id": first.object_id, "fitness": round(first.fitness, 3),
            "best_ms": {s: round(min(r[s] for r in runs), 2) for s in stages},
            "median_ms": {s: round(statistics.median(r[s] for r in runs), 2) for s in stages}}


def run_perception_benchmark(quick: bool = False) -> dict[str, Any]:
    """Language-first pipeline vs all-models registration on one frame (see module doc);
    ``quick`` runs 2 repeats instead of 10."""
    repeats = 2 if quick else 10
    frame = render(random_scene(n_objects=N_OBJECTS, seed=SCENE_SEED))
    target, reference = frame.labels[0], frame.labels[1]
    instruction = f"put the {target} next to the {reference}"
    _log(f"frame 640x480, objects: {', '.join(frame.labels)}; instruction: {instruction!r}")
    perception = Perception()
    _log(f"language-first pipeline, {repeats} runs")
    ours = _time(perception, frame, instruction, repeats)
    _log(f"baseline (every cluster against every model), {repeats} runs")
    baseline = _time(AllModelsPerception(perception.library, embedder=perception.embedder),
                     frame, instruction, repeats)
    ratio = baseline["median_ms"]["total"] / ours["median_ms"]["total"]
    return {
        "frame": "640x480", "objects": list(frame.object_ids), "instruction": instruction,
        "repeats": repeats, "target": frame.object_ids[0],
        "chosen": ours["object_id"], "chosen_baseline": baseline["object_id"],
        "pipeline_best_ms": ours["best_ms"], "pipeline_median_ms": ours["median_ms"],
        "baseline_best_ms": baseline["best_ms"], "baseline_median_ms": baseline["median_ms"],
        "total_median_ms": ours["median_ms"]["total"],
        "baseline_total_median_ms": baseline["median_ms"]["total"],
        "speedup": round(ratio, 2),
        "registration_speedup": round(baseline["median_ms"]["registration"]
                                      / ours["median_ms"]["registration"], 2),
    }
