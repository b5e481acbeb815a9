"""Evaluation (paper appendix F) of the generator, the retrieval baseline and the ablation.

Per sequence and hand: MPJPE over the hand's keypoints (forward kinematics of
``unihm_core.hands``) in the world frame, mm; the joint-angle variant (mean absolute joint
error, rad: what the paper's public code calls MPJPE) labelled ``mpjpe_joint_angle_rad``;
FPL, the wrist (hand root) position error at the last frame, mm; FOL, its orientation error
at the last frame, deg. Means over sequences and hands. Diversity (F9): mean pairwise distance
between sequence features, the keypoints of the evaluation hand expressed in the object's
frame at 8 evenly spaced frames (mm); the same figure for the ground truth is reported beside
it (closer is better). Every request gets the instruction's first paraphrase, the ground
truth's initial hand pose (joints and wrist) and greedy decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from unihm_generator.generator.data import Example, wrist_to_world
from unihm_generator.generator.pipeline import GenerationSpec, Generator
from unihm_generator.generator.retrieval import RetrievalIndex

Prediction = dict[str, Any]  # {"wrist": (T,4,4), "joints": {hand: (T,dof)}}


def spec_of(ex: Example) -> GenerationSpec:
    hands = sorted(ex.joints)
    return GenerationSpec(instruction=ex.instructions[0], points=ex.points,
                          target=ex.obj_poses, hands=hands, init_hand=hands[0],
                          init_joints=ex.joints[hands[0]][0], init_wrist=ex.wrist_world[0])


def predict_model(gen: Generator, examples: Sequence[Example], batch: int = 16,
                  **kwargs: Any) -> list[Prediction]:
    out = []
    for i in range(0, len(examples), batch):
        specs = [spec_of(ex) for ex in examples[i:i + batch]]
        for m in gen.generate(specs, **kwargs):
            out.append({"wrist": m.wrist_poses, "joints": m.joints})
    return out


def predict_retrieval(index: RetrievalIndex, tokenizer,
                      examples: Sequence[Example], chunk: int) -> list[Prediction]:
    out = []
    for ex in examples:
        t = ex.num_frames
        codes, wrist = index.query(ex.instructions[0], ex.points, -(-t // chunk), t)
        out.append({"wrist": wrist_to_world(ex.obj_poses, wrist),
                    "joints": {h: np.asarray(tokenizer.decode(h, codes, num_frames=t))
                               for h in ex.joints}})
    return out


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    c = (np.trace(a.T @ b) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def _features(points_obj: np.ndarray) -> np.ndarray:
    idx = np.round(np.linspace(0, len(points_obj) - 1, 8)).astype(int)
    return points_obj[idx].reshape(-1) * 1000.0


def diversity(features: Sequence[np.ndarray]) -> float:
    if len(features) < 2:
        return float("nan")
    f = np.stack(features)
    d = np.linalg.norm(f[:, None] - f[None], axis=-1)
    m = len(f)
    return float(d[np.triu_indices(m, 1)].mean())


def metrics(examples: Sequence[Example], preds: Sequence[Prediction],
            div_hand: str | None = None) -> dict[str, Any]:
    from unihm_core.hands import hand_kinematics

    mpjpe, angle, fpl, fol = [], [], [], []
    per_hand: dict[str, list[float]] = {}
    feats, gt_feats = [], []
    for ex, pr in zip(examples, preds, strict=True):
        gt_w, pw = ex.wrist_world, pr["wrist"]
        fpl.append(float(np.linalg.norm(pw[-1, :3, 3] - gt_w[-1, :3, 3])) * 1000.0)
        fol.append(_angle_deg(gt_w[-1, :3, :3], pw[-1, :3, :3]))
        inv = np.linalg.inv(ex.obj_poses)
        for hand, q in ex.joints.items():
            kin = hand_kinematics(hand)
            kp_gt = kin.keypoints(gt_w, q)
            kp = kin.keypoints(pw, pr["joints"][hand])
            e = float(np.linalg.norm(kp - kp_gt, axis=-1).mean()) * 1000.0
            mpjpe.append(e)
            per_hand.setdefault(hand, []).append(e)
            angle.append(float(np.abs(pr["joints"][hand] - q).mean()))
            if hand == (div_hand or sorted(ex.joints)[0]):
                local = np.einsum("tij,tkj->tki", inv[:, :3, :3], kp) + inv[:, None, :3, 3]
                local_gt = np.einsum("tij,tkj->tki", inv[:, :3, :3], kp_gt) + inv[:, None, :3, 3]
                feats.append(_features(local))
                gt_feats.append(_features(local_gt))
    return {"sequences": len(examples), "mpjpe_mm": round(float(np.mean(mpjpe)), 2),
            "mpjpe_joint_angle_rad": round(float(np.mean(angle)), 4),
            "fpl_mm": round(float(np.mean(fpl)), 2), "fol_deg": round(float(np.mean(fol)), 2),
            "diversity_mm": round(diversity(feats), 2),
            "diversity_gt_mm": round(diversity(gt_feats), 2),
            "mpjpe_mm_per_hand": {h: round(float(np.mean(v)), 2)
                                  for h, v in sorted(per_hand.items())}}


def evaluate(gen: Generator, examples: Sequence[Example], *,
             index: RetrievalIndex | None = None, ablation: Generator | None = None,
             feed_mask: bool | None = None,
             echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    hands = {h for ex in examples for h in ex.joints}
    div_hand = "xhand_right" if "xhand_right" in hands else None
    report: dict[str, Any] = {"model": metrics(examples, predict_model(
        gen, examples, feed_mask=feed_mask), div_hand)}
    if echo:
        echo(f"model: {report['model']}")
    if index is not None:
        report["retrieval"] = metrics(examples, predict_retrieval(
            index, gen.tokenizer, examples, gen.model.config.chunk), div_hand)
        report["mpjpe_ratio_to_retrieval"] = round(
            report["model"]["mpjpe_mm"] / report["retrieval"]["mpjpe_mm"], 3)
    if ablation is not None:
        report["no_masking"] = metrics(examples, predict_model(ablation, examples,
                                                               feed_mask=feed_mask), div_hand)
    return report
