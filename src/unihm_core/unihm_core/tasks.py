"""The closed task vocabulary shared by instructions, planners and datasets.

The ids are the TASK_* strings of ``unihm_msgs/TargetTrajectory`` (kept as plain strings so that
pure-Python code needs no generated message package).
"""

from __future__ import annotations

TASK_PICK_AND_PLACE = "pick_and_place"
TASK_LIFT = "lift"
TASK_PUSH = "push"
TASK_ROTATE = "rotate"
TASK_HANDOVER = "handover"
TASKS = (TASK_PICK_AND_PLACE, TASK_LIFT, TASK_PUSH, TASK_ROTATE, TASK_HANDOVER)
