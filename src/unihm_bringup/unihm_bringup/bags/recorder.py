"""Record topics of the running graph into an mcap rosbag2 (rclpy in, rosbags out).

Messages arrive serialized (``raw=True``), so recording costs no Python conversion of images;
each message goes through ``types.normalize_cdr`` (rclpy's padding, see there) and into a
``rosbags`` writer. The bag time of a message is its receive time on the node's clock.

SIGINT and SIGTERM stop the recording cleanly: what is still queued is taken and written, then
the writer is closed (mcap summary and ``metadata.yaml``), so the bag is complete and readable.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from unihm_bringup.bags.goal_record import GOAL_RECORD_DEPTH, GOAL_RECORD_TOPIC, GOAL_RECORD_TYPE
from unihm_bringup.bags.types import bag_typestore, connection_definition, normalize_cdr
from unihm_perception.bag_io import CAMERA_INFO_TOPIC, COLOR_TOPIC, DEPTH_TOPIC

MANIPULATE_FEEDBACK_TOPIC = "/unihm/manipulate/_action/feedback"
MANIPULATE_STATUS_TOPIC = "/unihm/manipulate/_action/status"

DEFAULT_TOPICS: dict[str, str] = {
    COLOR_TOPIC: "sensor_msgs/msg/Image",
    DEPTH_TOPIC: "sensor_msgs/msg/Image",
    CAMERA_INFO_TOPIC: "sensor_msgs/msg/CameraInfo",
    "/unihm/object_cloud": "sensor_msgs/msg/PointCloud2",
    "/unihm/object": "unihm_msgs/msg/ObjectObservation",
    "/unihm/target_trajectory": "unihm_msgs/msg/TargetTrajectory",
    "/unihm/generated_trajectory": "unihm_msgs/msg/HandTrajectory",
    "/unihm/refined_trajectory": "unihm_msgs/msg/HandTrajectory",
    "/joint_states": "sensor_msgs/msg/JointState",
    MANIPULATE_FEEDBACK_TOPIC: "unihm_msgs/action/Manipulate_FeedbackMessage",
    MANIPULATE_STATUS_TOPIC: "action_msgs/msg/GoalStatusArray",
    GOAL_RECORD_TOPIC: GOAL_RECORD_TYPE,
}
"""Topic -> type recorded by default: camera, pipeline outputs, joints, the action's feedback
and status, and the goal records."""

SENSOR_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.VOLATILE)
"""Camera topics: best effort (matches best-effort and reliable drivers alike)."""
LATCHED_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""/unihm outputs and the action status: reliable, transient local (docs/interfaces.md); a
recorder started after a request still gets the last outputs."""
STREAM_QOS = QoSProfile(depth=GOAL_RECORD_DEPTH, history=HistoryPolicy.KEEP_LAST,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)
"""Goal records, action feedback, joint states: reliable and volatile."""

_STREAM_TOPICS = (GOAL_RECORD_TOPIC, MANIPULATE_FEEDBACK_TOPIC, "/joint_states")


def default_qos(topic: str) -> QoSProfile:
    """The QoS the recorder subscribes with when no publisher tells otherwise."""
    if topic in _STREAM_TOPICS:
        return STREAM_QOS
    if topic.startswith("/unihm/"):
        return LATCHED_QOS
    return SENSOR_QOS


def adapted_qos(topic: str, offered: Iterable[Any]) -> QoSProfile:
    """Subscription QoS compatible with every publisher seen (``TopicEndpointInfo.qos_profile``).

    Reliable only when all publishers are reliable and transient local only when all are, so a
    best-effort or volatile publisher is never left unmatched.
    """
    profiles = [getattr(info, "qos_profile", info) for info in offered]
    base = default_qos(topic)
    if not profiles:
        return base
    reliable = all(p.reliability == ReliabilityPolicy.RELIABLE for p in profiles)
    latched = all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in profiles)
    return QoSProfile(depth=base.depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=(ReliabilityPolicy.RELIABLE if reliable
                                   else ReliabilityPolicy.BEST_EFFORT),
                      durability=(DurabilityPolicy.TRANSIENT_LOCAL if latched
                                  else DurabilityPolicy.VOLATILE))


