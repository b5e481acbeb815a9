"""Generator training, checkpoints and the request pipeline: round trips and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unihm_generator.generator import (
    GenerationSpec,
    Generator,
    GeneratorError,
    load_generator,
    train_generator,
)
from unihm_generator.generator.retrieval import RetrievalIndex
from unihm_generator.generator.testing import synthetic_examples, tiny_config, tiny_tokenizer
from unihm_generator.tokenizer import save_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    tok = tiny_tokenizer()
    save_tokenizer(tok, root / "tok")
    cfg = tiny_config(epochs=2)
    examples = synthetic_examples(tok, cfg, n=6)
    model = train_generator(cfg, examples[:4], examples[4:], root / "ckpt", root / "tok",
                            progress=False, echo=lambda m: None)
    RetrievalIndex.build(examples[:4]).save(root / "ckpt")
    return root, tok, model, examples


def _spec(ex, hands=("xhand_right", "shadow_right"), **kw) -> GenerationSpec:
    base = dict(instruction=ex.instructions[0], points=ex.points, target=ex.obj_poses,
                hands=list(hands))
    base.update(kw)
    return GenerationSpec(**base)


def test_save_load_round_trip(trained) -> None:
    root, _, model, examples = trained
    ckpt = root / "ckpt"
    assert {"generator.safetensors", "generator.json", "checkpoint.json",
            "train_log.jsonl"} <= {p.name for p in ckpt.iterdir()}
    assert not (ckpt / "resume" / "progress.json").exists()
    log = [json.loads(line) for line in (ckpt / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and "val_loss_masked" in log[0]
    loaded = load_generator(ckpt)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    gen = Generator.load(ckpt)
    a = gen.generate([_spec(ex) for ex in examples[:2]])
    b = Generator(model, gen.tokenizer).generate([_spec(ex) for ex in examples[:2]])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.tokens, y.tokens)
        t = len(examples[0].obj_poses) if x is a[0] else len(examples[1].obj_poses)
        assert x.wrist_poses.shape == (t, 4, 4)
        assert x.joints["xhand_right"].shape == (t, 12)
        assert x.joints["shadow_right"].shape == (t, 24)
    idx = RetrievalIndex.load(ckpt)
    codes, wrist = idx.query(examples[0].instructions[0], examples[0].points, 5, 17)
    assert codes.shape == (5,) and wrist.shape == (17, 9)


def test_resume_after_interrupt(trained, tmp_path: Path) -> None:
    root, _, _, examples = trained
    cfg = tiny_config(epochs=2)
    calls = []

    def hook(model, epoch):
        calls.append(epoch)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        train_generator(cfg, examples[:4], [], tmp_path, root / "tok", progress=False,
                        echo=lambda m: None, epoch_hook=hook)
    assert (tmp_path / "resume" / "progress.json").is_file()
    train_generator(cfg, examples[:4], [], tmp_path, root / "tok", progress=False,
                    echo=lambda m: None, epoch_hook=hook)
    assert calls == [0, 0, 1]
    assert (tmp_path / "generator.safetensors").is_file()


def test_clear_errors(trained, tmp_path: Path) -> None:
    root, _, _, examples = trained
    gen = Generator.load(root / "ckpt")
    ex = examples[0]
    with pytest.raises(GeneratorError, match="instruction is empty"):
        gen.generate([_spec(ex, instruction="  ")])
    with pytest.raises(GeneratorError, match=r"unknown hand 'robot_foot'.*xhand_right"):
        gen.generate([_spec(ex, hands=["robot_foot"])])
    with pytest.raises(GeneratorError, match=r"shape \(P, 3\).*\(64, 2\)"):
        gen.generate([_spec(ex, points=np.zeros((64, 2)))])
    with pytest.raises(GeneratorError, match=r"target trajectory of shape \(T, 4, 4\)"):
        gen.generate([_spec(ex, target=np.zeros((5, 3, 3)))])
    with pytest.raises(GeneratorError, match="not a generator checkpoint"):
        Generator.load(tmp_path / "nothing")


def test_a_generator_refuses_a_tokenizer_it_was_not_trained_with(trained, tmp_path: Path
                                                                 ) -> None:
    import shutil

    root, _, _, _ = trained
    ckpt = shutil.copytree(root / "ckpt", tmp_path / "ckpt")
    Generator.load(ckpt)  # the tokenizer copied beside it: the one it was trained with
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    meta["tokenizer_sha256"] = "0" * 64  # as if the tokenizer had been retrained since
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(GeneratorError, match="trained with another tokenizer"):
        Generator.load(ckpt)


def test_generate_result_file_round_trip(trained, tmp_path: Path) -> None:
    """`unihm generate` writes a dataset sequence the dataset loader reads back per hand."""
    from unihm_core.dataset.format import load_sequence
    from unihm_generator.generator.cli import write_result

    root, _, _, examples = trained
    gen = Generator.load(root / "ckpt")
    spec = _spec(examples[0])
    motion = gen.generate([spec])[0]
    out = write_result(tmp_path / "out.npz", motion, spec, 30.0, "test_object", "",
                       "pick it up", picture=False)
    rec = load_sequence(out[0])
    assert set(rec.hands) == {"xhand_right", "shadow_right"}
    np.testing.assert_allclose(rec.hands["shadow_right"].joints,
                               motion.joints["shadow_right"], atol=1e-5)
    assert rec.hands["xhand_right"].wrist_poses.shape == (len(examples[0].obj_poses), 4, 4)


def test_mask_feeding_follows_the_checkpoint(trained, monkeypatch) -> None:
    """Curriculum checkpoints feed the mask token by default (the input their last epochs
    trained on); an explicit choice wins; both paths agree with and without the cache."""
    root, _, _, examples = trained
    gen = Generator.load(root / "ckpt")
    assert gen.model.config.masking
    specs = [_spec(ex) for ex in examples[:2]]
    for feed in (True, False):
        cached = gen.generate(specs, feed_mask=feed)
        plain = gen.generate(specs, feed_mask=feed, use_cache=False)
        for x, y in zip(cached, plain, strict=True):
            np.testing.assert_array_equal(x.tokens, y.tokens)
    seen: list[bool] = []
    original = gen.model.generate

    def spy(*args, **kwargs):
        seen.append(kwargs["feed_mask"])
        return original(*args, **kwargs)

    monkeypatch.setattr(gen.model, "generate", spy)
    default = gen.generate(specs)
    gen.generate(specs, feed_mask=False)
    assert seen == [True, False]
    masked = gen.generate(specs, feed_mask=True)
    for x, y in zip(default, masked, strict=True):
        np.testing.assert_array_equal(x.tokens, y.tokens)


def test_warm_up_leaves_no_trace_in_later_results(trained) -> None:
    """The node warms up at start-up; a warm-up request of the same shape as the next one
    (its decoder buffers are reused) must not change what that request returns."""
    root, _, _, examples = trained
    spec = _spec(examples[0])
    cold = Generator.load(root / "ckpt").generate([spec])[0]
    warm = Generator.load(root / "ckpt")
    seconds = warm.warm_up(frames=len(spec.target))
    assert np.isfinite(seconds) and seconds > 0
    again = warm.generate([spec])[0]
    np.testing.assert_array_equal(again.tokens, cold.tokens)
    np.testing.assert_allclose(again.wrist_poses, cold.wrist_poses, atol=1e-6)
    for hand in spec.hands:
        np.testing.assert_allclose(again.joints[hand], cold.joints[hand], atol=1e-6)
