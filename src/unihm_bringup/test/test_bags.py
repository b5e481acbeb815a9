"""Bag recording, camera playback and replay comparison.

ROS tests run real nodes (the recorder as ``unihm record`` in a subprocess, the player and a
test subscriber in this process, the Manipulate peer of the smoke test) on the isolated domain
the unihm_core pytest plugin gives this process.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Duration  # noqa: E402
from geometry_msgs.msg import Pose  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import (  # noqa: E402
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402
from rosbags.serde import SerdeError  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from trajectory_msgs.msg import JointTrajectoryPoint  # noqa: E402

from unihm_bringup.bags.goal_record import (  # noqa: E402
    GOAL_RECORD_TOPIC,
    GoalRecordError,
    goal_record_message,
    parse_goal_record,
)
from unihm_bringup.bags.outcomes import (  # noqa: E402
    GoalOutcome,
    HandMotion,
    compare_outcomes,
    read_recorded_outcomes,
)
from unihm_bringup.bags.player import CameraPlayer, read_camera_messages  # noqa: E402
from unihm_bringup.bags.recorder import BagWriter, message_class  # noqa: E402
from unihm_bringup.bags.replay import ReplayError, plan_goals, replay  # noqa: E402
from unihm_bringup.bags.types import (  # noqa: E402
    bag_typestore,
    connection_definition,
    normalize_cdr,
)
from unihm_msgs.msg import HandTrajectory, TargetTrajectory  # noqa: E402
from unihm_perception import bag_io, scene  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from ros_peer import sample_trajectory  # noqa: E402

PEER = Path(__file__).with_name("ros_peer.py")

DISCOVERY_TIMEOUT_S = 20.0
LATCHED = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
VOLATILE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


# ---------------------------------------------------------------------------- fixtures, helpers
@pytest.fixture(scope="module")
def frame() -> scene.RenderedFrame:
    """A small rendered RGB-D frame of the mustard bottle."""
    spec = scene.random_scene(["006_mustard_bottle"], seed=1,
                              camera=scene.CameraSpec(width=96, height=72))
    return scene.render(spec)


@pytest.fixture(scope="module")
def camera_bag(tmp_path_factory: pytest.TempPathFactory, frame: scene.RenderedFrame) -> Path:
    """Two frames written by bag_io, depth in 16UC1 millimetres."""
    path = tmp_path_factory.mktemp("cam") / "cam"
    return bag_io.write_frames_bag(path, [frame, frame], depth_encoding="16UC1")


def _spin_until(nodes: list[Node], done, timeout_s: float) -> bool:
    executor = SingleThreadedExecutor(context=nodes[0].context)
    for node in nodes:
        executor.add_node(node)
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)
    executor.shutdown(timeout_sec=1.0)
    return done()


@pytest.fixture
def context() -> Iterator[Context]:
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def _image_msg(frame: scene.RenderedFrame, stamp_s: int) -> tuple[Image, Image, CameraInfo]:
    k = frame.intrinsics
    color = Image(height=k.height, width=k.width, encoding="rgb8", step=3 * k.width,
                  data=np.ascontiguousarray(frame.color).tobytes())
    depth = Image(height=k.height, width=k.width, encoding="32FC1", step=4 * k.width,
                  data=np.ascontiguousarray(frame.depth, dtype="<f4").tobytes())
    info = CameraInfo(height=k.height, width=k.width, distortion_model="plumb_bob",
                      d=[0.0] * 5, k=k.matrix.reshape(-1).tolist())
    for msg in (color, depth, info):
        msg.header.stamp.sec = stamp_s
        msg.header.frame_id = "camera_color_optical_frame"
    return color, depth, info


def _cloud() -> PointCloud2:
    points = np.arange(30, dtype="<f4").reshape(10, 3)
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate("xyz")]
    msg = PointCloud2(height=1, width=10, fields=fields, is_bigendian=False, point_step=12,
                      row_step=120, data=points.tobytes(), is_dense=True)
    msg.header.frame_id = "world"
    return msg


def _target(request_id: str, end_x: float) -> TargetTrajectory:
    msg = TargetTrajectory(request_id=request_id, object_id="006_mustard_bottle",
                           object_label="mustard bottle", task="lift")
    msg.header.frame_id = "world"
    for i in range(3):
        pose = Pose()
        pose.position.x = end_x * i / 2
        pose.position.z = 0.1 * i
        pose.orientation.w = 1.0
        msg.poses.append(pose)
        msg.time_from_start.append(Duration(sec=i, nanosec=0))
    return msg


@pytest.mark.parametrize("module", ["goal_record", "types", "outcomes"])
def test_bag_libraries_import_without_ros(module: str) -> None:
    from unihm_core.testing import assert_imports_without_ros

    assert_imports_without_ros(f"unihm_bringup.bags.{module}")


# ------------------------------------------------------------------------------- goal records
def test_goal_record_round_trip() -> None:
    text = goal_record_message(request_id="r-1", instruction="lift the mustard bottle",
                               hands=["xhand_right"], execute=True, success=False,
                               error_code=2, failed_stage="perceiving",
                               message="object not found", stage_s={"perceiving": 0.75},
                               total_s=0.8, stamp_ns=123)
    assert "\n" not in text
    record = parse_goal_record(text)
    assert (record.request_id, record.instruction, record.hands) == (
        "r-1", "lift the mustard bottle", ("xhand_right",))
    assert record.execute and not record.success and not record.executed
    assert (record.error_code, record.error_name, record.failed_stage) == (
        2, "PERCEPTION_FAILED", "perceiving")
    assert record.stage_s == {"perceiving": 0.75} and record.total_s == 0.8
    assert record.stamp_ns == 123 and json.loads(text)["schema"] == "unihm.goal_record/1"
    assert math.isnan(parse_goal_record(goal_record_message(
        request_id="r", instruction="i", success=True, error_code=0)).total_s)


def test_goal_record_rejects_bad_input() -> None:
    with pytest.raises(GoalRecordError, match="unknown stage"):
        goal_record_message(request_id="r", instruction="i", success=True, error_code=0,
                            stage_s={"perceive": 1.0})
    with pytest.raises(GoalRecordError, match="schema"):
        parse_goal_record('{"request_id": "r"}')
    with pytest.raises(GoalRecordError, match="not JSON"):
        parse_goal_record("nope")
    with pytest.raises(GoalRecordError, match="lacks"):
        parse_goal_record('{"schema": "unihm.goal_record/1", "request_id": "r"}')


# -------------------------------------------------------------------------- CDR and type store
def test_rclpy_cdr_is_normalised_for_rosbags() -> None:
    """rclpy over-sizes messages with empty float64 sequences; rosbags rejects them as they
    are, and reads them after normalisation, which rclpy reads back as the same message."""
    store = bag_typestore()
    for msg, msgtype in ((sample_trajectory("r", "xhand_right"), "unihm_msgs/msg/HandTrajectory"),
                         (JointTrajectoryPoint(positions=[1.0]),
                          "trajectory_msgs/msg/JointTrajectoryPoint")):
        raw = serialize_message(msg)
        with pytest.raises(SerdeError, match="size mismatch"):
            store.deserialize_cdr(raw, msgtype)
        fixed = normalize_cdr(store, raw, msgtype)
        store.deserialize_cdr(fixed, msgtype)
        assert deserialize_message(fixed, type(msg)) == msg


def test_rclpy_images_are_read_by_rosbags_unchanged(frame: scene.RenderedFrame) -> None:
    """Images (and the other camera messages) need no change: only padding to 4 bytes."""
    store = bag_typestore()
    for msg in (*_image_msg(frame, 5), _cloud()):
        raw = serialize_message(msg)
        msgtype = f"sensor_msgs/msg/{type(msg).__name__}"
        assert normalize_cdr(store, raw, msgtype) == raw
        back = store.deserialize_cdr(raw, msgtype)
        assert back.header.frame_id == msg.header.frame_id


def test_action_feedback_type_hash_matches_rosidl() -> None:
    import unihm_msgs
    from unihm_core.interface_hashes import installed_type_hashes, package_prefix_of_module

    store = bag_typestore()
    name = "unihm_msgs/action/Manipulate_FeedbackMessage"
    msgdef, rihs01 = connection_definition(store, name)
    built = installed_type_hashes(package_prefix_of_module(unihm_msgs.__file__), "unihm_msgs",
                                  "action", "Manipulate")
    assert rihs01 == built[name]
    assert "MSG: unihm_msgs/action/Manipulate_Feedback" in msgdef
    assert message_class(name).__name__ == "Manipulate_FeedbackMessage"


# ---------------------------------------------------------------------------------- outcomes
def _motion(hand_id: str, offset: float = 0.0, wrist_dx: float = 0.0,
            frames: int = 5) -> HandMotion:
    t = np.linspace(0.0, 1.0, frames)
    positions = np.outer(t, np.arange(1, 4)) + offset
    wrists = np.stack([t * 0.2 + wrist_dx, np.zeros(frames), np.full(frames, 0.3)], axis=1)
    return HandMotion(hand_id, ("a", "b", "c"), positions, wrists)


def _outcome(request_id: str, **kw: Any) -> GoalOutcome:
    base: dict[str, Any] = {"instruction": "lift the mustard bottle", "success": True,
                            "error_code": 0, "object_id": "006_mustard_bottle",
                            "target_end": np.array([0.1, 0.0, 0.2]),
                            "hands": {"xhand_right": _motion("xhand_right")},
                            "stage_s": {"perceiving": 0.5, "generating": 1.0}, "total_s": 2.0}
    base.update(kw)
    return GoalOutcome(request_id, **base)


def test_compare_identical_outcomes() -> None:
    c = compare_outcomes(_outcome("a"), _outcome("b"))
    assert c["request_id"] == {"recorded": "a", "new": "b"}
    assert c["success"]["same"] and c["error_code"]["same"] and c["object_id"]["same"]
    assert c["target_end_diff_m"] == 0.0
    hand = c["hands"]["xhand_right"]
    assert hand["mean_joint_diff_rad"] == 0.0 and hand["mean_wrist_diff_mm"] == 0.0
    assert c["stage_s"]["perceiving"] == {"recorded": 0.5, "new": 0.5, "diff": 0.0}
    json.dumps(c)  # JSON-ready


def test_compare_different_outcomes() -> None:
    new = _outcome("b", success=False, error_code=4, target_end=np.array([0.1, 0.03, 0.24]),
                   hands={"xhand_right": _motion("xhand_right", offset=0.02, wrist_dx=0.005),
                          "allegro_right": _motion("allegro_right")},
                   stage_s={"perceiving": 0.75, "refining": 2.0})
    c = compare_outcomes(_outcome("a"), new)
    assert c["success"] == {"recorded": True, "new": False, "same": False}
    assert c["error_code"] == {"recorded": 0, "new": 4, "same": False}
    assert c["target_end_diff_m"] == pytest.approx(0.05)
    hand = c["hands"]["xhand_right"]
    assert hand["mean_joint_diff_rad"] == pytest.approx(0.02)
    assert hand["mean_wrist_diff_mm"] == pytest.approx(5.0)
    assert c["hands"]["allegro_right"] == {"missing": "recorded"}
    assert c["stage_s"]["perceiving"]["diff"] == pytest.approx(0.25)
    assert c["stage_s"]["generating"] == {"recorded": 1.0, "new": None, "diff": None}
    assert c["stage_s"]["refining"]["new"] == 2.0


def test_compare_resamples_different_lengths_and_joint_sets() -> None:
    longer = _motion("xhand_right", frames=9)
    new = HandMotion("xhand_right", ("c", "a", "z"), longer.positions[:, [2, 0, 1]],
                     longer.wrist_positions)
    hand = compare_outcomes(_outcome("a"), _outcome("b", hands={"xhand_right": new}))["hands"]
    figures = hand["xhand_right"]
    assert figures["points"] == [5, 9]
    assert figures["mean_joint_diff_rad"] == pytest.approx(0.0, abs=1e-12)  # a and c shared
    assert figures["mean_wrist_diff_mm"] == pytest.approx(0.0, abs=1e-9)
    assert figures["unshared_joints"] == ["b", "z"]
    missing = compare_outcomes(_outcome("a"), _outcome("b", hands={}))["hands"]
    assert missing == {"xhand_right": {"missing": "new"}}


def test_plan_goals() -> None:
    recorded = [_outcome("a", hands_requested=("allegro_right",)),
                _outcome("b", instruction="push the mug")]
    (goal,) = plan_goals(recorded, instruction="  Push the MUG ", execute=True)
    assert goal.recorded is recorded[1] and goal.execute and goal.hands == ()
    (goal,) = plan_goals(recorded, instruction="lift the banana")
    assert goal.recorded is None
    goals = plan_goals(recorded)
    assert [g.recorded for g in goals] == recorded and not any(g.execute for g in goals)
    assert goals[0].hands == ("allegro_right",)
    assert plan_goals(recorded, hands=["xhand_right"])[0].hands == ("xhand_right",)
    with pytest.raises(ReplayError, match="no goal records"):
        plan_goals([])


def _write_session_bag(path: Path, camera_bag: Path, *, shift: float) -> Path:
    """A bag as a recording of one goal would be: camera frames, the object observation of
    the second frame, the target, the refined trajectory and the goal record."""
    from unihm_msgs.msg import ObjectObservation

    frames = read_camera_messages(camera_bag)
    refined = sample_trajectory("rec-1", "xhand_right")
    refined.source = HandTrajectory.SOURCE_REFINED
    for point in refined.joint_trajectory.points:
        point.positions = [p + shift for p in point.positions]
    observation = ObjectObservation(request_id="rec-1", object_id="006_mustard_bottle")
    observation.header.stamp.sec = frames[1].stamp_ns // 1_000_000_000
    observation.header.stamp.nanosec = frames[1].stamp_ns % 1_000_000_000
    record = String(data=goal_record_message(
        request_id="rec-1", instruction="pick up the mustard bottle", hands=["xhand_right"],
        success=True, error_code=0, stage_s={"perceiving": 0.2}, total_s=1.0))
    with BagWriter(path) as writer:
        for topic, attr in ((bag_io.COLOR_TOPIC, "color"), (bag_io.DEPTH_TOPIC, "depth"),
                            (bag_io.CAMERA_INFO_TOPIC, "camera_info")):
            writer.add_topic(topic, "sensor_msgs/msg/CameraInfo" if attr == "camera_info"
                             else "sensor_msgs/msg/Image")
            for f in frames:
                writer.write(topic, f.bag_time_ns, f.raw[attr])
        messages = [("/unihm/object", "unihm_msgs/msg/ObjectObservation", observation),
                    ("/unihm/target_trajectory", "unihm_msgs/msg/TargetTrajectory",
                     _target("rec-1", 0.3)),
                    ("/unihm/refined_trajectory", "unihm_msgs/msg/HandTrajectory", refined),
                    (GOAL_RECORD_TOPIC, "std_msgs/msg/String", record)]
        for i, (topic, msgtype, msg) in enumerate(messages):
            writer.add_topic(topic, msgtype)
            writer.write(topic, 2_000_000_000 + i, serialize_message(msg))
    return path


def test_read_recorded_outcomes(tmp_path: Path, camera_bag: Path) -> None:
    bag = _write_session_bag(tmp_path / "session", camera_bag, shift=0.01)
    (outcome,) = read_recorded_outcomes(bag)
    assert outcome.request_id == "rec-1" and outcome.success and outcome.error_code == 0
    assert outcome.instruction == "pick up the mustard bottle"
    assert outcome.hands_requested == ("xhand_right",)
    assert outcome.object_id == "006_mustard_bottle"
    assert outcome.object_stamp_ns == read_camera_messages(camera_bag)[1].stamp_ns
    assert outcome.target_end == pytest.approx([0.3, 0.0, 0.2])
    motion = outcome.hands["xhand_right"]
    assert motion.positions.shape == (5, 12) and motion.wrist_positions.shape == (5, 3)
    assert motion.positions[0, 0] == pytest.approx(0.01)
    assert outcome.stage_s == {"perceiving": 0.2} and outcome.total_s == 1.0


# ---------------------------------------------------------------------------------- ROS: record
class _Lines:
    """Collects a subprocess's stdout lines on a thread (JSON lines parsed)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.text.append(line)
            with contextlib.suppress(json.JSONDecodeError):
                self.lines.append(json.loads(line))

    def wait_for(self, pred, timeout_s: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if pred(line):
                    return line
            time.sleep(0.05)
        return None


def _read_bag(path: Path) -> dict[str, list[bytes]]:
    store = bag_typestore()
    out: dict[str, list[bytes]] = {}
    with Reader(path) as reader:
        for conn, _, raw in reader.messages():
            store.deserialize_cdr(raw, conn.msgtype)  # strict: what any rosbags user does
            out.setdefault(conn.topic, []).append(bytes(raw))
    return out


@pytest.mark.ros
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])
def test_recorder_bag_is_complete_after_a_signal(tmp_path: Path, frame: scene.RenderedFrame,
                                                 context: Context, stop_signal: int) -> None:
    out = tmp_path / "rec"
    log = tmp_path / "recorder.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "unihm_core.cli", "record", "--out",
                                 str(out), "--progress", "0.2"], stdout=subprocess.PIPE,
                                stderr=stderr, text=True)
    lines = _Lines(proc)
    try:
        started = lines.wait_for(lambda d: "recording" in d, 30.0)
        assert started is not None, f"recorder did not start: {lines.text}"
        assert "/unihm/refined_trajectory" in started["topics"]
        node = Node("bag_test_publisher", context=context)
        color, depth, info = _image_msg(frame, 7)
        hands = [sample_trajectory("req-9", h) for h in ("xhand_right", "allegro_right")]
        record = String(data=goal_record_message(request_id="req-9", instruction="lift it",
                                                 success=True, error_code=0))
        sent: dict[str, tuple[type, Any, list[Any]]] = {
            bag_io.COLOR_TOPIC: (Image, VOLATILE, [color]),
            bag_io.DEPTH_TOPIC: (Image, VOLATILE, [depth]),
            bag_io.CAMERA_INFO_TOPIC: (CameraInfo, VOLATILE, [info]),
            "/unihm/refined_trajectory": (HandTrajectory, LATCHED, hands),
            "/unihm/target_trajectory": (TargetTrajectory, LATCHED, [_target("req-9", 0.2)]),
            "/unihm/object_cloud": (PointCloud2, LATCHED, [_cloud()]),
            GOAL_RECORD_TOPIC: (String, VOLATILE, [record]),
        }
        pubs = {t: node.create_publisher(cls, t, qos) for t, (cls, qos, _) in sent.items()}
        assert _spin_until([node], lambda: all(p.get_subscription_count() for p in
                                               pubs.values()), DISCOVERY_TIMEOUT_S)
        camera = (bag_io.COLOR_TOPIC, bag_io.DEPTH_TOPIC, bag_io.CAMERA_INFO_TOPIC)
        for topic, (_, _, msgs) in sent.items():
            for msg in msgs:
                pubs[topic].publish(msg)
        for pub in pubs.values():  # reliable readers have every sample queued
            assert pub.wait_for_all_acked(rclpy.duration.Duration(seconds=10))
        # Best-effort camera samples are neither acknowledged nor kept for a reader that has
        # not discovered the writer yet: send them again until the recorder counted them.
        deadline = time.monotonic() + 20.0
        while not lines.wait_for(lambda d: all(d.get("recorded", {}).get(t) for t in camera),
                                 0.5):
            assert time.monotonic() < deadline, lines.text
            for topic in camera:
                pubs[topic].publish(sent[topic][2][0])
        proc.send_signal(stop_signal)
        proc.wait(timeout=20)
        node.destroy_node()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()
    closed = lines.wait_for(lambda d: "closed" in d, 5.0)
    assert closed is not None, lines.text
    recorded = _read_bag(out)
    for topic, (cls, _, msgs) in sent.items():
        got = [deserialize_message(raw, cls) for raw in recorded.get(topic, [])]
        if topic in camera:  # sent once or more
            assert got and all(m == msgs[0] for m in got), topic
        else:
            assert got == msgs, topic
    assert closed["recorded"] == {t: len(recorded[t]) for t in sent}
    assert "/unihm/manipulate/_action/feedback" in _connections(out)