def message_class(type_name: str) -> type:
    """The rclpy class of ``pkg/msg/Name``, ``pkg/srv/Name`` or an action's inner messages.

    ``pkg/action/A_FeedbackMessage`` (the type of ``<action>/_action/feedback``) and
    ``pkg/action/A_Goal``/``_Result``/``_Feedback`` are found on the action class.
    """
    try:
        package, kind, name = type_name.split("/")
    except ValueError:
        raise ValueError(f"type {type_name!r} is not of the form pkg/msg/Name") from None
    module = importlib.import_module(f"{package}.{kind}")
    if hasattr(module, name):
        return getattr(module, name)
    if kind == "action" and "_" in name:
        action_name, part = name.split("_", 1)
        action = getattr(module, action_name, None)
        if action is not None:
            found = getattr(action, part, None) or getattr(action.Impl, part, None)
            if found is not None:
                return found
    raise ValueError(f"no message class for {type_name!r} in {package}.{kind}")


class BagWriter:
    """A rosbags mcap (or sqlite3) writer that adds topics as they come and counts messages.

    Thread-safe: callbacks of a multithreaded executor may write concurrently.
    """

    def __init__(self, path: str | Path, *, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"storage must be one of {', '.join(plugins)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} exists; give a new folder name")
        self.store = bag_typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        self._writer.open()
        self._connections: dict[str, tuple[Any, str]] = {}
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.closed = False

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Declare a topic; KeyError when the type store does not know the type."""
        if msgtype not in self.store.types:
            raise KeyError(f"type {msgtype} of {topic} is unknown to the bag type store")
        with self._lock:
            if topic not in self._connections:
                msgdef, rihs01 = connection_definition(self.store, msgtype)
                conn = self._writer.add_connection(topic, msgtype, msgdef=msgdef,
                                                   rihs01=rihs01)
                self._connections[topic] = (conn, msgtype)

    def write(self, topic: str, stamp_ns: int, raw: bytes | memoryview) -> None:
        """Write one serialized message of a declared topic (normalised, see ``types``)."""
        conn, msgtype = self._connections[topic]
        data = normalize_cdr(self.store, raw, msgtype)
        with self._lock:
            if self.closed:
                return
            self._writer.write(conn, int(stamp_ns), data)
            self.counts[topic] += 1

    def close(self) -> None:
        """Finish the bag (idempotent)."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecorderNode(Node):
    """Subscribes to topics with raw callbacks and writes every message to a BagWriter.

    ``topics`` maps topic names to type names (``pkg/msg/Name``); a type of None is looked up in
    the graph and the topic subscribed once a publisher appears. ``progress_s`` > 0 logs (and
    passes to ``on_progress``) the message counts that often.
    """

    def __init__(self, writer: BagWriter, topics: Mapping[str, str | None] | None = None, *,
                 node_name: str = "unihm_recorder", context: Context | None = None,
                 progress_s: float = 5.0,
                 on_progress: Callable[[Mapping[str, int]], None] | None = None) -> None:
        super().__init__(node_name, context=context)
        self.writer = writer
        self.wanted: dict[str, str | None] = dict(DEFAULT_TOPICS if topics is None else topics)
        self._recording: dict[str, Any] = {}
        self._on_progress = on_progress
        self._subscribe_known()
        if any(t not in self._recording for t in self.wanted):
            self.create_timer(0.5, self._subscribe_discovered)
        if progress_s > 0:
            self.create_timer(progress_s, self.report_progress)

    @property
    def subscribed(self) -> list[str]:
        """Topics being recorded now."""
        return sorted(self._recording)

    @property
    def pending(self) -> list[str]:
        """Topics waiting for a publisher to tell their type."""
        return sorted(t for t in self.wanted if t not in self._recording)

    def _subscribe(self, topic: str, msgtype: str) -> None:
        try:
            cls = message_class(msgtype)
            self.writer.add_topic(topic, msgtype)
        except (ImportError, ValueError, KeyError) as e:
            self.get_logger().error(f"not recording {topic}: {e}")
            self.wanted.pop(topic, None)
            return
        qos = adapted_qos(topic, self.get_publishers_info_by_topic(topic))
        clock = self.get_clock()
        self._recording[topic] = self.create_subscription(
            cls, topic, lambda raw, t=topic: self.writer.write(t, clock.now().nanoseconds, raw),
            qos, raw=True)
        self.get_logger().info(f"recording {topic} ({msgtype})")

    def _subscribe_known(self) -> None:
        for topic, msgtype in list(self.wanted.items()):
            if msgtype and topic not in self._recording:
                self._subscribe(topic, msgtype)

    def _subscribe_discovered(self) -> None:
        pending = set(self.pending)
        if not pending:
            return
        for topic, types in self.get_topic_names_and_types():
            if topic in pending and types:
                if len(types) > 1:
                    self.get_logger().warn(f"{topic} has several types {types}; using {types[0]}")
                self.wanted[topic] = types[0]
                self._subscribe(topic, types[0])

    def report_progress(self) -> None:
        """Log the message count per topic."""
        counts = dict(self.writer.counts)
        total = sum(counts.values())
        per_topic = ", ".join(f"{t}: {n}" for t, n in sorted(counts.items()))
        self.get_logger().info(f"{total} messages recorded ({per_topic or 'none yet'})")
        if self._on_progress is not None:
            self._on_progress(counts)


