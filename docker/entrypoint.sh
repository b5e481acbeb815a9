#!/bin/bash
# Source ROS 2, the Python venv and the UniHM workspace, then run the given command.
set -e
source "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
source "${UNIHM_VENV:-/opt/unihm/venv}/bin/activate"
source /opt/unihm/ws/install/setup.bash
# ament_python installs console scripts under lib/<package>; put the unihm CLI on PATH.
export PATH="/opt/unihm/ws/install/lib/unihm_core:${PATH}"
exec "$@"
