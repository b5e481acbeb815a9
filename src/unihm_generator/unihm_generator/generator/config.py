"""Generator configuration: the language model's shape, the encoders and the vocabulary layout.

Two presets share one code path: ``tiny`` (the default, trained on CPU) and ``qwen3-0.6b``
(the shape of Qwen3-0.6B; initialised from a local Qwen3-0.6B folder with ``base_model``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


class GeneratorError(ValueError):
    """A bad input, configuration or checkpoint of the generator (the message says which)."""


# Structure tokens, appended to the text vocabulary in this order (docs/generator.md).
STRUCTURE_TOKENS = ("<|obj|>", "<|traj|>", "<|init|>", "<|motion|>", "<|motion_end|>",
                    "<|hand_mask|>", "<|pad|>")

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, head_dim=32,
                 intermediate_size=384, compact_text_vocab=True),
    "qwen3-0.6b": dict(hidden_size=1024, num_layers=28, num_heads=16, num_kv_heads=8,
                       head_dim=128, intermediate_size=3072, compact_text_vocab=False),
}


@dataclass
class GeneratorConfig:
    preset: str = "tiny"
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 32
    intermediate_size: int = 384
    rope_theta: float = 1_000_000.0
    max_positions: int = 1024
    compact_text_vocab: bool = True
    """tiny: the embedding table keeps only the Qwen3 ids listed in ``text_ids`` (others map
    to one unknown row); qwen3-0.6b: the full Qwen3 vocabulary."""
    text_ids: list[int] = field(default_factory=list)
    qwen_vocab_size: int = 151669
    max_text_tokens: int = 32
    # hand tokens (from the hand tokenizer's checkpoint)
    codebook_size: int = 1024
    chunk: int = 4
    # object encoder (paper C.2)
    num_points: int = 512
    pointnet_widths: list[int] = field(default_factory=lambda: [64, 128, 256])
    num_object_tokens: int = 4
    # trajectory encoder (paper C.3)
    traj_hidden: int = 512
    traj_features: int = 10
    # wrist head: per chunk, chunk x (position in dm + 6D rotation) in the object's frame
    wrist_hidden: int = 256
    wrist_weight: float = 1.0
    wrist_smoothing: float = 5.0
    """Strength of the Whittaker smoother run over the predicted wrist features (object frame)
    at decoding, as the tokenizer's ``seam_smoothing`` over joints: the head predicts each
    token's frames on its own, and consecutive predictions need not meet (docs/generator.md,
    "Wrist trajectory"). 0: as predicted. Not used in training."""
    # training
    lr: float = 1e-4
    weight_decay: float = 0.01
    batch_size: int = 16
    epochs: int = 30
    seed: int = 0
    masking: bool = True
    base_model: str = ""

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> GeneratorConfig:
        if name not in PRESETS:
            raise GeneratorError(f"unknown generator config {name!r}; choose one of "
                                 f"{', '.join(PRESETS)}")
        return cls(preset=name, **{**PRESETS[name], **overrides})

    # ------------------------------------------------------------------ vocabulary layout
    @property
    def text_vocab_size(self) -> int:
        """Rows for text: the kept ids plus one unknown row (tiny), or the full vocabulary."""
        return len(self.text_ids) + 1 if self.compact_text_vocab else self.qwen_vocab_size

    @property
    def structure_offset(self) -> int:
        return self.text_vocab_size

    def structure_id(self, name: str) -> int:
        return self.structure_offset + STRUCTURE_TOKENS.index(name)

    @property
    def hand_offset(self) -> int:
        return self.structure_offset + len(STRUCTURE_TOKENS)

    @property
    def vocab_size(self) -> int:
        return self.hand_offset + self.codebook_size

    # ---------------------------------------------------------------------- persistence
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "<dict>") -> GeneratorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GeneratorError(f"{where}: unknown generator config keys {unknown}")
        return cls(**data)

    def save(self, path: Path) -> None:
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> GeneratorConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GeneratorError(f"{path}: unreadable generator config: {exc}") from exc
        return cls.from_json(data, str(path))
