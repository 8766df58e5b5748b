"""`recon-ros bag IN OUT`: run the engine over a recorded rosbag2 and write an output bag.

The output holds every input message (copied byte for byte, so it plays on its own) plus what the
live node would publish. ``summary()`` accounts for every image message: used in a keyframe, not
selected as keyframe, or dropped with a reason — the numbers add up to the images in the bag.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from recon_ros.config import ReconConfig
from recon_ros.io.bag import BagReader, BagWriter
from recon_ros.io.cameras import camera_topics, resolve_cameras
from recon_ros.io.messages import (
    MessageKit,
    image_to_numpy,
    stamp_to_ns,
)
from recon_ros.io.outputs import engine_flush_messages, engine_step_messages
from recon_ros.pipeline.depth_metrics import PublishedDepthSummary
from recon_ros.pipeline.engine import CloudOutput, FlushOutput, KeyframeOutput, ReconstructionEngine, ViewOutput
from recon_ros.pipeline.frames import DropCounter
from recon_ros.pipeline.frontend import FrontEnd
from recon_ros.pipeline.tf_buffer import TfBuffer, add_tf_message

LOG = logging.getLogger("recon_ros")


@dataclass
class BagRunResult:
    summary: dict[str, Any]
    keyframes: list[KeyframeOutput] = field(default_factory=list)
    clouds: list[CloudOutput] = field(default_factory=list)
    engine: ReconstructionEngine | None = None
    final: FlushOutput | None = None  # what the end-of-bag flush produced (keep_outputs)

    def depth_views(self) -> list[ViewOutput]:
        """Every published depth image (keep_outputs): per keyframe step, then the flush's."""
        return [v for k in self.keyframes for v in k.views] + (self.final.views if self.final else [])


