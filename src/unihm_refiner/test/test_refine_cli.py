"""`unihm refine` end to end, its one-line errors, and `unihm bench refiner --quick --json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from unihm_core.cli import main
from unihm_refiner.scenario import grasp_scenario

HAND, OBJECT = "xhand_right", "006_mustard_bottle"
FRAMES = 12


@pytest.fixture(scope="module")
def scenario():
    return grasp_scenario(HAND, OBJECT, frames=FRAMES, n_points=512)


@pytest.fixture()
def good(tmp_path: Path, scenario) -> dict[str, np.ndarray]:
    return {"wrist_poses": scenario.wrist_poses, "q": scenario.q,
            "object_poses": scenario.target_poses, "fps": np.array(30.0)}


def _write(tmp_path: Path, arrays: dict[str, np.ndarray], name: str = "in.npz") -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _refine(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["refine", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_demo_writes_refined_trajectory(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo.npz"
    code, stdout, _ = _refine(capsys, "--demo", "--frames", "20", "--out", str(out), "--json")
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["frames"] == 20
    assert summary["after"]["penetration_mean_mm"] < summary["before"]["penetration_mean_mm"]
    with np.load(out) as data:
        assert data["q"].shape == (20, 12) and data["wrist_poses"].shape == (20, 4, 4)
        assert data["energy_after/total"].sum() < data["energy_before/total"].sum()
        assert data["iterations"].shape == (20,)
    assert "penetration mean (mm)" in stdout


def test_retarget_layout_quaternions_and_fingers_only(tmp_path: Path, capsys,
                                                      scenario) -> None:
    inp = _write(tmp_path, {f"{HAND}/q": scenario.q, f"{HAND}/wrist_poses": scenario.wrist_poses,
                            "object_poses": scenario.target_poses})
    out = tmp_path / "out.npz"
    code, _, err = _refine(capsys, inp, "--hand", HAND, "--object", OBJECT, "--out", str(out),
                           "--fingers-only")
    assert code == 0, err
    with np.load(out) as data:
        np.testing.assert_allclose(data["wrist_poses"], scenario.wrist_poses)
    quat = Rotation.from_matrix(scenario.wrist_poses[:, :3, :3]).as_quat()
    inp = _write(tmp_path, {"q": scenario.q, "wrist_pos": scenario.wrist_poses[:, :3, 3],
                            "wrist_quat_xyzw": quat, "object_poses": scenario.target_poses[0]},
                 "quat.npz")
    code, _, err = _refine(capsys, inp, "--hand", HAND, "--object", OBJECT, "--out", str(out))
    assert code == 0, err


def test_object_from_cloud_file(tmp_path: Path, capsys, good, scenario) -> None:
    cloud = tmp_path / "cloud.npz"
    np.savez(cloud, points=scenario.surface.points, normals=scenario.surface.normals)
    code, _, err = _refine(capsys, _write(tmp_path, good), "--hand", HAND, "--object", str(cloud),
                           "--out", str(tmp_path / "o.npz"))
    assert code == 0, err


def _bad_cases(tmp_path: Path, good: dict[str, np.ndarray]) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments after the input, expected words of the error)."""
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    nan_q = dict(good, q=good["q"].copy())
    nan_q["q"][3, 2] = np.nan
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 3)))
    nan_cloud = tmp_path / "nan.npy"
    np.save(nan_cloud, np.full((50, 3), np.nan))
    ok = _write(tmp_path, good, "ok.npz")
    obj = ["--hand", HAND, "--object", OBJECT]
    return {
        "missing file": ([str(tmp_path / "nope.npz"), *obj], "does not exist"),
        "unreadable": ([str(garbage), *obj], "cannot read"),
        "no q": ([_write(tmp_path, {"wrist_poses": good["wrist_poses"]}, "a.npz"), *obj],
                 "no 'q'"),
        "no wrist": ([_write(tmp_path, {"q": good["q"]}, "b.npz"), *obj], "wrist_poses"),
        "frames": ([_write(tmp_path, dict(good, wrist_poses=good["wrist_poses"][:-1]), "c.npz"),
                    *obj], "match"),
        "object frames": ([_write(tmp_path, dict(good, object_poses=good["object_poses"][:3]),
                                  "d.npz"), *obj], "object_poses"),
        "dof": ([_write(tmp_path, dict(good, q=good["q"][:, :-1]), "e.npz"), *obj],
                "11 joints"),
        "nan": ([_write(tmp_path, nan_q, "f.npz"), *obj], "NaN"),
        "hand": ([ok, "--hand", "no_such_hand", "--object", OBJECT], "unknown hand"),
        "object": ([ok, "--hand", HAND, "--object", "999_nothing"], "unknown object"),
        "empty cloud": ([ok, "--hand", HAND, "--object", str(empty)], "empty"),
        "nan cloud": ([ok, "--hand", HAND, "--object", str(nan_cloud)], "non-finite"),
        "no input": (["--hand", HAND, "--object", OBJECT], "missing IN.npz"),
    }


def test_bad_inputs_exit_1_with_one_line(tmp_path: Path, capsys, good) -> None:
    out = str(tmp_path / "never.npz")
    for name, (args, words) in _bad_cases(tmp_path, good).items():
        code, _, err = _refine(capsys, *args, "--out", out)
        lines = err.strip().splitlines()
        assert code == 1, name
        assert len(lines) == 1 and lines[0].startswith("unihm refine: error:"), (name, err)
        assert words in lines[0], (name, lines[0])
        assert "Traceback" not in err
    assert not Path(out).exists()


def test_bench_refiner_quick_json() -> None:
    proc = subprocess.run([sys.executable, "-m", "unihm_core.cli", "bench", "refiner", "--quick",
                           "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("refiner_fps", "scipy_fps", "speedup", "energy_ratio", "jitter_reduction_pct",
                "energy_mismatch", "before", "after"):
        assert key in result
    assert result["after"]["penetration_mean_mm"] < result["before"]["penetration_mean_mm"]
    assert np.isfinite(result["energy_ratio"]) and result["energy_ratio"] > 0


def test_baseline_residuals_match_solver_energy(scenario) -> None:
    from unihm_refiner.benchmark import scipy_refine
    from unihm_refiner.solver import Refiner

    refiner = Refiner(HAND)
    base = scipy_refine(refiner, scenario.wrist_poses, scenario.q, scenario.surface,
                        scenario.target_poses)
    assert base["energy_mismatch"] < 1e-9
    assert base["q"].shape == scenario.q.shape
