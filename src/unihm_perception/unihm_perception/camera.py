"""Pinhole camera models and depth back-projection (numpy/open3d only, no ROS).

Pixel and point conventions follow the ROS optical frame (REP 103): z points forward along the
optical axis, x to the right of the image and y down, so pixel (u, v) at depth z back-projects to
``x = (u - cx) * z / fx``, ``y = (v - cy) * z / fy``. Pixel (u, v) is column u, row v and refers to
the pixel centre, as in ``sensor_msgs/CameraInfo``. Distortion is carried along for downstream
users but not applied: ROS RGB-D drivers publish rectified (or registered) depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import open3d

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of one image stream; validated so bad calibrations fail early."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "plumb_bob"
    distortion: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        for name in ("fx", "fy", "cx", "cy"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if not (0 <= self.cx <= self.width and 0 <= self.cy <= self.height):
            raise ValueError(f"principal point ({self.cx}, {self.cy}) lies outside the "
                             f"{self.width}x{self.height} image")
        object.__setattr__(self, "distortion", tuple(float(d) for d in self.distortion))

    @classmethod
    def from_matrix(cls, k: ArrayLike, width: int, height: int,
                    distortion_model: str = "plumb_bob",
                    distortion: ArrayLike = ()) -> CameraIntrinsics:
        """Intrinsics from a 3x3 camera matrix K (or its 9 row-major values, as in CameraInfo)."""
        k = np.asarray(k, dtype=np.float64)
        if k.size != 9:
            raise ValueError(f"camera matrix K must have 9 values, got shape {k.shape}")
        k = k.reshape(3, 3)
        if not np.any(k):
            raise ValueError("camera matrix K is all zeros (camera not calibrated)")
        return cls(width=int(width), height=int(height), fx=float(k[0, 0]), fy=float(k[1, 1]),
                   cx=float(k[0, 2]), cy=float(k[1, 2]), distortion_model=distortion_model,
                   distortion=tuple(np.asarray(distortion, dtype=np.float64).ravel()))

    @property
    def matrix(self) -> FloatArray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


class BackProjection(NamedTuple):
    """Valid pixels of a depth image as 3-D points, with their colors and pixel indices.

    A named tuple, so ``points, colors, pixels = depth_to_points(...)`` also works.
    """

    points: FloatArray
    """(N, 3) metres, in the camera optical frame or, with extrinsics, the planning frame."""
    colors: FloatArray | None
    """(N, 3) RGB in [0, 1], aligned with ``points``; None without a color image."""
    pixels: NDArray[np.intp]
    """(N, 2) (row, column) of each point in the full-resolution image."""


def depth_to_points(depth_m: ArrayLike, intrinsics: CameraIntrinsics,
                    color: ArrayLike | None = None, *, min_depth: float = 0.0,
                    max_depth: float = np.inf, stride: int = 1,
                    extrinsics: ArrayLike | None = None) -> BackProjection:
    """Back-project a metric depth image, dropping 0, NaN, inf and out-of-range depths.

    ``color`` is an (H, W, 3) uint8 RGB image registered to the depth image. ``stride`` keeps
    every stride-th row and column (a cheap downsample). ``extrinsics`` is the 4x4
    ``T_planning_camera`` (camera optical frame in the planning frame); without it, points stay
    in the camera optical frame.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise ValueError(f"depth must be an (H, W) image, got shape {depth.shape}")
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(f"depth image is {depth.shape[1]}x{depth.shape[0]} but the intrinsics "
                         f"are for {intrinsics.width}x{intrinsics.height}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"depth must be float metres, got dtype {depth.dtype} "
                         "(convert 16UC1 millimetres first)")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if min_depth < 0 or not max_depth > min_depth:
        raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
    rgb = None
    if color is not None:
        rgb = np.asarray(color)
        if rgb.shape != (*depth.shape, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"color must be an (H, W, 3) uint8 image matching the depth "
                             f"{depth.shape}, got {rgb.shape} {rgb.dtype}")
    # a strided view, one flat index of the valid pixels and per-column/row offsets instead
    # of full-size index grids: a 640x480 frame is ~300k pixels, each pass over them counts
    z_all = depth[::stride, ::stride].astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = (z_all >= min_depth) if min_depth > 0 else (z_all > 0)
        valid &= z_all <= max_depth
    if not np.isfinite(max_depth):
        valid &= np.isfinite(z_all)
    flat = np.flatnonzero(valid)
    sub_r, sub_c = np.divmod(flat, z_all.shape[1])
    v = sub_r * stride
    u = sub_c * stride
    z = z_all.reshape(-1)[flat]
    du = np.arange(0, depth.shape[1], stride) - intrinsics.cx
    dv = np.arange(0, depth.shape[0], stride) - intrinsics.cy
    x = du[sub_c] * z / intrinsics.fx
    y = dv[sub_r] * z / intrinsics.fy
    points = np.empty((flat.shape[0], 3))
    if extrinsics is None:
        points[:, 0], points[:, 1], points[:, 2] = x, y, z
    else:
        pose = np.asarray(extrinsics, dtype=np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"extrinsics must be a 4x4 pose, got shape {pose.shape}")
        # column by column: a (N, 3) @ (3, 3) product goes to a threaded BLAS kernel that
        # costs several times more than this on two busy cores
        for i in range(3):
            points[:, i] = pose[i, 0] * x + pose[i, 1] * y + pose[i, 2] * z + pose[i, 3]
    colors = None if rgb is None else \
        np.take(rgb.reshape(-1, 3), v * depth.shape[1] + u, axis=0) / 255.0
    return BackProjection(points=points, colors=colors, pixels=np.stack([v, u], axis=-1))


def to_open3d(points: ArrayLike, colors: ArrayLike | None = None) -> open3d.geometry.PointCloud:
    """Legacy open3d point cloud from (N, 3) points and optional (N, 3) colors in [0, 1]."""
    import open3d

    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {pts.shape}")
    cloud = open3d.geometry.PointCloud(open3d.utility.Vector3dVector(pts))
    if colors is not None:
        cols = np.asarray(colors, dtype=np.float64)
        if cols.shape != pts.shape:
            raise ValueError(f"colors {cols.shape} must match points {pts.shape}")
        cloud.colors = open3d.utility.Vector3dVector(cols)
    return cloud
