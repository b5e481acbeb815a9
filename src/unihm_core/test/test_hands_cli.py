"""`unihm hands list|show`: JSON output, the PNG, and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from unihm_core import cli
from unihm_core.hands.registry import BUILTIN_DIR, ENV_VAR

SHIPPED = sorted(yaml.safe_load(p.read_text())["id"] for p in BUILTIN_DIR.glob("*.yaml"))


@pytest.fixture(autouse=True)
def _isolated_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ENV_VAR, raising=False)


def _last_json(text: str) -> object:
    return json.loads(text.strip().splitlines()[-1])


def test_list_json_lists_every_hand(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hands", "list", "--json"]) == 0
    rows = _last_json(capsys.readouterr().out)
    assert isinstance(rows, list)
    assert [r["id"] for r in rows] == SHIPPED
    xhand = next(r for r in rows if r["id"] == "xhand_right")
    assert xhand["dof"] == len(xhand["joints"]) == 12 and xhand["side"] == "right"
    assert xhand["fingers"][0] == "thumb"
    assert xhand["fingertips"][0] == "right_hand_thumb_rota_tip"


def test_list_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hands", "list"]) == 0
    out = capsys.readouterr().out
    assert all(hand_id in out for hand_id in SHIPPED)


def test_show_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib.image

    png = tmp_path / "out" / "xhand.png"
    assert cli.main(["hands", "show", "xhand_right", "--png", str(png), "--json"]) == 0
    info = _last_json(capsys.readouterr().out)
    assert isinstance(info, dict)
    assert info["png"]["path"] == str(png) and info["png"]["geometry"] == "visual"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 500 and image.shape[1] > 1000
    # Non-trivial: the shaded meshes and coloured markers give many distinct colours.
    colours = np.unique((image[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200
    assert info["dof"] == 12 and len(info["joint_limits"]) == 12
    assert info["mimic"] == []
    roll, pitch, yaw = info["wrist_from_base"]["rpy"]
    assert (abs(roll), pitch, yaw) == pytest.approx((np.pi, 0.0, np.pi / 2), abs=1e-6)
    assert next(iter(info["finger_keypoints"])) == "thumb"


def test_show_prints_mimic_couplings(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hands", "show", "inspire_right", "--no-png", "--json"]) == 0
    info = _last_json(capsys.readouterr().out)
    assert isinstance(info, dict) and info["png"] is None
    mimic = {m["joint"]: m for m in info["mimic"]}
    assert mimic["thumb_distal_joint"]["leader"] == "thumb_proximal_pitch_joint"


def test_malformed_config_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((BUILTIN_DIR / "allegro_right.yaml").read_text())
    data["joints"][0] = "joint_99"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert cli.main(["hands", "show", "allegro_right", "--no-png"]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "'joints[0]'" in err and "joint_99" in err


def test_unknown_id_exits_1_without_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("unihm")
    out = subprocess.run([str(exe), "hands", "show", "xhand_rigth"], capture_output=True,
                         text=True, timeout=120, check=False, cwd=tmp_path)
    assert out.returncode == 1
    assert "unknown hand 'xhand_rigth'" in out.stderr and "Did you mean xhand_right" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert not list(tmp_path.glob("*.png"))