def _connections(path: Path) -> dict[str, str]:
    with Reader(path) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


# ------------------------------------------------------------------------------------ ROS: play
@pytest.mark.ros
def test_player_publishes_bag_frames(camera_bag: Path, context: Context) -> None:
    frames = read_camera_messages(camera_bag)
    assert len(frames) == 2
    received: dict[str, list[Any]] = {"color": [], "depth": [], "camera_info": []}
    sub = Node("bag_test_subscriber", context=context)
    # a reliable reader: both frames arrive even if it matches the player a little later
    for stream, topic, cls in (("color", bag_io.COLOR_TOPIC, Image),
                               ("depth", bag_io.DEPTH_TOPIC, Image),
                               ("camera_info", bag_io.CAMERA_INFO_TOPIC, CameraInfo)):
        sub.create_subscription(cls, topic, received[stream].append, VOLATILE)
    player = CameraPlayer(frames, mode="once", wait_for_subscribers=True, context=context)
    assert _spin_until([sub, player], lambda: all(len(v) == 2 for v in received.values()),
                       DISCOVERY_TIMEOUT_S), {k: len(v) for k, v in received.items()}
    assert player.finished
    decoded = bag_io.read_frames_bag(camera_bag)
    for i, (color, depth) in enumerate(zip(received["color"], received["depth"], strict=True)):
        stamp = color.header.stamp.sec * 1_000_000_000 + color.header.stamp.nanosec
        assert stamp == frames[i].stamp_ns  # recorded stamps in mode once
        assert (color.encoding, depth.encoding) == ("rgb8", "16UC1")
        pixels = np.frombuffer(bytes(color.data), np.uint8).reshape(color.height, color.width, 3)
        assert np.array_equal(pixels, decoded[i].color)
        mm = np.frombuffer(bytes(depth.data), "<u2").reshape(depth.height, depth.width)
        assert np.allclose(np.where(mm > 0, mm / 1000.0, np.nan), decoded[i].depth_m,
                           equal_nan=True)
    info = received["camera_info"][0]
    assert np.allclose(np.reshape(info.k, (3, 3)), decoded[0].intrinsics.matrix)
    player.destroy_node()

    # hold: the last frame again and again, stamped now
    for v in received.values():
        v.clear()
    holder = CameraPlayer(frames, mode="hold", rate_hz=20.0, hold_frame=-1, context=context)
    before = holder.get_clock().now().nanoseconds
    assert _spin_until([sub, holder], lambda: len(received["depth"]) >= 3, DISCOVERY_TIMEOUT_S)
    stamps = [d.header.stamp.sec * 1_000_000_000 + d.header.stamp.nanosec
              for d in received["depth"]]
    assert all(s > before for s in stamps) and stamps == sorted(set(stamps))
    assert all(bytes(d.data) == bytes(received["depth"][0].data) for d in received["depth"])
    holder.destroy_node()
    sub.destroy_node()


