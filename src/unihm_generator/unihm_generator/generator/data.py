"""Dataset records -> generator examples, and model outputs -> per-hand trajectories.

Frames of reference: object points are in the object's frame; the target trajectory is
T_world_object(t); the wrist is predicted in the object's frame at the same time,
X(t) = T_world_object(t)^-1 T_world_wrist(t), and returned in the world frame as
T_world_object(t) X(t).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from unihm_generator.generator.config import GeneratorConfig, GeneratorError
from unihm_generator.generator.model import Request, check_points
from unihm_generator.generator.text import TextVocab

POS_SCALE = 10.0  # wrist positions are learned in decimetres


def rot6(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6): the first two columns."""
    return np.concatenate([r[..., :, 0], r[..., :, 1]], -1)


def rot_from6(x: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt."""
    a, b = x[..., :3], x[..., 3:6]
    e1 = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-8)
    b = b - (e1 * b).sum(-1, keepdims=True) * e1
    e2 = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-8)
    return np.stack([e1, e2, np.cross(e1, e2)], -1)


def check_target(poses: np.ndarray) -> np.ndarray:
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (4, 4) or arr.shape[0] < 2:
        raise GeneratorError(f"expected a target trajectory of shape (T, 4, 4) with T >= 2, "
                             f"got {arr.shape}")
    if not np.isfinite(arr).all():
        raise GeneratorError("the target trajectory has NaN or infinite values")
    return arr


def target_features(poses: np.ndarray) -> np.ndarray:
    """(T, 4, 4) -> (T, 10): [x - x0, y - y0, z, 6D rotation, t / (T - 1)] per target step."""
    poses = check_target(poses)
    t = poses.shape[0]
    p = poses[:, :3, 3]
    rel = np.concatenate([p[:, :2] - p[:1, :2], p[:, 2:3]], 1) * POS_SCALE
    phase = np.linspace(0.0, 1.0, t)[:, None]
    return np.concatenate([rel, rot6(poses[:, :3, :3]), phase], 1).astype(np.float32)


def wrist_in_object(obj_poses: np.ndarray, wrist_poses: np.ndarray) -> np.ndarray:
    """(T, 9): wrist position (dm) and 6D rotation in the object's frame."""
    rel = np.linalg.inv(obj_poses) @ wrist_poses
    return np.concatenate([rel[:, :3, 3] * POS_SCALE, rot6(rel[:, :3, :3])], 1).astype(
        np.float32)


def wrist_to_world(obj_poses: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Inverse of ``wrist_in_object``: (T, 9) -> (T, 4, 4) world poses."""
    rel = np.tile(np.eye(4), (len(x), 1, 1))
    rel[:, :3, :3] = rot_from6(x[:, 3:9].astype(np.float64))
    rel[:, :3, 3] = x[:, :3] / POS_SCALE
    return obj_poses @ rel


def sample_points(points: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    pts = check_points(points)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(pts), n, replace=len(pts) < n)
    return pts[idx].astype(np.float32)


def init_wrist_feature(obj_pose0: np.ndarray | None, wrist0: np.ndarray | None) -> np.ndarray:
    if wrist0 is None or obj_pose0 is None:
        return np.zeros(10, dtype=np.float32)
    x = wrist_in_object(obj_pose0[None], np.asarray(wrist0, dtype=np.float64)[None])[0]
    return np.concatenate([x, [1.0]]).astype(np.float32)


@dataclass
class Example:
    """A training sequence: conditions, and per hand its token codes."""

    sequence_id: str
    object_id: str
    instructions: tuple[str, ...]
    points: np.ndarray
    traj: np.ndarray
    obj_poses: np.ndarray
    wrist: np.ndarray          # (T, 9) wrist in object frame (the same for every hand)
    wrist_world: np.ndarray    # (T, 4, 4)
    tokens: dict[str, np.ndarray]
    init_tokens: dict[str, int]   # per hand: the token of the first frame alone
    joints: dict[str, np.ndarray]

    @property
    def num_frames(self) -> int:
        return len(self.obj_poses)


def load_examples(data: str, split: str, tokenizer, config: GeneratorConfig,  # noqa: PLR0917
                  hands: Sequence[str] | None = None, limit: int | None = None,
                  progress: bool = False) -> list[Example]:
    from unihm_core.dataset.index import Dataset

    ds = Dataset(data)
    records = list(ds.records(split))
    if limit:
        records = records[:limit]
    if progress:
        from tqdm import tqdm

        records = tqdm(records, desc=f"loading {split}", unit="seq")
    out = []
    for k, rec in enumerate(records):
        use = [h for h in rec.hands if h in tokenizer.hands and (hands is None or h in hands)]
        if not use:
            continue
        wrist_world = rec.hands[use[0]].wrist_poses
        out.append(Example(
            sequence_id=rec.sequence_id, object_id=rec.object_id,
            instructions=tuple(rec.instructions) or (rec.task,),
            points=sample_points(rec.object_points, config.num_points, seed=k),
            traj=target_features(rec.object_poses), obj_poses=rec.object_poses,
            wrist=wrist_in_object(rec.object_poses, wrist_world), wrist_world=wrist_world,
            tokens={h: np.asarray(tokenizer.encode(h, rec.hands[h].joints)) for h in use},
            init_tokens={h: int(tokenizer.encode(h, rec.hands[h].joints[:1])[0]) for h in use},
            joints={h: np.asarray(rec.hands[h].joints, dtype=np.float32) for h in use}))
    return out


def make_request(vocab: TextVocab, config: GeneratorConfig, instruction: str,  # noqa: PLR0917
                 points: np.ndarray, traj: np.ndarray, init_token: int,
                 init_wrist: np.ndarray) -> Request:
    rows = vocab.rows(instruction)
    n = -(-len(traj) // config.chunk)
    if n + len(rows) + config.num_object_tokens + n + 4 > config.max_positions:
        raise GeneratorError(f"the target trajectory is too long ({len(traj)} frames) for "
                             f"max_positions={config.max_positions}")
    return Request(text_rows=rows, points=points, traj=traj, init_token=int(init_token),
                   init_wrist=init_wrist, num_tokens=n)


def frame_targets(example: Example, config: GeneratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Wrist targets padded to N * chunk frames, with a mask of the real frames."""
    t = example.num_frames
    n = -(-t // config.chunk)
    pad = n * config.chunk - t
    w = np.concatenate([example.wrist, np.repeat(example.wrist[-1:], pad, 0)])
    m = np.concatenate([np.ones(t), np.zeros(pad)]).astype(np.float32)
    return w, m
