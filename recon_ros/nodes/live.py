"""What the live node does between "a message arrived" and "publish these messages" — without rclpy.

``recon_node.py`` only wires ROS entities to this class, so the callbacks' work (decode, FrontEnd,
worker, building output messages) is testable and benchmarkable on a machine without ROS: the
benchmark feeds it rosbags messages through ``MessageKit.for_rosbags()``, the node feeds it rclpy
messages through ``MessageKit.for_rclpy()``. Messages come out as ``(topic, message)`` pairs,
exactly those of the bag tool (``recon_ros.io.outputs``); topic ``/tf`` goes to a TF broadcaster.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recon_ros.config import ReconConfig, iter_fields
from recon_ros.io.messages import (
    MessageKit,
    make_diagnostics,
    make_recon_status,
    stamp_to_ns,
)
from recon_ros.io.outputs import engine_flush_messages, engine_step_messages, navigation_cloud, navigation_messages
from recon_ros.pipeline.engine import FlushOutput, KeyframeOutput, ReconstructionEngine
from recon_ros.pipeline.frames import FrameSet
from recon_ros.pipeline.frontend import FrontEnd
from recon_ros.pipeline.latency import NavLatencyTracker
from recon_ros.pipeline.tf_buffer import TransformLookup
from recon_ros.pipeline.worker import InferenceWorker, LockedDropCounter

LOG = logging.getLogger("recon_ros")
Publish = Callable[[str, Any], None]
DIAG_OK, DIAG_WARN, DIAG_ERROR = 0, 1, 2


# ---- parameters ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter declared from the config schema."""

    name: str
    default: Any
    kind: str  # bool | integer | double | string | string_array | dynamic_array
    description: str
    choices: tuple[str, ...] | None = None


_KINDS = {bool: "bool", int: "integer", float: "double", str: "string"}


def parameter_specs(cfg: ReconConfig | None = None) -> list[ParamSpec]:
    """Every field of the schema as a ROS parameter declaration.

    Lists are string arrays. An EMPTY list default can't be declared as a typed array in rclpy
    (``Parameter.Type.from_parameter_value([])`` says BYTE_ARRAY on Humble), and such lists hold
    numbers (e.g. ``fusion.stage_confidence_thresholds``), so those are declared with dynamic typing.
    """
    specs = []
    for name, value, meta in iter_fields(cfg or ReconConfig()):
        choices = meta.get("choices")
        help_text = meta.get("help", "")
        if choices:
            help_text += f" One of: {', '.join(choices)}."
        if isinstance(value, list):
            kind = "string_array" if value else "dynamic_array"
            default = [str(v) for v in value]
        else:
            kind, default = _KINDS[type(value)], value
        specs.append(ParamSpec(name, default, kind, help_text, choices))
    return specs


