"""One way to build every node of the graph: ``factory(name, parameters) -> Node``.

The nodes come from different packages with their own constructors; these adapters give
``unihm run`` (and tests) a single call per :class:`~unihm_bringup.graph.NodeSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rclpy.node import Node
from rclpy.parameter import Parameter


def ros_parameters(values: Mapping[str, Any]) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


def perception(name: str, params: Mapping[str, Any]) -> Node:
    from unihm_perception.node import PerceptionNode

    return PerceptionNode(node_name=name, parameter_overrides=ros_parameters(params))


def generator(name: str, params: Mapping[str, Any]) -> Node:
    from unihm_generator.node import GeneratorNode

    return GeneratorNode(node_name=name, parameter_overrides=ros_parameters(params))


def refiner(name: str, params: Mapping[str, Any]) -> Node:
    from unihm_refiner.node import RefinerNode

    return RefinerNode(node_name=name, parameter_overrides=ros_parameters(params))


def executive(name: str, params: Mapping[str, Any]) -> Node:
    from unihm_bringup.executive import Executive

    return Executive(node_name=name, parameter_overrides=ros_parameters(params))


def sim_driver(name: str, params: Mapping[str, Any]) -> Node:
    from unihm_bringup.drivers.sim_driver import make_node

    return make_node(dict(params), node_name=name)


def xhand_adapter(name: str, params: Mapping[str, Any]) -> Node:
    from unihm_bringup.drivers.xhand_adapter import make_node

    return make_node(dict(params), node_name=name)


def camera_player(name: str, params: Mapping[str, Any]) -> Node:
    """Streams a camera bag (``bag``; ``mode`` hold|once|loop, ``rate_hz``)."""
    from unihm_bringup.bags.player import CameraPlayer, read_camera_messages

    bag = params.get("bag")
    if not bag:
        raise ValueError(f"{name}: parameter 'bag' (the camera bag to stream) is not set")
    return CameraPlayer(read_camera_messages(bag), mode=str(params.get("mode", "hold")),
                        rate_hz=float(params.get("rate_hz", 10.0)), node_name=name)
