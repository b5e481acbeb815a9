#!/bin/bash
# Source ROS 2, the Python venv and the UniHM workspace, then run the given command.
set -e
source "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
source "${UNIHM_VENV:-/opt/unihm/venv}/bin/activate"
source /opt/unihm/ws/install/setup.bash
exec "$@"
