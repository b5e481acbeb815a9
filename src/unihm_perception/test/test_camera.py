"""Pinhole intrinsics and depth back-projection in the optical and planning frames."""

import numpy as np
import pytest

from unihm_core.se3 import pose_from_xyz_rpy, transform_points
from unihm_perception.camera import CameraIntrinsics, depth_to_points, to_open3d

K = CameraIntrinsics(width=8, height=6, fx=10.0, fy=12.0, cx=3.5, cy=2.5)


def _plane(z: float = 0.75) -> np.ndarray:
    return np.full((K.height, K.width), z, dtype=np.float32)


def test_from_matrix_matches_fields() -> None:
    intr = CameraIntrinsics.from_matrix(K.matrix, 8, 6, distortion=[0.1, 0, 0, 0, 0])
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (10.0, 12.0, 3.5, 2.5)
    assert intr.distortion == (0.1, 0.0, 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(CameraIntrinsics.from_matrix(K.matrix.ravel(), 8, 6).matrix,
                                  K.matrix)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"fx": 0.0}, "focal lengths must be positive"),
    ({"fy": -1.0}, "focal lengths must be positive"),
    ({"cx": 9.0}, "principal point"),
    ({"cy": -0.5}, "principal point"),
    ({"width": 0}, "image size must be positive"),
    ({"fx": float("nan")}, "fx must be finite"),
])
def test_bad_intrinsics_raise(kwargs: dict, message: str) -> None:
    fields = {"width": 8, "height": 6, "fx": 10.0, "fy": 12.0, "cx": 3.5, "cy": 2.5} | kwargs
    with pytest.raises(ValueError, match=message):
        CameraIntrinsics(**fields)


def test_from_matrix_rejects_zero_or_malformed_k() -> None:
    with pytest.raises(ValueError, match="all zeros"):
        CameraIntrinsics.from_matrix(np.zeros(9), 8, 6)
    with pytest.raises(ValueError, match="9 values"):
        CameraIntrinsics.from_matrix(np.eye(2), 8, 6)


def test_plane_back_projects_to_known_xyz() -> None:
    points, colors, pixels = depth_to_points(_plane(), K)
    assert points.shape == (48, 3) and colors is None
    np.testing.assert_allclose(points[:, 2], 0.75)
    v, u = pixels[:, 0], pixels[:, 1]
    np.testing.assert_allclose(points[:, 0], (u - 3.5) * 0.75 / 10.0)
    np.testing.assert_allclose(points[:, 1], (v - 2.5) * 0.75 / 12.0)
    # Optical frame: the top-left pixel is left (x < 0) and up (y < 0) of the optical axis.
    first = points[(v == 0) & (u == 0)][0]
    assert first[0] < 0 and first[1] < 0


def test_invalid_and_out_of_range_depth_is_masked() -> None:
    depth = _plane(1.0)
    depth[0, 0] = 0.0
    depth[1, 1] = np.nan
    depth[2, 2] = np.inf
    depth[3, 3] = -1.0
    depth[4, 4] = 0.1
    depth[5, 5] = 5.0
    result = depth_to_points(depth, K, min_depth=0.2, max_depth=2.0)
    assert len(result.points) == 48 - 6
    kept = {tuple(p) for p in result.pixels.tolist()}
    assert not kept & {(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)}
    assert np.all(result.points[:, 2] == 1.0)


def test_colors_are_aligned_with_points_and_stride() -> None:
    rng = np.random.default_rng(0)
    color = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    depth = _plane()
    depth[0, 2] = 0.0
    result = depth_to_points(depth, K, color, stride=2)
    assert len(result.points) == 3 * 4 - 1
    assert np.all(result.pixels % 2 == 0)
    v, u = result.pixels.T
    np.testing.assert_allclose(result.colors, color[v, u] / 255.0)
    np.testing.assert_allclose(result.points[:, 0], (u - 3.5) * 0.75 / 10.0)


def test_extrinsics_move_points_to_planning_frame() -> None:
    planning_from_camera = pose_from_xyz_rpy([0.4, -0.1, 0.9], [np.pi, 0.0, 0.3])
    camera = depth_to_points(_plane(), K)
    planning = depth_to_points(_plane(), K, extrinsics=planning_from_camera)
    np.testing.assert_allclose(planning.points,
                               transform_points(planning_from_camera, camera.points))
    # The optical axis point lands at the camera origin plus z * the camera's z axis.
    centre = depth_to_points(_plane(), CameraIntrinsics(8, 6, 10.0, 12.0, 3.0, 2.0),
                             extrinsics=planning_from_camera)
    on_axis = centre.points[(centre.pixels == [2, 3]).all(axis=1)][0]
    np.testing.assert_allclose(on_axis, [0.4, -0.1, 0.9] + 0.75 * planning_from_camera[:3, 2])


@pytest.mark.parametrize(("call", "message"), [
    (lambda: depth_to_points(np.ones((6, 8, 1), np.float32), K), "must be an \\(H, W\\) image"),
    (lambda: depth_to_points(np.ones((5, 8), np.float32), K), "intrinsics are for 8x6"),
    (lambda: depth_to_points(np.ones((6, 8), np.uint16), K), "convert 16UC1"),
    (lambda: depth_to_points(_plane(), K, stride=0), "stride"),
    (lambda: depth_to_points(_plane(), K, min_depth=2.0, max_depth=1.0), "min_depth"),
    (lambda: depth_to_points(_plane(), K, np.zeros((6, 8, 3), np.float32)), "color must be"),
    (lambda: depth_to_points(_plane(), K, extrinsics=np.eye(3)), "extrinsics must be a 4x4"),
    (lambda: to_open3d(np.zeros((4, 2))), "points must be"),
    (lambda: to_open3d(np.zeros((4, 3)), np.zeros((3, 3))), "colors"),
])
def test_bad_inputs_raise(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_to_open3d_keeps_points_and_colors() -> None:
    color = np.full((6, 8, 3), 255, dtype=np.uint8)
    result = depth_to_points(_plane(), K, color)
    cloud = to_open3d(result.points, result.colors)
    np.testing.assert_allclose(np.asarray(cloud.points), result.points)
    np.testing.assert_allclose(np.asarray(cloud.colors), 1.0)
    assert not to_open3d(result.points).has_colors()
