"""Synthetic scenes: rendered depth lands on the true geometry, and bags round-trip exactly."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from unihm_perception.bag_io import (
    COLOR_TOPIC,
    DEPTH_TOPIC,
    BagTopics,
    read_frames_bag,
    read_ground_truth,
    write_frames_bag,
)
from unihm_perception.camera import depth_to_points
from unihm_perception.scene import (
    YCB_OBJECTS,
    CameraSpec,
    RenderedFrame,
    SceneSpec,
    random_scene,
    render,
    ycb_mesh_path,
    ycb_vertices,
)

# A quarter-size image keeps the tests fast; the geometry does not depend on the resolution.
SMALL_CAMERA = CameraSpec(width=320, height=240)


@pytest.fixture(scope="module")
def scene() -> SceneSpec:
    return random_scene(n_objects=4, seed=3, camera=SMALL_CAMERA)


@pytest.fixture(scope="module")
def frame(scene: SceneSpec) -> RenderedFrame:
    return render(scene)


def test_frame_shapes_and_intrinsics(frame: RenderedFrame) -> None:
    h, w = SMALL_CAMERA.height, SMALL_CAMERA.width
    assert frame.color.shape == (h, w, 3) and frame.color.dtype == np.uint8
    assert frame.depth.shape == (h, w) and frame.depth.dtype == np.float32
    assert frame.masks.shape == (4, h, w) and frame.table_mask.shape == (h, w)
    assert frame.intrinsics.width == w and frame.intrinsics.height == h
    assert CameraSpec().intrinsics.width == 640 and CameraSpec().intrinsics.height == 480
    # Background sees nothing: NaN depth, and neither table nor objects.
    background = ~frame.table_mask & ~frame.masks.any(axis=0)
    assert np.array_equal(background, np.isnan(frame.depth))


def test_object_depth_lies_on_posed_meshes(frame: RenderedFrame) -> None:
    rng = np.random.default_rng(0)
    for ycb_id, pose, mask in zip(frame.object_ids, frame.object_poses, frame.masks,
                                  strict=True):
        assert mask.sum() > 100, f"{ycb_id} is barely visible"
        depth = np.where(mask, frame.depth, np.nan)
        points = depth_to_points(depth, frame.intrinsics, extrinsics=frame.camera_pose).points
        points = points[rng.choice(len(points), size=min(len(points), 600), replace=False)]
        mesh = trimesh.load(ycb_mesh_path(ycb_id), force="mesh")
        mesh.apply_transform(pose)
        _, distance, _ = trimesh.proximity.closest_point(mesh, points)
        assert np.median(distance) < 0.003, ycb_id


def test_table_depth_lies_on_table_plane(frame: RenderedFrame) -> None:
    depth = np.where(frame.table_mask, frame.depth, np.nan)
    z = depth_to_points(depth, frame.intrinsics, extrinsics=frame.camera_pose).points[:, 2]
    # The table's front side face is visible too, hence a quantile rather than the maximum.
    assert np.median(np.abs(z)) < 0.001
    assert np.quantile(np.abs(z), 0.9) < 0.002


def test_masks_match_object_ids(scene: SceneSpec, frame: RenderedFrame) -> None:
    assert frame.object_ids == tuple(o.ycb_id for o in scene.objects)
    assert frame.labels == tuple(YCB_OBJECTS[i].name for i in frame.object_ids)
    assert not np.any(frame.masks.sum(axis=0) > 1), "masks overlap"
    assert not np.any(frame.masks & frame.table_mask)
    for k, mask in enumerate(frame.masks):
        # Each mask's pixels project to points near its own object's centre, not another's.
        points = depth_to_points(np.where(mask, frame.depth, np.nan), frame.intrinsics,
                                 extrinsics=frame.camera_pose).points
        centres = frame.object_poses[:, :3, 3]
        nearest = np.argmin(np.linalg.norm(points.mean(axis=0) - centres, axis=1))
        assert nearest == k


def test_random_scene_is_reproducible_and_objects_do_not_overlap() -> None:
    a = random_scene(n_objects=6, seed=11)
    b = random_scene(n_objects=6, seed=11)
    c = random_scene(n_objects=6, seed=12)
    assert [o.ycb_id for o in a.objects] == [o.ycb_id for o in b.objects]
    assert all(np.array_equal(p.pose, q.pose) for p, q in zip(a.objects, b.objects, strict=True))
    assert any(not np.allclose(p.pose, q.pose) for p, q in zip(a.objects, c.objects, strict=True))
    chosen = random_scene(["025_mug", "025_mug", "061_foam_brick"], seed=0)
    assert [o.ycb_id for o in chosen.objects] == ["025_mug", "025_mug", "061_foam_brick"]
    table = a.table
    for scene in (a, c, chosen):
        radii = []
        for obj in scene.objects:
            world = ycb_vertices(obj.ycb_id) @ obj.pose[:3, :3].T + obj.pose[:3, 3]
            assert abs(world[:, 2].min()) < 1e-9, "object must rest on the table"
            assert np.all(np.abs(world[:, 0]) < table.size_x / 2)
            assert np.all(np.abs(world[:, 1]) < table.size_y / 2)
            radii.append(np.max(np.linalg.norm(world[:, :2] - obj.pose[:2, 3], axis=1)))
        for i in range(len(scene.objects)):
            for j in range(i):
                gap = np.linalg.norm(scene.objects[i].pose[:2, 3] - scene.objects[j].pose[:2, 3])
                assert gap > radii[i] + radii[j]
    with pytest.raises(ValueError, match="could not place"):
        random_scene(["006_mustard_bottle"] * 6, seed=0, max_tries=50,
                     table=type(table)(size_x=0.3, size_y=0.3))


def test_camera_pose_is_an_optical_frame_looking_at_the_table(frame: RenderedFrame) -> None:
    pose = frame.camera_pose
    assert np.allclose(pose[:3, :3].T @ pose[:3, :3], np.eye(3))
    assert np.isclose(np.linalg.det(pose[:3, :3]), 1.0)
    assert pose[2, 2] < -0.5, "optical z must point down at the table"
    assert 0.6 <= np.linalg.norm(pose[:3, 3]) <= 0.9


def test_depth_noise_and_missing_pixels(scene: SceneSpec, frame: RenderedFrame) -> None:
    noisy = render(scene, depth_noise_sigma=0.005, seed=1)
    valid = np.isfinite(frame.depth)
    assert np.array_equal(np.isfinite(noisy.depth), valid)
    residual = (noisy.depth - frame.depth)[valid]
    assert abs(np.mean(residual)) < 0.0005
    assert np.std(residual) == pytest.approx(0.005, rel=0.05)
    assert np.array_equal(noisy.color, frame.color)
    holes = render(scene, missing_depth_fraction=0.25, seed=1)
    still = np.isfinite(holes.depth)
    assert not np.any(still & ~valid)
    assert 1.0 - still.sum() / valid.sum() == pytest.approx(0.25, abs=0.002)
    assert np.array_equal(holes.depth[still], frame.depth[still])
    again = render(scene, missing_depth_fraction=0.25, seed=1)
    assert np.array_equal(again.depth, holes.depth, equal_nan=True)
    with pytest.raises(ValueError):
        render(scene, missing_depth_fraction=1.5)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip_is_exact(tmp_path, frame: RenderedFrame, storage: str) -> None:
    noisy = render(random_scene(n_objects=2, seed=5, camera=SMALL_CAMERA),
                   missing_depth_fraction=0.1)
    frames = [frame, noisy]
    path = write_frames_bag(tmp_path / "bag", frames, storage=storage)
    back = read_frames_bag(path)
    assert len(back) == 2
    assert back[1].stamp - back[0].stamp == 33_333_333
    for original, read in zip(frames, back, strict=True):
        assert np.array_equal(read.color, original.color)
        assert read.depth_m.dtype == np.float32
        assert np.array_equal(read.depth_m, original.depth, equal_nan=True)
        assert read.intrinsics == original.intrinsics
    truth = read_ground_truth(path)
    assert truth[0]["object_ids"] == list(frame.object_ids)
    assert truth[0]["labels"] == list(frame.labels)
    assert np.allclose(truth[0]["planning_from_object"], frame.object_poses)
    assert np.allclose(truth[0]["planning_from_camera_optical"], frame.camera_pose)


def test_bag_16uc1_depth_and_custom_topics(tmp_path, frame: RenderedFrame) -> None:
    topics = BagTopics(color="/cam/rgb", depth="/cam/depth", camera_info="/cam/info")
    path = write_frames_bag(tmp_path / "bag", [frame], depth_encoding="16UC1", topics=topics,
                            stamps_ns=[1_700_000_000_123_456_789])
    (read,) = read_frames_bag(path, topics=topics)
    assert read.stamp == 1_700_000_000_123_456_789
    valid = np.isfinite(frame.depth)
    assert np.array_equal(np.isfinite(read.depth_m), valid)
    assert np.max(np.abs(read.depth_m[valid] - frame.depth[valid])) <= 0.0005 + 1e-6
    with pytest.raises(ValueError, match=COLOR_TOPIC):
        read_frames_bag(path)
    assert DEPTH_TOPIC == "/camera/depth/image_raw"
