"""ROS 2 interface type hashes (REP 2011, RIHS01) of the interfaces we exchange with other
people's software, and a reader for the hashes an installed interface package declares.

A joint_trajectory_controller accepts our goals only when our control_msgs types hash like the
ones it was built with; these are the hashes of control_msgs as released for ROS 2 Jazzy.
"""

from __future__ import annotations

import json
from pathlib import Path

PUBLISHED_CONTROL_MSGS_HASHES: dict[str, str] = {
    "control_msgs/action/FollowJointTrajectory":
        "RIHS01_738ebcb7a2d7cfa42f9f1001cc99ce3a4383d1cfe508015d9be8485e4b1c66f6",
    "control_msgs/action/FollowJointTrajectory_Goal":
        "RIHS01_8a9060704b269608f5a340934cc26e66869dd14bdac29e2e7fd9ec8b9882d205",
    "control_msgs/action/FollowJointTrajectory_Result":
        "RIHS01_8002e99ed2c14c6faa522f2a93c26d744c5982f254f9e98ff9c6f19789bdb220",
    "control_msgs/action/FollowJointTrajectory_Feedback":
        "RIHS01_3fd0aaecf71725121ae1ff7f01098a5e0da581e672be18a6b2c286cb43d96b49",
    "control_msgs/action/FollowJointTrajectory_SendGoal":
        "RIHS01_b13789dddc325a7a962825c45e28c77d37237ec129dd0c34dc5994562938c57f",
    "control_msgs/action/FollowJointTrajectory_GetResult":
        "RIHS01_e3ceb38e3e1867c8dc0f46014df26e90eb93422f27e9e97f936e07f94be4bc8b",
    "control_msgs/action/FollowJointTrajectory_FeedbackMessage":
        "RIHS01_80398fcb9674a79081a9906e2ccf0c804dd7cb15e22e362e606ee87186beab71",
    "control_msgs/msg/JointTolerance":
        "RIHS01_c254f9cece0f3b733017b6990fd46d1326e25242d6b8844398c97d9a88e7d648",
    "control_msgs/msg/JointComponentTolerance":
        "RIHS01_739ea7566931944d33830fa10f1bf5e7a7fbdc3172bce7a7eaac642bd6e3ffa4",
}


def package_prefix_of_module(module_file: str | Path) -> Path:
    """Install prefix of an interface package from its Python module's ``__init__.py``.

    Interface packages install Python code in ``<prefix>/lib/pythonX.Y/site-packages/<pkg>``
    and their type descriptions in ``<prefix>/share/<pkg>``, for a venv and /opt/ros alike.
    """
    return Path(module_file).resolve().parents[4]


def installed_type_hashes(prefix: Path, package: str, kind: str, name: str) -> dict[str, str]:
    """All type hashes that ``<prefix>/share/<package>/<kind>/<name>.json`` declares.

    Raises FileNotFoundError when the package was built without type descriptions
    (ROS 2 releases before Jazzy).
    """
    path = prefix / "share" / package / kind / f"{name}.json"
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    return {h["type_name"]: h["hash_string"] for h in data["type_hashes"]}


def control_msgs_hash_mismatches(prefix: Path) -> list[str]:
    """Published control_msgs types whose installed hash differs (empty list = compatible)."""
    installed = installed_type_hashes(prefix, "control_msgs", "action", "FollowJointTrajectory")
    installed.update(installed_type_hashes(prefix, "control_msgs", "msg", "JointTolerance"))
    installed.update(
        installed_type_hashes(prefix, "control_msgs", "msg", "JointComponentTolerance"))
    return [
        f"{name}: installed {installed.get(name, 'missing')}, published {expected}"
        for name, expected in PUBLISHED_CONTROL_MSGS_HASHES.items()
        if installed.get(name) != expected
    ]
