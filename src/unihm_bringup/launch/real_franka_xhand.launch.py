"""`ros2 launch unihm_bringup real_franka_xhand.launch.py`: the UniHM 'real' graph (see
unihm_bringup.graph, which `unihm run real` starts too). Arguments: params_file,
color_topic, depth_topic, camera_info_topic."""

from unihm_bringup.launch_support import graph_launch_description


def generate_launch_description():
    return graph_launch_description("real")
