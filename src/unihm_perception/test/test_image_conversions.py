"""sensor_msgs/Image and CameraInfo conversions without cv_bridge."""

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from unihm_perception.image_conversions import (
    SUPPORTED_ENCODINGS,
    camera_info_to_intrinsics,
    depth_image_to_metres,
    image_to_numpy,
    numpy_to_image,
    to_rgb,
)

RNG = np.random.default_rng(7)
SAMPLES = {
    "rgb8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8),
    "rgba8": RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8),
    "bgra8": RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8),
    "mono8": RNG.integers(0, 256, (5, 7), dtype=np.uint8),
    "16UC1": RNG.integers(0, 65536, (5, 7), dtype=np.uint16),
    "32FC1": RNG.uniform(0.1, 4.0, (5, 7)).astype(np.float32),
}


def _raw_image(array: np.ndarray, encoding: str, *, pad: int = 0,
               big_endian: bool = False) -> Image:
    """An Image built by hand (not by numpy_to_image), with padded rows and chosen byte order."""
    rows = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">" if big_endian else "<"))
    rows = rows.reshape(array.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((array.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return Image(height=array.shape[0], width=array.shape[1], encoding=encoding,
                 is_bigendian=int(big_endian), step=padded.shape[1], data=padded.tobytes())


def test_all_seven_encodings_are_supported() -> None:
    assert set(SUPPORTED_ENCODINGS) == set(SAMPLES)


@pytest.mark.parametrize("encoding", list(SAMPLES))
def test_round_trip(encoding: str) -> None:
    header = Header(frame_id="camera_color_optical_frame")
    msg = numpy_to_image(SAMPLES[encoding], encoding, header)
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert msg.step * msg.height == len(msg.data)
    back = image_to_numpy(msg)
    assert back.dtype == SAMPLES[encoding].dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, SAMPLES[encoding])


@pytest.mark.parametrize("encoding", list(SAMPLES))
@pytest.mark.parametrize("big_endian", [False, True])
def test_padded_rows_and_byte_order(encoding: str, big_endian: bool) -> None:
    msg = _raw_image(SAMPLES[encoding], encoding, pad=5, big_endian=big_endian)
    back = image_to_numpy(msg)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, SAMPLES[encoding])


def test_big_endian_16uc1_byte_layout() -> None:
    msg = Image(height=1, width=2, encoding="16UC1", is_bigendian=1, step=4,
                data=bytes([0x01, 0x02, 0x00, 0x05]))
    np.testing.assert_array_equal(image_to_numpy(msg), [[0x0102, 0x0005]])


def test_to_rgb_reorders_channels() -> None:
    rgb = SAMPLES["rgb8"]
    np.testing.assert_array_equal(to_rgb(rgb, "rgb8"), rgb)
    np.testing.assert_array_equal(to_rgb(rgb[..., ::-1], "bgr8"), rgb)
    bgra = np.concatenate([rgb[..., ::-1], np.zeros((5, 7, 1), np.uint8)], axis=-1)
    np.testing.assert_array_equal(to_rgb(bgra, "bgra8"), rgb)
    np.testing.assert_array_equal(to_rgb(SAMPLES["rgba8"], "rgba8"), SAMPLES["rgba8"][..., :3])
    gray = to_rgb(SAMPLES["mono8"], "mono8")
    assert gray.shape == (5, 7, 3) and np.all(gray[..., 1] == SAMPLES["mono8"])
    with pytest.raises(ValueError, match="not a color image"):
        to_rgb(SAMPLES["16UC1"], "16UC1")


def test_depth_millimetres_to_metres_with_invalid_zeros() -> None:
    mm = np.array([[0, 1000, 1500], [250, 0, 65535]], dtype=np.uint16)
    metres = depth_image_to_metres(numpy_to_image(mm, "16UC1"))
    assert metres.dtype == np.float32
    np.testing.assert_allclose(metres, [[np.nan, 1.0, 1.5], [0.25, np.nan, 65.535]], rtol=1e-6)


def test_depth_metres_pass_through_with_non_finite_as_nan() -> None:
    m = np.array([[0.5, np.inf, -np.inf], [np.nan, 0.0, 2.0]], dtype=np.float32)
    metres = depth_image_to_metres(numpy_to_image(m, "32FC1"))
    np.testing.assert_array_equal(metres, [[0.5, np.nan, np.nan], [np.nan, 0.0, 2.0]])


def test_camera_info_to_intrinsics() -> None:
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob",
                      d=[0.1, -0.2, 0.0, 0.0, 0.01],
                      k=[615.0, 0.0, 320.5, 0.0, 616.0, 240.5, 0.0, 0.0, 1.0])
    intr = camera_info_to_intrinsics(info)
    assert (intr.width, intr.height) == (640, 480)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (615.0, 616.0, 320.5, 240.5)
    assert intr.distortion_model == "plumb_bob"
    np.testing.assert_allclose(intr.distortion, [0.1, -0.2, 0.0, 0.0, 0.01])


def _with(msg: Image, **fields) -> Image:
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize(("make", "message"), [
    (lambda: _with(numpy_to_image(SAMPLES["rgb8"], "rgb8"), encoding="yuv422"),
     "unsupported image encoding 'yuv422'; supported: rgb8, bgr8"),
    (lambda: _with(numpy_to_image(SAMPLES["rgb8"], "rgb8"), data=bytes(10)),
     "data has 10 bytes but height\\*step"),
    (lambda: _with(numpy_to_image(SAMPLES["16UC1"], "16UC1"), step=13),
     "step 13 is smaller than width\\*bytes-per-pixel = 14"),
    (lambda: Image(height=0, width=4, encoding="mono8", step=4), "image is empty"),
])
def test_bad_images_raise(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        image_to_numpy(make())


@pytest.mark.parametrize(("array", "encoding", "message"), [
    (SAMPLES["rgb8"], "16UC1", "16UC1 needs an array of shape \\(H, W\\)"),
    (SAMPLES["rgba8"], "rgb8", "rgb8 needs an array of shape \\(H, W, 3\\)"),
    (SAMPLES["mono8"], "16UC1", "16UC1 needs dtype uint16"),
    (np.zeros((0, 4), np.uint8), "mono8", "image is empty"),
    (SAMPLES["mono8"], "8UC3", "unsupported image encoding '8UC3'"),
])
def test_bad_arrays_raise(array: np.ndarray, encoding: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        numpy_to_image(array, encoding)


def test_bad_depth_and_camera_info_raise() -> None:
    with pytest.raises(ValueError, match="16UC1 \\(mm\\) or 32FC1 \\(m\\), got 'rgb8'"):
        depth_image_to_metres(numpy_to_image(SAMPLES["rgb8"], "rgb8"))
    with pytest.raises(ValueError, match="K is all zeros"):
        camera_info_to_intrinsics(CameraInfo(width=640, height=480))
    bad_centre = CameraInfo(width=640, height=480, k=[500.0, 0, 900.0, 0, 500.0, 240.0, 0, 0, 1])
    with pytest.raises(ValueError, match="principal point"):
        camera_info_to_intrinsics(bad_centre)
