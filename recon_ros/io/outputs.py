"""What recon_ros publishes, as (topic, message) pairs — shared by the node and the bag tool.

Topics (prefix ``topics.output_prefix``, default ``/recon``):
  cloud                       PointCloud2 per keyframe and camera, in the camera optical frame
  map                         PointCloud2 of the fused map, map frame (reliable, transient_local)
  depth/<cam>/image           32FC1 metres, NaN = invalid
  depth/<cam>/confidence      32FC1 in [0, 1]
  depth/<cam>/camera_info     CameraInfo at the depth resolution
  keyframe_depth              recon_ros/KeyframeDepth per keyframe and camera
  path                        nav_msgs/Path of keyframe base poses in the map frame
  obstacles                   PointCloud2 for costmaps, one per keyframe step, frame navigation.frame
                              (ground removed, height band, range clip, voxel-downsampled, capped)
  clearing                    PointCloud2 per keyframe and camera: confident ray end points (ground
                              included) in the camera optical frame, for costmap free-space raytracing
  /tf                         map->odom (tf_mode map_odom) or map-><cam optical> (tf_mode map_camera)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon_ros.config import ReconConfig
from recon_ros.io.messages import (
    MessageKit,
    make_camera_info,
    make_keyframe_depth,
    make_organized_pointcloud2,
    make_path,
    make_pointcloud2,
    make_tf_message,
    make_transform_stamped,
    numpy_to_image,
)
from recon_ros.pipeline.engine import CloudOutput, FlushOutput, KeyframeOutput, ReconstructionEngine, ViewOutput
from recon_ros.pipeline.navigation import Lookup, NavigationCloud, NavigationCloudBuilder


def output_topics(cfg: ReconConfig) -> dict[str, str]:
    """Every topic recon_ros publishes (besides /tf, ~/status, /diagnostics) and its type."""
    topics = {
        cfg.output_topic("cloud"): "sensor_msgs/msg/PointCloud2",
        cfg.output_topic("map"): "sensor_msgs/msg/PointCloud2",
        cfg.output_topic("keyframe_depth"): "recon_ros/msg/KeyframeDepth",
        cfg.output_topic("path"): "nav_msgs/msg/Path",
    }
    if cfg.navigation.enabled:
        topics[cfg.output_topic("obstacles")] = "sensor_msgs/msg/PointCloud2"
        if cfg.navigation.clearing:
            topics[cfg.output_topic("clearing")] = "sensor_msgs/msg/PointCloud2"
    for cam in cfg.cameras:
        topics[cfg.output_topic("depth", cam, "image")] = "sensor_msgs/msg/Image"
        topics[cfg.output_topic("depth", cam, "confidence")] = "sensor_msgs/msg/Image"
        topics[cfg.output_topic("depth", cam, "camera_info")] = "sensor_msgs/msg/CameraInfo"
    return topics


def keyframe_messages(kit: MessageKit, cfg: ReconConfig, out: KeyframeOutput,
                      path: list[tuple[int, np.ndarray]] | None = None) -> list[tuple[str, Any]]:
    """Messages for one processed keyframe, all stamped with the source image stamps."""
    msgs = cloud_messages(kit, cfg, out.clouds) + depth_messages(kit, cfg, out.views)
    tf = tf_messages(kit, cfg, out)
    if tf is not None:
        msgs.append(("/tf", tf))
    if path:
        msgs.append((cfg.output_topic("path"), make_path(kit, path, out.stamp_ns, cfg.frames.map)))
    return msgs


def depth_messages(kit: MessageKit, cfg: ReconConfig, views: list[ViewOutput]) -> list[tuple[str, Any]]:
    """Depth image, confidence, camera info and KeyframeDepth of each view, stamped with its image stamp."""
    msgs: list[tuple[str, Any]] = []
    for v in views:
        h, w = v.depth.shape
        msgs.append((cfg.output_topic("depth", v.camera, "image"),
                     numpy_to_image(kit, v.depth, "32FC1", v.stamp_ns, v.frame_id)))
        msgs.append((cfg.output_topic("depth", v.camera, "confidence"),
                     numpy_to_image(kit, v.confidence, "32FC1", v.stamp_ns, v.frame_id)))
        msgs.append((cfg.output_topic("depth", v.camera, "camera_info"),
                     make_camera_info(kit, v.K, w, h, v.stamp_ns, v.frame_id)))
        msgs.append((cfg.output_topic("keyframe_depth"), make_keyframe_depth(
            kit, keyframe_id=v.keyframe_id, camera=v.camera, depth=v.depth, confidence=v.confidence,
            K=v.K, T_map_cam=v.T_map_cam, stamp_ns=v.stamp_ns, frame_id=v.frame_id)))
    return msgs


def cloud_messages(kit: MessageKit, cfg: ReconConfig, clouds: list[CloudOutput]) -> list[tuple[str, Any]]:
    """Per-keyframe clouds (in each camera's optical frame, stamped with that image's stamp); organized
    (height x width, NaN = not fused) when the engine produced the grid (``map.organized_keyframe_cloud``)."""
    return [
        (cfg.output_topic("cloud"),
         make_organized_pointcloud2(kit, c.organized, c.organized_colors, c.stamp_ns, c.frame_id)
         if c.organized is not None and c.organized_colors is not None
         else make_pointcloud2(kit, c.points_cam, c.colors, c.stamp_ns, c.frame_id))
        for c in clouds
    ]


def navigation_cloud(cfg: ReconConfig, out: KeyframeOutput | FlushOutput, lookup: Lookup
                     ) -> NavigationCloud | None:
    """The navigation cloud of one step, from the published depth of the newest keyframe that got depth
    at it (``out.depth_keyframe_id``: the previous keyframe with ``depth.wait_for_next_keyframe``), stamped
    with that keyframe's stamp; None when no view got depth.

    Views of older keyframes that only got depth now are left out: one cloud holds one stamp, and their
    points in a moving frame (base_link) would be placed at the wrong time.
    """
    views = [v for v in out.views if v.keyframe_id == out.depth_keyframe_id]
    if not views:
        return None
    builder = NavigationCloudBuilder(cfg.navigation, cfg.fusion.confidence_threshold)
    return builder.build(views, out.depth_stamp_ns, lookup)


def navigation_messages(kit: MessageKit, cfg: ReconConfig, nav: NavigationCloud) -> list[tuple[str, Any]]:
    """``obstacles`` (one message, navigation frame), then ``clearing`` (one per camera, optical frame)."""
    msgs = [(cfg.output_topic("obstacles"), make_pointcloud2(kit, nav.points, nav.colors, nav.stamp_ns, nav.frame_id))]
    for rays in nav.clearing:
        grey = np.full((len(rays.points), 3), 160, np.uint8)
        msgs.append((cfg.output_topic("clearing"),
                     make_pointcloud2(kit, rays.points, grey, rays.stamp_ns, rays.frame_id)))
    return msgs


def tf_messages(kit: MessageKit, cfg: ReconConfig, out: KeyframeOutput) -> Any | None:
    """One TFMessage per REP-105: a single publisher per transform, stamped with the image stamp."""
    mode = cfg.frames.tf_mode
    if mode == "map_odom" and out.T_odom_base is not None:
        return make_tf_message(kit, [make_transform_stamped(kit, out.T_map_odom, out.stamp_ns, cfg.frames.map,
                                                            cfg.frames.odom)])
    if mode == "map_camera" or (mode == "map_odom" and out.T_odom_base is None):
        return make_tf_message(kit, [make_transform_stamped(kit, T, stamp, cfg.frames.map, frame)
                                     for frame, stamp, T in out.camera_poses])
    return None


def map_message(kit: MessageKit, cfg: ReconConfig, points: np.ndarray, colors: np.ndarray, stamp_ns: int) -> Any:
    return make_pointcloud2(kit, points, colors, stamp_ns, cfg.frames.map)


#: Poses in one published Path. The engine keeps up to 10 000 keyframe poses; sending them all after
#: every keyframe costs ~0.5 s of message building at the cap, so the message is thinned evenly.
MAX_PUBLISHED_PATH_POSES = 500


def thin_path(path: list[tuple[int, np.ndarray]], limit: int = MAX_PUBLISHED_PATH_POSES
              ) -> list[tuple[int, np.ndarray]]:
    """At most ``limit`` poses spread evenly over ``path``, always keeping the first and the newest."""
    if len(path) <= limit:
        return path
    idx = np.unique(np.linspace(0, len(path) - 1, limit).round().astype(np.int64))
    return [path[i] for i in idx]


def engine_step_messages(kit: MessageKit, cfg: ReconConfig, engine: ReconstructionEngine,
                         out: KeyframeOutput, lookup: Lookup | None = None) -> list[tuple[str, Any]]:
    """Everything published after one keyframe: its messages, the path and the updated map.

    With ``lookup`` (TF) and ``navigation.enabled`` the navigation messages come first (the live node
    builds and publishes them itself, ahead of everything else, to keep their latency low).
    """
    msgs = []
    if lookup is not None and cfg.navigation.enabled:
        nav = navigation_cloud(cfg, out, lookup)
        msgs += navigation_messages(kit, cfg, nav) if nav is not None else []
    msgs += keyframe_messages(kit, cfg, out, thin_path(list(engine.path)))
    pts, cols = engine.map.arrays()
    msgs.append((cfg.output_topic("map"), map_message(kit, cfg, pts, cols, out.stamp_ns)))
    return msgs


def engine_flush_messages(kit: MessageKit, cfg: ReconConfig, engine: ReconstructionEngine, out: FlushOutput,
                          lookup: Lookup | None = None) -> tuple[int, list[tuple[str, Any]]]:
    """(stamp, messages) for what ``engine.flush()`` produced: the navigation cloud (with ``lookup``), the
    last depth images, the clouds, then the map; stamp = the newest of them."""
    stamps = [c.stamp_ns for c in out.clouds] + [v.stamp_ns for v in out.views]
    if not stamps:
        return 0, []
    msgs = []
    if lookup is not None and cfg.navigation.enabled:
        nav = navigation_cloud(cfg, out, lookup)
        msgs += navigation_messages(kit, cfg, nav) if nav is not None else []
    msgs += depth_messages(kit, cfg, out.views) + cloud_messages(kit, cfg, out.clouds)
    pts, cols = engine.map.arrays()
    msgs.append((cfg.output_topic("map"), map_message(kit, cfg, pts, cols, max(stamps))))
    return max(stamps), msgs
