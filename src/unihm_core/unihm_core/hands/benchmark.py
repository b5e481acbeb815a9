"""``unihm bench kinematics``: hand FK + Jacobians, retargeting and arm IK throughput.

Baselines measured in the same run: pinocchio called once per frame from Python (the naive
loop) for the batched hand kinematics; cold-started IK for the warm-started trajectory IK.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

from unihm_core.assets import asset_path
from unihm_core.hands.kinematics import hand_kinematics
from unihm_core.hands.registry import hand_ids

MEDIAPIPE_SEQUENCE = "human_hand_sequences/dexretargeting_mediapipe_right/human_joint_right.npz"


def _rate(func: Callable[[], object], count: int, repeats: int) -> float:
    """Best-of-``repeats`` items per second (the least disturbed run on a shared machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return count / best


def measure_hand_kinematics(hand_id: str, batch: int, naive: int, repeats: int) -> dict:
    hand = hand_kinematics(hand_id)
    rng = np.random.default_rng(0)
    q = hand.random_configurations(batch, rng)
    wrists = np.broadcast_to(np.eye(4), (batch, 4, 4))
    batched = _rate(lambda: hand.keypoints_and_jacobians(wrists, q, "fingertips"), batch,
                    repeats)
    loop = _rate(lambda: hand.keypoints_pinocchio(wrists[:naive], q[:naive], "fingertips"),
                 naive, repeats)
    return {"dof": hand.dof, "batched_per_s": round(batched), "pinocchio_loop_per_s": round(loop),
            "speedup": round(batched / loop, 2)}


def mediapipe_sequence() -> np.ndarray:
    """The valid frames of the shared real MediaPipe right-hand sequence, (T, 21, 3) metres."""
    with np.load(asset_path(MEDIAPIPE_SEQUENCE)) as data:
        return data["joints_21"][data["valid"]].astype(np.float64)


def run_kinematics_benchmark(quick: bool = False) -> dict:
    from unihm_core.arm.benchmark import measure_ik
    from unihm_core.hands.retarget_cli import measure_retargeting

    batch, naive, repeats = (2000, 200, 2) if quick else (20000, 2000, 3)
    fk = {}
    for hand_id in hand_ids():
        print(f"[bench] FK + fingertip Jacobians: {hand_id}", file=sys.stderr, flush=True)
        fk[hand_id] = measure_hand_kinematics(hand_id, batch, naive, repeats)
    joints = mediapipe_sequence()
    if quick:
        joints = joints[:60]
    retarget = {}
    for hand_id in (["xhand_right"] if quick else hand_ids()):
        print(f"[bench] retargeting the MediaPipe sequence: {hand_id}", file=sys.stderr,
              flush=True)
        retarget[hand_id] = measure_retargeting(hand_id, joints)
    print("[bench] Franka IK along a wrist trajectory", file=sys.stderr, flush=True)
    ik = measure_ik(n_frames=150 if quick else 3000, seed=0, repeats=1 if quick else 3)
    return {"fk_jacobian": fk, "retargeting": retarget, "ik": ik,
            "min_batched_per_s": min(v["batched_per_s"] for v in fk.values())}
