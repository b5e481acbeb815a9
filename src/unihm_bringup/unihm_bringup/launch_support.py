"""What the launch files do, in one place: the graph of :mod:`unihm_bringup.graph` as
``launch_ros`` Node actions (one process per node), with launch arguments for the parameter
file and the camera topics. Imports ``launch`` only when called (it is not on PyPI)."""

from __future__ import annotations

from typing import Any

CAMERA_ARGUMENTS = {  # launch argument -> the perception node's default topic it remaps
    "color_topic": "/camera/color/image_raw",
    "depth_topic": "/camera/depth/image_raw",
    "camera_info_topic": "/camera/color/camera_info",
}


def graph_launch_description(mode: str) -> Any:
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from unihm_bringup.graph import config_dir, node_graph

    default_params = str(config_dir() / ("real_franka_xhand.yaml" if mode == "real"
                                         else "sim.yaml"))
    arguments = [DeclareLaunchArgument("params_file", default_value=default_params,
                                       description="ROS 2 parameter YAML of every node")]
    arguments += [DeclareLaunchArgument(name, default_value=topic,
                                        description=f"camera topic remapped onto {topic}")
                  for name, topic in CAMERA_ARGUMENTS.items()]
    if mode in ("sim", "replay"):
        arguments.append(DeclareLaunchArgument("bag", default_value="",
                                               description="camera bag to stream"))

    def nodes(context: Any) -> list[Any]:
        def value(name: str) -> str:
            return LaunchConfiguration(name).perform(context)

        remaps = {topic: value(name) for name, topic in CAMERA_ARGUMENTS.items()
                  if value(name) != topic}
        overrides = {"unihm_camera": {"bag": value("bag")}} if mode == "sim" else None
        actions = []
        for spec in node_graph(mode, value("params_file"), overrides, remaps):
            actions.append(Node(package=spec.package, executable=spec.executable,
                                name=spec.name, output="screen",
                                parameters=[value("params_file"), spec.parameters],
                                remappings=list(spec.remappings),
                                arguments=list(spec.arguments)))
        return actions

    return LaunchDescription([*arguments, OpaqueFunction(function=nodes)])