# ---------------------------------------------------------------------------------- ROS: replay
@pytest.mark.ros
def test_replay_without_server_fails_fast_and_clearly(camera_bag: Path) -> None:
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "unihm_core.cli", "replay", str(camera_bag),
                          "--instruction", "pick up the mustard bottle", "--timeout", "1"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2, out.stderr
    assert ("no Manipulate server at /unihm/manipulate (is the graph running? `unihm run sim`)"
            in out.stderr)
    assert time.monotonic() - start < 20.0


@pytest.mark.ros
def test_replay_compares_with_the_recorded_goal(tmp_path: Path, camera_bag: Path) -> None:
    bag = _write_session_bag(tmp_path / "session", camera_bag, shift=0.01)
    peer = subprocess.Popen([sys.executable, str(PEER), "action_server", "0.02"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None and peer.stdout.readline().strip() == "ready"
        lines = replay(bag, out=tmp_path / "out", timeout_s=DISCOVERY_TIMEOUT_S,
                       goal_timeout_s=30.0)
    finally:
        peer.send_signal(signal.SIGINT)
        peer.communicate(timeout=10)
    (line,) = lines
    assert line["status"] == "succeeded", line
    c = line["comparison"]
    assert c["request_id"]["recorded"] == "rec-1"
    assert c["success"] == {"recorded": True, "new": True, "same": True}
    assert c["error_code"]["same"]
    hand = c["hands"]["xhand_right"]
    assert hand["mean_joint_diff_rad"] == pytest.approx(0.01)
    assert hand["mean_wrist_diff_mm"] == pytest.approx(0.0)
    assert c["stage_s"]["perceiving"]["recorded"] == 0.2
    recorded = _read_bag(tmp_path / "out")
    assert recorded.get(bag_io.DEPTH_TOPIC), "the replayed camera stream was not recorded"
    # the peer waits for one feedback reader (the replay's client), not for the recorder's
    assert 1 <= len(recorded.get("/unihm/manipulate/_action/feedback", [])) <= 5
    assert recorded.get("/unihm/manipulate/_action/status")
