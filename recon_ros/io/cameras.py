"""Which topics each camera is read from: named in the config, or found among a bag's or graph's topics.

:func:`resolve_cameras` turns a config into one whose cameras are concrete for the given topics:
with no camera names it discovers them (:mod:`recon_ros.io.discovery`); with names it keeps them
(explicit names win) and settles each camera's transport ('auto' -> raw when the image topic
exists, ``<image>/compressed`` when only that does). The result is written back into the config's
per-camera fields (``topics.image_topics`` / ``camera_info_topics`` / ``transports``), so the
node, the bag tool and the front end all read the same answer from one place.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from recon_ros.config import ReconConfig
from recon_ros.io.discovery import CameraTopics, Discovery, discover_cameras

LOG = logging.getLogger("recon_ros")

TopicTypes = Iterable[tuple[str, str | Sequence[str]]]


class NoCameras(ValueError):
    """No camera could be found (the message lists what was seen and why it was ignored)."""


def camera_topics(cfg: ReconConfig) -> list[CameraTopics]:
    """The topics of every configured camera (transport 'auto' reads as raw)."""
    return [CameraTopics(c, cfg.image_topic(c), cfg.camera_info_topic(c), cfg.transport(c) == "compressed")
            for c in cfg.cameras]


def _with_cameras(cfg: ReconConfig, cams: list[CameraTopics]) -> ReconConfig:
    out = copy.deepcopy(cfg)
    out.cameras = [c.name for c in cams]
    out.topics.image_topics = [c.image_topic for c in cams]
    out.topics.camera_info_topics = [c.info_topic for c in cams]
    out.topics.transports = [c.transport for c in cams]
    return out


def resolve_cameras(cfg: ReconConfig, topics: TopicTypes, where: str,
                    log: Callable[[str], None] | None = None) -> tuple[ReconConfig, Discovery]:
    """(config with concrete cameras, what was found/ignored) for the ``(topic, type)`` pairs seen at ``where``.

    Raises :class:`NoCameras` when discovery finds none."""
    log = log or LOG.info
    pairs = list(topics)
    if not cfg.cameras:
        found = discover_cameras(pairs, ignore_prefixes=[cfg.topics.output_prefix])
        for line in found.describe(where):
            log(line)
        if not found.cameras:
            seen = ", ".join(sorted({t for t, _ in pairs})) or "no topics"
            ignored = "; ".join(f"{t}: {why}" for t, why in found.ignored) or "none"
            raise NoCameras(
                f"{where}: no camera found (a camera is an Image or CompressedImage topic with a camera_info "
                f"topic in the same namespace); ignored: {ignored}; topics seen: {seen}. "
                "Name the cameras with --camera-names / the 'cameras' parameter")
        return _with_cameras(cfg, found.cameras), found
    available = {t for t, _ in pairs}
    cams = []
    for c in cfg.cameras:
        explicit_image = bool(cfg._per_camera(cfg.topics.image_topics, c))
        transport = cfg.transport(c)
        raw = cfg.image_topic(c) if explicit_image else cfg.topics.image.format(camera=c)
        if transport == "auto":
            compressed = raw not in available and f"{raw}/compressed" in available
            if compressed:
                log(f"{where}: camera '{c}': {raw} absent, reading {raw}/compressed")
        else:
            compressed = transport == "compressed"
        image = raw if explicit_image or not compressed else f"{raw}/compressed"
        cams.append(CameraTopics(c, image, cfg.camera_info_topic(c), compressed))
    return _with_cameras(cfg, cams), Discovery(cams, [])


def wait_for_cameras(cfg: ReconConfig, get_topics: Callable[[], TopicTypes], where: str,
                     log: Callable[[str], None] | None = None, poll_s: float = 0.2) -> ReconConfig:
    """Node helper: resolve against the ROS graph, retrying for ``topics.discovery_wait_s`` while the
    graph fills in (DDS discovery takes a moment after start-up). Raises :class:`NoCameras`."""
    deadline = time.monotonic() + max(cfg.topics.discovery_wait_s, 0.0)
    while True:
        topics = list(get_topics())
        found = cfg.cameras or discover_cameras(topics, [cfg.topics.output_prefix]).cameras
        if found or time.monotonic() >= deadline:
            return resolve_cameras(cfg, topics, where, log)[0]
        time.sleep(poll_s)
