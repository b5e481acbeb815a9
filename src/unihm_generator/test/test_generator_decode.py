"""Incremental decoder: same hidden states as transformers' forward, same picks on every path."""

from __future__ import annotations

import copy
import dataclasses
import threading

import numpy as np
import pytest
import torch

from unihm_generator.generator import decode, greedy_loop
from unihm_generator.generator.model import HandGenerator
from unihm_generator.generator.testing import synthetic_examples, tiny_config, tiny_tokenizer
from unihm_generator.generator.text import TextVocab, collect_text_ids
from unihm_generator.generator.train import batch_of

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    tok = tiny_tokenizer()
    cfg = tiny_config()
    examples = synthetic_examples(tok, cfg, n=4)
    cfg.text_ids = collect_text_ids(t for ex in examples for t in ex.instructions)
    torch.manual_seed(0)
    model = HandGenerator(cfg).eval()
    reqs, *_ = batch_of(examples, TextVocab(cfg), cfg, np.random.default_rng(0), fixed=True)
    return cfg, model, reqs


def _same(a: list[np.ndarray], b: list[np.ndarray], atol: float = 0.0) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=atol, rtol=0)


@pytest.mark.parametrize(("heads", "kv", "padded"),
                         [(2, 1, True), (4, 2, True), (2, 2, True), (4, 1, True),
                          (4, 2, False), (4, 1, False)])
