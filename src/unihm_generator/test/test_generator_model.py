"""Generator model: masking schedule, constrained decoding, KV cache against full re-runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unihm_generator.generator import GeneratorError, mask_ratio
from unihm_generator.generator.data import make_request
from unihm_generator.generator.model import HandGenerator
from unihm_generator.generator.testing import synthetic_examples, tiny_config, tiny_tokenizer
from unihm_generator.generator.text import TextVocab, collect_text_ids, encode_instruction
from unihm_generator.generator.train import batch_of

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    tok = tiny_tokenizer()
    cfg = tiny_config()
    examples = synthetic_examples(tok, cfg, n=6)
    cfg.text_ids = collect_text_ids(t for ex in examples for t in ex.instructions)
    torch.manual_seed(0)
    model = HandGenerator(cfg).eval()
    reqs, *_ = batch_of(examples, TextVocab(cfg), cfg, np.random.default_rng(0), fixed=True)
    return tok, cfg, model, reqs


@pytest.mark.parametrize(("epoch", "epochs", "expected"), [
    (0, 100, 0.0), (19, 100, 0.0), (20, 100, 0.0), (50, 100, 0.5), (65, 100, 0.75),
    (79, 100, 59 / 60), (80, 100, 1.0), (99, 100, 1.0), (1, 10, 0.0), (5, 10, 0.5),
    (8, 10, 1.0)])
def test_masking_schedule(epoch: int, epochs: int, expected: float) -> None:
    assert mask_ratio(epoch, epochs) == pytest.approx(expected)
    assert mask_ratio(epoch, epochs, enabled=False) == 0.0


def test_real_qwen3_tokenizer() -> None:
    ids = encode_instruction("pick up the mug and put it in the bowl")
    assert ids == [29245, 705, 279, 51489, 323, 2182, 432, 304, 279, 19212]
    with pytest.raises(GeneratorError, match="instruction is empty"):
        encode_instruction("   ")


def test_vocabulary_layout(setup) -> None:
    _, cfg, model, _ = setup
    assert cfg.vocab_size == cfg.text_vocab_size + 7 + cfg.codebook_size
    assert model.lm.get_input_embeddings().num_embeddings == cfg.vocab_size
    big = tiny_config(compact_text_vocab=False)
    assert big.hand_offset == 151669 + 7


def test_only_hand_tokens_greedy_and_sampled(setup) -> None:
    _, cfg, model, reqs = setup
    for kwargs in ({}, {"greedy": False, "temperature": 1.5, "top_k": 10, "seed": 1},
                   {"greedy": False, "top_p": 0.9, "seed": 2}):
        codes, wrists = model.generate(reqs, **kwargs)
        for r, c, w in zip(reqs, codes, wrists, strict=True):
            assert c.shape == (r.num_tokens,)
            assert ((c >= 0) & (c < cfg.codebook_size)).all()
            assert w.shape == (r.num_tokens * cfg.chunk, 9)
    logits = torch.randn(2, cfg.vocab_size)
    allowed = model._allowed(logits, 0, torch.tensor([3, 3]))
    assert torch.isinf(allowed[:, : cfg.hand_offset]).all()
    assert torch.isfinite(allowed[:, cfg.hand_offset:]).all()
    end = cfg.structure_id("<|motion_end|>")
    assert torch.isfinite(model._allowed(logits, 3, torch.tensor([3, 3]))[:, end]).all()


def test_cache_equals_no_cache_greedy(setup) -> None:
    _, _, model, reqs = setup
    a, wa = model.generate(reqs, use_cache=True)
    b, wb = model.generate(reqs, use_cache=False)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_batched_equals_single_and_seeded_sampling(setup) -> None:
    _, _, model, reqs = setup
    batched, _ = model.generate(reqs)
    for r, c in zip(reqs, batched, strict=True):
        np.testing.assert_array_equal(model.generate([r])[0][0], c)
    s1, _ = model.generate(reqs, greedy=False, seed=7)
    s2, _ = model.generate(reqs, greedy=False, seed=7)
    for x, y in zip(s1, s2, strict=True):
        np.testing.assert_array_equal(x, y)


def test_loss_backward_and_mask_token(setup) -> None:
    tok, cfg, _, _ = setup
    torch.manual_seed(0)
    model = HandGenerator(cfg)
    examples = synthetic_examples(tok, cfg, n=3)
    reqs, toks, wr, fm = batch_of(examples, TextVocab(cfg), cfg, np.random.default_rng(0))
    out = model.loss(reqs, toks, wr, fm, 1.0, torch.Generator().manual_seed(0))
    out["loss"].backward()
    grad = model.embed.weight.grad[cfg.structure_id("<|hand_mask|>")]
    assert grad.abs().sum() > 0  # the mask token is learned
    assert torch.isfinite(out["loss"])


def test_request_errors(setup) -> None:
    _, cfg, _, reqs = setup
    vocab = TextVocab(cfg)
    r = reqs[0]
    with pytest.raises(GeneratorError, match="instruction is empty"):
        make_request(vocab, cfg, "", r.points, r.traj, 0, r.init_wrist)


def test_embedding_rows_without_gradients_match_the_module(setup) -> None:
    """Generation looks rows up by indexing (no module call); training keeps the module."""
    model = setup[2]
    weight = model.embed.weight
    last = weight.shape[0] - 1
    for ids in ([0], [last], [3, 1, 3], torch.tensor([2, last])):
        with torch.no_grad():
            fast = model._ids(ids)
            module = model.embed(torch.as_tensor(ids))
        assert torch.equal(fast, module)
    with torch.no_grad():
        assert model._ids([5]).data_ptr() == weight[5].data_ptr()     # a view of the row
        with pytest.raises(IndexError):
            model._ids([last + 1])
    assert model._ids([1]).requires_grad                              # the module's path


def test_wrist_features_are_smoothed_across_tokens(setup, monkeypatch) -> None:
    from unihm_generator.tokenizer.seams import smooth_seams

    _, _, model, reqs = setup
    strength = model.config.wrist_smoothing
    assert strength > 0
    codes, smooth = model.generate(reqs)
    monkeypatch.setattr(model.config, "wrist_smoothing", 0.0)
    raw_codes, raw = model.generate(reqs)
    for a, b in zip(codes, raw_codes, strict=True):
        np.testing.assert_array_equal(a, b)          # the tokens do not depend on it
    for s, r in zip(smooth, raw, strict=True):
        assert s.shape == r.shape and s.shape[1] == 9
        np.testing.assert_allclose(s, smooth_seams(r, strength), atol=1e-6)
        if len(r) > 2:
            assert np.abs(np.diff(s, 2, axis=0)).sum() < np.abs(np.diff(r, 2, axis=0)).sum()
