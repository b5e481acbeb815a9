"""``unihm bench pipeline``: time from a Manipulate goal to a validated plan (execute=false).

The sim graph runs in this process (its own isolated ROS domain, so a running graph is not
disturbed) on a rendered tabletop scene. After one warm-up goal, ``repeats`` plan-only goals
are timed from sending to the result, with the split per stage the executive reports. The
baseline, measured in the same run on the same models, calls the four stages as plain library
functions (perception, generation, refinement, IK + timing + validation) with no ROS at all:
the ratio is what the nodes, services and messages cost on top.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

INSTRUCTION = "pick up the mustard bottle"
STAGES = ("perceiving", "generating", "refining", "validating")


def _log(message: str) -> None:
    print(f"[bench pipeline] {message}", file=sys.stderr, flush=True)


def _library_once(nodes: dict[str, Any], frame: Any, camera_pose: Any) -> dict[str, float]:
    """The same four stages without ROS; seconds per stage."""
    import numpy as np

    from unihm_core.se3 import invert, transform_points
    from unihm_generator.generator.pipeline import GenerationSpec

    out: dict[str, float] = {}
    clock = time.perf_counter()
    r = nodes["unihm_perception"].perception.perceive(frame.color, frame.depth_m,
                                                      frame.intrinsics, camera_pose, INSTRUCTION)
    out["perceiving"] = time.perf_counter() - clock
    planner = nodes["unihm_executive"].planner
    hand = "xhand_right"
    arm_q, hand_q = planner.arm_rest, planner.hand_rest(hand)
    clock = time.perf_counter()
    points = transform_points(invert(r.pose), r.cloud_points)
    (motion,) = nodes["unihm_generator"].generator.generate([GenerationSpec(
        INSTRUCTION, points, r.target_poses, [hand], init_hand=hand,
        init_joints=hand_q.astype(np.float32), init_wrist=planner.wrist_pose(arm_q, hand))])
    out["generating"] = time.perf_counter() - clock
    clock = time.perf_counter()
    from unihm_core.object_model import ObjectModel

    surface = ObjectModel.from_arrays(points, np.asarray(r.cloud_normals) @ r.pose[:3, :3])
    refined = nodes["unihm_refiner"]._refiner(hand).refine(
        motion.wrist_poses, motion.joints[hand], surface, r.target_poses)
    out["refining"] = time.perf_counter() - clock
    clock = time.perf_counter()
    planner.plan(refined.wrist_poses, refined.q, np.asarray(r.trajectory.times), hand=hand,
                 arm_current=arm_q, hand_current=hand_q)
    out["validating"] = time.perf_counter() - clock
    return out


def run(quick: bool = False) -> dict[str, Any]:
    import torch

    from unihm_bringup.inprocess import InProcessGraph
    from unihm_bringup.run_cli import camera_pose_from_bag
    from unihm_core.se3 import pose_from_xyz_quat
    from unihm_perception.bag_io import read_frames_bag

    torch.set_num_threads(1)
    repeats = 3 if quick else 10
    wall = time.perf_counter()
    _log("starting the sim graph")
    with InProcessGraph(Path(tempfile.mkdtemp(prefix="unihm-bench-pipeline-")),
                        isolate=True) as graph:
        pose7 = camera_pose_from_bag(graph.bag)
        camera_pose = pose_from_xyz_quat(pose7[:3], pose7[3:])
        frame = read_frames_bag(graph.bag)[0]
        warm = graph.client.send(INSTRUCTION, timeout=120.0, server_wait=30.0)
        _log(f"warm-up goal: {warm['message']}")
        goal_s, stage_s = [], {s: [] for s in STAGES}
        for i in range(repeats):
            out = graph.client.send(INSTRUCTION, timeout=60.0)
            if not out["success"]:
                raise RuntimeError(f"goal {i} failed: {out['message']}")
            goal_s.append(out["seconds"])
            for s in STAGES:
                stage_s[s].append(out["metrics"][f"{s}_time_s"])
            _log(f"goal {i + 1}/{repeats}: {out['seconds']:.3f} s")
        base = {s: [] for s in STAGES}
        for i in range(repeats):
            for s, v in _library_once(graph.nodes, frame, camera_pose).items():
                base[s].append(v)
            _log(f"library baseline {i + 1}/{repeats}")
    med = statistics.median
    base_total = [sum(v) for v in zip(*base.values(), strict=True)]
    return {
        "benchmark": "pipeline", "instruction": INSTRUCTION, "hands": ["xhand_right"],
        "repeats": repeats,
        "goal_to_validated_plan_median_s": round(med(goal_s), 4),
        "goal_to_validated_plan_best_s": round(min(goal_s), 4),
        "goal_to_validated_plan_max_s": round(max(goal_s), 4),
        "stage_median_s": {s: round(med(v), 4) for s, v in stage_s.items()},
        "library_baseline_median_s": round(med(base_total), 4),
        "library_baseline_stage_median_s": {s: round(med(v), 4) for s, v in base.items()},
        "ros_overhead_ratio": round(med(goal_s) / med(base_total), 3),
        "target_s": 1.0,
        "wall_s": round(time.perf_counter() - wall, 1),
    }
