"""RGB-D frames to and from rosbag2 files (mcap or sqlite3), without rclpy.

Recorded or synthetic frames are replayed through the same topics a camera driver publishes, so
the bags are written with the ``rosbags`` library and its own CDR serializer (rclpy's serializer
pads messages in a way rosbags rejects). Color is ``rgb8``, depth is registered to color (same
intrinsics and frame id) and either ``32FC1`` metres or ``16UC1`` millimetres. Ground truth of
synthetic frames goes to ``ground_truth.json`` inside the bag folder, which ROS tools ignore.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from unihm_perception.camera import CameraIntrinsics

COLOR_TOPIC = "/camera/color/image_raw"
"""Default topic of the rgb8 color images."""
DEPTH_TOPIC = "/camera/depth/image_raw"
"""Default topic of the depth images (registered to color)."""
CAMERA_INFO_TOPIC = "/camera/color/camera_info"
"""Default topic of the CameraInfo shared by color and depth."""
DEFAULT_FRAME_ID = "camera_color_optical_frame"
GROUND_TRUTH_FILE = "ground_truth.json"

_IMAGE = "sensor_msgs/msg/Image"
_INFO = "sensor_msgs/msg/CameraInfo"


@dataclass(frozen=True)
class BagTopics:
    """Topic names of one RGB-D stream."""

    color: str = COLOR_TOPIC
    depth: str = DEPTH_TOPIC
    camera_info: str = CAMERA_INFO_TOPIC


class RGBDFrame(Protocol):
    """What a frame needs to be written; a ``scene.RenderedFrame`` is one."""

    color: NDArray[np.uint8]
    depth: NDArray[np.float32]
    intrinsics: CameraIntrinsics


class BagFrame(NamedTuple):
    """One frame read back; ``depth_m`` is float32 metres with NaN where there is no reading."""

    color: NDArray[np.uint8]
    depth_m: NDArray[np.float32]
    intrinsics: CameraIntrinsics
    stamp: int
    """Header stamp in nanoseconds."""


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _storage_plugin(storage: str) -> Any:
    from rosbags.rosbag2 import StoragePlugin

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage must be one of {', '.join(plugins)}, got {storage!r}")
    return plugins[storage]


def _depth_payload(depth: NDArray, encoding: str) -> tuple[NDArray[np.uint8], int]:
    """Little-endian bytes and bytes-per-pixel of a depth image in the given encoding."""
    depth = np.asarray(depth, dtype=np.float32)
    if encoding == "32FC1":
        out = depth.astype("<f4")
    elif encoding == "16UC1":
        mm = np.where(np.isfinite(depth) & (depth > 0), np.rint(depth * 1000.0), 0.0)
        out = np.clip(mm, 0, np.iinfo(np.uint16).max).astype("<u2")
    else:
        raise ValueError(f"depth_encoding must be '32FC1' or '16UC1', got {encoding!r}")
    return np.ascontiguousarray(out).reshape(-1).view(np.uint8), out.dtype.itemsize


def write_frames_bag(path: str | Path, frames: Sequence[RGBDFrame], *, storage: str = "mcap",
                     topics: BagTopics = BagTopics(), depth_encoding: str = "32FC1",
                     frame_id: str = DEFAULT_FRAME_ID, stamps_ns: Sequence[int] | None = None,
                     period_ns: int = 33_333_333, ground_truth: bool = True) -> Path:
    """Write color, depth and CameraInfo of each frame, all three with the frame's stamp.

    Stamps default to 1 s plus ``period_ns`` per frame (30 Hz); the bag time of each message is
    its header stamp. ``path`` is the bag folder and must not exist yet. With ``ground_truth``,
    frames that carry it (object ids, labels, poses, camera pose) are saved to
    ``<path>/ground_truth.json``. Returns the bag folder.
    """
    from rosbags.rosbag2 import Writer

    path = Path(path)
    plugin = _storage_plugin(storage)
    if stamps_ns is None:
        stamps_ns = [1_000_000_000 + i * period_ns for i in range(len(frames))]
    if len(stamps_ns) != len(frames):
        raise ValueError(f"got {len(stamps_ns)} stamps for {len(frames)} frames")
    ts = _typestore()
    image_t, info_t = ts.types[_IMAGE], ts.types[_INFO]
    header_t, time_t = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    roi_t = ts.types["sensor_msgs/msg/RegionOfInterest"]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {name: writer.add_connection(topic, msgtype, typestore=ts)
                 for name, topic, msgtype in (("color", topics.color, _IMAGE),
                                              ("depth", topics.depth, _IMAGE),
                                              ("info", topics.camera_info, _INFO))}
        for frame, raw_stamp in zip(frames, stamps_ns, strict=True):
            stamp = int(raw_stamp)
            header = header_t(stamp=time_t(sec=stamp // 1_000_000_000,
                                           nanosec=stamp % 1_000_000_000), frame_id=frame_id)
            k = frame.intrinsics
            color = np.ascontiguousarray(frame.color, dtype=np.uint8)
            if color.shape != (k.height, k.width, 3):
                raise ValueError(f"color must be ({k.height}, {k.width}, 3) uint8 RGB, "
                                 f"got {color.shape}")
            if np.shape(frame.depth) != (k.height, k.width):
                raise ValueError(f"depth must be ({k.height}, {k.width}), "
                                 f"got {np.shape(frame.depth)}")
            depth_bytes, depth_bpp = _depth_payload(frame.depth, depth_encoding)
            msgs = {
                "color": image_t(header=header, height=k.height, width=k.width, encoding="rgb8",
                               is_bigendian=0, step=3 * k.width, data=color.reshape(-1)),
                "depth": image_t(header=header, height=k.height, width=k.width,
                               encoding=depth_encoding, is_bigendian=0, step=depth_bpp * k.width,
                               data=depth_bytes),
                "info": info_t(header=header, height=k.height, width=k.width,
                             distortion_model=k.distortion_model,
                             d=np.asarray(k.distortion, dtype=np.float64),
                             k=k.matrix.reshape(-1),
                             r=np.eye(3).reshape(-1),
                             p=np.hstack([k.matrix, np.zeros((3, 1))]).reshape(-1),
                             binning_x=0, binning_y=0,
                             roi=roi_t(x_offset=0, y_offset=0, height=0, width=0,
                                       do_rectify=False)),
            }
            for name, msg in msgs.items():
                writer.write(conns[name], stamp, ts.serialize_cdr(msg, msg.__msgtype__))
    if ground_truth and frames and hasattr(frames[0], "object_ids"):
        records = [_ground_truth_record(f, s, frame_id) for f, s in zip(frames, stamps_ns,
                                                                       strict=True)]
        (path / GROUND_TRUTH_FILE).write_text(json.dumps({"frames": records}, indent=1))
    return path


def _ground_truth_record(frame: Any, stamp: int, frame_id: str) -> dict[str, Any]:
    return {
        "stamp_ns": int(stamp),
        "camera_frame_id": frame_id,
        "planning_from_camera_optical": np.asarray(frame.camera_pose).tolist(),
        "object_ids": list(frame.object_ids),
        "labels": list(frame.labels),
        "planning_from_object": np.asarray(frame.object_poses).tolist(),
    }


def read_ground_truth(path: str | Path) -> list[dict[str, Any]]:
    """The per-frame ground-truth records saved next to a bag (poses as nested lists)."""
    file = Path(path) / GROUND_TRUTH_FILE
    if not file.is_file():
        raise FileNotFoundError(f"no ground truth for bag {path}: {file} does not exist")
    return json.loads(file.read_text())["frames"]


def _decode_image(msg: Any) -> NDArray:
    layouts = {"rgb8": ("u1", 3), "16UC1": ("u2", 1), "32FC1": ("f4", 1)}
    if msg.encoding not in layouts:
        raise ValueError(f"unsupported encoding {msg.encoding!r} in bag; expected "
                         f"{', '.join(layouts)}")
    kind, channels = layouts[msg.encoding]
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = msg.width * channels * dtype.itemsize
    rows = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype).astype(dtype.newbyteorder("="))
    if msg.encoding == "rgb8":
        return pixels.reshape(msg.height, msg.width, 3)
    depth = pixels.reshape(msg.height, msg.width)
    if msg.encoding == "16UC1":
        metres = depth.astype(np.float32) / np.float32(1000.0)
        metres[depth == 0] = np.nan
        return metres
    depth[~np.isfinite(depth)] = np.nan
    return depth


def read_frames_bag(path: str | Path, *, topics: BagTopics = BagTopics()) -> list[BagFrame]:
    """Frames of a bag, matched across the three topics by header stamp, in stamp order.

    Stamps missing any of color, depth or CameraInfo are skipped.
    """
    from rosbags.rosbag2 import Reader

    ts = _typestore()
    by_topic: dict[str, dict[int, Any]] = {topics.color: {}, topics.depth: {},
                                           topics.camera_info: {}}
    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if c.topic in by_topic]
        missing = set(by_topic) - {c.topic for c in conns}
        if missing:
            raise ValueError(f"bag {path} has no topic(s) {', '.join(sorted(missing))}; it has "
                             f"{', '.join(sorted({c.topic for c in reader.connections}))}")
        for conn, _, raw in reader.messages(connections=conns):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            by_topic[conn.topic][stamp] = msg
    colors, depths, infos = (by_topic[t] for t in (topics.color, topics.depth,
                                                   topics.camera_info))
    frames = []
    for stamp in sorted(colors.keys() & depths.keys() & infos.keys()):
        info = infos[stamp]
        intrinsics = CameraIntrinsics.from_matrix(info.k, info.width, info.height,
                                                  distortion_model=info.distortion_model,
                                                  distortion=info.d)
        frames.append(BagFrame(color=_decode_image(colors[stamp]),
                               depth_m=_decode_image(depths[stamp]),
                               intrinsics=intrinsics, stamp=stamp))
    return frames
