"""Find the cameras among a list of (topic, type) pairs: a bag's topics or the ROS graph's.

Every ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` topic with a ``camera_info`` topic
in the same namespace is a camera named after that namespace (``/cam_front/image_raw`` ->
``cam_front``; ``/robot/cam/color/image_raw`` -> ``robot/cam/color``). One image topic per camera
is used: rectified before colour before raw, an uncompressed one before ``<image>/compressed``.
Everything else that looks like an image is reported with the reason it was ignored. Pure
functions: the node calls :func:`discover_cameras` with ``get_topic_names_and_types()``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"

#: image topic base names in order of preference within one camera namespace
IMAGE_PREFERENCE = ("image_rect_color", "image_rect", "image_color", "image_raw", "image_mono", "image")


@dataclass(frozen=True)
class CameraTopics:
    """Where one camera publishes: image topic, its transport, and the CameraInfo topic."""

    name: str
    image_topic: str
    info_topic: str
    compressed: bool

    @property
    def image_type(self) -> str:
        return COMPRESSED if self.compressed else IMAGE

    @property
    def transport(self) -> str:
        return "compressed" if self.compressed else "raw"

    @property
    def input_rectified(self) -> bool:
        """An ``image_rect*`` topic: image_proc already undistorted it (CameraInfo's P is its camera)."""
        base = self.image_topic[: -len("/compressed")] if self.compressed else self.image_topic
        return posixpath.basename(base).startswith("image_rect")


@dataclass
class Discovery:
    cameras: list[CameraTopics] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (topic, why)

    def describe(self, where: str) -> list[str]:
        """Log lines: what was found and what was ignored, and why."""
        lines = [f"{where}: found {len(self.cameras)} camera(s)"]
        lines += [f"  camera '{c.name}': {c.image_topic} ({c.transport}) + {c.info_topic}" for c in self.cameras]
        lines += [f"  ignored {topic}: {why}" for topic, why in self.ignored]
        return lines


def _types(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _normalise(type_name: str) -> str:
    """``sensor_msgs/Image`` (ROS 1 style, some tools) -> ``sensor_msgs/msg/Image``."""
    parts = type_name.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else type_name


def _rank(base_topic: str, compressed: bool) -> tuple[int, int, str]:
    name = posixpath.basename(base_topic)
    pref = IMAGE_PREFERENCE.index(name) if name in IMAGE_PREFERENCE else len(IMAGE_PREFERENCE)
    return pref, int(compressed), base_topic


def camera_name(namespace: str) -> str:
    """Camera name of a namespace: the namespace without its leading slash ('camera' at the root)."""
    return namespace.strip("/") or "camera"


def discover_cameras(topics: Iterable[tuple[str, str | Sequence[str]]],
                     ignore_prefixes: Sequence[str] = ()) -> Discovery:
    """Cameras among ``(topic, type or [types])`` pairs; see the module doc for the rules."""
    typed = [(t, _normalise(ty)) for t, tys in topics for ty in _types(tys)]
    info_topics = {t for t, ty in typed if ty == CAMERA_INFO}
    found = Discovery()
    candidates: dict[str, list[tuple[tuple[int, int, str], CameraTopics]]] = {}
    prefixes = [p.rstrip("/") + "/" for p in ignore_prefixes if p.strip("/")]
    for topic, ty in sorted(typed):
        if ty not in (IMAGE, COMPRESSED):
            continue
        compressed = ty == COMPRESSED
        if any(topic.startswith(p) for p in prefixes):
            found.ignored.append((topic, "published by recon_ros (output prefix)"))
            continue
        base = topic
        if compressed:
            if posixpath.basename(topic) != "compressed":
                found.ignored.append((topic, "CompressedImage not on an '<image>/compressed' topic "
                                             "(compressedDepth and other transports are not camera images)"))
                continue
            base = posixpath.dirname(topic)
        namespace = posixpath.dirname(base)
        if any("depth" in part for part in base.split("/")):
            found.ignored.append((topic, "a depth image, not a camera image"))
            continue
        info = posixpath.join(namespace, "camera_info")
        if info not in info_topics:
            found.ignored.append((topic, f"no CameraInfo beside it (expected {info})"))
            continue
        cam = CameraTopics(camera_name(namespace), topic, info, compressed)
        candidates.setdefault(namespace, []).append((_rank(base, compressed), cam))
    for namespace in sorted(candidates):
        ranked = sorted(candidates[namespace], key=lambda rc: rc[0])
        chosen = ranked[0][1]
        found.cameras.append(chosen)
        for _, other in ranked[1:]:
            found.ignored.append((other.image_topic, f"camera '{chosen.name}' already uses {chosen.image_topic}"))
    return found
