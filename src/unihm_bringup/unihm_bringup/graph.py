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
    factory: str  # "module:callable" taking parameter_overrides=[rclpy Parameter]
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()


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


def _driver(name: str, params: dict[str, Any]) -> NodeSpec:
    return NodeSpec(name, "unihm_bringup", "unihm_sim_driver",
                    "unihm_bringup.drivers.sim_driver:make_node", params)


def _pipeline(params: dict[str, dict[str, Any]]) -> list[NodeSpec]:
    return [
        NodeSpec("unihm_perception", "unihm_perception", "unihm_perception_node",
                 "unihm_perception.node:PerceptionNode", params.get("unihm_perception", {})),
        NodeSpec("unihm_generator", "unihm_generator", "unihm_generator_node",
                 "unihm_generator.node:GeneratorNode", params.get("unihm_generator", {})),
        NodeSpec("unihm_refiner", "unihm_refiner", "unihm_refiner_node",
                 "unihm_refiner.node:RefinerNode", params.get("unihm_refiner", {})),
        NodeSpec("unihm_executive", "unihm_bringup", "unihm_executive",
                 "unihm_bringup.executive:Executive", params.get("unihm_executive", {})),
    ]


def node_graph(mode: str, parameters_file: str | os.PathLike[str] | None = None,
               overrides: dict[str, dict[str, Any]] | None = None) -> list[NodeSpec]:
    """The nodes of ``mode`` with their parameters: the mode's YAML file (or the given one),
    then ``overrides`` per node name on top."""
    if mode not in MODES:
        raise GraphConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    file = Path(parameters_file) if parameters_file else config_dir() / f"{_CONFIG[mode]}"
    params = load_parameters(file)
    for node, values in (overrides or {}).items():
        params.setdefault(node, {}).update(values)
    nodes = _pipeline(params)
    if mode in ("sim", "replay"):
        nodes += [_driver("unihm_sim_arm", params.get("unihm_sim_arm", {})),
                  _driver("unihm_sim_hand", params.get("unihm_sim_hand", {})),
                  NodeSpec("unihm_camera", "unihm_bringup", "unihm_bag_player",
                           "unihm_bringup.bags.player:make_node",
                           params.get("unihm_camera", {}))]
    else:
        nodes.append(NodeSpec("unihm_xhand_adapter", "unihm_bringup", "unihm_xhand_adapter",
                              "unihm_bringup.drivers.xhand_adapter:make_node",
                              params.get("unihm_xhand_adapter", {})))
    return nodes


_CONFIG = {"sim": "sim.yaml", "real": "real_franka_xhand.yaml", "replay": "sim.yaml"}


def factory(spec: NodeSpec) -> Any:
    module, _, attr = spec.factory.partition(":")
    return getattr(importlib.import_module(module), attr)
