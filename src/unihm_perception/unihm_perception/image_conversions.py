"""sensor_msgs/Image and CameraInfo <-> numpy, replacing cv_bridge.

The cv-bridge on PyPI is a ROS 1 copy that does not work with ROS 2 messages, so the few encodings
an RGB-D camera publishes are decoded here directly. This module needs the message classes only
(no rclpy), so it stays importable from tests and offline tools.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from unihm_perception.camera import CameraIntrinsics


class _Layout(NamedTuple):
    dtype: np.dtype
    channels: int


_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(np.dtype(np.uint8), 3),
    "bgr8": _Layout(np.dtype(np.uint8), 3),
    "rgba8": _Layout(np.dtype(np.uint8), 4),
    "bgra8": _Layout(np.dtype(np.uint8), 4),
    "mono8": _Layout(np.dtype(np.uint8), 1),
    "16UC1": _Layout(np.dtype(np.uint16), 1),
    "32FC1": _Layout(np.dtype(np.float32), 1),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)


def _layout(encoding: str) -> _Layout:
    try:
        return _LAYOUTS[encoding]
    except KeyError:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: "
                         f"{', '.join(SUPPORTED_ENCODINGS)}") from None


def image_to_numpy(msg: Image) -> NDArray:
    """Decode an Image into a fresh native-endian array in the message's channel order.

    Shapes: (H, W, 3) for rgb8/bgr8, (H, W, 4) for rgba8/bgra8, (H, W) otherwise; 16UC1 stays
    uint16 (usually millimetres) and 32FC1 float32. Row padding (``step``) is dropped.
    """
    layout = _layout(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ValueError(f"image is empty ({width}x{height})")
    row_bytes = width * layout.channels * layout.dtype.itemsize
    if step < row_bytes:
        raise ValueError(f"step {step} is smaller than width*bytes-per-pixel = {row_bytes} "
                         f"for a {width}-pixel {msg.encoding} row")
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    if raw.size != height * step:
        raise ValueError(f"data has {raw.size} bytes but height*step = {height}*{step} = "
                         f"{height * step}")
    rows = raw.reshape(height, step)[:, :row_bytes]
    dtype = layout.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    pixels = np.ascontiguousarray(rows).view(dtype).astype(layout.dtype.newbyteorder("="))
    if layout.channels == 1:
        return pixels.reshape(height, width)
    return pixels.reshape(height, width, layout.channels)


def to_rgb(array: NDArray, encoding: str) -> NDArray[np.uint8]:
    """(H, W, 3) RGB copy of a decoded color image (alpha dropped, mono replicated to gray)."""
    _layout(encoding)
    if encoding in ("rgb8", "rgba8"):
        return np.ascontiguousarray(array[..., :3])
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(array[..., 2::-1])
    if encoding == "mono8":
        return np.repeat(np.asarray(array)[..., None], 3, axis=-1)
    raise ValueError(f"encoding {encoding!r} is not a color image; use rgb8, bgr8, rgba8, "
                     "bgra8 or mono8")


def numpy_to_image(array: NDArray, encoding: str, header: Header | None = None) -> Image:
    """Encode an array as a tightly packed, little-endian Image of the given encoding."""
    layout = _layout(encoding)
    array = np.asarray(array)
    expected = 2 if layout.channels == 1 else 3
    if array.ndim != expected or (expected == 3 and array.shape[2] != layout.channels):
        want = "(H, W)" if layout.channels == 1 else f"(H, W, {layout.channels})"
        raise ValueError(f"{encoding} needs an array of shape {want}, got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image is empty ({array.shape[1]}x{array.shape[0]})")
    if array.dtype != layout.dtype:
        raise ValueError(f"{encoding} needs dtype {layout.dtype}, got {array.dtype}")
    data = np.ascontiguousarray(array, dtype=layout.dtype.newbyteorder("<"))
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * layout.channels * layout.dtype.itemsize
    msg.data = data.tobytes()
    return msg


def depth_image_to_metres(msg: Image) -> NDArray[np.float32]:
    """Metric float32 depth from a 16UC1 (millimetres) or 32FC1 (metres) image.

    Invalid readings (0 mm, or non-finite metres) become NaN so one test masks them downstream.
    """
    if msg.encoding not in ("16UC1", "32FC1"):
        raise ValueError(f"depth images must be 16UC1 (mm) or 32FC1 (m), got {msg.encoding!r}")
    depth = image_to_numpy(msg)
    if msg.encoding == "16UC1":
        metres = depth.astype(np.float32) / np.float32(1000.0)
        metres[depth == 0] = np.nan
        return metres
    depth[~np.isfinite(depth)] = np.nan
    return depth


def camera_info_to_intrinsics(msg: CameraInfo) -> CameraIntrinsics:
    """CameraIntrinsics from the K matrix, size and distortion of a CameraInfo message."""
    k = np.asarray(msg.k, dtype=np.float64)
    if not np.any(k):
        raise ValueError("CameraInfo K is all zeros (uncalibrated camera)")
    return CameraIntrinsics.from_matrix(k, int(msg.width), int(msg.height),
                                        distortion_model=msg.distortion_model,
                                        distortion=np.asarray(msg.d, dtype=np.float64))
