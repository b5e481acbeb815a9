"""Our interfaces: the fields other components rely on, type hashes, and wire compatibility.

Type hashes are computed twice, independently: by rosidl when the package was built (the JSON
type descriptions it installs) and by rosbags from the .msg/.srv/.action sources. The control_msgs
subset must also hash exactly like the control_msgs released for ROS 2 Jazzy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from unihm_core.interface_hashes import (
    PUBLISHED_CONTROL_MSGS_HASHES,
    control_msgs_hash_mismatches,
    installed_type_hashes,
    package_prefix_of_module,
)

ROOT = Path(__file__).resolve().parents[3]
UNIHM_MSGS = ROOT / "src" / "unihm_msgs"
COMPAT_CONTROL_MSGS = ROOT / "compat" / "control_msgs"


def _definitions(pkg_dir: Path, package: str) -> dict[str, str]:
    """Type name -> message text for every msg, and every part of every srv and action."""
    parts = {"msg": [""], "srv": ["_Request", "_Response"], "action": ["_Goal", "_Result",
                                                                       "_Feedback"]}
    out = {}
    for kind, suffixes in parts.items():
        for path in sorted((pkg_dir / kind).glob(f"*.{kind}")):
            sections = path.read_text().split("\n---\n")
            assert len(sections) == len(suffixes), f"{path.name}: expected {len(suffixes)} parts"
            for suffix, text in zip(suffixes, sections, strict=True):
                out[f"{package}/{kind}/{path.stem}{suffix}"] = text
    return out


def _typestore(pkg_dir: Path, package: str) -> tuple[object, list[str]]:
    """A rosbags Jazzy type store that also knows every type of the package's sources."""
    store = get_typestore(Stores.ROS2_JAZZY)
    defs = _definitions(pkg_dir, package)
    for name, text in defs.items():
        # rosbags files srv/action parts under "<pkg>/<kind>/msg/<Name>"; rosidl (and so the
        # hash, which covers the type name) uses "<pkg>/<kind>/<Name>".
        (parsed,) = get_types_from_msg(text, name).values()
        store.register({name: parsed})
    return store, list(defs)


def _rosbags_hashes(pkg_dir: Path, package: str) -> dict[str, str]:
    store, names = _typestore(pkg_dir, package)
    return {name: store.hash_rihs01(name) for name in names}


def test_control_msgs_sources_hash_like_jazzy() -> None:
    computed = _rosbags_hashes(COMPAT_CONTROL_MSGS, "control_msgs")
    for name, expected in PUBLISHED_CONTROL_MSGS_HASHES.items():
        if name in computed:
            assert computed[name] == expected, name
    assert {"control_msgs/action/FollowJointTrajectory_Goal",
            "control_msgs/msg/JointTolerance"} <= computed.keys()


def test_installed_control_msgs_hash_like_jazzy() -> None:
    import control_msgs

    assert control_msgs_hash_mismatches(package_prefix_of_module(control_msgs.__file__)) == []


def test_unihm_msgs_hashes_agree_between_rosidl_and_rosbags() -> None:
    import unihm_msgs

    prefix = package_prefix_of_module(unihm_msgs.__file__)
    computed = _rosbags_hashes(UNIHM_MSGS, "unihm_msgs")
    for name, rosbags_hash in computed.items():
        _, kind, type_name = name.split("/")
        base = type_name.rsplit("_", 1)[0] if kind in ("srv", "action") else type_name
        built = installed_type_hashes(prefix, "unihm_msgs", kind, base)
        assert built[name] == rosbags_hash, name


def _fields(cls: type) -> dict[str, str]:
    return cls.get_fields_and_field_types()


