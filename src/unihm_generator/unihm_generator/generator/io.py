"""Generator checkpoints: safetensors weights + JSON config, nothing pickled.

A checkpoint folder holds ``generator.safetensors``, ``generator.json`` (the config),
``checkpoint.json`` (which hand tokenizer it speaks, training record) and, unless it uses
the package's default tokenizer, a copy of that tokenizer in ``tokenizer/``. A retrieval
baseline index (``retrieval.safetensors``) and an ablation trained without masking
(``no_masking/``) may sit beside them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from unihm_generator.generator.config import GeneratorConfig, GeneratorError
from unihm_generator.generator.model import HandGenerator
from unihm_generator.weights_io import checkpoint_dir, read_weights, write_weights

WEIGHTS_FILE = "generator.safetensors"
CONFIG_FILE = "generator.json"
META_FILE = "checkpoint.json"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "generator"
ENV_VAR = "UNIHM_GENERATOR"


def default_generator_dir() -> Path:
    return checkpoint_dir(ENV_VAR, DEFAULT_DIR)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_state(path: Path, state: dict[str, torch.Tensor], half: bool = False) -> None:
    write_weights(path, state, "unihm-hand-generator", half=half)


def save_generator(model: HandGenerator, folder: str | os.PathLike[str],
                   tokenizer_dir: str | os.PathLike[str] | None,
                   meta: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Write the weights (fp16 when ``half``: the shipped checkpoint), config and record."""
    from unihm_generator.tokenizer.io import CONFIG_FILE as TOK_CFG
    from unihm_generator.tokenizer.io import WEIGHTS_FILE as TOK_W
    from unihm_generator.tokenizer.io import default_tokenizer_dir

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    # tied embeddings: store the table once
    state = {k: v for k, v in state.items() if k != "lm.lm_head.weight"}
    save_state(out / WEIGHTS_FILE, state, half=half)
    model.config.save(out / CONFIG_FILE)
    tok_src = Path(tokenizer_dir) if tokenizer_dir else default_tokenizer_dir()
    record = dict(meta or {})
    record["tokenizer_sha256"] = file_sha256(tok_src / TOK_W)
    if tok_src.resolve() == default_tokenizer_dir().resolve():
        record["tokenizer"] = "default"
    else:
        record["tokenizer"] = "tokenizer"
        dst = out / "tokenizer"
        if tok_src.resolve() != dst.resolve():
            dst.mkdir(exist_ok=True)
            for name in (TOK_W, TOK_CFG):
                shutil.copyfile(tok_src / name, dst / name)
    (out / META_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return out


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / META_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def checkpoint_tokenizer_dir(folder: Path) -> Path:
    """The tokenizer the generator in ``folder`` was trained with.

    Its tokens mean nothing to any other tokenizer, so when the checkpoint recorded the
    tokenizer's weights (``tokenizer_sha256``) a different file is refused: a generator and a
    tokenizer that were not trained together would decode plausible-looking garbage.
    """
    from unihm_generator.tokenizer.io import WEIGHTS_FILE as TOK_W
    from unihm_generator.tokenizer.io import default_tokenizer_dir

    meta = read_meta(folder)
    if meta.get("tokenizer", "default") == "default":
        tok = default_tokenizer_dir()
    else:
        tok = Path(folder) / meta["tokenizer"]
    expected = meta.get("tokenizer_sha256")
    if expected and (tok / TOK_W).is_file() and file_sha256(tok / TOK_W) != expected:
        raise GeneratorError(
            f"{folder}: this generator was trained with another tokenizer than {tok} "
            f"(sha256 of {TOK_W} differs from the one recorded in {META_FILE}); retrain it "
            f"with `unihm generator train --tokenizer {tok}` or use the tokenizer it was "
            f"trained with")
    return tok


def load_generator(folder: str | os.PathLike[str] | None = None) -> HandGenerator:
    src = Path(folder) if folder is not None else default_generator_dir()
    if not (src / CONFIG_FILE).is_file() or not (src / WEIGHTS_FILE).is_file():
        raise GeneratorError(f"{src}: not a generator checkpoint (needs {CONFIG_FILE} and "
                             f"{WEIGHTS_FILE}; train one with `unihm generator train`)")
    config = GeneratorConfig.load(src / CONFIG_FILE)
    config.base_model = ""  # the weights below replace whatever the base model held
    model = HandGenerator(config)
    state = read_weights(src / WEIGHTS_FILE, model.state_dict(), GeneratorError,
                         defaults={"lm.lm_head.weight": "lm.model.embed_tokens.weight"})
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in state.items()})
    model.eval()
    return model
