"""Retrieval baseline: the nearest training sequence by instruction embedding and object.

The instruction embedding is a hashed bag of its Qwen3 token ids (L2-normalised, 512 dims);
the index holds one row per training sequence (the mean of its phrasings' embeddings);
the object descriptor is the sorted extents of its point cloud and its mean radius (dm). The
score is ``cos(text) - |descriptor difference|``. The retrieved sequence's hand tokens and its
wrist trajectory in the object's frame are stretched in time to the request's length (nearest
index) and decoded like the generator's output. The index (embeddings, descriptors, tokens,
wrists) is saved with the checkpoint as ``retrieval.safetensors``, so evaluation needs no
training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from unihm_generator.generator.config import GeneratorError
from unihm_generator.generator.data import Example
from unihm_generator.generator.text import encode_instruction

INDEX_FILE = "retrieval.safetensors"
DIM = 512


def text_embedding(text: str) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    for i in encode_instruction(text):
        v[(i * 2654435761) % DIM] += 1.0
    return v / max(float(np.linalg.norm(v)), 1e-8)


def object_descriptor(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    ext = np.sort(p.max(0) - p.min(0))
    radius = np.linalg.norm(p - p.mean(0), axis=1).mean()
    return (np.concatenate([ext, [radius]]) * 10.0).astype(np.float32)


class RetrievalIndex:
    def __init__(self, text: np.ndarray, objects: np.ndarray, tokens: np.ndarray,  # noqa: PLR0917
                 token_len: np.ndarray, wrists: np.ndarray, frame_len: np.ndarray) -> None:
        self.text, self.objects = text, objects
        self.tokens, self.token_len = tokens, token_len
        self.wrists, self.frame_len = wrists, frame_len

    @classmethod
    def build(cls, examples: Sequence[Example]) -> RetrievalIndex:
        if not examples:
            raise GeneratorError("the retrieval index needs at least one training sequence")
        rows_text, rows_obj, toks, wr = [], [], [], []
        for ex in examples:
            # one row per sequence: the mean of its phrasings' embeddings, re-normalised
            # (a row per phrasing would repeat the tokens and wrists of the sequence)
            hand = sorted(ex.tokens)[0]
            emb = np.mean([text_embedding(t) for t in ex.instructions], axis=0)
            rows_text.append(emb / max(float(np.linalg.norm(emb)), 1e-8))
            rows_obj.append(object_descriptor(ex.points))
            toks.append(ex.tokens[hand])
            wr.append(ex.wrist)
        n_tok = max(len(t) for t in toks)
        n_fr = max(len(w) for w in wr)
        tokens = np.zeros((len(toks), n_tok), dtype=np.int32)
        wrists = np.zeros((len(wr), n_fr, 9), dtype=np.float16)
        for i, (t, w) in enumerate(zip(toks, wr, strict=True)):
            tokens[i, : len(t)] = t
            wrists[i, : len(w)] = w
        return cls(np.stack(rows_text).astype(np.float16), np.stack(rows_obj), tokens,
                   np.array([len(t) for t in toks], dtype=np.int32), wrists,
                   np.array([len(w) for w in wr], dtype=np.int32))

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / INDEX_FILE
        save_file({k: torch.from_numpy(np.ascontiguousarray(getattr(self, k))) for k in (
            "text", "objects", "tokens", "token_len", "wrists", "frame_len")}, str(path))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> RetrievalIndex:
        path = Path(folder) / INDEX_FILE
        if not path.is_file():
            raise GeneratorError(f"{path}: no retrieval index (written by `unihm generator "
                                 f"train`)")
        d = {k: v.numpy() for k, v in load_file(str(path)).items()}
        return cls(**d)

    def query(self, instruction: str, points: np.ndarray, num_tokens: int,
              num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """(num_tokens,) codes and (num_frames, 9) wrist-in-object of the nearest sequence."""
        score = self.text.astype(np.float32) @ text_embedding(instruction)
        score -= np.linalg.norm(self.objects - object_descriptor(points), axis=1)
        k = int(np.argmax(score))
        nt, nf = int(self.token_len[k]), int(self.frame_len[k])
        ti = np.round(np.linspace(0, nt - 1, num_tokens)).astype(int)
        fi = np.round(np.linspace(0, nf - 1, num_frames)).astype(int)
        return self.tokens[k, ti].astype(np.int64), self.wrists[k, fi].astype(np.float32)
