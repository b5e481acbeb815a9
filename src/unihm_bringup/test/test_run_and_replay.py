"""What a user types, as separate processes: `unihm run replay --bag`, `unihm replay` of a
rendered scene (recording the run), `unihm replay` of that recording (comparing against it),
`unihm manipulate`, and Ctrl-C of the graph, which must stop cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

pytestmark = pytest.mark.ros
INSTRUCTION = "pick up the mustard bottle"


def _unihm(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unihm", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_run_replay_record_compare_and_stop(tmp_path: Path) -> None:
    from unihm_bringup.run_cli import render_sim_bag

    scene = render_sim_bag(tmp_path / "scene")
    env = {**os.environ, "MUJOCO_GL": "egl"}
    graph = subprocess.Popen(["unihm", "run", "replay", "--bag", str(scene)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert graph.stdout is not None
        deadline = time.monotonic() + 180
        line = ""
        while time.monotonic() < deadline:
            line = graph.stdout.readline()
            if line.startswith("ready") or not line:
                break
        assert line.startswith("ready"), graph.stderr.read() if graph.poll() is not None else ""
        assert "unihm_camera" not in line  # replay: `unihm replay` brings the frames

        first = _unihm("replay", str(scene), "--instruction", INSTRUCTION,
                       "--out", str(tmp_path / "run1"), "--timeout", "60")
        assert first.returncode == 0, first.stdout + first.stderr
        assert '"status": "succeeded"' in first.stdout, first.stdout
        assert (tmp_path / "run1").is_dir()

        second = _unihm("replay", str(tmp_path / "run1"), "--out", str(tmp_path / "run2"),
                        "--timeout", "60")
        assert second.returncode == 0, second.stdout + second.stderr
        report = second.stdout
        assert INSTRUCTION in report and "006_mustard_bottle" in report

        # the replays have ended: the camera is silent, and the goal says so
        stale = _unihm("manipulate", INSTRUCTION, "--json", "--timeout", "60")
        out = _last_json(stale.stdout)
        assert stale.returncode == 2 and not out["success"]
        assert out["failed_stage"] == "perceiving"
        assert "stale camera data" in out["message"]
    finally:
        graph.send_signal(signal.SIGINT)
        try:
            _, err = graph.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            graph.kill()
            _, err = graph.communicate()
            pytest.fail(f"unihm run did not stop on SIGINT:\n{err[-2000:]}")
    assert graph.returncode == 0, err[-2000:]
    assert "Traceback" not in err, err[-3000:]


def test_manipulate_without_a_server_says_so() -> None:
    done = _unihm("manipulate", INSTRUCTION, "--server-wait", "1", timeout=60)
    assert done.returncode == 1
    assert "no Manipulate server at /unihm/manipulate" in done.stderr


@pytest.mark.parametrize(("params", "message"), [
    (["ik_backend:=ikfast"], "error: ik_backend must be one of pinocchio, moveit, got 'ikfast'"),
    (["ik_backend:=moveit", "moveit_ik_timeout_s:=0.0"], "error: moveit timeout_s must be > 0"),
])
def test_a_bad_parameter_stops_a_node_with_a_clear_error(params: list[str], message: str
                                                         ) -> None:
    args = [a for p in params for a in ("-p", p)]
    done = subprocess.run(["unihm_executive", "--ros-args", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr
    assert "Traceback" not in done.stderr