def run_bag(
    input_path: str | Path,
    output_path: str | Path | None,
    cfg: ReconConfig,
    *,
    summary_path: str | Path | None = None,
    progress: bool = True,
    keep_outputs: bool = False,
    overwrite: bool = False,
    engine: ReconstructionEngine | None = None,
) -> BagRunResult:
    kit = MessageKit.for_rosbags()
    drops = DropCounter()
    tf = TfBuffer()
    kept: list[KeyframeOutput] = []
    kept_clouds: list[CloudOutput] = []
    final: FlushOutput | None = None
    t_start = time.perf_counter()

    with BagReader(input_path, kit) as reader:
        counts = reader.message_counts()
        # Cameras named in the config win; with none, every image topic with a camera_info beside it is one.
        cfg, discovery = resolve_cameras(cfg, reader.topics.items(), str(input_path))
        frontend = FrontEnd(cfg, tf, drops)
        engine = engine or ReconstructionEngine(cfg, drops=drops)
        engine.drops = drops
        sources = camera_topics(cfg)
        image_topics = {c.image_topic: c.name for c in sources}
        info_topics = {c.info_topic: c.name for c in sources}
        gt_pattern = cfg.topics.depth_ground_truth
        gt_topics = {gt_pattern.format(camera=c): c for c in cfg.cameras} if gt_pattern else {}
        depth_summary = PublishedDepthSummary()
        missing = [t for t in [*image_topics, *info_topics] if t not in counts]
        for t in missing:
            LOG.warning("%s: topic %s is not in the bag (has: %s)", input_path, t, ", ".join(sorted(counts)))
        if not any(t in counts for t in image_topics):
            raise ValueError(
                f"{input_path}: none of the image topics {sorted(image_topics)} is in the bag; "
                f"set cameras / topics.image / topics.transports to match (bag has: {sorted(counts)})"
            )
        writer = BagWriter(output_path, kit, overwrite=overwrite) if output_path else None
        total_images = sum(counts.get(t, 0) for t in image_topics)
        bar = tqdm(total=total_images, desc="frames", unit="img", disable=not progress)
        images_read: Counter[str] = Counter()
        unknown_types: set[tuple[str, str]] = set()
        uncopyable: set[str] = set()
        expected_types = {**{c.image_topic: c.image_type for c in sources},
                          **dict.fromkeys(info_topics, "sensor_msgs/msg/CameraInfo"),
                          "/tf": "tf2_msgs/msg/TFMessage", "/tf_static": "tf2_msgs/msg/TFMessage"}

        def handle(outputs: list) -> None:
            for fs in outputs:
                out = engine.process(fs)
                if out is None:
                    continue
                if keep_outputs:
                    kept.append(out)
                    kept_clouds.extend(out.clouds)
                for v in out.views:
                    depth_summary.add_published(v.camera, v.stamp_ns, v.depth, v.confidence)
                bar.set_postfix(keyframes=engine.keyframe_count, map=len(engine.map))
                if writer is not None:
                    for topic, msg in engine_step_messages(kit, cfg, engine, out, tf.lookup):
                        writer.write(topic, msg, out.stamp_ns)

        try:
            for m in reader.messages():
                if writer is not None and m.topic not in uncopyable:
                    try:
                        writer.write_raw(m)
                    except Exception as exc:  # e.g. a type without definition in a salvaged bag
                        uncopyable.add(m.topic)
                        LOG.warning("%s: topic %s (%s) not copied to the output: %s", input_path, m.topic,
                                    m.msgtype, exc)
                topic = m.topic
                if topic in image_topics:
                    images_read[topic] += 1
                    bar.update(1)
                if topic in gt_topics:
                    try:
                        gt_msg = reader.deserialize(m)
                        depth_summary.add_ground_truth(gt_topics[topic], stamp_to_ns(gt_msg.header.stamp),
                                                       image_to_numpy(gt_msg).astype("float32"))
                    except Exception as exc:
                        LOG.warning("%s: ground-truth depth on %s unreadable: %s", input_path, topic, exc)
                    continue
                cam = image_topics.get(topic) or info_topics.get(topic)
                if cam is None and topic not in ("/tf", "/tf_static"):
                    continue
                expected = expected_types.get(topic)
                if m.msgtype != expected:
                    if topic in image_topics:
                        frontend.reject_image(cam, m.log_time_ns, "wrong_type",
                                              f"message type {m.msgtype}, expected {expected}")
                    elif (topic, m.msgtype) not in unknown_types:
                        unknown_types.add((topic, m.msgtype))
                        LOG.warning("%s: %s carries %s, expected %s; ignored", input_path, topic, m.msgtype, expected)
                    continue
                try:
                    msg = reader.deserialize(m)
                except Exception as exc:
                    if topic in image_topics:
                        frontend.reject_image(cam, m.log_time_ns, "deserialize_error", f"{m.msgtype}: {exc}")
                    elif (topic, m.msgtype) not in unknown_types:
                        unknown_types.add((topic, m.msgtype))
                        LOG.warning("%s: cannot deserialize %s (%s): %s", input_path, topic, m.msgtype, exc)
                    continue
                if topic in ("/tf", "/tf_static"):
                    for problem in add_tf_message(tf, msg, static=topic == "/tf_static"):
                        LOG.warning("%s: %s", topic, problem)
                elif topic in info_topics:
                    frontend.on_camera_info(cam, msg)
                else:
                    handle(frontend.on_image_message(cam, msg))
            handle(frontend.flush())
            final = engine.flush()
            if keep_outputs:
                kept_clouds.extend(final.clouds)
            for v in final.views:
                depth_summary.add_published(v.camera, v.stamp_ns, v.depth, v.confidence)
            if writer is not None:
                stamp, msgs = engine_flush_messages(kit, cfg, engine, final, tf.lookup)
                for topic, msg in msgs:
                    writer.write(topic, msg, stamp)
        finally:
            bar.close()
            if writer is not None:
                writer.close()

        summary = {
            "input": str(input_path),
            "output": str(output_path) if output_path else None,
            "cameras": {c.name: {"image_topic": c.image_topic, "camera_info_topic": c.info_topic,
                                 "transport": c.transport} for c in sources},
            "ignored_topics": dict(discovery.ignored),
            "images_read": dict(images_read),
            "images_total": sum(images_read.values()),
            "frame_sets": frontend.frame_sets,
            "keyframes": engine.keyframe_count,
            "images_in_keyframes": engine.images_in_keyframes,
            "images_not_keyframe": engine.images_not_keyframe,
            "images_dropped": drops.as_dict(),
            "drop_messages": dict(drops.last_message),
            "camera_info_errors": {cfg.camera_info_topic(c): n for c, n in frontend.camera_info_errors.items()},
            "missing_topics": missing,
            "camera_dropouts": dict(frontend.camera_dropouts),
            "cameras_missing_at_end": sorted(frontend.missing_since),
            "odometry_jumps": engine.odometry_jumps,
            "bag_truncated": reader.truncated,
            "bag_errors": reader.errors,
            "map_points": len(engine.map),
            "published_depth": depth_summary.report(),
            "seconds_per_stage": {k: round(v, 3) for k, v in engine.timer.total.items()},
            "seconds_total": round(time.perf_counter() - t_start, 3),
        }
        summary["accounted"] = (
            summary["images_in_keyframes"] + summary["images_not_keyframe"] + drops.total()
            == summary["images_total"]
        )
    if summary_path:
        Path(summary_path).write_text(json.dumps(summary, indent=2))
    return BagRunResult(summary, kept, kept_clouds, engine, final if keep_outputs else None)