def test_manipulate_action_fields() -> None:
    from unihm_msgs.action import Manipulate

    goal = _fields(Manipulate.Goal)
    assert {"instruction": "string", "hands": "sequence<string>", "execute": "boolean"}.items() \
        <= goal.items()
    result = _fields(Manipulate.Result)
    assert result["success"] == "boolean" and result["message"] == "string"
    assert result["hand_trajectories"] == "sequence<unihm_msgs/HandTrajectory>"
    assert result["arm_trajectory"] == "trajectory_msgs/JointTrajectory"
    assert result["metrics"] == "sequence<unihm_msgs/Metric>"
    feedback = _fields(Manipulate.Feedback)
    assert feedback["stage"] == "string" and feedback["progress"] == "float"
    assert [Manipulate.Feedback.STAGE_PERCEIVING, Manipulate.Feedback.STAGE_GENERATING,
            Manipulate.Feedback.STAGE_REFINING, Manipulate.Feedback.STAGE_VALIDATING,
            Manipulate.Feedback.STAGE_EXECUTING] == ["perceiving", "generating", "refining",
                                                     "validating", "executing"]


@pytest.mark.parametrize("type_name", ["HandTrajectory", "TargetTrajectory", "ObjectObservation"])
def test_pipeline_messages_carry_a_request_id(type_name: str) -> None:
    import unihm_msgs.msg

    fields = _fields(getattr(unihm_msgs.msg, type_name))
    assert fields["request_id"] == "string"
    assert fields["header"] == "std_msgs/Header"


def test_hand_trajectory_written_by_rosbags_reads_in_rclpy() -> None:
    """What bag tools write from our .msg sources (rosbags CDR) our nodes read (rclpy)."""
    import numpy as np
    from rclpy.serialization import deserialize_message

    from unihm_msgs.msg import HandTrajectory

    store, _ = _typestore(UNIHM_MSGS, "unihm_msgs")
    t = store.types
    stamp = t["builtin_interfaces/msg/Time"](sec=12, nanosec=5)
    header = t["std_msgs/msg/Header"](stamp=stamp, frame_id="world")
    empty = np.array([], dtype=np.float64)
    points = [t["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=np.array([i * 0.5, -i * 0.25]), velocities=empty, accelerations=empty,
        effort=empty, time_from_start=t["builtin_interfaces/msg/Duration"](sec=i, nanosec=0))
        for i in range(3)]
    joints = t["trajectory_msgs/msg/JointTrajectory"](header=header, joint_names=["j0", "j1"],
                                                      points=points)
    poses = [t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.1 * i),
        orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
        for i in range(3)]
    bag_msg = t["unihm_msgs/msg/HandTrajectory"](
        header=header, request_id="r-7", hand_id="allegro_right",
        source=HandTrajectory.SOURCE_REFINED, wrist_frame="palm", wrist_poses=poses,
        joint_trajectory=joints, tokens=np.array([5, 4095], dtype=np.uint32),
        frames_per_token=4)
    raw = bytes(store.serialize_cdr(bag_msg, "unihm_msgs/msg/HandTrajectory"))

    msg = deserialize_message(raw, HandTrajectory)
    assert (msg.request_id, msg.hand_id, msg.wrist_frame) == ("r-7", "allegro_right", "palm")
    assert (msg.header.stamp.sec, msg.header.frame_id) == (12, "world")
    assert msg.source == HandTrajectory.SOURCE_REFINED
    assert list(msg.tokens) == [5, 4095] and msg.frames_per_token == 4
    assert [list(p.positions) for p in msg.joint_trajectory.points] == [
        [0.0, 0.0], [0.5, -0.25], [1.0, -0.5]]
    assert msg.joint_trajectory.points[2].time_from_start.sec == 2
    assert msg.wrist_poses[2].position.z == pytest.approx(0.2)


def test_importable_from_the_venv_without_sourcing_anything(tmp_path: Path) -> None:
    """`.venv/bin/python -c "from unihm_msgs.action import Manipulate"` in a bare shell."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "LD_LIBRARY_PATH",
                        "VIRTUAL_ENV", "PYTHONPATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE")}
    code = ("from unihm_msgs.action import Manipulate\n"
            "from control_msgs.action import FollowJointTrajectory\n"
            "print(Manipulate.Goal(instruction='x').instruction)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "x"
