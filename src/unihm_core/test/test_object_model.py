"""The contact energy's sign rests on outward normals and a correct nearest neighbour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from unihm_core.assets import AssetNotFoundError
from unihm_core.object_model import ObjectModel

YCB_IDS = ["004_sugar_box", "005_tomato_soup_can", "006_mustard_bottle", "025_mug",
           "051_large_clamp", "061_foam_brick"]


def _sphere_cloud(n: int = 800, radius: float = 0.05, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return radius * v / np.linalg.norm(v, axis=1, keepdims=True) + np.array([0.1, -0.2, 0.3])


@pytest.fixture(scope="module")
def box() -> ObjectModel:
    return ObjectModel.from_mesh(trimesh.creation.box(extents=(0.1, 0.06, 0.04)), 1500)


@pytest.mark.parametrize("object_id", YCB_IDS)
def test_asset_normals_point_outward(object_id: str) -> None:
    model = ObjectModel.from_asset(object_id, n_points=1024)
    assert len(model) == 1024 and model.has_closed_mesh and model.name == object_id
    np.testing.assert_allclose(np.linalg.norm(model.normals, axis=1), 1.0, atol=1e-9)
    eps = 2e-4
    outside = model.signed_distance(model.points + eps * model.normals)
    inside = model.signed_distance(model.points - eps * model.normals)
    assert np.all(outside > inside)  # distance grows along every normal
    assert np.mean(outside > 0) > 0.99  # the rest sit in sharp concave corners
    assert np.abs(model.signed_distance(model.points)).max() < 1e-5


def test_from_asset_is_reproducible_and_unknown_id_is_named() -> None:
    a = ObjectModel.from_asset("061_foam_brick", n_points=256, seed=3)
    b = ObjectModel.from_asset("061_foam_brick", n_points=256, seed=3)
    np.testing.assert_array_equal(a.points, b.points)
    with pytest.raises(AssetNotFoundError, match="999_no_such_object"):
        ObjectModel.from_asset("999_no_such_object")
    with pytest.raises(ValueError, match="object id"):
        ObjectModel.from_asset("../etc")


def test_nearest_matches_brute_force(box: ObjectModel) -> None:
    x = np.random.default_rng(1).uniform(-0.08, 0.08, size=(7, 5, 3))
    points, normals, idx = box.nearest(x)
    assert points.shape == (7, 5, 3) and normals.shape == (7, 5, 3) and idx.shape == (7, 5)
    dist = np.linalg.norm(x[..., None, :] - box.points, axis=-1)
    np.testing.assert_array_equal(idx, dist.argmin(axis=-1))
    np.testing.assert_array_equal(points, box.points[idx])
    np.testing.assert_array_equal(normals, box.normals[idx])


def test_signed_distance_of_a_box(box: ObjectModel) -> None:
    x = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.015], [0.06, 0.0, 0.0], [0.0, 0.0, 0.03]])
    np.testing.assert_allclose(box.signed_distance(x), [-0.02, -0.005, 0.01, 0.01], atol=1e-6)
    # the point-to-plane value agrees on flat faces, away from edges
    np.testing.assert_allclose(box.point_to_plane(x[1:]), [-0.005, 0.01, 0.01], atol=1e-6)


def test_cloud_without_mesh_falls_back_to_point_to_plane(box: ObjectModel) -> None:
    cloud = ObjectModel.from_arrays(box.points, box.normals)
    assert not cloud.has_closed_mesh
    x = np.array([[0.0, 0.0, 0.025], [0.0, 0.0, 0.015]])
    np.testing.assert_allclose(cloud.signed_distance(x), [0.005, -0.005], atol=1e-9)


def test_estimated_normals_of_a_sphere_point_outward() -> None:
    pts = _sphere_cloud()
    model = ObjectModel.from_arrays(pts)
    radial = pts - pts.mean(axis=0)
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    cos = np.einsum("ij,ij->i", model.normals, radial)
    assert np.all(cos > 0.9)


def test_normals_from_a_given_mesh(box: ObjectModel) -> None:
    model = ObjectModel.from_arrays(box.points[:50], mesh=box.mesh)
    np.testing.assert_allclose(model.normals, box.normals[:50], atol=1e-6)


def test_helpers_noise_subsample_partial(box: ObjectModel) -> None:
    noisy = box.with_noise(0.002, seed=0)
    shift = noisy.points - box.points
    assert 0.0015 < shift.std() < 0.0025 and abs(shift.mean()) < 3e-4
    np.testing.assert_array_equal(noisy.normals, box.normals)
    assert noisy.has_closed_mesh and not box.with_noise(0.0, keep_mesh=False).has_closed_mesh

    sub = box.subsampled(100, seed=0)
    assert len(sub) == 100 and len(np.unique(sub.points, axis=0)) == 100
    assert len(box.subsampled(10**6)) == len(box)

    view = np.array([0.0, 0.0, -1.0])  # camera above, looking down
    part = box.partial(view, fraction=0.3)
    assert len(part) == round(0.3 * len(box))
    assert np.all(part.normals @ view <= 0.0)
    assert np.all(box.partial(view, 1.0).points.shape == box.points.shape)


def test_estimated_normals_survive_noise() -> None:
    model = ObjectModel.from_arrays(_sphere_cloud(), name="sphere")
    noisy = model.with_noise(0.001, seed=2, reestimate_normals=True)
    radial = noisy.points - noisy.points.mean(axis=0)
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    assert np.mean(np.einsum("ij,ij->i", noisy.normals, radial) > 0.0) > 0.98


@pytest.mark.parametrize(("points", "normals", "message"), [
    (np.zeros((0, 3)), None, "empty"),
    (np.zeros((5, 2)), None, r"shape \(N, 3\)"),
    (np.array([[0.0, 0.0, np.nan], [1.0, 0.0, 0.0]]), np.eye(3)[:2], "non-finite"),
    (np.eye(3), np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 1.0]]), "zero-length"),
    (np.eye(3), np.eye(3)[:2], "match the points"),
    (np.eye(3), np.full((3, 3), np.inf), "non-finite"),
])
def test_bad_arrays_raise(points: np.ndarray, normals: np.ndarray | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ObjectModel.from_arrays(points, normals)


def test_bad_queries_and_helper_arguments(box: ObjectModel) -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        box.nearest(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        box.signed_distance(np.array([np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match="sigma"):
        box.with_noise(-1.0)
    with pytest.raises(ValueError, match="fraction"):
        box.partial([0, 0, 1], 0.0)
    with pytest.raises(ValueError, match="direction"):
        box.partial([0, 0, 0])
    with pytest.raises(ValueError, match="subsample"):
        box.subsampled(0)


def test_files_round_trip(tmp_path: Path, box: ObjectModel) -> None:
    np.save(tmp_path / "cloud.npy", np.hstack([box.points, box.normals]))
    np.testing.assert_allclose(ObjectModel.from_file(tmp_path / "cloud.npy").normals, box.normals)
    np.savez(tmp_path / "cloud.npz", points=_sphere_cloud())
    sphere = ObjectModel.from_file(tmp_path / "cloud.npz")
    assert sphere.mesh is None and sphere.name == "cloud"
    assert box.mesh is not None
    box.mesh.export(tmp_path / "box.stl")
    box.mesh.export(tmp_path / "box.ply")
    for name in ("box.stl", "box.ply"):
        model = ObjectModel.from_file(tmp_path / name, n_points=300)
        assert model.has_closed_mesh and len(model) == 300
        assert model.signed_distance(np.zeros(3)) == pytest.approx(-0.02, abs=1e-6)
    trimesh.PointCloud(_sphere_cloud()).export(tmp_path / "points.ply")
    assert ObjectModel.from_file(tmp_path / "points.ply").mesh is None


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ply"
    with pytest.raises(ValueError, match=r"missing\.ply"):
        ObjectModel.from_file(missing)
    unknown = tmp_path / "object.xyzw"
    unknown.write_text("1 2 3\n")
    with pytest.raises(ValueError, match=r"object\.xyzw.*unknown format"):
        ObjectModel.from_file(unknown)
    for name, content in [("garbage.npy", b"not numpy"), ("garbage.obj", b"\x00\x01 nonsense"),
                          ("garbage.pcd", b"nothing here"), ("garbage.stl", b"")]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            ObjectModel.from_file(path)
    np.save(tmp_path / "flat.npy", np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"flat\.npy.*\(N, 3\)"):
        ObjectModel.from_file(tmp_path / "flat.npy")
    np.savez(tmp_path / "nopoints.npz", other=np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"nopoints\.npz.*'points'"):
        ObjectModel.from_file(tmp_path / "nopoints.npz")
