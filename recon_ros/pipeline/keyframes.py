"""Keyframe selection (translation / rotation / time gates) and the bounded keyframe buffer."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from recon_ros.config import KeyframeConfig
from recon_ros.geometry.se3 import invert, rotation_angle_deg
from recon_ros.pipeline.frames import Keyframe, View

NS = 1_000_000_000


class KeyframeSelector:
    """Decides whether a frame set becomes a keyframe.

    A frame set is a keyframe when it is the first, or when the base moved at least
    ``min_translation_m`` or turned ``min_rotation_deg`` since the last keyframe, or when
    ``max_interval_s`` passed — but never sooner than ``min_interval_s``. Without odometry only the
    time gate applies (learned poses decide later where the robot was).
    """

    def __init__(self, cfg: KeyframeConfig):
        self.cfg = cfg
        self.last_stamp: int | None = None
        self.last_pose: np.ndarray | None = None

    def why(self, stamp_ns: int, T_odom_base: np.ndarray | None) -> str | None:
        """The gate that fires ('first', 'translation', 'rotation', 'time') or None."""
        if self.last_stamp is None:
            return "first"
        dt = (stamp_ns - self.last_stamp) / NS
        if dt < self.cfg.min_interval_s:
            return None
        if T_odom_base is not None and self.last_pose is not None:
            rel = invert(self.last_pose) @ T_odom_base
            if np.linalg.norm(rel[:3, 3]) >= self.cfg.min_translation_m:
                return "translation"
            if rotation_angle_deg(rel[:3, :3]) >= self.cfg.min_rotation_deg:
                return "rotation"
        if self.cfg.max_interval_s > 0 and dt >= self.cfg.max_interval_s:
            return "time"
        return None

    def accept(self, stamp_ns: int, T_odom_base: np.ndarray | None) -> None:
        self.last_stamp = stamp_ns
        if T_odom_base is not None:
            self.last_pose = T_odom_base

    def reset(self) -> None:
        self.last_stamp = None
        self.last_pose = None


class OdometryJumpDetector:
    """Flags odometry that moves faster than the robot can between consecutive frame sets.

    A jump (odometry reset, relocalisation, a wheel-slip spike) makes poses before and after it
    inconsistent, so depth and fusion must not pair views across it. Slack absorbs stamp jitter on
    closely spaced frame sets.
    """

    SLACK_M = 0.05
    SLACK_DEG = 5.0

    def __init__(self, max_speed_mps: float, max_turn_rate_dps: float):
        self.max_speed = max_speed_mps
        self.max_turn = max_turn_rate_dps
        self.last: tuple[int, np.ndarray] | None = None

    def check(self, stamp_ns: int, T_odom_base: np.ndarray | None) -> str | None:
        """A description of the jump from the previous frame set to this one, or None."""
        if T_odom_base is None:
            return None
        last, self.last = self.last, (stamp_ns, T_odom_base)
        if last is None or stamp_ns <= last[0]:
            return None
        dt = (stamp_ns - last[0]) / NS
        rel = invert(last[1]) @ T_odom_base
        dist = float(np.linalg.norm(rel[:3, 3]))
        angle = rotation_angle_deg(rel[:3, :3])
        too_far = self.max_speed > 0 and dist > self.max_speed * dt + self.SLACK_M
        too_fast_turn = self.max_turn > 0 and angle > self.max_turn * dt + self.SLACK_DEG
        if not (too_far or too_fast_turn):
            return None
        return (
            f"odometry moved {dist:.2f} m and turned {angle:.1f} deg in {dt:.3f} s "
            f"(limits pose.max_speed_mps={self.max_speed}, pose.max_turn_rate_dps={self.max_turn})"
        )

    def reset(self) -> None:
        self.last = None


class KeyframeBuffer:
    """The newest ``capacity`` keyframes, oldest evicted first."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("KeyframeBuffer capacity must be >= 1")
        self.capacity = capacity
        self._items: OrderedDict[int, Keyframe] = OrderedDict()

    def add(self, kf: Keyframe) -> Keyframe | None:
        """Insert; return the evicted keyframe, if any."""
        self._items[kf.id] = kf
        if len(self._items) > self.capacity:
            return self._items.popitem(last=False)[1]
        return None

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Keyframe]:
        return iter(self._items.values())

    def __contains__(self, kf_id: int) -> bool:
        return kf_id in self._items

    def get(self, kf_id: int) -> Keyframe | None:
        return self._items.get(kf_id)

    def latest(self, n: int | None = None) -> list[Keyframe]:
        items = list(self._items.values())
        return items if n is None else items[-n:]

    def views(self) -> list[View]:
        return [v for kf in self._items.values() for v in kf.views.values()]

    def clear(self) -> None:
        self._items.clear()