def parameter_values_to_dict(values: dict[str, Any]) -> dict[str, Any]:
    """ROS parameter values (arrays may be array.array) -> plain values for ``config.from_dict``."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue  # declared without a value (dynamic array never set): keep the schema default
        out[name] = list(value) if not isinstance(value, (str, bytes, bool, int, float)) else value
    return out


# ---- the live pipeline --------------------------------------------------------------------------
class LiveRecon:
    """FrontEnd + InferenceWorker + ReconstructionEngine, driven by message callbacks.

    Threads: ``on_image``/``on_camera_info``/``reset`` are called from ONE callback thread at a time
    (the node puts them in a mutually exclusive callback group: the FrontEnd is not thread-safe);
    the engine runs on the worker thread, which also calls ``publish`` for keyframe outputs.
    """

    def __init__(
        self,
        cfg: ReconConfig,
        kit: MessageKit,
        tf: TransformLookup,
        publish: Publish,
        *,
        engine: ReconstructionEngine | None = None,
        warn: Callable[[str], None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ):
        self.cfg = cfg
        self.kit = kit
        self.publish = publish
        self.drops = LockedDropCounter()
        self.frontend = FrontEnd(cfg, tf, self.drops, warn)
        self.engine = engine or ReconstructionEngine(cfg, drops=self.drops)
        self.engine.drops = self.drops
        self.tf = tf
        self.nav_latency = NavLatencyTracker(clock_ns)
        self.nav_views_without_tf = 0  # views left out of navigation clouds: no TF to navigation.frame
        self._last_nav_missing = 0
        self.worker = InferenceWorker(self._process, cfg.runtime.queue_size, self.drops,
                                      on_result=self._on_keyframe, clock_ns=clock_ns)
        self.latest_stamp_ns = 0  # newest image stamp seen: stamps status/diagnostics (never now())
        self._last_image_monotonic: float | None = None  # wall-clock arrival of the latest image
        self._last_drops: dict[str, int] = {}
        self._last_failed = 0

    # ---- callbacks ------------------------------------------------------------------------------
    def on_camera_info(self, camera: str, msg: Any) -> None:
        self.frontend.on_camera_info(camera, msg)

    @property
    def info_errors(self) -> Counter[str]:
        """Invalid CameraInfo messages per camera."""
        return self.frontend.camera_info_errors

    def on_image(self, camera: str, msg: Any) -> int:
        """Decode, synchronise, attach TF, queue complete frame sets; returns how many were queued."""
        stamp = stamp_to_ns(msg.header.stamp)
        self.latest_stamp_ns = max(self.latest_stamp_ns, stamp)
        self._last_image_monotonic = time.monotonic()
        t0 = time.perf_counter()
        framesets = self.frontend.on_image_message(camera, msg)  # decode + validate (+ sync bookkeeping)
        self.nav_latency.on_decoded(camera, stamp, time.perf_counter() - t0)
        return self._submit(framesets)

    def on_tf(self) -> int:
        """New transforms arrived: queue the frame sets that waited for them; returns how many."""
        return self._submit(self.frontend.on_tf_update())

    def on_input_tick(self) -> int:
        """Periodic call from the input callback group: TF that arrived since the last image completes
        waiting frame sets, and stopped input settles pending ones. Returns how many were queued."""
        return self.on_tf() + self.on_idle_check()

    def on_idle_check(self) -> int:
        """Call periodically from the input callback group. When no image has arrived for
        ``sync.timeout_s`` of wall-clock time (recording ended, cameras stopped) the frame sets still
        being assembled are settled now — sent on with ``sync.min_cameras`` images, else counted as
        incomplete — instead of waiting for an image that may never come. Returns how many were queued."""
        idle = self._last_image_monotonic is not None and (
            time.monotonic() - self._last_image_monotonic > self.cfg.sync.timeout_s)
        if not idle or not self.frontend.has_pending:
            return 0
        return self._submit(self.frontend.flush())

    def _submit(self, framesets: list[FrameSet]) -> int:
        for fs in framesets:
            self.nav_latency.on_frameset_ready(fs.stamp_ns, fs.images)
            self.worker.submit(fs)
        return len(framesets)

    def _process(self, fs: FrameSet) -> KeyframeOutput | None:
        self.nav_latency.on_processing_start(fs.stamp_ns)
        return self.engine.process(fs)

    # ---- outputs (worker thread) ----------------------------------------------------------------
    def _on_keyframe(self, fs: FrameSet, out: KeyframeOutput) -> None:
        if self.cfg.navigation.enabled:  # first: a planner waits for it; the map message can take long
            self._publish_navigation(out)
        for topic, msg in engine_step_messages(self.kit, self.cfg, self.engine, out):
            self.publish(topic, msg)

    def _publish_navigation(self, out: KeyframeOutput | FlushOutput) -> None:
        nav = navigation_cloud(self.cfg, out, self.tf.lookup)
        if nav is None:  # no view got depth at this step (the first keyframe waits for the next one)
            return
        t0 = time.perf_counter()
        for topic, msg in navigation_messages(self.kit, self.cfg, nav):
            self.publish(topic, msg)
        if isinstance(out, KeyframeOutput):  # published at the step of frame set out.stamp_ns (not at a flush)
            self.nav_latency.on_published(nav.stamp_ns, out.stage_seconds, nav.build_s, time.perf_counter() - t0,
                                          len(nav.points), out.stamp_ns)
        missing = nav.counts["views_without_tf"]
        if missing:  # counted (status, diagnostics) and logged; the other cameras' points still go out
            self.nav_views_without_tf += missing
            LOG.warning("navigation cloud @ %.3f s: %d camera(s) without TF to '%s' at the image stamp",
                        nav.stamp_ns * 1e-9, missing, self.cfg.navigation.frame)

    def drain(self, timeout: float = 10.0) -> bool:
        """Emit what is pending: incomplete frame sets, queued work, then the keyframes awaiting fusion.

        Called on deactivate so a stopped recording still yields its last keyframes' clouds.
        """
        self._submit(self.frontend.flush())
        idle = self.worker.wait_idle(timeout)
        with self.worker.exclusive():
            out = self.engine.flush()
            if self.cfg.navigation.enabled:
                self._publish_navigation(out)
            _, msgs = engine_flush_messages(self.kit, self.cfg, self.engine, out)
            for topic, msg in msgs:
                self.publish(topic, msg)
        return idle

    # ---- services -------------------------------------------------------------------------------
    def reset(self) -> str:
        with self.worker.exclusive():
            self.engine.reset()
        return "map, keyframes and path cleared"

    def save_map(self, path: str) -> tuple[int, Path]:
        target = Path(path or f"~/.ros/recon_ros/map_{self.latest_stamp_ns}.ply").expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.worker.exclusive():
            n = self.engine.map.save_ply(str(target))
        return n, target

    def close(self) -> None:
        self.worker.stop()

    # ---- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        s = self.engine.status()
        w = self.worker.stats()
        s["images_received"] = sum(self.frontend.images_received.values())
        s["frame_sets"] = self.frontend.frame_sets
        s["dropped"] = self.drops.as_dict()
        s["cameras_missing"] = sorted(self.frontend.missing_since)
        s["camera_dropouts"] = dict(self.frontend.camera_dropouts)
        latency = w["latency_ms_last"]
        if not math.isnan(latency):
            s["stage_latency_ms"] = {**s.get("stage_latency_ms", {}), "stamp_to_output": latency}
        s["worker"] = w
        if self.cfg.navigation.enabled:
            s.update(self.nav_latency.status(), nav_frame=self.cfg.navigation.frame,
                     nav_views_without_tf=self.nav_views_without_tf)
        return s

    def status_messages(self) -> list[tuple[str, Any]]:
        """``~/status`` and ``/diagnostics`` messages, stamped with the newest image stamp."""
        s = self.status()
        stamp = self.latest_stamp_ns
        w = s["worker"]
        drops = s["dropped"]
        new_drops = {k: v - self._last_drops.get(k, 0) for k, v in drops.items() if v > self._last_drops.get(k, 0)}
        level, message = DIAG_OK, "running"
        if w["failed"] > self._last_failed or not self.worker.alive:
            level, message = DIAG_ERROR, "inference failed (see log)" if self.worker.alive else "worker thread died"
        elif new_drops:
            level = DIAG_WARN
            message = "dropping input: " + ", ".join(f"{k} +{v}" for k, v in sorted(new_drops.items()))
        elif self.nav_views_without_tf > self._last_nav_missing:
            level, message = DIAG_WARN, (f"navigation cloud: {self.nav_views_without_tf - self._last_nav_missing} "
                                         f"camera view(s) without TF to '{self.cfg.navigation.frame}'")
        elif s["cameras_missing"]:
            level, message = DIAG_WARN, "degraded rig, no images from " + ", ".join(
                self.cfg.image_topic(c) for c in s["cameras_missing"])
        elif s["images_received"] == 0:
            level, message = DIAG_WARN, "no images received yet on " + ", ".join(
                self.cfg.image_topic(c) for c in self.cfg.cameras)
        self._last_drops, self._last_failed = dict(drops), w["failed"]
        self._last_nav_missing = self.nav_views_without_tf
        values = {
            "images_received": s["images_received"],
            "frame_sets": s["frame_sets"],
            "keyframes": s["keyframes"],
            "map_points": s["map_points"],
            "queue_pending": w["pending"],
            "latency_ms_p50": round(w["latency_ms_p50"], 1),
            "latency_ms_max": round(w["latency_ms_max"], 1),
            "process_ms_mean": round(w["process_ms_mean"], 1),
            "odometry_jumps": s["odometry_jumps"],
            "cameras_missing": ",".join(s["cameras_missing"]),
            **({"nav.stamp_to_publish_ms": round(s["nav_stamp_to_publish_ms"], 1),
                "nav.stamp_to_publish_ms_p50": round(s["nav_stamp_to_publish_ms_p50"], 1),
                "nav.stamp_to_publish_ms_max": round(s["nav_stamp_to_publish_ms_max"], 1),
                "nav.points": s["nav_points"], "nav.frame": s["nav_frame"],
                "nav.views_without_tf": s["nav_views_without_tf"],
                **{f"nav.latency_ms.{k}": round(v, 1) for k, v in s["nav_latency_ms"].items()}}
               if self.cfg.navigation.enabled else {}),
            **{f"dropped.{k}": v for k, v in drops.items()},
        }
        return [
            ("~/status", make_recon_status(self.kit, s, stamp, self.cfg.frames.map)),
            ("/diagnostics", make_diagnostics(self.kit, "recon_ros: reconstruction", "recon_ros", level, message,
                                              values, stamp)),
        ]

