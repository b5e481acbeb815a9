"""The rosbags type store of our bags and CDR normalisation, without rclpy.

Bags are written and read with ``rosbags``: the ROS 2 Jazzy type store plus every message and
action type installed by ``unihm_msgs`` and ``control_msgs`` (parsed from their ``.msg`` and
``.action`` files, so the RIHS01 hashes in the bag metadata are the ones rosidl published).

rclpy (Fast CDR) sizes a serialized message by its worst-case alignment: every empty sequence of
8-byte values (``JointTrajectoryPoint.velocities``, ``JointState.effort``, ...) adds up to 4
bytes of uninitialised padding after the last field. The content is laid out exactly as rosbags
expects, but rosbags rejects a message with more than 3 trailing bytes ("CDR message size
mismatch"). ``normalize_cdr`` keeps bytes rosbags reads as they are and re-serializes the others
with rosbags, so every message in our bags reads back with ``deserialize_cdr``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

INTERFACE_PACKAGES = ("unihm_msgs", "control_msgs")
"""Packages whose installed definitions are added to the Jazzy type store."""

_ACTION_PARTS = ("Goal", "Result", "Feedback")


def _share_dir(package: str) -> Path | None:
    """The package's share folder from the ament index, or None when it is not installed."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:  # ament_index_python missing: walk AMENT_PREFIX_PATH ourselves
        for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
            share = Path(prefix) / "share" / package
            if prefix and (share / "package.xml").is_file():
                return share
        return None
    try:
        return Path(get_package_share_directory(package))
    except PackageNotFoundError:
        return None


def interface_definitions(package: str, share: Path | None = None) -> dict[str, str]:
    """Type name -> message text of every msg and action part installed by ``package``.

    Each action ``A`` gives ``A_Goal``, ``A_Result``, ``A_Feedback`` and ``A_FeedbackMessage``
    (the type of ``<action>/_action/feedback``), named like rosidl names them.
    """
    share = _share_dir(package) if share is None else share
    if share is None:
        return {}
    out: dict[str, str] = {}
    for path in sorted((share / "msg").glob("*.msg")):
        out[f"{package}/msg/{path.stem}"] = path.read_text()
    for path in sorted((share / "action").glob("*.action")):
        sections = path.read_text().split("\n---\n")
        if len(sections) != len(_ACTION_PARTS):
            raise ValueError(f"{path}: expected goal, result and feedback separated by ---")
        for part, text in zip(_ACTION_PARTS, sections, strict=True):
            out[f"{package}/action/{path.stem}_{part}"] = text
        out[f"{package}/action/{path.stem}_FeedbackMessage"] = (
            f"unique_identifier_msgs/UUID goal_id\n{package}/action/{path.stem}_Feedback feedback")
    return out


@functools.lru_cache(maxsize=1)
def bag_typestore() -> Any:
    """The Jazzy type store with our interface packages registered (built once per process)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    for package in INTERFACE_PACKAGES:
        for name, text in interface_definitions(package).items():
            if name not in store.types:
                store.register(get_types_from_msg(text, name))
    return store


def deserialize_lenient(store: Any, raw: bytes | memoryview, msgtype: str) -> tuple[Any, int]:
    """(message, trailing bytes) of CDR data, accepting any amount of trailing padding."""
    from rosbags.serde import SerdeError

    data = memoryview(raw)
    if len(data) < 4 or data[0] != 0 or data[1] not in (0, 1):
        raise SerdeError(f"not CDR data for {msgtype!r} (bad encapsulation header)")
    msgdef = store.get_msgdef(msgtype)
    func = msgdef.deserialize_cdr_le if data[1] else msgdef.deserialize_cdr_be
    try:
        message, pos = func(data[4:], 0, msgdef.cls, store)
    except Exception as e:  # struct, index and decode errors of bad data
        raise SerdeError(f"could not deserialize {msgtype!r}: {e}") from e
    return message, len(data) - 4 - pos


def normalize_cdr(store: Any, raw: bytes | memoryview, msgtype: str) -> bytes:
    """CDR bytes of the same message that rosbags' strict ``deserialize_cdr`` accepts.

    Bytes with at most 3 trailing padding bytes are returned unchanged; others (rclpy's
    over-sized buffers, see the module doc) are re-serialized by rosbags, with zero padding.
    """
    message, trailing = deserialize_lenient(store, raw, msgtype)
    if trailing <= 3:
        return bytes(raw)
    return bytes(store.serialize_cdr(message, msgtype))


def connection_definition(store: Any, msgtype: str) -> tuple[str, str]:
    """(message definition text, RIHS01 hash) stored with a topic in the bag.

    rosbags writes definitions only for ``pkg/msg/Name`` types and their ``/msg/`` fields; an
    action's ``FeedbackMessage`` has an ``pkg/action/A_Feedback`` field, so for such types the
    nested names are written as they are (``MSG: pkg/action/A_Feedback``). The hash is rosidl's
    (computed from the same definitions by rosbags).
    """
    from unittest import mock

    import rosbags.typesys.store as store_module

    rihs01 = store.hash_rihs01(msgtype)
    try:
        msgdef, _ = store.generate_msgdef(msgtype, ros_version=2)
    except AssertionError:
        original = store_module.denormalize_msgtype

        def lenient(name: str) -> str:
            return original(name) if "/msg/" in name else name

        with mock.patch.object(store_module, "denormalize_msgtype", lenient):
            msgdef, _ = store.generate_msgdef(msgtype, ros_version=2)
    return msgdef, rihs01
