"""`unihm tokenizer` end to end on a small dataset written in the UniHM format: train, eval
(last line JSON), add-hand, translate, the default checkpoint, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unihm_core.cli import main
from unihm_core.dataset.format import HandMotion, SequenceRecord
from unihm_core.dataset.index import DatasetWriter
from unihm_generator.tokenizer import load_tokenizer
from unihm_generator.tokenizer.data import hand_spec

HANDS = ("shadow_right", "xhand_right", "leap_right")
TINY = ["--codebook-size", "32", "--code-dim", "8", "--hidden", "32", "--reference-epochs",
        "2", "--distill-epochs", "1", "--finetune-epochs", "1", "--refresh-epochs", "1",
        "--steps-per-epoch", "20", "--threads", "1", "--no-progress"]


def _record(number: int, object_id: str, rng: np.random.Generator) -> SequenceRecord:
    frames = 30
    s = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, frames))[:, None]
    phase = rng.uniform(0.1, 0.9, 2)
    eye = np.repeat(np.eye(4)[None], frames, axis=0)
    hands = {}
    for h in HANDS:
        spec = hand_spec(h)
        lo, hi = np.asarray(spec.lower), np.asarray(spec.upper)
        a, b = lo + (hi - lo) * phase[0], lo + (hi - lo) * phase[1]
        hands[h] = HandMotion(hand_id=h, joint_names=tuple(spec.joint_names), wrist_poses=eye,
                              joints=a + (b - a) * s, fingertips=("thumb",),
                              contacts=np.zeros((frames, 1), bool))
    points = rng.normal(size=(16, 3)) * 0.03
    return SequenceRecord(
        sequence_id=f"seq_{number:03d}", fps=30.0, object_id=object_id, mesh_path="none.obj",
        object_points=points, object_normals=points / np.linalg.norm(points, axis=1)[:, None],
        object_poses=eye, task="lift", instructions=("lift it",),
        heldout_instructions=("raise it",), hands=hands)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "ds"
    rng = np.random.default_rng(0)
    with DatasetWriter(root) as writer:
        writer.set_splits(unseen_objects=["025_mug"], test_fraction=0.25, seed=0)
        for n in range(16):
            writer.add(_record(n, "025_mug" if n % 4 == 0 else "004_sugar_box", rng))
    return root


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["tokenizer", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_eval_add_hand_translate(dataset: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tok"
    code, stdout, err = _run(capsys, "train", "--data", str(dataset), "--out", str(out),
                             "--hands", "shadow_right,xhand_right", *TINY)
    assert code == 0, err
    report = json.loads(stdout.strip().splitlines()[-1])
    assert set(report["per_hand_mae"]) == {"shadow_right", "xhand_right"}
    assert (out / "tokenizer.safetensors").is_file() and (out / "plots" /
                                                           "codebook_usage.png").is_file()
    assert load_tokenizer(out).config.steps_per_epoch == 20
    steps = [json.loads(row)["steps"] for row in
             (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == [20] * 4  # 2 reference, 1 distillation, 1 fine-tuning epoch

    code, stdout, err = _run(capsys, "eval", "--tokenizer", str(out), "--data", str(dataset),
                             "--split", "all", "--json", "--threads", "1", "--no-progress")
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    for h in ("shadow_right", "xhand_right"):
        assert {"mae", "rmse", "fingertip_mm"} <= set(result["hands"][h])
    assert 0 < result["codebook"]["usage"] <= 1 and result["codebook"]["perplexity"] >= 1
    assert set(result["translation"]["pairs_mm"]) == {"shadow_right->xhand_right",
                                                      "xhand_right->shadow_right"}

    code, stdout, err = _run(capsys, "add-hand", "leap_right", "--tokenizer", str(out),
                             "--data", str(dataset), "--threads", "1", "--no-progress")
    assert code == 0, err
    assert load_tokenizer(out).hands == ("shadow_right", "xhand_right", "leap_right")

    npz = tmp_path / "x.npz"
    code, stdout, err = _run(capsys, "translate", "shadow_right", "leap_right", "--data",
                             str(dataset), "--seq", "seq_001", "--tokenizer", str(out),
                             "--out", str(npz))
    assert code == 0, err
    row = json.loads(stdout.strip().splitlines()[-1])
    assert row["frames"] == 30 and row["tokens"] == 8 and row["fingertip_error_mm"] >= 0
    assert np.load(npz)["joints"].shape == (30, 16)

    code, _, err = _run(capsys, "eval", "--tokenizer", str(out), "--data", str(dataset),
                        "--hands", "allegro_right", "--no-progress")
    assert code == 2 and "'allegro_right' is not in this tokenizer" in err
    assert "shadow_right, xhand_right, leap_right" in err
    code, _, err = _run(capsys, "eval", "--tokenizer", str(tmp_path), "--data", str(dataset))
    assert code == 2 and "not a tokenizer checkpoint" in err


def test_default_checkpoint_loads_and_covers_every_hand() -> None:
    from unihm_core.hands import hand_ids

    tok = load_tokenizer()
    assert set(hand_ids()) <= set(tok.hands)
    assert tok.config.reference_hand == "shadow_right" and tok.hands[0] == "shadow_right"
    q = np.asarray([hand_spec("xhand_right").lower] * 9, np.float32)
    ids = tok.encode("xhand_right", q)
    assert ids.shape == (3,)
    assert tok.decode("allegro_right", ids, num_frames=9).shape == (9, 16)


def test_default_checkpoint_decodes_a_fast_grasp_without_jumps() -> None:
    """Every XHand joint closing to half its range in 8 frames (0.16 rad per frame, near the
    fastest motion in the data) comes back through the shipped tokenizer without a seam step
    near the executive's 0.35 rad limit per point, and no further from the input than the
    chunks as decoded."""
    tok = load_tokenizer()
    spec = hand_spec("xhand_right")
    lo, hi = np.asarray(spec.lower, np.float32), np.asarray(spec.upper, np.float32)
    s = np.concatenate([np.zeros(20), np.linspace(0, 1, 9), np.ones(20)])[:, None]
    q = (lo + (hi - lo) * (0.05 + 0.5 * s)).astype(np.float32)
    ids = tok.encode("xhand_right", q)
    smooth = tok.decode("xhand_right", ids, num_frames=len(q))
    raw = tok.decode("xhand_right", ids, num_frames=len(q), seam_smoothing=0.0)
    assert np.abs(np.diff(smooth, axis=0)).max() < 0.3
    assert np.abs(smooth - q).mean() <= np.abs(raw - q).mean() + 0.01
