"""Tokenizer hyper-parameters, stored as JSON next to the weights.

The config is the whole recipe of a checkpoint: architecture (needed to rebuild the modules
before loading weights), the per-hand normalisation and the training schedule (so that a run can
be resumed or repeated with the same command).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

BACKBONES = ("mlp", "conv")
CONFIG_FORMAT = "unihm-hand-tokenizer"
CONFIG_VERSION = 1


class TokenizerError(ValueError):
    """Bad input to the tokenizer: unknown hand, wrong shape, unreadable checkpoint."""


@dataclass
class HandSpec:
    """What the tokenizer needs to know about one hand: joint order and normalisation range.

    Inputs are mapped to [-1, 1] with the hand's joint limits, so that every joint of every hand
    has the same scale whatever its unit (radians; metres for the Panda gripper's fingers).
    """

    hand_id: str
    joint_names: list[str]
    lower: list[float]
    upper: list[float]

    @property
    def dof(self) -> int:
        return len(self.joint_names)


@dataclass
class TokenizerConfig:
    """Architecture and training schedule of a unified hand tokenizer."""

    reference_hand: str = "shadow_right"
    backbone: str = "mlp"
    chunk: int = 4
    """Frames per token: one token covers ``chunk`` consecutive frames (chunk / fps seconds)."""
    codebook_size: int = 1024
    code_dim: int = 32
    seam_smoothing: float = 5.0
    """Strength (lam) of the Whittaker smoother that :meth:`HandTokenizer.decode` runs over
    decoded frames so that consecutive chunks meet (tokenizer/seams.py); 0 decodes chunks as
    they are. A decode-time setting: it changes no weight and is not used in training."""
    hidden: int = 192
    """Width of the per-hand MLP layers / conv channels."""
    beta: float = 0.25
    lr: float = 1e-3
    """Learning rate at the start of each stage (Adam), decayed to ``lr_final`` (cosine)."""
    lr_final: float = 1e-4
    """The paper's learning rate; a constant 1e-4 needs ~5x the epochs (docs/tokenizer.md)."""
    batch_size: int = 256
    seed: int = 0
    # stage 1: reference hand + codebook
    reference_epochs: int = 40
    refresh_epochs: list[int] = field(default_factory=lambda: [1, 3, 6, 10, 15, 20])
    tau_c: int = 1
    refresh_buffer: int = 20000
    # stage 2: every other hand (distillation, then fine-tuning)
    distill_epochs: int = 4
    finetune_epochs: int = 16
    lambda_distill: float = 0.1
    steps_per_epoch: int = 300
    """Optimizer steps per epoch (batches of ``batch_size`` windows drawn at random), so that
    the training time does not grow with the dataset; 0 = one pass over the training windows
    of the reference hand (the time then grows with the data: docs/tokenizer.md)."""
    hands: dict[str, HandSpec] = field(default_factory=dict)
    """Hands the tokenizer can encode and decode, in the order they were added."""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise TokenizerError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        for name in ("chunk", "codebook_size", "code_dim", "hidden", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise TokenizerError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.seam_smoothing) and self.seam_smoothing >= 0):
            raise TokenizerError(f"seam_smoothing must be a finite value >= 0, got "
                                 f"{self.seam_smoothing}")
        self.hands = {k: v if isinstance(v, HandSpec) else HandSpec(**v)
                      for k, v in self.hands.items()}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "<dict>") -> TokenizerConfig:
        if data.get("format") != CONFIG_FORMAT:
            raise TokenizerError(f"{where}: not a hand tokenizer config "
                                 f"(format {data.get('format')!r}, expected {CONFIG_FORMAT!r})")
        if int(data.get("version", 0)) > CONFIG_VERSION:
            raise TokenizerError(f"{where}: config version {data['version']} is newer than "
                                 f"this code understands ({CONFIG_VERSION})")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"format", "version"}
        if unknown:
            raise TokenizerError(f"{where}: unknown keys {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TokenizerConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise TokenizerError(f"{path}: no tokenizer config") from exc
        except json.JSONDecodeError as exc:
            raise TokenizerError(f"{path}: not JSON: {exc}") from exc
        return cls.from_json(data, str(path))
