"""Instruction + object + target trajectory + initial hand state -> a trajectory per hand.

The generated tokens cover the finger joints: every requested hand's decoder of the hand
tokenizer turns the same token sequence into that hand's joints. The wrist is predicted by the
generator's wrist head in the object's frame, chunk by chunk, and put in the world frame along
the target object trajectory (``data.wrist_to_world``), so a wrist that holds the object
follows the object wherever the target takes it. Every hand gets the same wrist trajectory
(the canonical wrist frame of docs/hands.md is shared by the hands).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unihm_generator.generator.config import GeneratorError
from unihm_generator.generator.data import (
    init_wrist_feature,
    make_request,
    sample_points,
    target_features,
    wrist_to_world,
)
from unihm_generator.generator.model import HandGenerator, Request
from unihm_generator.generator.text import TextVocab


@dataclass
class GenerationSpec:
    """One request in world units."""

    instruction: str
    points: np.ndarray                 # (P, 3) object frame
    target: np.ndarray                 # (T, 4, 4) T_world_object(t)
    hands: Sequence[str]
    init_hand: str | None = None       # hand whose joints ``init_joints`` are
    init_joints: np.ndarray | None = None
    init_wrist: np.ndarray | None = None  # (4, 4) world


@dataclass
class GeneratedMotion:
    tokens: np.ndarray                                  # (N,) codebook indices
    wrist_poses: np.ndarray                             # (T, 4, 4) world
    joints: dict[str, np.ndarray] = field(default_factory=dict)  # hand -> (T, dof)


def straight_lift(frames: int) -> np.ndarray:
    """(frames, 4, 4) object poses rising 5 -> 25 cm, upright: a synthetic target for
    warm-ups and benchmarks."""
    poses = np.tile(np.eye(4), (frames, 1, 1))
    poses[:, 2, 3] = np.linspace(0.05, 0.25, frames)
    return poses


class Generator:
    """The generator model, its hand tokenizer and the Qwen3 text vocabulary together."""

    def __init__(self, model: HandGenerator, tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.vocab = TextVocab(model.config)
        if tokenizer.config.codebook_size != model.config.codebook_size:
            raise GeneratorError(f"the generator writes {model.config.codebook_size} hand "
                                 f"tokens, the tokenizer has {tokenizer.config.codebook_size}")

    @classmethod
    def load(cls, folder: str | os.PathLike[str] | None = None) -> Generator:
        from unihm_generator.generator.io import (
            checkpoint_tokenizer_dir,
            default_generator_dir,
            load_generator,
        )
        from unihm_generator.tokenizer import load_tokenizer

        src = Path(folder) if folder is not None else default_generator_dir()
        model = load_generator(src)
        return cls(model, load_tokenizer(checkpoint_tokenizer_dir(src)))

    @property
    def hands(self) -> tuple[str, ...]:
        return tuple(self.tokenizer.hands)

    def check_hands(self, hands: Sequence[str]) -> list[str]:
        hands = list(hands)
        if not hands:
            raise GeneratorError("no hand requested; choose among " + ", ".join(self.hands))
        unknown = [h for h in hands if h not in self.tokenizer.hands]
        if unknown:
            raise GeneratorError(f"unknown hand {unknown[0]!r}: this generator's tokenizer "
                                 f"knows {', '.join(self.hands)}")
        return hands

    def default_init_joints(self, hand: str) -> np.ndarray:
        """The hand's open pose (its config's ``open_pose``), inside the tokenizer's limits."""
        from unihm_core.hands import hand_kinematics

        spec = self.tokenizer.config.hands[hand]
        try:
            q = hand_kinematics(hand).open_pose
        except Exception:  # noqa: BLE001 - a hand only the tokenizer knows: the mid pose
            q = np.zeros(spec.dof)
        return np.clip(q, spec.lower, spec.upper).astype(np.float32)

    def request(self, spec: GenerationSpec) -> Request:
        hands = self.check_hands(spec.hands)
        cfg = self.model.config
        target = np.asarray(spec.target, dtype=np.float64)
        traj = target_features(target)
        points = sample_points(spec.points, cfg.num_points)
        init_hand = spec.init_hand or hands[0]
        self.check_hands([init_hand])
        q0 = (self.default_init_joints(init_hand) if spec.init_joints is None
              else np.asarray(spec.init_joints, dtype=np.float32))
        init_token = int(self.tokenizer.encode(init_hand, q0[None])[0])
        return make_request(self.vocab, cfg, spec.instruction, points, traj, init_token,
                            init_wrist_feature(target[0], spec.init_wrist))

    def warm_up(self, frames: int = 120) -> float:
        """Run one request on a synthetic object and lift, so the first real request does not
        pay the one-off costs (TorchScript optimisation of the decode loop, first kernel
        calls: 0.45 s against 5 ms warm on this machine). Returns the seconds it took."""
        import time

        tic = time.perf_counter()
        rng = np.random.default_rng(0)
        self.generate([GenerationSpec("pick up the object", rng.uniform(-0.04, 0.04, (512, 3)),
                                      straight_lift(frames), [self.hands[0]])])
        return time.perf_counter() - tic

    def generate(self, specs: Sequence[GenerationSpec], *, use_cache: bool = True,
                 greedy: bool = True, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None,
                 feed_mask: bool | None = None) -> list[GeneratedMotion]:
        """Batched generation; one ``GeneratedMotion`` per spec.

        ``feed_mask`` (default: whether the checkpoint was trained with the masking
        curriculum) feeds the mask token to every slot instead of the generated token, the
        input the curriculum's last epochs train on."""
        if feed_mask is None:
            feed_mask = bool(self.model.config.masking)
        requests = [self.request(s) for s in specs]
        codes, wrists = self.model.generate(requests, use_cache=use_cache, greedy=greedy,
                                            temperature=temperature, top_k=top_k,
                                            top_p=top_p, seed=seed, feed_mask=feed_mask)
        out = []
        for spec, c, w in zip(specs, codes, wrists, strict=True):
            target = np.asarray(spec.target, dtype=np.float64)
            t = len(target)
            motion = GeneratedMotion(tokens=c, wrist_poses=wrist_to_world(target, w[:t]))
            for hand in spec.hands:
                motion.joints[hand] = np.asarray(self.tokenizer.decode(hand, c, num_frames=t))
            out.append(motion)
        return out
