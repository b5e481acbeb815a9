"""The launch files start exactly the graph `unihm run` starts (unihm_bringup.graph).

`launch`/`launch_ros` are not installable here, so the test gives the launch files minimal
stand-ins of the few classes they use, which only record their arguments, runs
``generate_launch_description()`` and resolves its OpaqueFunction; the recorded Node actions
must match the graph description node for node (package, executable, name, parameters,
remappings, arguments), with and without remapped camera topics.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from unihm_bringup.graph import config_dir, launch_dir, node_graph

LAUNCH_FILES = {"real_franka_xhand.launch.py": "real", "sim.launch.py": "sim",
                "replay.launch.py": "replay"}


class _Recorder:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: dict[str, str]) -> str:
        return context[self.name]


@pytest.fixture
def fake_launch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    modules = {name: types.ModuleType(name) for name in (
        "launch", "launch.actions", "launch.substitutions", "launch_ros",
        "launch_ros.actions")}
    modules["launch"].LaunchDescription = list
    modules["launch.actions"].DeclareLaunchArgument = type("DeclareLaunchArgument",
                                                           (_Recorder,), {})
    modules["launch.actions"].OpaqueFunction = type("OpaqueFunction", (_Recorder,), {})
    modules["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    modules["launch_ros.actions"].Node = type("Node", (_Recorder,), {})
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    yield


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nodes(file: str, **arguments: str) -> tuple[list[Any], dict[str, str]]:
    entities = _load(launch_dir() / file).generate_launch_description()
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities
                if type(e).__name__ == "DeclareLaunchArgument"}
    context = {**declared, **arguments}
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    return opaque.kwargs["function"](context), context


@pytest.mark.parametrize("file", sorted(LAUNCH_FILES))
def test_launch_file_starts_the_described_graph(fake_launch: None, file: str) -> None:
    mode = LAUNCH_FILES[file]
    extra = {"bag": "/data/scene"} if mode != "real" else {}
    nodes, context = _nodes(file, **extra)
    overrides = {"unihm_camera": {"bag": "/data/scene"}} if mode == "sim" else None
    expected = node_graph(mode, context["params_file"], overrides)
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in expected]
    for node, spec in zip(nodes, expected, strict=True):
        assert node.kwargs["package"] == spec.package
        assert node.kwargs["executable"] == spec.executable
        assert node.kwargs["parameters"] == [context["params_file"], spec.parameters]
        assert node.kwargs["remappings"] == []
        assert node.kwargs["arguments"] == list(spec.arguments)
    expected_file = "real_franka_xhand.yaml" if mode == "real" else "sim.yaml"
    assert Path(context["params_file"]) == config_dir() / expected_file


def test_camera_topics_are_remappable(fake_launch: None) -> None:
    nodes, _ = _nodes("real_franka_xhand.launch.py",
                      color_topic="/rs/color", depth_topic="/rs/depth")
    perception = next(n for n in nodes if n.kwargs["name"] == "unihm_perception")
    assert sorted(perception.kwargs["remappings"]) == [
        ("/camera/color/image_raw", "/rs/color"), ("/camera/depth/image_raw", "/rs/depth")]
    others = [n for n in nodes if n.kwargs["name"] != "unihm_perception"]
    assert all(n.kwargs["remappings"] == [] for n in others)


def test_every_graph_executable_is_installed() -> None:
    import shutil

    for mode in ("sim", "real"):
        for spec in node_graph(mode):
            assert shutil.which(spec.executable), f"{spec.executable} is not on PATH"


def test_real_graph_drives_the_franka_controller_and_the_xhand_adapter() -> None:
    specs = {s.name: s for s in node_graph("real")}
    assert "unihm_xhand_adapter" in specs and "unihm_sim_arm" not in specs
    executive = specs["unihm_executive"].parameters
    assert executive["arm_action"] == "/fr3_arm_controller/follow_joint_trajectory"
    assert executive["hand_action"] == "/unihm_xhand_adapter/follow_joint_trajectory"
    assert executive["arm"] == "franka_fr3"


def test_the_real_graphs_executive_commands_franka_ros2s_fr3_joints() -> None:
    rclpy = pytest.importorskip("rclpy")
    from unihm_bringup.graph import build_node

    specs = {s.name: s for s in node_graph("real")}
    rclpy.init()
    try:
        node = build_node(specs["unihm_executive"])
        try:
            assert node.planner.arm_joint_names == [f"fr3_joint{i}" for i in range(1, 8)]
            assert node.planner.arm_limits.velocity[4] == pytest.approx(5.26)
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
