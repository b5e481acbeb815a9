"""``unihm bench perception``: one 640x480 frame perceived repeatedly, per stage.

Three variants run on the same frame and instruction in one process, taking turns run by run,
so their ratios are meaningful on a noisy machine even when the absolute times are not; the
process CPU time per frame (``*cpu_median_ms``) is reported too, as it depends less on what
else the cores are running:

* ``pipeline``: the default :class:`~unihm_perception.pipeline.Perception`;
* ``baseline`` (the previous behaviour): the identity check against the whole library on every
  cluster a named model was given, whatever its score; every named model on every cluster,
  even after a confident fit; every model on every cluster for a phrase without a noun; no
  reuse of a quick registration's coarse hypotheses and fine ICPs by the full registration of
  the same pair (the resting guesses are built the current, batched way, which saves about
  2 ms per registration);
* ``all_models``: language-first registration off (every model on every cluster), what the
  pipeline did before the instruction restricted registration.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import replace
from typing import Any

from unihm_perception.instructions import Instruction
from unihm_perception.pipeline import FrameRegistrations, Perception, PerceptionResult
from unihm_perception.registration import DepthView, ObservedCluster
from unihm_perception.scene import RenderedFrame, random_scene, render
from unihm_perception.segmentation import Cluster

SCENE_SEED = 3
N_OBJECTS = 4


class _Forgetful(dict):  # type: ignore[type-arg]
    """A cache that keeps nothing: every registration starts from scratch."""

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


class _NoReuseRegistrations(FrameRegistrations):
    """Frame registrations whose full registrations recompute what a quick one found."""

    def observed(self, c: int) -> ObservedCluster:
        observed = super().observed(c)
        observed.resting, observed.refined = _Forgetful(), _Forgetful()
        return observed


class PreviousPerception(Perception):
    """The pipeline as it behaved before the identity check became lazy (see module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params = replace(self.params, confident_score=float("inf"),
                              attributes_first=False, first_confident=False)

    def _registrations(self, clusters: list[Cluster], view: DepthView) -> FrameRegistrations:
        return _NoReuseRegistrations(self.library, self.registration, clusters,
                                     table=getattr(self.segmenter, "table", None), view=view,
                                     size_margin=self.params.size_margin)


class AllModelsPerception(PreviousPerception):
    """The previous pipeline with language-first registration off."""

    def _named_ids(self, instruction: Instruction) -> list[str] | None:
        return None


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _time(variants: dict[str, Perception], frame: RenderedFrame, instruction: str,
          repeats: int) -> dict[str, dict[str, Any]]:
    """Best and median per stage over ``repeats`` runs of each variant (after one warm-up run
    each). The variants take turns run by run, so a burst of load from other processes
    falls on all of them alike instead of on whichever happened to be running."""
    firsts: dict[str, PerceptionResult] = {}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for name, perception in variants.items():
        perception.warm_up()
        firsts[name] = perception.perceive(frame.color, frame.depth, frame.intrinsics,
                                           frame.camera_pose, instruction)
    for _ in range(repeats):
        for name, perception in variants.items():
            start = time.process_time()
            result = perception.perceive(frame.color, frame.depth, frame.intrinsics,
                                         frame.camera_pose, instruction)
            cpu[name].append(1000.0 * (time.process_time() - start))
            runs[name].append(result.timings_ms)
    out: dict[str, dict[str, Any]] = {}
    for name, timings in runs.items():
        stages = list(timings[0])
        out[name] = {
            "object_id": firsts[name].object_id, "fitness": round(firsts[name].fitness, 3),
            "best_ms": {s: round(min(r[s] for r in timings), 2) for s in stages},
            "median_ms": {s: round(statistics.median(r[s] for r in timings), 2)
                          for s in stages},
            "cpu_median_ms": round(statistics.median(cpu[name]), 2)}
    return out


def run_perception_benchmark(quick: bool = False) -> dict[str, Any]:
    """The pipeline against the previous behaviour and against all-models registration on
    one frame (see the module docstring); ``quick`` runs 2 repeats instead of 10."""
    repeats = 2 if quick else 10
    frame = render(random_scene(n_objects=N_OBJECTS, seed=SCENE_SEED))
    target, reference = frame.labels[0], frame.labels[1]
    instruction = f"put the {target} next to the {reference}"
    _log(f"frame 640x480, objects: {', '.join(frame.labels)}; instruction: {instruction!r}")
    perception = Perception()
    variants = {
        "pipeline": perception,
        "baseline": PreviousPerception(perception.library, embedder=perception.embedder),
        "all_models": AllModelsPerception(perception.library, embedder=perception.embedder)}
    _log(f"{repeats} runs each of the pipeline, the baseline (previous behaviour: identity "
         "check on every named cluster, no reuse of quick registrations) and all models "
         "(every cluster against every model), taking turns")
    timed = _time(variants, frame, instruction, repeats)
    ours, baseline, all_models = timed["pipeline"], timed["baseline"], timed["all_models"]
    total, reg = ours["median_ms"]["total"], ours["median_ms"]["registration"]
    return {
        "frame": "640x480", "objects": list(frame.object_ids), "instruction": instruction,
        "repeats": repeats, "target": frame.object_ids[0],
        "chosen": ours["object_id"], "chosen_baseline": baseline["object_id"],
        "chosen_all_models": all_models["object_id"],
        "baseline": "previous behaviour (see unihm_perception.benchmark)",
        "pipeline_best_ms": ours["best_ms"], "pipeline_median_ms": ours["median_ms"],
        "baseline_best_ms": baseline["best_ms"], "baseline_median_ms": baseline["median_ms"],
        "all_models_best_ms": all_models["best_ms"],
        "all_models_median_ms": all_models["median_ms"],
        "total_median_ms": total,
        "baseline_total_median_ms": baseline["median_ms"]["total"],
        "all_models_total_median_ms": all_models["median_ms"]["total"],
        "cpu_median_ms": ours["cpu_median_ms"],
        "baseline_cpu_median_ms": baseline["cpu_median_ms"],
        "all_models_cpu_median_ms": all_models["cpu_median_ms"],
        "speedup": round(baseline["median_ms"]["total"] / total, 2),
        "registration_speedup": round(baseline["median_ms"]["registration"] / reg, 2),
        "speedup_vs_all_models": round(all_models["median_ms"]["total"] / total, 2),
    }
