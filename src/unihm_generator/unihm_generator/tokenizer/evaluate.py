"""Held-out figures of a tokenizer: joint errors, fingertip errors, codebook use, translation.

Sequences are cut into consecutive chunks from their first frame, exactly as
``HandTokenizer.encode`` cuts a trajectory, and decoded outputs are clipped to the joint limits
as ``decode`` does. Fingertip errors are forward kinematics of the decoded joints against that of
the dataset's joints, in the wrist frame (the tokenizer does not touch the wrist pose).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from unihm_generator.tokenizer.data import TrajectoryBank
from unihm_generator.tokenizer.model import HandTokenizer


@torch.no_grad()
def _codes(model: HandTokenizer, hand: str, joints: NDArray[np.float32]) -> torch.Tensor:
    x = model.normalize(hand, torch.from_numpy(joints))
    return model.codes_of(model.encode_latent(hand, x))


@torch.no_grad()
def _decode(model: HandTokenizer, hand: str, codes: torch.Tensor) -> NDArray[np.float32]:
    x = model.decode_codes(hand, codes).clamp(-1.0, 1.0)
    return model.denormalize(hand, x).numpy()


def _fingertips(hand: str, q: NDArray[np.float32]) -> NDArray[np.float64]:
    from unihm_core.hands import hand_kinematics

    return hand_kinematics(hand).keypoints_local(q.astype(np.float64), "fingertips")


def fingertip_error_mm(hand: str, q_pred: NDArray[np.float32],
                       q_true: NDArray[np.float32]) -> float:
    """Mean fingertip distance (mm) between two joint arrays (..., dof) of one hand."""
    dof = q_true.shape[-1]
    a = _fingertips(hand, q_pred.reshape(-1, dof))
    b = _fingertips(hand, q_true.reshape(-1, dof))
    return float(np.linalg.norm(a - b, axis=-1).mean() * 1000.0)


def codebook_stats(codes: NDArray[np.int64], size: int) -> dict[str, float]:
    """Share of codes used at least once, and perplexity exp(H) of the code distribution."""
    counts = np.bincount(codes, minlength=size).astype(np.float64)
    if counts.sum() == 0:
        return {"usage": 0.0, "perplexity": 0.0, "used_codes": 0}
    p = counts / counts.sum()
    nz = p[p > 0]
    return {"usage": float((counts > 0).mean()), "used_codes": int((counts > 0).sum()),
            "perplexity": float(math.exp(-(nz * np.log(nz)).sum()))}


def evaluate(model: HandTokenizer, bank: TrajectoryBank, hands: Sequence[str] | None = None,
             *, translation: bool = True, max_translation_chunks: int = 1500,
             seed: int = 0) -> dict[str, Any]:
    """Per-hand MAE/RMSE (joint units: rad, m for prismatic joints), fingertip error (mm),
    codebook usage and perplexity over all hands' tokens, and cross-hand translation fingertip
    error against the retargeted ground truth."""
    model.eval()
    chunk = model.chunk
    hands = [h for h in (hands or model.hands) if h in bank.hands and h in model.hands]
    per_hand: dict[str, Any] = {}
    all_codes = []
    abs_sum = sq_sum = count = 0.0
    for h in hands:
        starts = bank.chunk_starts(chunk, h)
        if starts.size == 0:
            continue
        q = bank.windows(h, starts, chunk)
        codes = _codes(model, h, q)
        err = _decode(model, h, codes) - q
        all_codes.append(codes.numpy())
        per_hand[h] = {
            "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "max_abs": float(np.abs(err).max()),
            "fingertip_mm": fingertip_error_mm(h, q + err, q),
            "frames": int(q.shape[0] * chunk),
            **{f"code_{k}": v for k, v in
               codebook_stats(codes.numpy(), model.config.codebook_size).items()
               if k != "used_codes"}}
        abs_sum += float(np.abs(err).sum())
        sq_sum += float((err ** 2).sum())
        count += err.size
    codes_all = np.concatenate(all_codes) if all_codes else np.zeros(0, np.int64)
    result: dict[str, Any] = {
        "hands": per_hand,
        "mae": abs_sum / count if count else float("nan"),
        "rmse": math.sqrt(sq_sum / count) if count else float("nan"),
        "mae_hand_mean": float(np.mean([v["mae"] for v in per_hand.values()]))
        if per_hand else float("nan"),
        "worst_hand": max(per_hand, key=lambda h: per_hand[h]["mae"]) if per_hand else None,
        "codebook": codebook_stats(codes_all, model.config.codebook_size),
    }
    result["codebook"]["size"] = model.config.codebook_size
    result["continuity"] = sequence_continuity(model, bank, list(per_hand))
    if translation and len(per_hand) > 1:
        result["translation"] = translation_errors(model, bank, list(per_hand),
                                                   max_translation_chunks, seed)
    return result


def sequence_continuity(model: HandTokenizer, bank: TrajectoryBank,
                        hands: Sequence[str]) -> dict[str, Any]:
    """Whole sequences through encode and decode, chunks as decoded ("raw") and with the
    decoder's seam smoothing: mean error (joint units) and the largest change between
    consecutive frames, beside the data's own. The chunk-level figures of ``evaluate`` cannot
    see seams; a robot following the decoded motion does."""
    per_hand: dict[str, Any] = {}
    for h in hands:
        errs = {"raw": [], "smoothed": []}
        steps: dict[str, list[NDArray[np.float32]]] = {"data": [], "raw": [], "smoothed": []}
        for s, n in zip(bank.seq_start, bank.seq_len, strict=True):
            if n < 2 or not bank.present[h][s]:
                continue
            q = bank.joints[h][s:s + n]
            ids = model.encode(h, q)
            steps["data"].append(np.abs(np.diff(q, axis=0)).max(1))
            for name, strength in (("raw", 0.0), ("smoothed", None)):
                rec = model.decode(h, ids, num_frames=int(n), seam_smoothing=strength)
                errs[name].append(np.abs(rec - q).mean(1))
                steps[name].append(np.abs(np.diff(rec, axis=0)).max(1))
        if not steps["data"]:
            continue
        per_hand[h] = {f"mae_{k}": float(np.concatenate(v).mean()) for k, v in errs.items()}
        for k, v in steps.items():
            flat = np.concatenate(v)
            per_hand[h][f"max_step_{k}"] = float(flat.max())
            per_hand[h][f"p99_step_{k}"] = float(np.percentile(flat, 99))
    out: dict[str, Any] = {"hands": per_hand, "seam_smoothing": model.config.seam_smoothing}
    for key in ("mae_raw", "mae_smoothed", "p99_step_data", "p99_step_raw", "p99_step_smoothed",
                "max_step_data", "max_step_raw", "max_step_smoothed"):
        values = [v[key] for v in per_hand.values()]
        agg = max if key.startswith("max") else np.mean
        out[key] = float(agg(values)) if values else float("nan")
    return out


def translation_errors(model: HandTokenizer, bank: TrajectoryBank, hands: Sequence[str],
                       max_chunks: int = 1500, seed: int = 0) -> dict[str, Any]:
    """Fingertip error (mm) of D_j(e_Q(E_i(x_i))) against hand j's retargeted motion, for every
    ordered pair (i, j), i != j, on chunks where both hands are present (at most
    ``max_chunks`` per pair, drawn at random)."""
    chunk = model.chunk
    rng = np.random.default_rng(seed)
    starts = {h: bank.chunk_starts(chunk, h) for h in hands}
    codes = {h: _codes(model, h, bank.windows(h, s, chunk)) for h, s in starts.items()}
    pairs: dict[str, float] = {}
    agree: dict[str, float] = {}
    ref = model.config.reference_hand
    for i in hands:
        for j in hands:
            common = np.intersect1d(starts[i], starts[j])
            if i == j or common.size == 0:
                continue
            if common.size > max_chunks:
                common = np.sort(rng.choice(common, max_chunks, replace=False))
            ci = codes[i][torch.from_numpy(np.searchsorted(starts[i], common))]
            if i == ref:
                cj = codes[j][torch.from_numpy(np.searchsorted(starts[j], common))]
                agree[j] = float((ci == cj).float().mean())
            qj = bank.windows(j, common, chunk)
            qhat = _decode(model, j, ci)
            pairs[f"{i}->{j}"] = fingertip_error_mm(j, qhat, qj)
    return {
        "mean_mm": float(np.mean(list(pairs.values()))) if pairs else float("nan"),
        "from_reference_mm": {k.split("->")[1]: v for k, v in pairs.items()
                              if k.startswith(f"{ref}->")},
        "token_agreement_with_reference": agree,
        "pairs_mm": pairs,
    }


def plot_report(model: HandTokenizer, bank: TrajectoryBank, out: str | Path,
                hands: Sequence[str] | None = None) -> list[Path]:
    """codebook_usage.png (sorted code counts over the bank) and reconstructions.png (a few
    joints of one sequence, data vs encode-decode, for up to four hands)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hands = [h for h in (hands or model.hands) if h in bank.hands]
    chunk = model.chunk
    counts = np.zeros(model.config.codebook_size, np.int64)
    for h in hands:
        starts = bank.chunk_starts(chunk, h)
        if starts.size:
            counts += np.bincount(_codes(model, h, bank.windows(h, starts, chunk)).numpy(),
                                  minlength=counts.size)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    order = np.sort(counts)[::-1]
    ax.bar(np.arange(order.size), order, width=1.0, color="tab:blue")
    ax.set_yscale("log")
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("tokens")
    stats = codebook_stats(np.repeat(np.arange(counts.size), counts), counts.size)
    ax.set_title(f"codebook use: {stats['usage']:.0%} of {counts.size} codes, "
                 f"perplexity {stats['perplexity']:.0f}")
    fig.tight_layout()
    paths = [out / "codebook_usage.png"]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    shown = hands[:4]
    fig, axes = plt.subplots(len(shown), 1, figsize=(7, 2.2 * len(shown)), squeeze=False)
    for ax, h in zip(axes[:, 0], shown, strict=False):
        # the longest sequence that has this hand
        lengths = np.where(bank.present[h][bank.seq_start], bank.seq_len, 0)
        seq = int(np.argmax(lengths))
        s, n = int(bank.seq_start[seq]), int(bank.seq_len[seq])
        t = np.arange(n)
        q = bank.joints[h][s:s + n]
        rec = model.reconstruct(h, q)
        spread = np.ptp(q, axis=0)
        for k, j in enumerate(np.argsort(spread)[::-1][:3]):
            ax.plot(t, q[:, j], color=f"C{k}", lw=1.5, label=model.config.hands[h].joint_names[j])
            ax.plot(t, rec[:, j], color=f"C{k}", lw=1.0, ls="--")
        ax.set_title(f"{h}, {bank.seq_ids[seq]}: data (solid) vs tokens -> joints (dashed)",
                     fontsize=9)
        ax.legend(fontsize=6, loc="upper right")
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    paths.append(out / "reconstructions.png")
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths
