"""Play the camera stream of a bag (color, depth, CameraInfo) into the running graph.

Modes:
  ``hold``  the default for replay: the latest frame is re-published at ``rate_hz`` with fresh
            stamps (all three messages share one stamp, like a camera driver's), because
            perception takes the current frame and rejects stale ones. The held frame follows
            the recording at its rate and stays on the last one; ``hold_frame`` pins one.
  ``once``  every frame at its recorded time, recorded stamps, then stop (like ``ros2 bag play``).
  ``loop``  as ``once``, over and over.

The bag is read without rclpy (rosbags, topics and defaults of ``unihm_perception.bag_io``); the
messages are published as the bag holds them, so encodings (``rgb8``, ``32FC1``, ``16UC1``),
steps and distortion are exactly the recorded ones. Frames are held in memory: play short bags.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image

from unihm_bringup.bags.types import bag_typestore, deserialize_lenient
from unihm_perception.bag_io import BagTopics

MODES = ("hold", "once", "loop")
DEFAULT_TOPICS = BagTopics()
"""bag_io's camera topics."""
STREAMS = ("color", "depth", "camera_info")


class CameraFrameMessages(NamedTuple):
    """One frame of a bag as serialized messages: color, depth and CameraInfo of one stamp."""

    stamp_ns: int
    """Header stamp shared by the three messages."""
    bag_time_ns: int
    """Bag (receive) time of the frame's color message: the recorded timing."""
    raw: dict[str, bytes]
    """``color``, ``depth``, ``camera_info`` -> CDR bytes."""


