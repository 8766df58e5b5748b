"""Plain data passed between the pipeline stages (no ROS types)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class CameraImage:
    """One decoded camera image with the intrinsics valid for it."""

    camera: str
    stamp_ns: int
    rgb: np.ndarray  # [H, W, 3] uint8
    K: np.ndarray  # [3, 3]
    frame_id: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


@dataclass
class FrameSet:
    """Images of several cameras taken at (nearly) the same time, with the rig's transforms."""

    stamp_ns: int
    images: dict[str, CameraImage]
    T_base_cam: dict[str, np.ndarray] = field(default_factory=dict)
    T_odom_base: np.ndarray | None = None

    @property
    def cameras(self) -> list[str]:
        return list(self.images)


@dataclass
class View:
    """One camera of one keyframe at processing resolution, with its pose and (later) its depth."""

    keyframe_id: int
    camera: str
    stamp_ns: int
    rgb: np.ndarray  # [h, w, 3] uint8 at processing resolution
    K: np.ndarray  # intrinsics at processing resolution
    T_world_cam: np.ndarray  # camera-to-world (world = map frame)
    frame_id: str = ""
    depth: np.ndarray | None = None  # [h, w] float32 metres, 0 = unknown
    confidence: np.ndarray | None = None  # [h, w] float32 in [0, 1]
    valid: np.ndarray | None = None  # [h, w] bool: depth passed the photometric mask
    depth_range: tuple[float, float] | None = None  # from the pose source, when it knows one
    segment: int = 0  # odometry segment: views of different segments are never paired (see engine)
    consistent_with: tuple[tuple[int, str], ...] = ()  # keys the depth source already checked it against
    distinctiveness: np.ndarray | None = None  # [h, w] in [0, 1] when the depth source has one (DepthEstimate)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]

    @property
    def key(self) -> tuple[int, str]:
        return (self.keyframe_id, self.camera)


@dataclass
class Keyframe:
    id: int
    stamp_ns: int
    views: dict[str, View]
    T_odom_base: np.ndarray | None = None
    segment: int = 0


class DropCounter:
    """Counts of image messages dropped, by reason, with the last message per reason."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.last_message: dict[str, str] = {}

    def add(self, reason: str, n: int = 1, message: str = "") -> None:
        if n <= 0:
            return
        self.counts[reason] += n
        if message:
            self.last_message[reason] = message

    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))
