"""The node graph of each deployment, described once (ROS-free).

The launch files (``launch/*.launch.py``) and ``unihm run sim|real|replay`` both read this
description, so the two ways of starting UniHM cannot drift apart: the same nodes, the same
YAML parameter files (``config/``), the same remappings. ``unihm run`` starts the nodes in one
process on a multithreaded executor; ``ros2 launch`` starts one process per node.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MODES = ("sim", "real", "replay")


@dataclass(frozen=True)
class NodeSpec:
    """One node: how launch runs it (package + executable) and how ``unihm run`` builds it."""

    name: str
    package: str
    executable: str
    factory: str  # "module:callable" (name, parameters) -> Node, see node_factories
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()  # command-line arguments of the executable


def config_dir() -> Path:
    """``config/`` of unihm_bringup: the source tree's, else the installed share folder's."""
    here = Path(__file__).resolve().parent.parent / "config"
    if here.is_dir():
        return here
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("unihm_bringup")) / "config"


def launch_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "launch"
    if here.is_dir():
        return here
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("unihm_bringup")) / "launch"


class GraphConfigError(ValueError):
    """A parameter file that is missing, unreadable or not in ROS 2's YAML layout."""


def load_parameters(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``{node name: {parameter: value}}`` from a ROS 2 parameter YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise GraphConfigError(f"cannot read parameters {path}: {e}") from e
    if not isinstance(data, dict):
        raise GraphConfigError(f"{path}: expected a mapping of node names")
    out: dict[str, dict[str, Any]] = {}
    for node, body in data.items():
        params = (body or {}).get("ros__parameters") if isinstance(body, dict) else None
        if not isinstance(params, dict):
            raise GraphConfigError(f"{path}: node {node!r} has no 'ros__parameters' mapping")
        out[str(node).lstrip("/")] = params
    return out


_FACTORIES = "unihm_bringup.node_factories:"


def _driver(name: str, params: dict[str, Any]) -> NodeSpec:
    return NodeSpec(name, "unihm_bringup", "unihm_sim_driver", _FACTORIES + "sim_driver",
                    params)


def _pipeline(params: dict[str, dict[str, Any]], remappings: tuple[tuple[str, str], ...]
              ) -> list[NodeSpec]:
    return [
        NodeSpec("unihm_perception", "unihm_perception", "unihm_perception_node",
                 _FACTORIES + "perception", params.get("unihm_perception", {}), remappings),
        NodeSpec("unihm_generator", "unihm_generator", "unihm_generator_node",
                 _FACTORIES + "generator", params.get("unihm_generator", {})),
        NodeSpec("unihm_refiner", "unihm_refiner", "unihm_refiner_node",
                 _FACTORIES + "refiner", params.get("unihm_refiner", {})),
        NodeSpec("unihm_executive", "unihm_bringup", "unihm_executive",
                 _FACTORIES + "executive", params.get("unihm_executive", {})),
    ]


def node_graph(mode: str, parameters_file: str | os.PathLike[str] | None = None,
               overrides: dict[str, dict[str, Any]] | None = None,
               remappings: dict[str, str] | None = None) -> list[NodeSpec]:
    """The nodes of ``mode`` with their parameters: the mode's YAML file (or the given one),
    then ``overrides`` per node name on top. ``remappings`` (topic -> topic) apply to the
    perception node's camera subscriptions."""
    if mode not in MODES:
        raise GraphConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    file = Path(parameters_file) if parameters_file else config_dir() / f"{_CONFIG[mode]}"
    params = load_parameters(file)
    for node, values in (overrides or {}).items():
        params.setdefault(node, {}).update(values)
    nodes = _pipeline(params, tuple(sorted(remappings.items())) if remappings else ())
    if mode in ("sim", "replay"):
        nodes += [_driver("unihm_sim_arm", params.get("unihm_sim_arm", {})),
                  _driver("unihm_sim_hand", params.get("unihm_sim_hand", {}))]
    if mode == "sim":  # in replay, `unihm replay BAG` streams the camera frames
        camera = params.get("unihm_camera", {})
        nodes.append(NodeSpec(
            "unihm_camera", "unihm_core", "unihm", _FACTORIES + "camera_player", camera,
            arguments=("play", str(camera.get("bag", "")), "--mode",
                       str(camera.get("mode", "hold")), "--rate",
                       str(camera.get("rate_hz", 10.0)))))
    if mode == "real":
        nodes.append(NodeSpec("unihm_xhand_adapter", "unihm_bringup", "unihm_xhand_adapter",
                              _FACTORIES + "xhand_adapter",
                              params.get("unihm_xhand_adapter", {})))
    return nodes


_CONFIG = {"sim": "sim.yaml", "real": "real_franka_xhand.yaml", "replay": "sim.yaml"}


def build_node(spec: NodeSpec) -> Any:
    """The rclpy node of ``spec`` (rclpy must be initialised)."""
    module, _, attr = spec.factory.partition(":")
    return getattr(importlib.import_module(module), attr)(spec.name, spec.parameters)