def read_camera_messages(path: str | Path, *, topics: BagTopics = DEFAULT_TOPICS
                         ) -> list[CameraFrameMessages]:
    """The complete frames of a bag (all three topics with the same header stamp), in time order.

    Raises ValueError naming the bag's topics when one of the camera topics is missing.
    """
    from rosbags.rosbag2 import Reader

    store = bag_typestore()
    stream_of = {topics.color: "color", topics.depth: "depth", topics.camera_info: "camera_info"}
    by_stamp: dict[int, dict[str, tuple[int, bytes]]] = {}
    with Reader(Path(path)) as reader:
        conns = [c for c in reader.connections if c.topic in stream_of]
        missing = set(stream_of) - {c.topic for c in conns}
        if missing:
            have = ", ".join(sorted({c.topic for c in reader.connections})) or "none"
            raise ValueError(f"bag {path} has no camera topic(s) {', '.join(sorted(missing))}; "
                             f"its topics: {have}")
        for conn, bag_time, raw in reader.messages(connections=conns):
            msg, _ = deserialize_lenient(store, raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            by_stamp.setdefault(stamp, {})[stream_of[conn.topic]] = (bag_time, bytes(raw))
    frames = [CameraFrameMessages(stamp, parts["color"][0],
                                  {s: parts[s][1] for s in STREAMS})
              for stamp, parts in by_stamp.items() if len(parts) == len(STREAMS)]
    return sorted(frames, key=lambda f: (f.bag_time_ns, f.stamp_ns))


class CameraPlayer(Node):
    """Publishes frames of a bag on the camera topics (reliable, volatile, depth 5: matches
    best-effort and reliable subscribers).

    ``frames`` comes from ``read_camera_messages``. ``finished`` turns true when mode ``once``
    has published the last frame. With ``wait_for_subscribers``, modes ``once`` and ``loop``
    start the recorded timeline only when every camera topic has a subscriber, so the first
    frames are not published to nobody.
    """

    def __init__(self, frames: Sequence[CameraFrameMessages], *, mode: str = "hold",
                 rate_hz: float = 10.0, topics: BagTopics = DEFAULT_TOPICS,
                 hold_frame: int | None = None, wait_for_subscribers: bool = False,
                 node_name: str = "unihm_camera_player",
                 context: Context | None = None) -> None:
        super().__init__(node_name, context=context)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not frames:
            raise ValueError("no complete camera frame (color, depth and camera_info of one "
                             "stamp) to play")
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.frames = list(frames)
        self.mode = mode
        self.finished = False
        self.published = 0
        """Frames published so far."""
        self._classes = {"color": Image, "depth": Image, "camera_info": CameraInfo}
        qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
        names = {"color": topics.color, "depth": topics.depth,
                 "camera_info": topics.camera_info}
        self._pubs = {s: self.create_publisher(self._classes[s], names[s], qos) for s in STREAMS}
        self._decoded: dict[int, dict[str, Any]] = {}
        self._hold: int | None = None
        self.hold(hold_frame)
        self._waiting = wait_for_subscribers and mode != "hold"
        self._start = time.monotonic()
        self._next = 0
        t0 = self.frames[0].bag_time_ns
        self._offsets = [(f.bag_time_ns - t0) * 1e-9 for f in self.frames]
        period = 1.0 / rate_hz if mode == "hold" else 0.01
        self._timer = self.create_timer(period, self._tick)

    def hold(self, index: int | None) -> None:
        """Pin the held frame (Python index into ``frames``), or follow the recording (None)."""
        if index is not None:
            if not -len(self.frames) <= index < len(self.frames):
                raise IndexError(f"frame {index} out of range: the bag has "
                                 f"{len(self.frames)} frame(s)")
            index %= len(self.frames)
        self._hold = index

    def frame_index_for_stamp(self, stamp_ns: int) -> int:
        """Index of the frame whose header stamp is nearest to ``stamp_ns``."""
        return min(range(len(self.frames)),
                   key=lambda i: abs(self.frames[i].stamp_ns - stamp_ns))

    def _due_index(self) -> int:
        """The last frame whose recorded time has come."""
        elapsed = time.monotonic() - self._start
        while self._next < len(self.frames) and self._offsets[self._next] <= elapsed:
            self._next += 1
        return max(self._next - 1, 0)

    def _tick(self) -> None:
        if self.mode == "hold":
            self._publish_fresh(self._hold if self._hold is not None else self._due_index())
            return
        if self.finished:
            return
        if self._waiting:
            if any(p.get_subscription_count() == 0 for p in self._pubs.values()):
                return
            self._waiting = False
            self._start = time.monotonic()
        elapsed = time.monotonic() - self._start
        while self._next < len(self.frames) and self._offsets[self._next] <= elapsed:
            for stream in STREAMS:
                self._pubs[stream].publish(self.frames[self._next].raw[stream])
            self._next += 1
            self.published += 1
        if self._next >= len(self.frames):
            if self.mode == "loop":
                self._start, self._next = time.monotonic(), 0
            else:
                self.finished = True

    def _publish_fresh(self, index: int) -> None:
        """Publish frame ``index`` stamped now (messages decoded once and reused)."""
        msgs = self._decoded.get(index)
        if msgs is None:
            msgs = {s: deserialize_message(self.frames[index].raw[s], self._classes[s])
                    for s in STREAMS}
            self._decoded = {index: msgs}  # keep one: frames can be large
        stamp = self.get_clock().now().to_msg()
        for stream in STREAMS:
            msgs[stream].header.stamp = stamp
            self._pubs[stream].publish(msgs[stream])
        self.published += 1


def play(bag: str | Path, *, mode: str = "hold", rate_hz: float = 10.0,
         topics: BagTopics = DEFAULT_TOPICS, hold_frame: int | None = None,
         duration_s: float | None = None) -> int:
    """Play a bag until SIGINT/SIGTERM, ``duration_s``, or (mode ``once``) its end.

    Returns the number of frames published.
    """
    frames = read_camera_messages(bag, topics=topics)
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, lambda _s, _f: stop.set())
                    for s in (signal.SIGINT, signal.SIGTERM)}
    executor = SingleThreadedExecutor(context=context)
    player = None
    try:
        player = CameraPlayer(frames, mode=mode, rate_hz=rate_hz, topics=topics,
                              hold_frame=hold_frame, context=context)
        executor.add_node(player)
        end = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set() and not player.finished and (
                end is None or time.monotonic() < end):
            executor.spin_once(timeout_sec=0.05)
        return player.published
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        executor.shutdown(timeout_sec=1.0)
        if player is not None:
            player.destroy_node()
        rclpy.shutdown(context=context)
