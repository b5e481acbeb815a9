"""Tokenizer checkpoints: ``tokenizer.safetensors`` (weights) + ``tokenizer.json`` (config).

Nothing is unpickled: weights are safetensors, everything else is JSON.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from unihm_generator.tokenizer.config import TokenizerConfig, TokenizerError
from unihm_generator.tokenizer.model import HandTokenizer

WEIGHTS_FILE = "tokenizer.safetensors"
CONFIG_FILE = "tokenizer.json"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "tokenizer"
ENV_VAR = "UNIHM_TOKENIZER"


def default_tokenizer_dir() -> Path:
    """``$UNIHM_TOKENIZER`` when set, else the checkpoint shipped with the package."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_DIR


def save_tokenizer(model: HandTokenizer, folder: str | os.PathLike[str]) -> Path:
    """Write weights and config; files are replaced atomically (a crash leaves the old pair)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "unihm-hand-tokenizer"})
    tmp.chmod(0o644)  # safetensors writes 0600; a checkpoint is meant to be shared
    tmp.replace(out / WEIGHTS_FILE)
    model.config.save(out / CONFIG_FILE)
    return out


def load_tokenizer(folder: str | os.PathLike[str] | None = None) -> HandTokenizer:
    """A tokenizer from a checkpoint folder (the default one when ``folder`` is None)."""
    src = Path(folder) if folder is not None else default_tokenizer_dir()
    if not (src / CONFIG_FILE).is_file() or not (src / WEIGHTS_FILE).is_file():
        raise TokenizerError(f"{src}: not a tokenizer checkpoint (needs {CONFIG_FILE} and "
                             f"{WEIGHTS_FILE}; train one with `unihm tokenizer train`)")
    config = TokenizerConfig.load(src / CONFIG_FILE)
    model = HandTokenizer(config)
    try:
        state = load_file(str(src / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise TokenizerError(f"{src / WEIGHTS_FILE}: unreadable weights: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise TokenizerError(f"{src}: weights do not match the config (missing {missing[:5]}, "
                             f"unexpected {extra[:5]})")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise TokenizerError(f"{src}: {key} has shape {tuple(value.shape)}, the config "
                                 f"expects {tuple(expected[key].shape)}")
    model.load_state_dict(state)
    model.eval()
    return model


def set_threads(threads: int | None) -> None:
    """Use a few CPU threads: training shares the machine, and tiny matmuls gain nothing more."""
    if threads:
        torch.set_num_threads(max(1, int(threads)))
