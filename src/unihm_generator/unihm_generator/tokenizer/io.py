"""Tokenizer checkpoints: ``tokenizer.safetensors`` (weights) + ``tokenizer.json`` (config).

Nothing is unpickled: weights are safetensors, everything else is JSON.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from unihm_generator.tokenizer.config import TokenizerConfig, TokenizerError
from unihm_generator.tokenizer.model import HandTokenizer
from unihm_generator.weights_io import checkpoint_dir, read_weights, write_weights

WEIGHTS_FILE = "tokenizer.safetensors"
CONFIG_FILE = "tokenizer.json"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "tokenizer"
ENV_VAR = "UNIHM_TOKENIZER"


def default_tokenizer_dir() -> Path:
    """``$UNIHM_TOKENIZER`` when set, else the checkpoint shipped with the package."""
    return checkpoint_dir(ENV_VAR, DEFAULT_DIR)


def save_tokenizer(model: HandTokenizer, folder: str | os.PathLike[str]) -> Path:
    """Write weights and config; files are replaced atomically (a crash leaves the old pair)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_weights(out / WEIGHTS_FILE, model.state_dict(), "unihm-hand-tokenizer")
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
    state = read_weights(src / WEIGHTS_FILE, model.state_dict(), TokenizerError)
    model.load_state_dict(state)
    model.eval()
    return model


def set_threads(threads: int | None) -> None:
    """Use a few CPU threads: training shares the machine, and tiny matmuls gain nothing more."""
    if threads:
        torch.set_num_threads(max(1, int(threads)))
