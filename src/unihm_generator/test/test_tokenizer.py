"""Unified hand tokenizer: quantization, gradients, cold-code refresh, distillation, checkpoints,
errors, resume. Tiny models on small generated trajectory banks, so the file runs in seconds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from unihm_generator.tokenizer import (
    HandTokenizer,
    TokenizerConfig,
    TokenizerError,
    load_tokenizer,
    nearest_codes,
    quantize,
    save_tokenizer,
)
from unihm_generator.tokenizer.data import TrajectoryBank, hand_spec
from unihm_generator.tokenizer.evaluate import codebook_stats, evaluate
from unihm_generator.tokenizer.train import (
    RESUME_DIR,
    Trainer,
    add_hand,
    kmeans,
    new_model,
    refresh_cold_codes,
    train_tokenizer,
)

REF, OTHER, THIRD = "shadow_right", "xhand_right", "allegro_right"


def tiny_config(**kw: object) -> TokenizerConfig:
    base: dict[str, object] = dict(codebook_size=32, code_dim=8, hidden=32, chunk=4,
                                   batch_size=64, reference_epochs=3, refresh_epochs=[1],
                                   distill_epochs=2, finetune_epochs=1, steps_per_epoch=15,
                                   lr=3e-3, lr_final=1e-3)
    base.update(kw)
    return TokenizerConfig(**base)  # type: ignore[arg-type]


def make_bank(hands: tuple[str, ...] = (REF, OTHER, THIRD), sequences: int = 12,
              frames: int = 40, seed: int = 0) -> TrajectoryBank:
    """Smooth motions between random poses of the reference hand; every other hand follows a
    fixed map of the same phase (a stand-in for retargeting), so frames pair across hands."""
    rng = np.random.default_rng(seed)
    joints: dict[str, list[np.ndarray]] = {h: [] for h in hands}
    s = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, frames))[:, None]
    for _ in range(sequences):
        phase = rng.uniform(0.1, 0.9, 2)
        for h in hands:
            spec = hand_spec(h)
            lo, hi = np.asarray(spec.lower), np.asarray(spec.upper)
            a = lo + (hi - lo) * phase[0]
            b = lo + (hi - lo) * phase[1] * np.linspace(0.5, 1.0, spec.dof)
            joints[h].append((a + (b - a) * s).astype(np.float32))
    n = sequences * frames
    return TrajectoryBank(
        joints={h: np.concatenate(v) for h, v in joints.items()},
        present={h: np.ones(n, bool) for h in hands},
        seq_start=np.arange(sequences, dtype=np.int64) * frames,
        seq_len=np.full(sequences, frames, np.int64),
        seq_ids=[f"s{i}" for i in range(sequences)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[HandTokenizer, Path]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tok")
    model = train_tokenizer(tiny_config(), make_bank(), out, hands=[OTHER, REF, THIRD],
                            progress=False, echo=lambda _: None)
    return model, out


# ----------------------------------------------------------------------------- quantization
def test_quantization_returns_the_nearest_code() -> None:
    gen = torch.Generator().manual_seed(0)
    codebook = torch.randn(64, 5, generator=gen)
    z = torch.randn(300, 5, generator=gen)
    brute = torch.cdist(z, codebook).argmin(dim=1)
    assert torch.equal(nearest_codes(z, codebook), brute)
    z_q, idx, _ = quantize(z, codebook, beta=0.25)
    assert torch.equal(idx, brute)
    assert torch.allclose(z_q, codebook[brute], atol=1e-6)
    # a code itself quantizes to itself
    assert torch.equal(nearest_codes(codebook, codebook), torch.arange(64))


def test_gradients_pass_the_quantizer() -> None:
    gen = torch.Generator().manual_seed(1)
    codebook = torch.randn(16, 4, generator=gen, requires_grad=True)
    z = torch.randn(10, 4, generator=gen, requires_grad=True)
    w = torch.randn(10, 4, generator=gen)
    z_q, idx, vq = quantize(z, codebook, beta=0.25)
    (z_q * w).sum().backward()
    # straight-through: the decoder's gradient reaches the encoder output unchanged
    assert torch.allclose(z.grad, w)
    z.grad = None
    codebook.grad = None
    _, idx, vq = quantize(z, codebook, beta=0.25)
    vq.backward()
    e = codebook.detach()[idx]
    # commitment term: beta * d/dz mean|z - sg[e]|^2; codebook term moves the used codes only
    assert torch.allclose(z.grad, 0.25 * 2 * (z.detach() - e) / z.numel(), atol=1e-7)
    unused = torch.ones(16, dtype=torch.bool)
    unused[idx] = False
    assert torch.all(codebook.grad[unused] == 0) and codebook.grad[idx].abs().sum() > 0


def test_refresh_touches_only_cold_codes() -> None:
    gen = torch.Generator().manual_seed(2)
    codebook = torch.randn(20, 3, generator=gen)
    before = codebook.clone()
    counts = torch.tensor([5, 0, 3, 0, 1] * 4)
    buffer = torch.randn(500, 3, generator=gen) + 10.0  # far from every old code
    cold = refresh_cold_codes(codebook, counts, buffer, tau_c=2, generator=gen)
    expected = torch.nonzero(counts < 2).flatten()
    assert torch.equal(cold, expected)
    hot = counts >= 2
    assert torch.equal(codebook[hot], before[hot])  # bit-identical
    assert torch.all((codebook[cold] - before[cold]).abs().sum(1) > 1.0)
    # the new codes are centroids of the buffered outputs
    assert torch.all((codebook[cold] - 10.0).abs() < 3.0)
    assert kmeans(buffer, 4, gen).shape == (4, 3)


def test_codebook_stats() -> None:
    stats = codebook_stats(np.array([0, 0, 1, 1]), 4)
    assert stats["usage"] == 0.5 and stats["perplexity"] == pytest.approx(2.0)


# ----------------------------------------------------------------------------- training
def test_distillation_lowers_encoder_distance(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    bank = make_bank((REF, OTHER))
    cfg = tiny_config(distill_epochs=3, finetune_epochs=0)
    model = new_model(cfg, [REF, OTHER])
    trainer = Trainer(model, bank, tmp_path, progress=False, echo=lambda _: None)
    starts = bank.window_starts(cfg.chunk, REF, OTHER)

    def distance() -> float:
        with torch.no_grad():
            z_ref = model.encode_latent(REF, trainer._batch(REF, starts))
            z = model.encode_latent(OTHER, trainer._batch(OTHER, starts))
            return float((z - z_ref).pow(2).mean())

    # stage 1 alone first, so the reference encoder is the trained one
    cfg.distill_epochs = 0
    trainer.run()
    before = distance()
    cfg.distill_epochs = 3
    codebook = model.codebook.detach().clone()
    ref_state = {k: v.clone() for k, v in model.encoders[REF].state_dict().items()}
    trainer.state.stage, trainer.state.epoch, trainer.state.adding = "hands", 0, [OTHER]
    trainer.optimizer = None
    trainer.run()
    assert distance() < 0.5 * before
    # stage 2 leaves the codebook and the reference untouched
    assert torch.equal(model.codebook.detach(), codebook)
    for k, v in model.encoders[REF].state_dict().items():
        assert torch.equal(v, ref_state[k])


def test_trained_tokenizer_reconstructs_and_translates(trained: tuple[HandTokenizer, Path]
                                                       ) -> None:
    model, _ = trained
    bank = make_bank(seed=0)
    assert model.hands == (REF, OTHER, THIRD)  # reference first
    result = evaluate(model, bank, translation=True, max_translation_chunks=50)
    # far better than predicting the middle of the joint range (~0.4 rad here)
    assert result["mae"] < 0.2
    assert set(result["hands"]) == {REF, OTHER, THIRD}
    assert 0 < result["codebook"]["usage"] <= 1 and result["codebook"]["perplexity"] >= 1
    assert set(result["translation"]["pairs_mm"]) == {f"{i}->{j}" for i in model.hands
                                                      for j in model.hands if i != j}
    q = bank.joints[REF][:37]
    tokens = model.encode(REF, q)
    assert tokens.shape == (10,) and tokens.dtype == np.int64  # ceil(37 / 4)
    out = model.translate(REF, OTHER, q)
    assert out.shape == (37, 12)
    np.testing.assert_array_equal(out, model.decode(OTHER, tokens, num_frames=37))
    spec = model.config.hands[OTHER]
    assert np.all(out >= np.asarray(spec.lower, np.float32) - 1e-6)
    batch = model.encode(REF, np.stack([q[:36], q[1:]]))
    assert batch.shape == (2, 9)
    assert model.decode(REF, batch).shape == (2, 36, 24)


def test_save_load_round_trip_is_bit_exact(trained: tuple[HandTokenizer, Path],
                                           tmp_path: Path) -> None:
    model, out = trained
    assert (out / "tokenizer.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / RESUME_DIR).exists()
    save_tokenizer(model, tmp_path)
    again = load_tokenizer(tmp_path)
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.config.to_json() == model.config.to_json()
    q = make_bank(seed=3).joints[OTHER][:40]
    np.testing.assert_array_equal(model.encode(OTHER, q), again.encode(OTHER, q))
    np.testing.assert_array_equal(model.reconstruct(OTHER, q), again.reconstruct(OTHER, q))


def test_add_hand_leaves_the_others_untouched(trained: tuple[HandTokenizer, Path],
                                              tmp_path: Path) -> None:
    _, out = trained
    base = load_tokenizer(out)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    bank = make_bank((REF, "ability_right"))
    grown = add_hand(base, "ability_right", bank, tmp_path, progress=False, echo=lambda _: None)
    assert grown.hands == (REF, OTHER, THIRD, "ability_right")
    after = grown.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert load_tokenizer(tmp_path).hands == grown.hands
    with pytest.raises(TokenizerError, match="already"):
        add_hand(grown, "ability_right", bank, tmp_path / "x", progress=False,
                 echo=lambda _: None)


def test_interrupted_training_saves_and_resumes(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    bank = make_bank((REF, OTHER), sequences=6)
    cfg = tiny_config(reference_epochs=2, distill_epochs=1, finetune_epochs=1)
    original = Trainer._end_epoch
    calls = {"n": 0}

    def interrupt(self: Trainer, *args: object) -> None:
        original(self, *args)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] == 3:  # during stage 2
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_end_epoch", interrupt)
    messages: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        train_tokenizer(cfg, bank, tmp_path, progress=False, echo=messages.append)
    assert (tmp_path / RESUME_DIR / "state.json").is_file()
    assert "resume" in messages[-1]
    assert not (tmp_path / "tokenizer.json").exists()
    monkeypatch.setattr(Trainer, "_end_epoch", original)
    model = train_tokenizer(cfg, bank, tmp_path, progress=False, echo=messages.append)
    assert messages[-1].startswith("resuming")
    assert (tmp_path / "tokenizer.json").is_file() and not (tmp_path / RESUME_DIR).exists()
    assert model.hands == (REF, OTHER)
    rows = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert len(rows) == 4  # 2 reference + 1 distill + 1 fine-tune epochs, none repeated


# ----------------------------------------------------------------------------- errors
def test_clear_errors(trained: tuple[HandTokenizer, Path], tmp_path: Path) -> None:
    model, _ = trained
    with pytest.raises(TokenizerError, match=r"'leap_right' is not in this tokenizer.*"
                                             r"shadow_right, xhand_right, allegro_right"):
        model.encode("leap_right", np.zeros((8, 16)))
    with pytest.raises(TokenizerError, match=r"expected joints of shape \(T, 12\) or "
                                             r"\(B, T, 12\).*got \(8, 24\)"):
        model.encode(OTHER, np.zeros((8, 24)))
    with pytest.raises(TokenizerError, match="NaN"):
        model.encode(OTHER, np.full((8, 12), np.nan))
    with pytest.raises(TokenizerError, match=r"token ids must lie in \[0, 32\)"):
        model.decode(OTHER, np.array([0, 40]))
    with pytest.raises(TokenizerError, match="integer token ids"):
        model.decode(OTHER, np.array([0.5]))
    with pytest.raises(TokenizerError, match="num_frames"):
        model.decode(OTHER, np.array([1, 2]), num_frames=9)
    with pytest.raises(TokenizerError, match="not a tokenizer checkpoint"):
        load_tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match="backbone"):
        TokenizerConfig(backbone="transformer")
    (tmp_path / "tokenizer.json").write_text('{"format": "other"}')
    (tmp_path / "tokenizer.safetensors").write_bytes(b"junk")
    with pytest.raises(TokenizerError, match="not a hand tokenizer config"):
        load_tokenizer(tmp_path)


def test_conv_backbone_trains(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    bank = make_bank((REF, OTHER), sequences=6)
    cfg = tiny_config(backbone="conv", reference_epochs=2, distill_epochs=1, finetune_epochs=1)
    model = train_tokenizer(cfg, bank, tmp_path, progress=False, echo=lambda _: None)
    again = load_tokenizer(tmp_path)
    assert again.config.backbone == "conv"
    q = bank.joints[OTHER][:20]
    np.testing.assert_array_equal(model.reconstruct(OTHER, q), again.reconstruct(OTHER, q))
    assert evaluate(again, bank, translation=False)["mae"] < 0.3


def _steps_logged(out: Path) -> list[int]:
    import json

    return [json.loads(line)["steps"]
            for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_epoch_length_is_fixed_unless_asked_for_one_pass(tmp_path: Path) -> None:
    """The default recipe's time must not grow with the dataset (a 5x larger dataset made
    the one-pass recipe take five times as long); steps_per_epoch=0 keeps one pass."""
    torch.set_num_threads(1)
    assert TokenizerConfig().steps_per_epoch > 0
    logged = {}
    for sequences in (4, 16):
        for steps in (5, 0):
            out = tmp_path / f"{sequences}_{steps}"
            cfg = tiny_config(steps_per_epoch=steps, reference_epochs=1, distill_epochs=1,
                              finetune_epochs=0, batch_size=32)
            train_tokenizer(cfg, make_bank((REF, OTHER), sequences=sequences), out,
                            progress=False, echo=lambda _: None)
            logged[sequences, steps] = _steps_logged(out)
    assert logged[4, 5] == logged[16, 5] == [5, 5]
    # one pass: ceil(windows / batch) with 37 windows per 40-frame sequence
    assert logged[4, 0] == [math.ceil(4 * 37 / 32)] * 2
    assert logged[16, 0] == [math.ceil(16 * 37 / 32)] * 2


# ------------------------------------------------------------------------------------ seams
def test_seam_smoothing_removes_steps_and_keeps_linear_motion() -> None:
    from unihm_generator.tokenizer.seams import smooth_seams

    # a staircase: every 4-frame chunk holds one pose, 0.8 apart (a decoder's mean poses)
    stairs = np.repeat(np.arange(6, dtype=np.float32) * 0.8, 4)[:, None]
    smooth = smooth_seams(stairs, 5.0)
    assert np.abs(np.diff(stairs[:, 0])).max() == pytest.approx(0.8)
    assert np.abs(np.diff(smooth[:, 0])).max() < 0.35
    # a ramp has no second difference: the smoother leaves it exactly where it is
    ramp = np.linspace(-1.0, 1.0, 30, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    np.testing.assert_allclose(smooth_seams(ramp, 5.0), ramp, atol=1e-5)
    # batches are smoothed per trajectory, along time only
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(3, 17, 5)).astype(np.float32)
    each = np.stack([smooth_seams(b, 2.0) for b in batch])
    np.testing.assert_allclose(smooth_seams(batch, 2.0), each, atol=1e-6)
    np.testing.assert_array_equal(smooth_seams(batch, 0.0), batch)
    np.testing.assert_array_equal(smooth_seams(batch[:, :2], 5.0), batch[:, :2])
    with pytest.raises(ValueError, match="strength"):
        smooth_seams(batch, -1.0)
    with pytest.raises(TokenizerError, match="seam_smoothing"):
        tiny_config(seam_smoothing=float("nan"))


def test_decode_smooths_seams_before_clipping(trained: tuple[HandTokenizer, Path]) -> None:
    from unihm_generator.tokenizer.seams import smooth_seams

    model, _ = trained
    ids = np.array([0, 5, 9, 5, 0, 3], np.int64)
    raw = model.decode(OTHER, ids, seam_smoothing=0.0)
    with torch.no_grad():
        chunks = model.decode_codes(OTHER, torch.from_numpy(ids)).clamp(-1.0, 1.0)
    np.testing.assert_allclose(raw, model.denormalize(OTHER, chunks.reshape(24, -1)).numpy(),
                               atol=1e-6)
    assert model.config.seam_smoothing > 0
    smooth = model.decode(OTHER, ids, num_frames=22)
    x = model.normalize(OTHER, torch.from_numpy(raw[:22])).numpy()
    expected = model.denormalize(OTHER, torch.from_numpy(
        smooth_seams(x, model.config.seam_smoothing)).clamp(-1.0, 1.0)).numpy()
    np.testing.assert_allclose(smooth, expected, atol=1e-5)
    spec = model.config.hands[OTHER]
    assert np.all(smooth >= np.asarray(spec.lower, np.float32) - 1e-6)
    assert np.all(smooth <= np.asarray(spec.upper, np.float32) + 1e-6)
