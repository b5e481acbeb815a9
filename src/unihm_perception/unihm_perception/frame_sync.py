"""Approximate time synchronization of color, depth and camera info (message_filters' job).

``message_filters`` has no PyPI wheel, and the node needs only the newest matching triple, so
this keeps a short queue per stream and pairs messages whose header stamps lie within a slop.
Receipt times are kept too: a frame is *stale* by how long ago it arrived, not by its stamp
(a replayed bag carries old stamps and is still live).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

STREAMS = ("color", "depth", "camera_info")


@dataclass(frozen=True)
class SyncedFrame:
    color: Any
    depth: Any
    camera_info: Any
    stamp_ns: int
    received: float
    """time.monotonic() when the last of the three arrived."""


class ApproximateSync:
    """Newest (color, depth, camera_info) whose stamps are within ``slop_s`` of each other."""

    def __init__(self, slop_s: float = 0.05, queue_size: int = 10) -> None:
        if slop_s < 0:
            raise ValueError(f"slop must be >= 0, got {slop_s}")
        self.slop_ns = int(slop_s * 1e9)
        self._queues: dict[str, deque[tuple[int, float, Any]]] = {
            s: deque(maxlen=queue_size) for s in STREAMS}
        self._latest: SyncedFrame | None = None
        self._counts = dict.fromkeys(STREAMS, 0)
        self._lock = threading.Lock()

    def add(self, stream: str, stamp_ns: int, message: Any,
            received: float | None = None) -> SyncedFrame | None:
        """Queue one message; returns the new synced frame when this one completed a triple."""
        if stream not in self._queues:
            raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
        now = time.monotonic() if received is None else received
        with self._lock:
            self._queues[stream].append((stamp_ns, now, message))
            self._counts[stream] += 1
            frame = self._match(stream, stamp_ns, now, message)
            if frame is not None:
                self._latest = frame
            return frame

    def _match(self, stream: str, stamp: int, now: float, message: Any) -> SyncedFrame | None:
        picked = {stream: message}
        for other in STREAMS:
            if other == stream:
                continue
            best = min(self._queues[other], key=lambda e: abs(e[0] - stamp), default=None)
            if best is None or abs(best[0] - stamp) > self.slop_ns:
                return None
            picked[other] = best[2]
        return SyncedFrame(picked["color"], picked["depth"], picked["camera_info"], stamp, now)

    def latest(self) -> SyncedFrame | None:
        with self._lock:
            return self._latest

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def missing(self) -> list[str]:
        """Streams from which nothing has arrived yet."""
        with self._lock:
            return [s for s in STREAMS if self._counts[s] == 0]
