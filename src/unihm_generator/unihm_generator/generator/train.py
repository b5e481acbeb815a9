"""Training: teacher forcing with the progressive masking curriculum of paper C.4.

Epoch e of E (0-based) uses the masking ratio ``mask_ratio(e, E)``: 0 for the first 20 % of
the epochs, rising linearly to 1 between 20 % and 80 %, 1 for the last 20 %. A masked slot's
input (the previous ground-truth hand token) becomes the learnable ``<|hand_mask|>`` token.
AdamW, lr 1e-4. Each epoch draws, per sequence, one of its hands (its tokens) and one of its
instruction paraphrases, so every hand's tokens and every phrasing are seen.

``OUT/resume/`` keeps the weights, AdamW's state (safetensors) and the progress after every
epoch and on Ctrl-C; running the same command again resumes there.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from unihm_generator.generator.config import GeneratorConfig
from unihm_generator.generator.data import (
    Example,
    frame_targets,
    init_wrist_feature,
    make_request,
)
from unihm_generator.generator.io import save_generator, save_state
from unihm_generator.generator.model import HandGenerator, Request
from unihm_generator.generator.text import TextVocab, collect_text_ids


def mask_ratio(epoch: int, epochs: int, enabled: bool = True) -> float:
    """Masking ratio of 0-based ``epoch`` out of ``epochs`` (paper C.4)."""
    if not enabled or epochs <= 0:
        return 0.0
    frac = epoch / epochs
    if frac < 0.2:
        return 0.0
    if frac >= 0.8:
        return 1.0
    return (frac - 0.2) / 0.6


def batch_of(examples: Sequence[Example], vocab: TextVocab, config: GeneratorConfig,
             rng: np.random.Generator, fixed: bool = False) -> tuple[list[Request], list, list,
                                                                     list]:
    """Requests and targets; ``fixed`` takes the first hand and phrasing (validation)."""
    reqs, toks, wrists, masks = [], [], [], []
    for ex in examples:
        hands = sorted(ex.tokens)
        hand = hands[0] if fixed else hands[int(rng.integers(len(hands)))]
        text = ex.instructions[0] if fixed else ex.instructions[
            int(rng.integers(len(ex.instructions)))]
        tokens = ex.tokens[hand]
        reqs.append(make_request(vocab, config, text, ex.points, ex.traj, ex.init_tokens[hand],
                                 init_wrist_feature(ex.obj_poses[0], ex.wrist_world[0])))
        toks.append(tokens)
        w, m = frame_targets(ex, config)
        wrists.append(w)
        masks.append(m)
    return reqs, toks, wrists, masks


def new_model(config: GeneratorConfig, examples: Sequence[Example]) -> HandGenerator:
    """A fresh model; the tiny config's text rows are the Qwen3 ids of the training phrasings."""
    if config.compact_text_vocab and not config.text_ids:
        config.text_ids = collect_text_ids(t for ex in examples for t in ex.instructions)
    torch.manual_seed(config.seed)
    return HandGenerator(config)


def _optim_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = torch.as_tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def _load_optim(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                groups: dict) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": groups["param_groups"]})


@torch.no_grad()
def validation_loss(model: HandGenerator, examples: Sequence[Example], vocab: TextVocab,
                    ratio: float, batch_size: int) -> float:
    model.eval()
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    total, n = 0.0, 0
    for i in range(0, len(examples), batch_size):
        part = examples[i:i + batch_size]
        reqs, toks, wrists, masks = batch_of(part, vocab, model.config, rng, fixed=True)
        total += float(model.loss(reqs, toks, wrists, masks, ratio, gen)["loss"]) * len(part)
        n += len(part)
    model.train()
    return total / max(n, 1)


def train_generator(config: GeneratorConfig, train: Sequence[Example],  # noqa: PLR0915,PLR0912
                    val: Sequence[Example], out: str | Path,
                    tokenizer_dir: str | Path | None, *, progress: bool = True,
                    echo: Callable[[str], None] = print,
                    epoch_hook: Callable[[HandGenerator, int], dict[str, Any]] | None = None,
                    half: bool = False) -> HandGenerator:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resume = out / "resume"
    start = 0
    if (resume / "progress.json").is_file():
        progress_rec = json.loads((resume / "progress.json").read_text())
        config = GeneratorConfig.from_json(progress_rec["config"])
        model = HandGenerator(config)
        state = load_file(str(resume / "model.safetensors"))
        state.setdefault("lm.lm_head.weight", state["lm.model.embed_tokens.weight"])
        model.load_state_dict(state)
        start = int(progress_rec["epoch"])
        echo(f"resuming from {resume} at epoch {start}")
    else:
        model = new_model(config, train)
        progress_rec = None
    vocab = TextVocab(config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if progress_rec is not None:
        _load_optim(opt, load_file(str(resume / "optim.safetensors")), progress_rec["optim"])
    log_path = out / "train_log.jsonl"
    model.train()

    def checkpoint(epoch: int) -> None:
        resume.mkdir(parents=True, exist_ok=True)
        save_state(resume / "model.safetensors", {
            k: v for k, v in model.state_dict().items() if k != "lm.lm_head.weight"})
        tensors, groups = _optim_state(opt)
        save_state(resume / "optim.safetensors", tensors)
        (resume / "progress.json").write_text(json.dumps(
            {"epoch": epoch, "config": config.to_json(), "optim": groups}))

    bs = config.batch_size
    epoch = start
    try:
        for epoch in range(start, config.epochs):
            ratio = mask_ratio(epoch, config.epochs, config.masking)
            rng = np.random.default_rng([config.seed, epoch])
            gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
            order = rng.permutation(len(train))
            steps = range(0, len(train), bs)
            if progress:
                from tqdm import tqdm

                steps = tqdm(steps, desc=f"epoch {epoch + 1}/{config.epochs} mask "
                             f"{ratio:.2f}", unit="batch", leave=False)
            tic, sums, count = time.perf_counter(), {"loss": 0.0, "ce": 0.0, "wrist": 0.0}, 0
            for i in steps:
                part = [train[k] for k in order[i:i + bs]]
                reqs, toks, wrists, masks = batch_of(part, vocab, config, rng)
                losses = model.loss(reqs, toks, wrists, masks, ratio, gen)
                opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                for k in sums:
                    sums[k] += float(losses[k].detach()) * len(part)
                count += len(part)
            rec: dict[str, Any] = {"epoch": epoch + 1, "mask_ratio": round(ratio, 4),
                                   **{f"train_{k}": round(v / max(count, 1), 5)
                                      for k, v in sums.items()},
                                   "seconds": round(time.perf_counter() - tic, 1)}
            if val:
                rec["val_loss_masked"] = round(validation_loss(model, val, vocab, 1.0, bs), 5)
            if epoch_hook is not None:
                rec.update(epoch_hook(model, epoch))
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            echo(" ".join(f"{k}={v}" for k, v in rec.items()))
            checkpoint(epoch + 1)
            if not math.isfinite(rec["train_loss"]):
                raise FloatingPointError("training diverged (non-finite loss)")
    except KeyboardInterrupt:
        checkpoint(epoch)
        echo(f"interrupted: progress saved in {resume}; run the same command to resume")
        raise
    model.eval()
    save_generator(model, out, tokenizer_dir, half=half,
                   meta={"epochs": config.epochs, "seed": config.seed,
                         "masking": config.masking})
    for name in ("model.safetensors", "optim.safetensors", "progress.json"):
        (resume / name).unlink(missing_ok=True)
    if resume.is_dir() and not any(resume.iterdir()):
        resume.rmdir()
    return model
