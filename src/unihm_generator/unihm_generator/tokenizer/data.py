"""Joint trajectories of a dataset, laid out for chunked training.

Every sequence of a UniHM dataset holds the same motion retargeted to every hand, so frame t of
one hand and frame t of another are a retargeted pair (what distillation needs). The bank
concatenates all sequences per hand; a training window is ``chunk`` consecutive frames of one
sequence, and windows start at every frame (stride 1), while evaluation cuts each sequence into
consecutive chunks from its first frame, as :meth:`HandTokenizer.encode` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from unihm_generator.tokenizer.config import HandSpec, TokenizerError


def hand_spec(hand_id: str) -> HandSpec:
    """Joint order and limits of a registry hand (raises UnknownHandError listing the known)."""
    from unihm_core.hands import hand_kinematics

    kin = hand_kinematics(hand_id)
    return HandSpec(hand_id=hand_id, joint_names=list(kin.joint_names),
                    lower=[float(v) for v in kin.lower], upper=[float(v) for v in kin.upper])


@dataclass
class TrajectoryBank:
    """Per-hand joints of many sequences, concatenated along time."""

    joints: dict[str, NDArray[np.float32]]
    """hand -> (N, dof); rows of sequences that lack the hand are zeros (see ``present``)."""
    present: dict[str, NDArray[np.bool_]]
    seq_start: NDArray[np.int64]
    seq_len: NDArray[np.int64]
    seq_ids: list[str]

    @property
    def num_frames(self) -> int:
        return int(self.seq_len.sum())

    @property
    def hands(self) -> tuple[str, ...]:
        return tuple(self.joints)

    def window_starts(self, chunk: int, *hands: str) -> NDArray[np.int64]:
        """Every start of a ``chunk``-frame window inside one sequence where all ``hands``
        are present."""
        out = []
        for s, n in zip(self.seq_start, self.seq_len, strict=True):
            if n < chunk or not all(self.present[h][s] for h in hands):
                continue
            out.append(np.arange(s, s + n - chunk + 1))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def chunk_starts(self, chunk: int, *hands: str) -> NDArray[np.int64]:
        """Starts of consecutive chunks from each sequence's first frame (evaluation layout);
        a sequence's last partial chunk is left out (``encode`` pads it)."""
        out = []
        for s, n in zip(self.seq_start, self.seq_len, strict=True):
            if all(self.present[h][s] for h in hands):
                out.append(s + np.arange(0, n - chunk + 1, chunk))
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def windows(self, hand_id: str, starts: NDArray[np.int64], chunk: int) -> NDArray[np.float32]:
        """(B, chunk, dof) joints of ``hand_id`` at the given window starts."""
        return self.joints[hand_id][starts[:, None] + np.arange(chunk)[None, :]]


def load_bank(root: str | os.PathLike[str], split: str, hands: Iterable[str] | None = None,
              progress: bool = True, max_sequences: int | None = None) -> TrajectoryBank:
    """Read a dataset split into a bank; ``hands`` None = every hand found in the dataset."""
    from unihm_core.dataset.index import Dataset

    ds = Dataset(root)
    ids = ds.ids(split)
    if max_sequences is not None:
        ids = ids[:max_sequences]
    if not ids:
        raise TokenizerError(f"{root}: split {split!r} has no sequences")
    wanted = list(hands) if hands is not None else list(ds.hands)
    specs = {h: hand_spec(h) for h in wanted}
    per_hand: dict[str, list[NDArray[np.float32]]] = {h: [] for h in wanted}
    present: dict[str, list[NDArray[np.bool_]]] = {h: [] for h in wanted}
    lengths = []
    for seq in tqdm(ids, desc=f"loading {split}", unit="seq", disable=not progress,
                    leave=False):
        record = ds.load(seq)
        t = record.num_frames
        lengths.append(t)
        for h in wanted:
            spec = specs[h]
            motion = record.hands.get(h)
            if motion is None:
                per_hand[h].append(np.zeros((t, spec.dof), np.float32))
                present[h].append(np.zeros(t, bool))
                continue
            if list(motion.joint_names) != spec.joint_names:
                raise TokenizerError(
                    f"sequence {seq!r} hand {h!r}: joint names {list(motion.joint_names)} "
                    f"differ from the hand config's {spec.joint_names}")
            per_hand[h].append(np.asarray(motion.joints, np.float32))
            present[h].append(np.ones(t, bool))
    seq_len = np.asarray(lengths, np.int64)
    seq_start = np.concatenate([[0], np.cumsum(seq_len)[:-1]]).astype(np.int64)
    return TrajectoryBank(joints={h: np.concatenate(v) for h, v in per_hand.items()},
                          present={h: np.concatenate(v) for h, v in present.items()},
                          seq_start=seq_start, seq_len=seq_len, seq_ids=list(ids))
