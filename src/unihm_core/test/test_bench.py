"""`unihm bench kinematics --quick --json` runs end to end and reports every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from unihm_core.hands import hand_ids


def test_kinematics_benchmark_quick_json() -> None:
    exe = Path(sys.executable).with_name("unihm")
    out = subprocess.run([str(exe), "bench", "kinematics", "--quick", "--json"],
                         capture_output=True, text=True, timeout=240, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "kinematics"
    assert set(result["fk_jacobian"]) == set(hand_ids())
    for figures in result["fk_jacobian"].values():
        assert figures["batched_per_s"] > 0 and figures["pinocchio_loop_per_s"] > 0
    assert result["retargeting"]["xhand_right"]["fps"] > 0
    assert result["ik"]["frames_per_s"] > 0
    assert "[bench]" in out.stderr  # progress goes to stderr, the JSON line stays last


def test_unknown_benchmark_is_an_error() -> None:
    exe = Path(sys.executable).with_name("unihm")
    out = subprocess.run([str(exe), "bench", "warp-drive"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 2
    assert "invalid choice" in out.stderr