def test_hidden_states_match_transformers(heads: int, kv: int, padded: bool) -> None:
    """Prefill and steps on a batch (left-padded: attention bias; else none) against the full
    forward, column by column; the query heads' grouping per kv head included."""
    cfg = tiny_config(num_heads=heads, num_kv_heads=kv)
    torch.manual_seed(1)
    lm = HandGenerator(cfg).eval().lm
    b, t0, steps, h = 3, 7, 4, cfg.hidden_size
    mask = torch.ones(b, t0, dtype=torch.long)
    if padded:
        mask[1, :3] = 0
        mask[2, :1] = 0
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    every = torch.cat([positions, positions[:, -1:] + torch.arange(1, steps + 1)], 1)
    embeds = torch.randn(b, t0 + steps, h)
    full_mask = torch.cat([mask, torch.ones(b, steps, dtype=torch.long)], 1)
    with torch.no_grad():
        ref = lm.model(inputs_embeds=embeds, attention_mask=full_mask,
                       position_ids=every).last_hidden_state
    with torch.inference_mode():
        dec = decode.IncrementalDecoder(lm, decode.FlatWeights(lm), mask, every)
        got = [dec.prefill(embeds[:, :t0], t0)]
        got += [dec.step(decode.augment(embeds[:, t0 + j]))[:, None] for j in range(steps)]
    assert dec.padded == padded
    got = torch.cat(got, 1)
    real = full_mask.bool()
    torch.testing.assert_close(got[real], ref[real], atol=2e-5, rtol=1e-5)
    # a prefill returning only its last columns (its last layer runs on those alone) still
    # fills the whole cache: the next step agrees too
    for keep in (1, 3):
        with torch.inference_mode():
            dec = decode.IncrementalDecoder(lm, decode.FlatWeights(lm), mask, every)
            part = dec.prefill(embeds[:, :t0], keep)
            nxt = dec.step(decode.augment(embeds[:, t0]))
        torch.testing.assert_close(part, ref[:, t0 - keep:t0], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(nxt, ref[:, t0], atol=2e-5, rtol=1e-5)


def test_static_runtime_interpreter_and_plain_functions_agree(setup, monkeypatch) -> None:
    """The greedy loop and the prefill: compiled by TorchScript (no silent fallback here),
    run by the static runtime, the interpreter or as plain Python: the same results."""
    _, model, reqs = setup
    default = model.generate(reqs)
    for fn in (decode._greedy_steps, decode._prefill_layers):
        runner = decode._compiled(fn)
        assert decode._SCRIPTED[fn.__name__] is not fn
        if hasattr(torch._C, "_jit_to_static_module"):
            assert isinstance(runner, torch._C.StaticModule)
    for choice in ("interpreter", "plain"):
        def pick(fn, choice=choice):
            return decode._SCRIPTED[fn.__name__] if choice == "interpreter" else fn
        monkeypatch.setattr(decode, "_compiled", pick)
        got = model.generate(reqs)
        _same(default[0], got[0])
        _same(default[1], got[1])


def test_threads_get_their_own_runner_and_the_same_results(setup) -> None:
    """A static runtime instance holds one run's state: concurrent requests must not share."""
    _, model, reqs = setup
    expected = model.generate(reqs)
    runners, results = [], []

    def work() -> None:
        runners.append(decode._compiled(decode._greedy_steps))
        results.extend(model.generate(reqs) for _ in range(5))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 10
    if isinstance(runners[0], torch._C.StaticModule):
        assert runners[0] is not runners[1]
    for got in results:
        _same(expected[0], got[0])
        _same(expected[1], got[1])


def test_every_path_agrees_with_the_full_rerun(setup) -> None:
    """Greedy, feed_mask's single pass, seeded sampling, and a one-token request."""
    _, model, reqs = setup
    one = dataclasses.replace(reqs[0], traj=reqs[0].traj[:2], num_tokens=1)
    for batch in (reqs, [one], [one, *reqs[1:]]):
        for kwargs in ({}, {"feed_mask": True},
                       {"greedy": False, "seed": 3, "top_k": 8},
                       {"greedy": False, "seed": 5, "top_p": 0.9, "feed_mask": True}):
            cached = model.generate(batch, **kwargs)
            plain = model.generate(batch, use_cache=False, **kwargs)
            _same(cached[0], plain[0])
            _same(cached[1], plain[1], atol=1e-4)


def test_weights_follow_parameter_edits(setup) -> None:
    cfg, _, reqs = setup
    torch.manual_seed(2)
    model = HandGenerator(cfg).eval()
    before = model.generate(reqs)
    flat = model._flat_weights()
    with torch.no_grad():
        model.lm.model.layers[0].mlp.down_proj.weight.mul_(3.0)
        model.lm.lm_head.weight[cfg.hand_offset:].add_(0.05 * torch.randn(
            cfg.codebook_size, cfg.hidden_size))
    assert model._flat_weights() is not flat
    after = model.generate(reqs)
    _same(after[0], model.generate(reqs, use_cache=False)[0])
    assert any((x != y).any() for x, y in zip(before[0], after[0], strict=True))


def test_other_dtypes_and_large_models_use_transformers_cache(setup, monkeypatch) -> None:
    _, model, reqs = setup
    assert decode.supported(model.lm)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not decode.supported(model.lm)
    monkeypatch.setattr(decode, "MAX_LAYER_PARAMETERS", 1000)
    assert not decode.supported(model.lm)
    fallback = model.generate(reqs)
    _same(fallback[0], model.generate(reqs, use_cache=False)[0])


def test_layout_verdict_follows_the_config_object(setup) -> None:
    """``supported`` keeps its config reading per config object: a new config is read again."""
    _, model, _ = setup
    lm, original = model.lm, model.lm.config
    assert decode.supported(lm)
    changed = copy.deepcopy(original)
    changed.use_sliding_window = True
    lm.config = changed
    try:
        assert not decode.supported(lm)
    finally:
        lm.config = original
    assert decode.supported(lm)


def test_decoder_buffers_are_reused_only_unpadded_same_shape_and_when_asked(setup) -> None:
    _, model, reqs = setup
    lm = model.lm
    flat = decode.FlatWeights(lm)
    ones = torch.ones(2, 5, dtype=torch.long)
    padded = ones.clone()
    padded[0, :2] = 0

    def build(mask: torch.Tensor, reuse: bool = True) -> decode.IncrementalDecoder:
        positions = torch.cat([(mask.cumsum(1) - 1).clamp(min=0),
                               mask.sum(1, keepdim=True) + torch.arange(3)], 1)
        return decode.IncrementalDecoder(lm, flat, mask, positions, reuse=reuse)

    with torch.inference_mode():
        first = build(ones)
        assert build(ones).keys is first.keys
        assert build(ones, reuse=False).keys is not first.keys
        assert build(ones[:1]).keys is not first.keys
        assert build(padded).keys is not build(padded).keys
    # requests after one another (buffers reused) give what a fresh decoder gives
    again = [model.generate(reqs[:1]) for _ in range(2)]
    flat_model = model._flat_weights()
    flat_model.workspace = threading.local()
    fresh = model.generate(reqs[:1])
    for got in again:
        _same(fresh[0], got[0])
        _same(fresh[1], got[1])


@pytest.mark.skipif(not greedy_loop.AVAILABLE, reason="numba is not installed")
@pytest.mark.parametrize(("heads", "kv"), [(4, 2), (4, 1), (2, 2)])
def test_compiled_greedy_loop_matches_the_torch_loop(heads: int, kv: int, monkeypatch) -> None:
    """The numba loop (unpadded batches) against the TorchScript loop: the same picks, the
    same hidden states and cache up to float rounding; ``UNIHM_NO_NUMBA_DECODE`` and left
    padding keep the torch loop."""
    cfg = tiny_config(num_heads=heads, num_kv_heads=kv)
    torch.manual_seed(2)
    model = HandGenerator(cfg).eval()
    b, t0, count, h = 3, 9, 14, cfg.hidden_size
    embeds = torch.randn(b, t0, h)
    inputs = decode.augment(0.3 * torch.randn(b, count - 1, h))
    calls = []
    compiled = greedy_loop.greedy_steps
    monkeypatch.setattr(greedy_loop, "greedy_steps",
                        lambda *args: calls.append(1) or compiled(*args))

    def run(mask: torch.Tensor, numba: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        monkeypatch.setenv("UNIHM_NO_NUMBA_DECODE", "0" if numba else "1")
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        every = torch.cat([positions, positions[:, -1:] + torch.arange(1, count)], 1)
        flat = model._flat_weights()
        with torch.inference_mode():
            dec = decode.IncrementalDecoder(model.lm, flat, mask, every)
            last = dec.prefill(embeds)[:, 0]
            codes, hidden = dec.greedy(last, inputs, flat.head, count)
        return codes, hidden, dec.keys.clone()

    full = torch.ones(b, t0, dtype=torch.long)
    codes, hidden, keys = run(full, numba=True)
    assert len(calls) == 1
    ref_codes, ref_hidden, ref_keys = run(full, numba=False)
    assert len(calls) == 1
    assert codes.shape == (b, count) and len(set(codes.flatten().tolist())) > 1
    torch.testing.assert_close(codes, ref_codes, atol=0, rtol=0)
    torch.testing.assert_close(hidden, ref_hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(keys, ref_keys, atol=1e-5, rtol=1e-5)
    padded = full.clone()
    padded[1, :2] = 0
    run(padded, numba=True)
    assert len(calls) == 1
