"""Front end shared by the node and the bag tool: validates images, groups them, attaches TF.

It takes image and CameraInfo messages (rclpy or rosbags, decoded with ``recon_ros.io.messages``)
or already-decoded numpy images, and
hands out :class:`FrameSet` objects ready for the engine. Every image it is given ends up either in
an emitted frame set or counted in ``drops`` with a reason — nothing is lost silently.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np

from recon_ros.config import ReconConfig
from recon_ros.io.cameras import camera_topics
from recon_ros.io.messages import BadMessage, decode_image, stamp_to_ns
from recon_ros.io.rectify import RectifierCache, calibration_from_camera_info
from recon_ros.pipeline.frames import CameraImage, DropCounter, FrameSet
from recon_ros.pipeline.synchronizer import Synchronizer
from recon_ros.pipeline.tf_buffer import TransformLookup, TransformUnavailable

LOG = logging.getLogger("recon_ros")
NS = 1_000_000_000


class RateLimitedLog:
    """Logs the first few messages per key, then every ``every``-th, so a broken camera can't flood."""

    def __init__(self, sink: Callable[[str], None], first: int = 3, every: int = 100):
        self.sink, self.first, self.every = sink, first, every
        self.seen: Counter[str] = Counter()

    def __call__(self, key: str, message: str) -> None:
        self.seen[key] += 1
        n = self.seen[key]
        if n <= self.first or n % self.every == 0:
            suffix = f" [{n} so far]" if n > self.first else ""
            self.sink(message + suffix)


class _RecordingDrops(DropCounter):
    """Forwards the synchroniser's drops to the shared counter and remembers them for logging.

    The shared counter is also written by the worker thread, so diffing its counts from the image
    callback would race with it (and would blame worker drops on an image topic).
    """

    def __init__(self, target: DropCounter):
        super().__init__()
        self.target = target
        self.recent: list[tuple[str, str]] = []

    def add(self, reason: str, n: int = 1, message: str = "") -> None:
        self.target.add(reason, n, message)
        self.recent.append((reason, message or reason))


