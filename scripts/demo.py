"""`make demo`: generate a motion for an instruction on a shared object, refine it, draw it.

1. plan the object's target trajectory (pick and place on the table, `TaskPlanner`);
2. `unihm generate` with the shipped tokenizer and generator for two hands;
3. convert the generator's output (dataset sequence layout: `hands/<hand>/wrist` (T, 7),
   `hands/<hand>/joints`, `object/poses` (T, 7)) to what `unihm refine` reads
   (`wrist_poses` (T, 4, 4), `q` (T, dof), `object_poses` (T, 4, 4), `fps`);
4. `unihm refine` for the first hand, then draw the refined motion with the object.

Writes into OUT (default build/demo): target.npz, generated.npz/.png, refine_in.npz,
refined.npz and refined.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

INSTRUCTION = "pick up the mustard bottle and put it in the bowl"
OBJECT = "006_mustard_bottle"
HANDS = "xhand_right,allegro_right"


def plan_target(object_id: str, path: Path) -> float:
    """Pick-and-place target 25 cm to the side; returns the fps of its timing."""
    from unihm_core.object_model import ObjectModel
    from unihm_core.target_planner import PlanRequest, TaskPlanner
    from unihm_core.tasks import TASK_PICK_AND_PLACE

    points = ObjectModel.from_asset(object_id, n_points=512).points
    extent = points.max(0) - points.min(0)
    z = -float(points[:, 2].min())
    start = np.eye(4)
    start[:3, 3] = [0.5, 0.0, z]
    plan = TaskPlanner().plan(PlanRequest(task=TASK_PICK_AND_PLACE, object_pose=start,
                                          object_extent=extent,
                                          destination=np.array([0.5, 0.25, z])))
    fps = (len(plan.times) - 1) / float(plan.times[-1] - plan.times[0])
    np.savez(path, poses=plan.poses)
    return fps


def to_refiner_input(generated: Path, hand: str, path: Path) -> None:
    """The generator's sequence file -> the arrays `unihm refine` reads, for one hand."""
    from unihm_core.dataset.format import load_sequence

    rec = load_sequence(generated)
    motion = rec.hands[hand]
    np.savez(path, wrist_poses=np.asarray(motion.wrist_poses), q=np.asarray(motion.joints),
             object_poses=np.asarray(rec.object_poses), fps=np.float64(rec.fps))


def draw_refined(generated: Path, refined: Path, hand: str, picture: Path) -> Path:
    from dataclasses import replace

    from unihm_core.dataset.format import load_sequence
    from unihm_core.dataset.render import render_sequence

    rec = load_sequence(generated)
    with np.load(refined) as f:
        wrist, q = np.asarray(f["wrist_poses"]), np.asarray(f["q"])
    motion = replace(rec.hands[hand], wrist_poses=wrist, joints=q)
    return render_sequence(replace(rec, hands={hand: motion}, task="refined",
                                   sequence_id="refined"), picture)


def run(cmd: list[str]) -> str:
    print("+ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/demo")
    ap.add_argument("--instruction", default=INSTRUCTION)
    ap.add_argument("--object", default=OBJECT)
    ap.add_argument("--hands", default=HANDS)
    args = ap.parse_args(argv)
    tic = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hand = args.hands.split(",")[0]
    fps = plan_target(args.object, out / "target.npz")
    gen = run(["unihm", "generate", "--instruction", args.instruction, "--object", args.object,
               "--target", str(out / "target.npz"), "--hands", args.hands, "--fps", f"{fps:g}",
               "--out", str(out / "generated.npz")])
    print(gen.strip().splitlines()[-1])
    to_refiner_input(out / "generated.npz", hand, out / "refine_in.npz")
    run(["unihm", "refine", str(out / "refine_in.npz"), "--hand", hand, "--object", args.object,
         "--out", str(out / "refined.npz")])
    picture = draw_refined(out / "generated.npz", out / "refined.npz", hand,
                           out / "refined.png")
    print(json.dumps({"generated": str(out / "generated.npz"),
                      "generated_picture": str(out / "generated.png"),
                      "refined": str(out / "refined.npz"), "refined_picture": str(picture),
                      "seconds": round(time.perf_counter() - tic, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
