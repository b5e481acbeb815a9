"""Table and object clusters on synthetic planning-frame clouds built from the YCB models."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from unihm_core.object_model import ObjectModel
from unihm_core.se3 import make_pose, transform_points
from unihm_perception.segmentation import (
    DbscanSegmenter,
    SegmentationParams,
    Segmenter,
    TableNotFoundError,
    cluster_objects,
    find_table,
    voxel_means,
)

CAMERA = np.array([-0.6, 0.0, 0.6])


def _visible(object_id: str, xy: tuple[float, float], yaw: float,
             rng: np.random.Generator) -> NDArray[np.float64]:
    """The camera-facing samples of a model standing upright on z=0, with 2 mm noise."""
    model = ObjectModel.from_asset(object_id, 6000, seed=3)
    rotation = Rotation.from_euler("z", yaw).as_matrix()
    lift = -float((model.points @ rotation.T)[:, 2].min())
    pose = make_pose(rotation, [xy[0], xy[1], lift])
    points = transform_points(pose, model.points)
    facing = np.einsum("ij,ij->i", model.normals @ rotation.T, CAMERA - points) > 0
    return points[facing] + rng.normal(0.0, 0.002, (int(facing.sum()), 3))


def _table(rng: np.random.Generator, n: int = 90_000) -> NDArray[np.float64]:
    xy = (rng.random((n, 2)) - 0.5) * np.array([1.0, 0.8])
    return np.c_[xy, rng.normal(0.0, 0.002, n)]


def _scene(placements: list[tuple[str, tuple[float, float]]],
           seed: int = 0) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    parts = [_table(rng)]
    parts += [_visible(oid, xy, float(rng.uniform(0, 2 * np.pi)), rng) for oid, xy in placements]
    return np.concatenate(parts)


FOUR = [("004_sugar_box", (-0.3, 0.1)), ("005_tomato_soup_can", (-0.1, -0.1)),
        ("006_mustard_bottle", (0.1, 0.1)), ("025_mug", (0.3, -0.1))]


def test_table_and_four_objects() -> None:
    points = _scene(FOUR)
    colors = np.full_like(points, 0.5)
    find_table(points)  # warm-up (open3d thread pools)
    start = time.perf_counter()
    table = find_table(points)
    mid = time.perf_counter()
    assert table is not None
    clusters = cluster_objects(points, colors, table)
    end = time.perf_counter()
    print(f"\n{points.shape[0]} points: table {1e3 * (mid - start):.1f} ms, "
          f"clusters {1e3 * (end - mid):.1f} ms")
    assert np.degrees(np.arccos(table.normal[2])) < 1.0
    assert abs(table.offset) < 0.003
    assert len(table.inliers) > 80_000
    assert len(clusters) == 4
    centres = np.array([c.center[:2] for c in clusters])
    for _, xy in FOUR:
        assert np.min(np.linalg.norm(centres - np.array(xy), axis=1)) < 0.04
    for cluster in clusters:
        assert cluster.mean_color is not None
        np.testing.assert_allclose(cluster.mean_color, 0.5)
        assert np.all(cluster.extent > 0.03) and np.all(cluster.extent < 0.25)
        np.testing.assert_allclose(cluster.points, points[cluster.indices])


def test_two_objects_close_together_stay_apart() -> None:
    # the boxes' closest faces are about 3 cm apart: above eps, so two clusters
    points = _scene([("061_foam_brick", (0.0, 0.0)), ("005_tomato_soup_can", (0.0, 0.1))], 1)
    clusters = DbscanSegmenter().segment(points)
    assert len(clusters) == 2


def test_touching_objects_merge_with_large_eps() -> None:
    points = _scene([("061_foam_brick", (0.0, 0.0)), ("005_tomato_soup_can", (0.0, 0.1))], 1)
    clusters = DbscanSegmenter(SegmentationParams(eps=0.06)).segment(points)
    assert len(clusters) == 1


def test_segmenter_protocol() -> None:
    assert isinstance(DbscanSegmenter(), Segmenter)


def test_no_table() -> None:
    rng = np.random.default_rng(2)
    wall = np.c_[rng.normal(0, 0.002, 20_000), (rng.random((20_000, 2)) - 0.5)]
    blob = rng.normal(0, 0.05, (2000, 3))
    for cloud in (wall, blob):
        assert find_table(cloud) is None
        with pytest.raises(TableNotFoundError, match="no table plane"):
            find_table(cloud, required=True)
        with pytest.raises(TableNotFoundError):
            DbscanSegmenter().segment(cloud)


def test_empty_table_gives_no_clusters() -> None:
    points = _table(np.random.default_rng(3), 20_000)
    assert DbscanSegmenter().segment(points) == []


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.array([[0.0, np.nan, 0.0]]),
                                 np.zeros((5, 2))])
def test_bad_input(bad: NDArray[np.float64]) -> None:
    with pytest.raises(ValueError):
        find_table(bad)
    with pytest.raises(ValueError):
        DbscanSegmenter().segment(bad)


@pytest.mark.parametrize("voxel", [0.2, 0.01])  # a table over the cells; too many cells for one
def test_voxel_means_match_a_per_voxel_reference(voxel: float) -> None:
    rng = np.random.default_rng(4)
    points = rng.normal(size=(3000, 3))
    points[:10] = points[10:20]  # shared voxels
    means, voxel_of = voxel_means(points, voxel)
    keys = np.floor(points / voxel).astype(np.int64)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    assert means.shape == (len(unique), 3)
    for k in range(len(unique)):
        mine = voxel_of[inverse == k]
        assert np.unique(mine).size == 1
        np.testing.assert_allclose(means[mine[0]], points[inverse == k].mean(axis=0),
                                   atol=1e-12)
    # voxels come in ascending order of their (x, y, z) grid key
    first = [np.flatnonzero(voxel_of == v)[0] for v in range(len(means))]
    order = keys[first]
    assert all(tuple(a) < tuple(b) for a, b in itertools.pairwise(order))