class FrontEnd:
    def __init__(
        self,
        cfg: ReconConfig,
        tf: TransformLookup,
        drops: DropCounter | None = None,
        warn: Callable[[str], None] | None = None,
    ):
        self.cfg = cfg
        self.tf = tf
        self.drops = drops or DropCounter()
        self.warn = RateLimitedLog(warn or LOG.warning)
        self.images_received: Counter[str] = Counter()
        self.camera_info_errors: Counter[str] = Counter()
        self.frame_sets = 0
        self.camera_info: dict[str, tuple[np.ndarray, int, int]] = {}
        # Rectification maps per camera, rebuilt only when a camera's calibration changes.
        self.rectifiers = RectifierCache()
        self.camera_info_rejected: dict[str, str] = {}  # camera -> why its latest CameraInfo was refused
        self.frame_ids: dict[str, str] = {}  # camera -> optical frame in use (from header.frame_id)
        s = cfg.sync
        self._sync_drops = _RecordingDrops(self.drops)
        self.sync = Synchronizer(
            cfg.cameras,
            int(s.slop_s * NS),
            int(s.timeout_s * NS),
            s.max_pending,
            self._sync_drops,
            s.min_cameras,
            int(s.future_tolerance_s * NS),
        )
        self.waiting_for_tf: list[dict[str, CameraImage]] = []
        # Images of cameras that have not sent any CameraInfo yet: image and info are separate topics
        # with no ordering between them, so a driver's first images may arrive just before its first
        # CameraInfo. They wait (at most sync.max_pending per camera, sync.timeout_s behind the newest
        # image) and go through as soon as the calibration arrives; otherwise they are counted drops.
        self.awaiting_info: dict[str, deque[tuple[int, np.ndarray, str | None]]] = {}
        self._newest_image_ns: int | None = None
        # Cameras absent from the latest frame sets (degraded rig) -> stamp of the first set without them.
        self.missing_since: dict[str, int] = {}
        self.camera_dropouts: Counter[str] = Counter()
        self.tf_timeout_ns = int(max(s.timeout_s, 0.5) * NS)
        self.needs_odometry = cfg.pose.source == "tf"
        self.sources = {c.name: c for c in camera_topics(cfg)}

    # ---- inputs ---------------------------------------------------------------------------------
    def set_camera_info(self, camera: str, K: np.ndarray, width: int, height: int) -> None:
        """Intrinsics of an undistorted camera (no CameraInfo message: demo, tests)."""
        self.camera_info[camera] = (np.asarray(K, dtype=np.float64), int(width), int(height))
        self.rectifiers.forget(camera)

    def on_camera_info(self, camera: str, msg: Any) -> bool:
        """Keep the calibration of a CameraInfo message (rclpy or rosbags): distorted cameras get
        rectification maps (built once per calibration) and the rectified intrinsics. A bad one is
        counted and logged; the last good one stays in use."""
        topic = self.cfg.camera_info_topic(camera)
        try:
            cal = calibration_from_camera_info(msg)
        except BadMessage as exc:
            self.camera_info_errors[camera] += 1
            header = getattr(msg, "header", None)
            stamp = stamp_to_ns(header.stamp) / NS if header is not None else 0.0
            self.camera_info_rejected[camera] = f"{topic} @ {stamp:.3f} s was rejected: {exc}"
            self.warn(f"{topic}:info", f"{topic} @ {stamp:.3f} s ignored ({exc.reason}): {exc}")
            return False
        builds = self.rectifiers.builds
        source = self.sources.get(camera)
        rect = self.rectifiers.update(camera, cal, source.input_rectified if source else False)
        if self.rectifiers.builds != builds and not rect.identity:
            LOG.info("%s: rectifying %dx%d '%s' images (d=%s) to K=%s", topic, cal.width, cal.height, cal.model,
                     np.round(cal.d, 5).tolist(), np.round(rect.K, 3).tolist())
        self.camera_info[camera] = (rect.K, cal.width, cal.height)
        self.camera_info_rejected.pop(camera, None)
        return True

    def on_image_message(self, camera: str, msg: Any) -> list[FrameSet]:
        """Decode an Image / CompressedImage message and add it; undecodable ones are counted."""
        stamp = stamp_to_ns(msg.header.stamp)
        compressed = hasattr(msg, "format") and not hasattr(msg, "encoding")
        try:
            rgb = decode_image(msg, compressed)
        except BadMessage as exc:
            self.reject_image(camera, stamp, exc.reason, str(exc))
            return []
        return self.add_image(camera, stamp, rgb, str(getattr(msg.header, "frame_id", "") or ""))

    def _frame_id(self, camera: str, header_frame: str | None) -> str:
        """The image's header.frame_id (ROS convention); frames.optical only where the header has none.
        A header that disagrees with the template, or a camera whose frame changes, is logged once."""
        template = self.cfg.optical_frame(camera)
        frame = header_frame or template
        held = self.frame_ids.get(camera)
        if held is None:
            self.frame_ids[camera] = frame
            if header_frame and header_frame != template:
                LOG.info("%s: optical frame '%s' from header.frame_id (frames.optical would give '%s')",
                         self.cfg.image_topic(camera), frame, template)
        elif held != frame:
            self.warn(f"{camera}:frame", f"{self.cfg.image_topic(camera)}: header.frame_id changed from "
                                         f"'{held}' to '{frame}'; using each image's own frame")
            self.frame_ids[camera] = frame
        return frame

    def reject_image(self, camera: str, stamp_ns: int, reason: str, message: str) -> None:
        """Count an image the caller could not decode (BadMessage) and say why, once per burst."""
        self.images_received[camera] += 1
        self._drop(camera, stamp_ns, reason, message)

    def add_image(self, camera: str, stamp_ns: int, rgb: np.ndarray, frame_id: str | None = None
                  ) -> list[FrameSet]:
        self.images_received[camera] += 1
        self._newest_image_ns = stamp_ns if self._newest_image_ns is None else max(self._newest_image_ns, stamp_ns)
        completed = self._settle_awaiting_info(final=False)
        if not self._info_arrived(camera):
            held = self.awaiting_info.setdefault(camera, deque())
            held.append((stamp_ns, rgb, frame_id))
            if len(held) > self.cfg.sync.max_pending:
                old_stamp, _, _ = held.popleft()
                self._drop_missing_info(camera, old_stamp, " (more images waiting for it than sync.max_pending)")
        else:
            completed.extend(self._add_with_info(camera, stamp_ns, rgb, frame_id))
        self.waiting_for_tf.extend(completed)
        return self._attach_tf(newest_ns=self.sync.newest_ns or stamp_ns)

    def _settle_awaiting_info(self, final: bool) -> list[dict[str, CameraImage]]:
        """Held images whose camera's calibration arrived go through (oldest first); held images too
        old to join a frame set (or all, at the end of input) are dropped as missing_camera_info."""
        completed: list[dict[str, CameraImage]] = []
        timeout = int(self.cfg.sync.timeout_s * NS)
        for camera in list(self.awaiting_info):
            held = self.awaiting_info[camera]
            if self._info_arrived(camera):
                del self.awaiting_info[camera]
                for stamp_ns, rgb, frame_id in held:
                    completed.extend(self._add_with_info(camera, stamp_ns, rgb, frame_id))
                continue
            while held and (final or self._newest_image_ns - held[0][0] > timeout):
                self._drop_missing_info(camera, held.popleft()[0], "")
            if not held:
                del self.awaiting_info[camera]
        return completed

    def _info_arrived(self, camera: str) -> bool:
        """A CameraInfo came for ``camera`` (in use, or rejected: then its images are dropped, not held)."""
        return camera in self.camera_info or camera in self.camera_info_rejected

    @property
    def has_pending(self) -> bool:
        """Images held for CameraInfo, frame sets being assembled or waiting for TF."""
        return bool(self.sync.pending or self.awaiting_info or self.waiting_for_tf)

    def _drop_missing_info(self, camera: str, stamp_ns: int, why: str) -> None:
        rejected = self.camera_info_rejected.get(camera)
        self._drop(camera, stamp_ns, "missing_camera_info",
                   f"no CameraInfo received yet on {self.cfg.camera_info_topic(camera)}"
                   + (f" (the latest one, {rejected})" if rejected else "") + why)

    def _add_with_info(self, camera: str, stamp_ns: int, rgb: np.ndarray, frame_id: str | None
                       ) -> list[dict[str, CameraImage]]:
        """Validate against the camera's calibration, rectify, synchronise; returns completed sets."""
        topic = self.cfg.image_topic(camera)
        info = self.camera_info.get(camera)
        if info is None:  # its CameraInfo came but was rejected: the camera is misconfigured
            self._drop_missing_info(camera, stamp_ns, "")
            return []
        K, w, h = info
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            self._drop(camera, stamp_ns, "bad_encoding", f"expected an RGB uint8 image, got {rgb.dtype} {rgb.shape}")
            return []
        if (rgb.shape[1], rgb.shape[0]) != (w, h):
            self._drop(
                camera, stamp_ns, "size_mismatch",
                f"image is {rgb.shape[1]}x{rgb.shape[0]} but {self.cfg.camera_info_topic(camera)} says {w}x{h}",
            )
            return []
        rect = self.rectifiers.get(camera)
        if rect is not None:
            rgb = rect(rgb)
        image = CameraImage(camera, stamp_ns, rgb, K, self._frame_id(camera, frame_id))
        self._sync_drops.recent.clear()
        completed = self.sync.add(image)
        for reason, detail in self._sync_drops.recent:
            self.warn(f"{topic}:{reason}", f"{topic} @ {stamp_ns / NS:.3f} s dropped ({reason}): {detail}")
        return completed

    def on_tf_update(self) -> list[FrameSet]:
        """Frame sets that were waiting for TF and can be completed now (call after new transforms)."""
        if not self.waiting_for_tf:
            return []
        return self._attach_tf(newest_ns=self.sync.newest_ns)

    def flush(self) -> list[FrameSet]:
        self.waiting_for_tf.extend(self._settle_awaiting_info(final=True))
        self.waiting_for_tf.extend(self.sync.flush())
        return self._attach_tf(newest_ns=None)

    # ---- internals -----------------------------------------------------------------------------
    def _drop(self, camera: str, stamp_ns: int, reason: str, message: str) -> None:
        self.drops.add(reason, message=message)
        topic = self.cfg.image_topic(camera)
        self.warn(f"{topic}:{reason}", f"{topic} @ {stamp_ns / NS:.3f} s dropped ({reason}): {message}")

    def _attach_tf(self, newest_ns: int | None) -> list[FrameSet]:
        """Frame sets whose transforms are available; the rest wait (bounded in time) or are dropped."""
        ready: list[FrameSet] = []
        still: list[dict[str, CameraImage]] = []
        for images in self.waiting_for_tf:
            stamp = min(i.stamp_ns for i in images.values())
            try:
                ready.append(self._frame_set(stamp, images))
            except TransformUnavailable as exc:
                expired = newest_ns is None or newest_ns - stamp > self.tf_timeout_ns
                # Not there yet (odometry behind the images) or not connected yet (static TF or odometry that
                # starts after the cameras, or is delivered after the first images): wait, bounded in time.
                if exc.reason in ("tf_extrapolation", "tf_missing") and not expired:
                    still.append(images)
                    continue
                self.drops.add(exc.reason, n=len(images), message=str(exc))
                self.warn(f"tf:{exc.reason}", f"frame set @ {stamp / NS:.3f} s dropped ({exc.reason}): {exc}")
        overflow = max(len(still) - self.cfg.sync.max_pending, 0)
        for images in still[:overflow]:
            self.drops.add("tf_unavailable", n=len(images), message="too many frame sets waiting for TF")
        self.waiting_for_tf = still[overflow:]
        self.frame_sets += len(ready)
        for fs in ready:
            self._track_cameras(fs)
        return ready

    def _track_cameras(self, fs: FrameSet) -> None:
        """Say once when a camera leaves the frame sets (the rig degrades) and when it comes back."""
        for cam in self.cfg.cameras:
            if cam not in fs.images and cam not in self.missing_since:
                self.missing_since[cam] = fs.stamp_ns
                self.camera_dropouts[cam] += 1
                LOG.warning("%s: no image in the frame set @ %.3f s; continuing with %d camera(s) (%s)",
                            self.cfg.image_topic(cam), fs.stamp_ns / NS, len(fs.images), ", ".join(fs.images))
            elif cam in fs.images and cam in self.missing_since:
                since = self.missing_since.pop(cam)
                LOG.warning("%s: camera is back @ %.3f s after %.1f s", self.cfg.image_topic(cam),
                            fs.stamp_ns / NS, (fs.stamp_ns - since) / NS)

    def _required_cameras(self) -> int:
        return self.cfg.sync.min_cameras if self.cfg.sync.min_cameras > 0 else len(self.cfg.cameras)

    def _extrinsics(self, images: dict[str, CameraImage]) -> dict[str, np.ndarray]:
        """``T_base_cam`` per camera. A camera without extrinsics leaves the set (counted) as long as
        enough cameras remain (``sync.min_cameras``); otherwise the whole set waits or is dropped."""
        base = self.cfg.frames.base
        found: dict[str, np.ndarray] = {}
        failed: dict[str, TransformUnavailable] = {}
        for c, im in images.items():
            try:
                found[c] = self.tf.lookup(base, im.frame_id, im.stamp_ns)
            except TransformUnavailable as exc:
                failed[c] = exc
                continue
            rect = self.rectifiers.get(c)
            if rect is not None and rect.cal.rotated:  # the rectified camera is R away from the optical frame
                found[c] = found[c] @ rect.T_cam_rect
        if not failed:
            return found
        if len(found) < self._required_cameras() or any(e.reason != "tf_missing" for e in failed.values()):
            raise next(iter(failed.values()))
        for c, exc in failed.items():
            self.drops.add(exc.reason, message=str(exc))
            self.warn(f"tf:{c}", f"{self.cfg.image_topic(c)} @ {images[c].stamp_ns / NS:.3f} s dropped "
                                 f"({exc.reason}): {exc}")
            del images[c]
        return found

    def _frame_set(self, stamp: int, images: dict[str, CameraImage]) -> FrameSet:
        base = self.cfg.frames.base
        T_base_cam = self._extrinsics(images)
        T_odom_base = None
        try:
            T_odom_base = self.tf.lookup(self.cfg.frames.odom, base, stamp)
        except TransformUnavailable:
            if self.needs_odometry:
                raise
        return FrameSet(stamp, images, T_base_cam, T_odom_base)
