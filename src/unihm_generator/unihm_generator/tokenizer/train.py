"""Staged training of the unified tokenizer (paper §3.2, appendix B.2).

Stage 1, reference: the reference hand's encoder/decoder and the shared codebook learn together
with L_rec + L_vq; per-epoch code usage is counted and, at scheduled epochs, codes used fewer
than ``tau_c`` times are replaced by K-means centroids of the encoder outputs buffered since the
previous refresh (cold-code refresh). Nothing else touches the codebook afterwards.

Stage 2, every other hand: the codebook and the reference pair are frozen, so adding a hand
never changes what a token means for the hands already there. Each new encoder is first
distilled onto the reference encoder over retargeted pairs (its decoder meanwhile learns to
realise the reference's tokens), then encoder and decoder are fine-tuned with
L_rec + L_vq + lambda_distill * L_distill.

Training state (weights, optimizer, stage, epoch) is written after every epoch and on Ctrl-C to
``OUT/resume/``; running the same command again continues from there.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from unihm_generator.tokenizer.config import TokenizerConfig, TokenizerError
from unihm_generator.tokenizer.data import TrajectoryBank
from unihm_generator.tokenizer.io import load_tokenizer, save_tokenizer
from unihm_generator.tokenizer.model import HandTokenizer, nearest_codes

RESUME_DIR = "resume"
LOG_FILE = "train_log.jsonl"


# ------------------------------------------------------------------------ cold-code refresh
def kmeans(points: Tensor, k: int, generator: torch.Generator, iters: int = 15) -> Tensor:
    """k centroids of ``points`` (Lloyd's algorithm, seeded from distinct random points;
    an empty cluster is re-seeded with the point farthest from its centroid)."""
    n = points.shape[0]
    if n == 0:
        raise TokenizerError("K-means needs at least one point")
    pick = torch.randperm(n, generator=generator)[: min(k, n)]
    centroids = points[pick].clone()
    if k > n:  # fewer points than cold codes: repeat them with a little noise
        extra = points[torch.randint(n, (k - n,), generator=generator)]
        noise = torch.randn(extra.shape, generator=generator) * 1e-3
        centroids = torch.cat([centroids, extra + noise])
    for _ in range(iters):
        assign = nearest_codes(points, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).to(points.dtype)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        if bool(empty.any()):
            far = (points - centroids[assign]).pow(2).sum(1)
            worst = far.topk(int(empty.sum())).indices
            centroids[empty] = points[worst]
    return centroids


def refresh_cold_codes(codebook: Tensor, counts: Tensor, buffer: Tensor, tau_c: int,
                       generator: torch.Generator) -> Tensor:
    """Replace the codes used fewer than ``tau_c`` times by K-means centroids of ``buffer``.

    Works in place on ``codebook`` (a tensor, not a Parameter's graph) and returns the indices
    that were replaced; every other code keeps its exact value (paper eq. B10-B11).
    """
    cold = torch.nonzero(counts < tau_c).flatten()
    if cold.numel() and buffer.shape[0]:
        centroids = kmeans(buffer, int(cold.numel()), generator)
        codebook[cold] = centroids.to(codebook.dtype)
    return cold


# ------------------------------------------------------------------------------- the trainer
@dataclass
class TrainState:
    stage: str = "reference"  # reference -> hands -> done
    epoch: int = 0
    """Epochs completed in the current stage."""
    adding: list[str] = field(default_factory=list)
    """Hands trained in stage 2."""
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def _log(out: Path, row: dict[str, Any]) -> None:
    with open(out / LOG_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


class Trainer:
    """Runs (or resumes) the stages over a training bank and writes checkpoints to ``out``."""

    def __init__(self, model: HandTokenizer, bank: TrajectoryBank, out: str | Path, *,
                 state: TrainState | None = None, progress: bool = True,
                 echo: Callable[[str], None] = print) -> None:
        self.model = model
        self.config: TokenizerConfig = model.config
        self.bank = bank
        self.out = Path(out)
        self.state = state or TrainState()
        self.progress = progress
        self.echo = echo
        self.optimizer: torch.optim.Optimizer | None = None
        self.ref = self.config.reference_hand
        needed = (self.model.hands if self.state.stage == "reference"
                  else [self.ref, *self.state.adding])
        missing = [h for h in needed if h not in bank.hands or not bank.present[h].any()]
        if missing:
            raise TokenizerError(f"the training data has no motion for {missing}; "
                                 f"it holds {[h for h in bank.hands if bank.present[h].any()]}")

    # ---------------------------------------------------------------------- checkpointing
    def _params(self) -> list[torch.nn.Parameter]:
        if self.state.stage == "reference":
            return [self.model.codebook, *self.model.parameters_of([self.ref])]
        return self.model.parameters_of(self.state.adding)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self._params(), lr=self.config.lr)

    def _set_lr(self, epoch: int, total: int) -> float:
        """Cosine decay from ``lr`` to ``lr_final`` over a stage, set once per epoch."""
        cfg = self.config
        frac = epoch / max(1, total - 1)
        lr = cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1.0 + math.cos(math.pi * frac))
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def save_state(self) -> Path:
        """Weights + optimizer + progress to OUT/resume (atomic per file)."""
        folder = self.out / RESUME_DIR
        save_tokenizer(self.model, folder)
        if self.optimizer is not None:
            opt = self.optimizer.state_dict()
            tensors = {f"{i}.{k}": v.detach().clone().reshape(-1) if v.ndim == 0
                       else v.detach().contiguous().clone()
                       for i, s in opt["state"].items() for k, v in s.items()}
            tmp = folder / "optimizer.safetensors.tmp"
            save_file(tensors, str(tmp))
            tmp.replace(folder / "optimizer.safetensors")
            groups = opt["param_groups"]
        else:
            groups = None
        data = {"stage": self.state.stage, "epoch": self.state.epoch,
                "adding": self.state.adding, "elapsed_s": self.state.elapsed_s,
                "history": self.state.history, "param_groups": groups}
        tmp = folder / "state.json.tmp"
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(folder / "state.json")
        return folder

    @classmethod
    def resume(cls, out: str | Path, bank: TrajectoryBank, *, progress: bool = True,
               echo: Callable[[str], None] = print) -> Trainer:
        folder = Path(out) / RESUME_DIR
        data = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        model = load_tokenizer(folder)
        model.train()
        state = TrainState(stage=data["stage"], epoch=data["epoch"], adding=data["adding"],
                           elapsed_s=data["elapsed_s"], history=data["history"])
        trainer = cls(model, bank, out, state=state, progress=progress, echo=echo)
        if data.get("param_groups") is not None and (folder / "optimizer.safetensors").is_file():
            trainer.optimizer = trainer._make_optimizer()
            flat = load_file(str(folder / "optimizer.safetensors"))
            opt_state: dict[int, dict[str, Tensor]] = {}
            for key, value in flat.items():
                i, name = key.split(".", 1)
                opt_state.setdefault(int(i), {})[name] = (value.reshape(()) if name == "step"
                                                          else value)
            trainer.optimizer.load_state_dict({"state": opt_state,
                                               "param_groups": data["param_groups"]})
        return trainer

    # ------------------------------------------------------------------------ helpers
    def _steps_per_epoch(self, n_windows: int) -> int:
        if self.config.steps_per_epoch > 0:
            return self.config.steps_per_epoch
        return max(1, math.ceil(n_windows / self.config.batch_size))

    def _batch(self, hand: str, starts: np.ndarray) -> Tensor:
        x = torch.from_numpy(self.bank.windows(hand, starts, self.config.chunk))
        return self.model.normalize(hand, x)

    def _rng(self, epoch: int) -> np.random.Generator:
        stage = 0 if self.state.stage == "reference" else 1
        return np.random.default_rng([self.config.seed, stage, epoch])

    # ------------------------------------------------------------------------ run
    def run(self) -> TrainState:
        """Train the remaining stages; Ctrl-C saves the state and re-raises."""
        torch.manual_seed(self.config.seed)
        start = time.perf_counter() - self.state.elapsed_s
        try:
            if self.state.stage == "reference":
                self._reference_stage(start)
                self.state.stage, self.state.epoch = "hands", 0
                self.state.adding = [h for h in self.model.hands if h != self.ref]
                self.optimizer = None
            if self.state.stage == "hands":
                if self.state.adding:
                    self._hands_stage(start)
                self.state.stage = "done"
        except KeyboardInterrupt:
            self.state.elapsed_s = time.perf_counter() - start
            folder = self.save_state()
            self.echo(f"interrupted: training state saved to {folder}; run the same command "
                      "again to resume")
            raise
        self.state.elapsed_s = time.perf_counter() - start
        self.model.eval()
        save_tokenizer(self.model, self.out)
        shutil.rmtree(self.out / RESUME_DIR, ignore_errors=True)
        return self.state

    def _end_epoch(self, start: float, row: dict[str, Any]) -> None:
        self.state.epoch += 1
        self.state.elapsed_s = time.perf_counter() - start
        row = {"stage": self.state.stage, "epoch": self.state.epoch,
               "elapsed_s": round(self.state.elapsed_s, 1), **row}
        self.state.history.append(row)
        _log(self.out, row)
        self.save_state()

    def _reference_stage(self, start: float) -> None:
        cfg, model, ref = self.config, self.model, self.ref
        windows = self.bank.window_starts(cfg.chunk, ref)
        if windows.size == 0:
            raise TokenizerError(f"no {cfg.chunk}-frame windows of {ref} in the training data")
        steps = self._steps_per_epoch(windows.size)
        if self.optimizer is None:
            self.optimizer = self._make_optimizer()
        buffer: list[Tensor] = []
        scale = model._scale[ref]
        bar = tqdm(total=cfg.reference_epochs, initial=self.state.epoch, unit="epoch",
                   desc=f"stage 1: {ref} + codebook", disable=not self.progress)
        model.train()
        while self.state.epoch < cfg.reference_epochs:
            lr = self._set_lr(self.state.epoch, cfg.reference_epochs)
            rng = self._rng(self.state.epoch)
            counts = torch.zeros(cfg.codebook_size, dtype=torch.long)
            sums = np.zeros(3)
            for _ in range(steps):
                x = self._batch(ref, rng.choice(windows, cfg.batch_size))
                recon, z, idx, vq = model(ref, x)
                rec = (recon - x).pow(2).mean()
                loss = rec + vq
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                counts += torch.bincount(idx, minlength=cfg.codebook_size)
                buffer.append(z.detach())
                with torch.no_grad():
                    mae = ((recon - x).abs() * scale).mean()
                sums += (rec.item(), vq.item(), mae.item())
            epoch = self.state.epoch + 1
            refreshed = 0
            if epoch in cfg.refresh_epochs:
                gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
                pool = torch.cat(buffer)
                if pool.shape[0] > cfg.refresh_buffer:
                    pool = pool[torch.randperm(pool.shape[0], generator=gen)[:cfg.refresh_buffer]]
                with torch.no_grad():
                    cold = refresh_cold_codes(model.codebook.data, counts, pool, cfg.tau_c, gen)
                self._reset_adam_rows(model.codebook, cold)
                refreshed = int(cold.numel())
                buffer = []
            used = float((counts > 0).float().mean())
            rec, vq, mae = (sums / steps).tolist()
            bar.set_postfix(rec=f"{rec:.2e}", mae=f"{mae:.4f}", used=f"{used:.0%}")
            bar.update(1)
            self._end_epoch(start, {"lr": lr, "steps": steps, "rec": rec, "vq": vq,
                                    "train_mae_rad": mae,
                                    "usage": used, "refreshed": refreshed})
        bar.close()

    def _reset_adam_rows(self, param: torch.nn.Parameter, rows: Tensor) -> None:
        """A refreshed code starts afresh: its Adam moments belong to the old vector."""
        if self.optimizer is None or rows.numel() == 0:
            return
        state = self.optimizer.state.get(param)
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][rows] = 0.0

    def _hands_stage(self, start: float) -> None:
        cfg, model, ref = self.config, self.model, self.ref
        adding = self.state.adding
        model.codebook.requires_grad_(False)
        for p in model.parameters_of([ref]):
            p.requires_grad_(False)
        windows = {h: self.bank.window_starts(cfg.chunk, ref, h) for h in adding}
        for h, w in windows.items():
            if w.size == 0:
                raise TokenizerError(f"no {cfg.chunk}-frame windows where both {ref} and {h} "
                                     "are present: distillation needs retargeted pairs")
        steps = self._steps_per_epoch(self.bank.window_starts(cfg.chunk, ref).size)
        if self.optimizer is None:
            self.optimizer = self._make_optimizer()
        total = cfg.distill_epochs + cfg.finetune_epochs
        label = adding[0] if len(adding) == 1 else f"{len(adding)} hands"
        bar = tqdm(total=total, initial=self.state.epoch, unit="epoch",
                   desc=f"stage 2: {label}", disable=not self.progress)
        model.train()
        while self.state.epoch < total:
            distill_phase = self.state.epoch < cfg.distill_epochs
            lr = self._set_lr(self.state.epoch, total)
            rng = self._rng(self.state.epoch)
            sums = {h: np.zeros(3) for h in adding}
            for _ in range(steps):
                loss_total: Tensor = torch.zeros(())
                for h in adding:
                    starts = rng.choice(windows[h], cfg.batch_size)
                    x_ref, x = self._batch(ref, starts), self._batch(h, starts)
                    with torch.no_grad():
                        z_ref = model.encode_latent(ref, x_ref)
                    if distill_phase:
                        z = model.encode_latent(h, x)
                        distill = (z - z_ref).pow(2).mean()
                        with torch.no_grad():
                            codes = model.codes_of(z_ref)
                        recon = model.decode_codes(h, codes)
                        rec = (recon - x).pow(2).mean()
                        loss_total = loss_total + rec + distill
                    else:
                        recon, z, _, vq = model(h, x)
                        distill = (z - z_ref).pow(2).mean()
                        rec = (recon - x).pow(2).mean()
                        loss_total = loss_total + rec + vq + cfg.lambda_distill * distill
                    with torch.no_grad():
                        mae = ((recon - x).abs() * model._scale[h]).mean()
                    sums[h] += (rec.item(), distill.item(), mae.item())
                self.optimizer.zero_grad(set_to_none=True)
                loss_total.backward()
                self.optimizer.step()
            means = {h: (s / steps).tolist() for h, s in sums.items()}
            worst = max(m[2] for m in means.values())
            mean_distill = float(np.mean([m[1] for m in means.values()]))
            bar.set_postfix(phase="distill" if distill_phase else "finetune",
                            distill=f"{mean_distill:.2e}", worst_mae=f"{worst:.4f}")
            bar.update(1)
            self._end_epoch(start, {"lr": lr, "steps": steps,
                                    "phase": "distill" if distill_phase else "finetune",
                                    "hands": {h: {"rec": m[0], "distill": m[1],
                                                  "train_mae_rad": m[2]}
                                              for h, m in means.items()}})
        bar.close()


def new_model(config: TokenizerConfig, hands: Sequence[str]) -> HandTokenizer:
    """A fresh tokenizer over ``hands`` (the reference first, whatever the order given)."""
    from unihm_generator.tokenizer.data import hand_spec

    ordered = [config.reference_hand] + [h for h in hands if h != config.reference_hand]
    config.hands = {h: hand_spec(h) for h in ordered}
    torch.manual_seed(config.seed)
    return HandTokenizer(config)


def train_tokenizer(config: TokenizerConfig, bank: TrajectoryBank, out: str | Path, *,
                    hands: Sequence[str] | None = None, progress: bool = True,
                    echo: Callable[[str], None] = print) -> HandTokenizer:
    """Train all stages into ``out`` (resuming when ``out`` holds an interrupted run)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / RESUME_DIR / "state.json").is_file():
        trainer = Trainer.resume(out, bank, progress=progress, echo=echo)
        echo(f"resuming from {out / RESUME_DIR} (stage {trainer.state.stage}, "
             f"epoch {trainer.state.epoch})")
    else:
        (out / LOG_FILE).unlink(missing_ok=True)
        model = new_model(config, list(hands) if hands is not None else list(bank.hands))
        trainer = Trainer(model, bank, out, progress=progress, echo=echo)
    trainer.run()
    return trainer.model


def add_hand(model: HandTokenizer, hand_id: str, bank: TrajectoryBank, out: str | Path, *,
             progress: bool = True, echo: Callable[[str], None] = print) -> HandTokenizer:
    """Stage 2 for one more hand on a trained tokenizer; the other hands are not touched."""
    from unihm_generator.tokenizer.data import hand_spec

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / RESUME_DIR / "state.json").is_file():
        trainer = Trainer.resume(out, bank, progress=progress, echo=echo)
        if trainer.state.adding != [hand_id]:
            raise TokenizerError(f"{out / RESUME_DIR} holds an interrupted run for "
                                 f"{trainer.state.adding}, not {hand_id}; finish or delete it")
        echo(f"resuming from {out / RESUME_DIR} (epoch {trainer.state.epoch})")
    else:
        torch.manual_seed(model.config.seed)
        model.add_hand(hand_spec(hand_id))
        model.train()
        trainer = Trainer(model, bank, out, state=TrainState(stage="hands", adding=[hand_id]),
                          progress=progress, echo=echo)
    trainer.run()
    return trainer.model
