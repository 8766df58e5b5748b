"""Where the navigation cloud's latency goes: image stamp -> published, split into stages. No ROS here.

Stages (milliseconds, they add up to the stamp-to-publish latency by construction):
  decode   decoding + validating the frame set's images (sum over its cameras, callback thread)
  sync     the rest of stamp -> frame set complete: transport, waiting for the other cameras and TF
  queue    waiting for the inference worker
  next_keyframe  waiting for the next keyframe (depth.wait_for_next_keyframe: a keyframe's depth is
           estimated when the next one arrives); from this frame set's processing start to that one's
  pose     keyframe preparation (resize) + pose source
  depth    depth source over the new views
  fusion   geometric-consistency fusion of older keyframes + map insert (runs before the cloud)
  cloud    building the navigation cloud (TF, ground fit, band, voxels)
  publish  building its messages and handing them to the middleware
  other    the engine's remaining bookkeeping (keyframe gate, buffer)

Memory is bounded: per-image decode times and per-frame-set milestones live in small ordered maps
that drop their oldest entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

NAV_STAGES = ("decode", "sync", "queue", "next_keyframe", "pose", "depth", "fusion", "cloud", "publish", "other")
MAX_TRACKED = 256  # images / frame sets remembered while in flight
WINDOW = 256  # latencies kept for medians


class NavLatencyTracker:
    """Collects milestones from the callback thread and the worker thread (locked)."""

    def __init__(self, clock_ns: Callable[[], int]):
        self.clock_ns = clock_ns
        self._lock = threading.Lock()
        self._decode_s: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._ready: OrderedDict[int, tuple[int, float]] = OrderedDict()  # fs stamp -> (ready clock, decode s)
        self._start: OrderedDict[int, int] = OrderedDict()  # fs stamp -> worker start clock
        self.last: dict[str, float] = {}
        self.last_total_ms = float("nan")
        self.last_points = 0
        self.totals_ms: deque[float] = deque(maxlen=WINDOW)

    @staticmethod
    def _bounded_put(d: OrderedDict, key: Any, value: Any) -> None:
        d[key] = value
        while len(d) > MAX_TRACKED:
            d.popitem(last=False)

    def on_decoded(self, camera: str, stamp_ns: int, seconds: float) -> None:
        with self._lock:
            self._bounded_put(self._decode_s, (camera, stamp_ns), seconds)

    def on_frameset_ready(self, stamp_ns: int, images: dict[str, Any]) -> None:
        now = self.clock_ns()
        with self._lock:
            decode = sum(self._decode_s.pop((cam, im.stamp_ns), 0.0) for cam, im in images.items())
            self._bounded_put(self._ready, stamp_ns, (now, decode))

    def on_processing_start(self, stamp_ns: int) -> None:
        now = self.clock_ns()
        with self._lock:
            self._bounded_put(self._start, stamp_ns, now)

    def on_published(self, stamp_ns: int, engine_stages_s: dict[str, float], cloud_s: float, publish_s: float,
                     points: int, step_stamp_ns: int | None = None) -> dict[str, float]:
        """Record one published navigation cloud of the frame set ``stamp_ns``, published at the step of
        the frame set ``step_stamp_ns`` (a later keyframe when depth waits for it; default the same);
        returns its stage breakdown in ms."""
        now = self.clock_ns()
        with self._lock:
            ready, decode_s = self._ready.pop(stamp_ns, (now, 0.0))
            first_start = self._start.pop(stamp_ns, ready)
            start = first_start
            if step_stamp_ns is not None and step_stamp_ns != stamp_ns:
                start = self._start.get(step_stamp_ns, first_start)
            total_ms = (now - stamp_ns) * 1e-6
            es = engine_stages_s
            stages = {
                "decode": decode_s * 1e3,
                "sync": (ready - stamp_ns) * 1e-6 - decode_s * 1e3,
                "queue": (first_start - ready) * 1e-6,
                "next_keyframe": (start - first_start) * 1e-6,
                "pose": (es.get("prepare", 0.0) + es.get("pose", 0.0)) * 1e3,
                "depth": es.get("depth", 0.0) * 1e3,
                "fusion": (es.get("fusion", 0.0) + es.get("map", 0.0)) * 1e3,
                "cloud": cloud_s * 1e3,
                "publish": publish_s * 1e3,
            }
            # Worker start -> publish not covered by a named stage (keyframe gate, buffer, clock jitter).
            stages["other"] = (now - start) * 1e-6 - sum(stages[k] for k in NAV_STAGES[4:9])
            self.last = stages
            self.last_total_ms = total_ms
            self.last_points = points
            self.totals_ms.append(total_ms)
            return dict(stages)

    def status(self) -> dict[str, Any]:
        with self._lock:
            lat = sorted(self.totals_ms)
            return {
                "nav_latency_ms": dict(self.last),
                "nav_stamp_to_publish_ms": self.last_total_ms,
                "nav_stamp_to_publish_ms_p50": lat[len(lat) // 2] if lat else float("nan"),
                "nav_stamp_to_publish_ms_max": lat[-1] if lat else float("nan"),
                "nav_points": self.last_points,
            }
