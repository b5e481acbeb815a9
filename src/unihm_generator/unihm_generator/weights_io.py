"""Weights files shared by the tokenizer and generator checkpoints: safetensors only, written
atomically and readable by everyone, read back with the key and shape checks both need."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


def checkpoint_dir(env_var: str, shipped: Path) -> Path:
    """``$env_var`` when set, else the checkpoint shipped with the package."""
    env = os.environ.get(env_var)
    return Path(env).expanduser() if env else shipped


def write_weights(path: Path, state: Mapping[str, torch.Tensor], fmt: str,
                  half: bool = False) -> None:
    """Replace ``path`` atomically (a crash leaves the old file); fp16 floats when ``half``."""
    tensors = {}
    for key, value in state.items():
        v = value.detach().contiguous().clone()
        tensors[key] = v.half() if half and v.is_floating_point() else v
    tmp = Path(str(path) + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": fmt})
    tmp.chmod(0o644)  # safetensors writes 0600; a checkpoint is meant to be shared
    tmp.replace(path)


def read_weights(path: Path, expected: Mapping[str, torch.Tensor], error: type[Exception],
                 defaults: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, which must hold exactly the keys and shapes of ``expected``.

    ``defaults`` maps a key that may be absent to the key whose tensor stands in for it
    (tied weights stored once). Problems raise ``error`` naming the file and the key.
    """
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise error(f"{path}: unreadable weights: {exc}") from exc
    for key, source in (defaults or {}).items():
        if key not in state and source in state:
            state[key] = state[source]
    folder = path.parent
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise error(f"{folder}: weights do not match the config (missing {missing[:5]}, "
                    f"unexpected {extra[:5]})")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise error(f"{folder}: {key} has shape {tuple(value.shape)}, the config "
                        f"expects {tuple(expected[key].shape)}")
    return state
