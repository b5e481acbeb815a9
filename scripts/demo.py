"""`make demo`: the whole graph on a rendered scene, one executed Manipulate goal.

1. render a tabletop scene (mustard bottle, mug, sugar box, tomato soup can) into a camera bag;
2. start the sim graph in this process (perception, generator, refiner, executive, simulated
   Franka + XHand drivers, the camera player) and a recorder of every pipeline topic;
3. send Manipulate(INSTRUCTION, hands=[xhand_right], execute=true), printing the feedback;
4. write into OUT (default build/demo): result.json (the outcome, metrics, stage timings),
   result.npz (target, refined hand motion, arm trajectory), result.png (the object cloud, its
   target path and the wrist path; arm and hand joints over time) and run_bag/ (mcap bag of
   the run: camera frames, clouds, trajectories, joint states, goal record).

The shared assets have no bowl, so the demo puts the bottle in the mug.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

INSTRUCTION = "pick up the mustard bottle and put it in the mug"


def draw(result: Any, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unihm_core.ros.conversions import (
        motion_from_hand_trajectory,
        motion_from_joint_trajectory,
        target_from_msg,
    )

    target = target_from_msg(result.target)
    hand = motion_from_hand_trajectory(result.hand_trajectories[0])
    arm = motion_from_joint_trajectory(result.arm_trajectory, "arm")
    fig = plt.figure(figsize=(13, 5))
    ax = fig.add_subplot(1, 3, 1, projection="3d")
    ax.plot(*target.poses[:, :3, 3].T, "g-", label="object target path")
    ax.plot(*hand.wrist_poses[:, :3, 3].T, "b-", label=f"{hand.hand_id} wrist (refined)")
    ax.scatter(*target.poses[0, :3, 3], c="g", s=30)
    ax.set_title(f"{target.object_label}: {target.task}")
    ax.legend(fontsize=7)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    ax2 = fig.add_subplot(1, 3, 2)
    ax2.plot(arm.times, arm.positions)
    ax2.set_title("Franka joints (sent to the arm driver)")
    ax2.set_xlabel("t (s)")
    ax2.set_ylabel("rad")
    ax3 = fig.add_subplot(1, 3, 3)
    ax3.plot(hand.times, hand.joints)
    ax3.set_title(f"{hand.hand_id} joints (refined, before timing)")
    ax3.set_xlabel("t (s)")
    fig.suptitle(f'"{result.message[:110]}"', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def save_npz(result: Any, path: Path) -> None:
    from unihm_core.ros.conversions import (
        motion_from_hand_trajectory,
        motion_from_joint_trajectory,
        target_from_msg,
    )

    target = target_from_msg(result.target)
    arm = motion_from_joint_trajectory(result.arm_trajectory, "arm")
    arrays: dict[str, Any] = {"target/times": target.times, "target/poses": target.poses,
                              "arm/times": arm.times, "arm/positions": arm.positions,
                              "arm/velocities": arm.velocities,
                              "arm/accelerations": arm.accelerations}
    for msg in result.hand_trajectories:
        m = motion_from_hand_trajectory(msg)
        arrays[f"hands/{m.hand_id}/times"] = m.times
        arrays[f"hands/{m.hand_id}/wrist_poses"] = m.wrist_poses
        arrays[f"hands/{m.hand_id}/joints"] = m.joints
        arrays[f"hands/{m.hand_id}/tokens"] = np.asarray(m.tokens)
    np.savez_compressed(path, **arrays)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/demo")
    ap.add_argument("--instruction", default=INSTRUCTION)
    ap.add_argument("--hands", default="xhand_right")
    ap.add_argument("--plan-only", action="store_true", help="do not execute")
    args = ap.parse_args(argv)
    tic = time.perf_counter()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    from unihm_bringup.bags.recorder import BagWriter, RecorderNode
    from unihm_bringup.inprocess import InProcessGraph

    writer = None

    def recorder(graph: InProcessGraph) -> list[Any]:
        nonlocal writer
        writer = BagWriter(out / "run_bag")
        return [RecorderNode(writer, progress_s=0.0)]

    shown: list[tuple[str, int]] = []

    def show(fb: Any) -> None:
        key = (fb.stage, int(fb.progress * 10))
        if not shown or shown[-1] != key:
            shown.append(key)
            print(f"  [{fb.progress:4.0%}] {fb.stage}: {fb.detail}", flush=True)

    print(f"starting the sim graph (scene bag in {out / 'scene'})", flush=True)
    with InProcessGraph(out, extra_nodes=recorder, isolate=True) as graph:
        print(f"sending: {args.instruction!r}", flush=True)
        res = graph.client.send(
            args.instruction, args.hands.split(","), execute=not args.plan_only,
            timeout=180.0, server_wait=30.0, on_feedback=show)
        time.sleep(0.5)  # the last messages reach the recorder
    if writer is not None:
        writer.close()
    result = res.pop("result", None)
    (out / "result.json").write_text(json.dumps(res, indent=1))
    summary = {"success": res["success"], "executed": res.get("executed", False),
               "message": res["message"], "result": str(out / "result.json"),
               "run_bag": str(out / "run_bag")}
    if res["success"] and result is not None:
        save_npz(result, out / "result.npz")
        summary["picture"] = str(draw(result, out / "result.png"))
        summary["trajectories"] = str(out / "result.npz")
    summary["seconds"] = round(time.perf_counter() - tic, 1)
    print(json.dumps(summary))
    return 0 if res["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
