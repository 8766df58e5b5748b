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
