"""`ros2 launch unihm_bringup sim.launch.py`: the UniHM 'sim' graph (see unihm_bringup.graph,
which `unihm run sim` starts too). Arguments: params_file, color_topic, depth_topic,
camera_info_topic, bag."""

from unihm_bringup.launch_support import graph_launch_description


def generate_launch_description():
    return graph_launch_description("sim")
