"""Small models and synthetic examples for tests and smoke runs (no dataset needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unihm_generator.generator.config import GeneratorConfig
from unihm_generator.generator.data import (
    Example,
    sample_points,
    target_features,
    wrist_in_object,
)

INSTRUCTIONS = ("pick up the box and lift it", "push the box to the left",
                "rotate the box in place", "hand the box over")


def tiny_tokenizer(hands: Sequence[str] = ("shadow_right", "xhand_right"),
                   codebook_size: int = 32, seed: int = 0):
    """An untrained hand tokenizer over real hands (their joint names and limits)."""
    import torch

    from unihm_core.hands import hand_kinematics
    from unihm_generator.tokenizer import HandSpec, HandTokenizer, TokenizerConfig

    specs = {}
    for h in hands:
        kin = hand_kinematics(h)
        specs[h] = HandSpec(hand_id=h, joint_names=list(kin.joint_names),
                            lower=[float(v) for v in kin.lower],
                            upper=[float(v) for v in kin.upper])
    torch.manual_seed(seed)
    model = HandTokenizer(TokenizerConfig(reference_hand=hands[0], codebook_size=codebook_size,
                                          hidden=32, code_dim=8, hands=specs))
    return model.eval()


def tiny_config(**overrides: object) -> GeneratorConfig:
    base = dict(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=16,
                intermediate_size=64, num_points=64, pointnet_widths=[16, 32],
                num_object_tokens=2, traj_hidden=64, wrist_hidden=32, codebook_size=32,
                batch_size=4, epochs=5)
    base.update(overrides)
    return GeneratorConfig.from_preset("tiny", **base)


def _pose(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    m = np.eye(4)
    m[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    m[:3, 3] = x, y, z
    return m


def synthetic_examples(tokenizer, config: GeneratorConfig, n: int = 8,
                       frames: int = 24, seed: int = 0) -> list[Example]:
    """Boxes lifted or slid along random directions, a wrist fixed on the box."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        t = frames + int(rng.integers(0, 5))
        x0, y0, yaw = rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(-3, 3)
        d = rng.normal(size=3) * 0.1
        s = np.linspace(0, 1, t)
        poses = np.stack([_pose(x0 + d[0] * u, y0 + d[1] * u, 0.05 + abs(d[2]) * u, yaw)
                          for u in s])
        grip = _pose(-0.08, 0.0, 0.04, 0.0)
        wrist_world = poses @ grip
        pts = rng.uniform(-0.03, 0.03, (200, 3)) * np.array([1.0, 1.5, 2.0])
        joints, tokens, init = {}, {}, {}
        for h in tokenizer.hands:
            spec = tokenizer.config.hands[h]
            lo, hi = np.asarray(spec.lower), np.asarray(spec.upper)
            a, b = rng.uniform(lo, hi, (2, len(lo)))
            q = (a + (b - a) * s[:, None]).astype(np.float32)
            joints[h] = q
            tokens[h] = np.asarray(tokenizer.encode(h, q))
            init[h] = int(tokenizer.encode(h, q[:1])[0])
        out.append(Example(
            sequence_id=f"syn{k:03d}", object_id="box",
            instructions=(INSTRUCTIONS[k % len(INSTRUCTIONS)],),
            points=sample_points(pts, config.num_points, seed=k), traj=target_features(poses),
            obj_poses=poses, wrist=wrist_in_object(poses, wrist_world), wrist_world=wrist_world,
            tokens=tokens, init_tokens=init, joints=joints))
    return out