def drain(executor: Any, writer: BagWriter, *, quiet_s: float = 0.15,
          max_s: float = 1.0) -> None:
    """Spin until nothing new arrived for ``quiet_s`` (at most ``max_s``): what DDS has already
    delivered to the recorder's readers is written before the bag is closed."""
    end = time.monotonic() + max_s
    last_total, last_change = sum(writer.counts.values()), time.monotonic()
    while time.monotonic() < end and time.monotonic() - last_change < quiet_s:
        executor.spin_once(timeout_sec=0.02)
        total = sum(writer.counts.values())
        if total != last_total:
            last_total, last_change = total, time.monotonic()


def parse_topics(topics: Sequence[str] | None) -> dict[str, str | None] | None:
    """CLI topic list -> recorder topics: ``/topic`` or ``/topic:pkg/msg/Type``; defaults'
    types are known, others are taken from the graph."""
    if not topics:
        return None
    out: dict[str, str | None] = {}
    for item in topics:
        topic, _, msgtype = item.partition(":")
        topic = topic if topic.startswith("/") else f"/{topic}"
        out[topic] = msgtype or DEFAULT_TOPICS.get(topic)
    return out


def record(out: str | Path, topics: Mapping[str, str | None] | None = None, *,
           duration_s: float | None = None, storage: str = "mcap", progress_s: float = 5.0,
           on_ready: Callable[[RecorderNode], None] | None = None,
           on_progress: Callable[[Mapping[str, int]], None] | None = None) -> dict[str, int]:
    """Record until SIGINT/SIGTERM or ``duration_s``; returns the message count per topic.

    Owns its rclpy context (so it can run beside other rclpy users) and installs its own
    SIGINT/SIGTERM handlers for the time it records (restored afterwards).
    """
    writer = BagWriter(out, storage=storage)
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, lambda _s, _f: stop.set())
                    for s in (signal.SIGINT, signal.SIGTERM)}
    node = None
    executor = SingleThreadedExecutor(context=context)
    try:
        node = RecorderNode(writer, topics, context=context, progress_s=progress_s,
                            on_progress=on_progress)
        executor.add_node(node)
        if on_ready is not None:
            on_ready(node)
        end = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set() and (end is None or time.monotonic() < end):
            executor.spin_once(timeout_sec=0.1)
        drain(executor, writer)
    finally:
        writer.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.shutdown(context=context)
    return dict(writer.counts)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m unihm_bringup.bags.recorder OUT [TOPIC ...]`` (``unihm record`` is the CLI)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: recorder OUT [TOPIC[:TYPE] ...]", file=sys.stderr)
        return 2
    counts = record(args[0], parse_topics(args[1:]))
    print(f"{sum(counts.values())} messages recorded to {args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
