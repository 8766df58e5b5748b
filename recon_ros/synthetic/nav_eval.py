"""Ground-truth figures of a navigation cloud on a synthetic sequence, and a noisy exact-depth source.

For one keyframe step (the engine's output, the navigation cloud built from it and the TF used):
  floor_removed   of the pixels the builder used whose TRUE surface is the floor (world z = 0), the
                  fraction not labelled obstacle
  obstacle_kept   of the true obstacle voxels (true surface points of the same pixels, within the range
                  clip and the height band above the true ground, voxelised like the cloud), the fraction
                  with a cloud point within one voxel edge of their centroid
  obstacle_kept_2vox   the same with two voxel edges: the tolerance the issue allows any cloud point
                  (surface_max_m), so "kept" and "precise" use one yardstick. A second definition, not a
                  replacement: both are reported.
  obstacle_covered     of the true obstacle voxels, the fraction holding the true surface point of at least
                  one PUBLISHED pixel (finite depth, confidence >= the threshold). An uncovered voxel is a
                  miss of the published depth, not of the navigation cloud; it still counts as missed in
                  obstacle_kept*, and the *_covered figures below leave it out
  obstacle_kept_covered, obstacle_kept_covered_2vox   kept (one / two voxels) among the covered voxels
  surface_max_m   the largest distance from a cloud point to the nearest true surface
  far_points      cloud points farther than two voxels from every true surface

``diagnose_navigation`` says why: each missed voxel's cause and where the far pixels come from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from recon_ros.config import FusionConfig, NavigationConfig, ReconConfig
from recon_ros.geometry.camera import backproject
from recon_ros.io.outputs import navigation_cloud
from recon_ros.pipeline.engine import FlushOutput, KeyframeOutput, ReconstructionEngine, ViewOutput
from recon_ros.pipeline.frames import CameraImage, FrameSet, View
from recon_ros.pipeline.navigation import (
    LABEL_OBSTACLE,
    LABEL_UNUSED,
    Lookup,
    NavigationCloud,
    NavigationCloudBuilder,
)
from recon_ros.pipeline.sources import DepthEstimate, DepthSource
from recon_ros.pipeline.tf_buffer import TfBuffer
from recon_ros.synthetic.rig import optical_frame_id
from recon_ros.synthetic.scene import Scene
from recon_ros.synthetic.sequence import SyntheticSequence

FLOOR_Z_M = 1e-3  # true surface points below this are the floor (the room's floor is z = 0)


@dataclass
class _ViewTruth:
    depth: np.ndarray  # [h, w] exact depth at the view's pose (0 = nothing)
    p_cam: np.ndarray  # [h, w, 3] the true surface points in the optical frame
    world_z: np.ndarray  # [h, w] their height above the floor (tf poses: map = odom = the scene's world)
    obstacle: np.ndarray  # [h, w] true obstacle pixels: within the navigation range and height band


def _views_with_truth(scene: Scene, out: KeyframeOutput | FlushOutput, nav: NavigationCloud,
                      cfg: NavigationConfig) -> Iterator[tuple[ViewOutput, np.ndarray, _ViewTruth]]:
    """The views the navigation cloud of this step was built from, with their labels and exact geometry."""
    for v in out.views:
        labels = nav.labels.get(v.camera)
        if labels is None or v.keyframe_id != out.depth_keyframe_id:
            continue
        h, w = v.depth.shape
        _, true_depth = scene.render(v.T_map_cam, v.K, w, h, supersample=1)
        p_cam = backproject(true_depth, v.K)
        world_z = (p_cam @ v.T_map_cam[:3, :3].T + v.T_map_cam[:3, 3])[..., 2]
        rng = np.linalg.norm(p_cam, axis=2)
        # Height above the TRUE ground: world z (the synthetic robot drives on the floor, level).
        obstacle = ((true_depth > 0) & (rng >= cfg.min_range_m) & (rng <= cfg.max_range_m)
                    & (world_z >= cfg.min_obstacle_height_m) & (world_z <= cfg.max_obstacle_height_m))
        yield v, labels, _ViewTruth(true_depth, p_cam, world_z, obstacle)


def navigation_figures(scene: Scene, out: KeyframeOutput | FlushOutput, nav: NavigationCloud, lookup: Lookup,
                       cfg: NavigationConfig, odom_frame: str = "odom",
                       confidence_threshold: float = FusionConfig.confidence_threshold) -> dict[str, float]:
    """Figures of one keyframe step (module doc). ``confidence_threshold``: the one the builder used
    (``fusion.confidence_threshold``), which decides which pixels count as published."""
    floor_used = floor_kept = 0
    gt_obstacles, gt_published = [], []
    for v, labels, g in _views_with_truth(scene, out, nav, cfg):
        floor = (g.depth > 0) & (g.world_z < FLOOR_Z_M)
        floor_used += int((floor & (labels != LABEL_UNUSED)).sum())
        floor_kept += int((floor & (labels == LABEL_OBSTACLE)).sum())
        T = lookup(cfg.frame, v.frame_id, v.stamp_ns)
        keep = g.obstacle
        gt_obstacles.append((g.p_cam @ T[:3, :3].T + T[:3, 3])[keep])
        gt_published.append((np.isfinite(v.depth) & (v.confidence >= confidence_threshold))[keep])
    truth = np.concatenate(gt_obstacles) if gt_obstacles else np.zeros((0, 3))
    published = np.concatenate(gt_published) if gt_published else np.zeros(0, bool)
    # True obstacle voxels (the cloud's voxel grid) and, per voxel, whether a published pixel's true point is in it.
    keys = np.floor(truth / cfg.voxel_size_m).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    centroids = np.stack([np.bincount(inverse, truth[:, i], len(counts)) for i in range(3)], axis=1) / counts[:, None]
    covered = np.bincount(inverse, published.astype(np.float64), len(counts)) > 0
    if len(nav.points) and len(centroids):
        dist, _ = cKDTree(nav.points).query(centroids)
    else:
        dist = np.full(len(centroids), np.inf)

    def kept(tol_voxels: float, among: np.ndarray) -> float:
        return float(np.mean(dist[among] <= tol_voxels * cfg.voxel_size_m)) if among.any() else 1.0

    everyone = np.ones(len(centroids), bool)
    T_odom_nav = lookup(odom_frame, cfg.frame, nav.stamp_ns)
    pts_world = nav.points.astype(np.float64) @ T_odom_nav[:3, :3].T + T_odom_nav[:3, 3]
    surf = scene.distance_to_surface(pts_world) if len(pts_world) else np.zeros(1)
    return {
        "floor_pixels": float(floor_used),
        "floor_removed": 1.0 - floor_kept / max(floor_used, 1),
        "obstacle_voxels": float(len(centroids)),
        "obstacle_kept": kept(1, everyone),
        "obstacle_kept_2vox": kept(2, everyone),
        "obstacle_covered": float(covered.mean()) if len(covered) else 1.0,
        "obstacle_kept_covered": kept(1, covered),
        "obstacle_kept_covered_2vox": kept(2, covered),
        "surface_max_m": float(surf.max()),
        "surface_p99_m": float(np.percentile(surf, 99)),
        "far_points": float(np.sum(surf > 2 * cfg.voxel_size_m)) if len(pts_world) else 0.0,
        "points": float(len(nav.points)),
    }


def diagnose_navigation(scene: Scene, out: KeyframeOutput | FlushOutput, nav: NavigationCloud, lookup: Lookup,
                        builder: NavigationCloudBuilder) -> dict[str, float]:
    """Why true obstacle voxels are missed (one-voxel definition of navigation_figures) and which pixels
    make points far from every surface. Each missed voxel gets the first cause that applies:

      missed_uncovered    no usable pixel's true point is in it (builder.usable_pixels: a hole of the published depth,
                          or only pixels below the navigation thresholds)
      missed_filtered     published pixels, none labelled obstacle (median filter, range clip, height band)
      missed_depth_off    obstacle pixels, but the point of every one lies > 1 voxel from the voxel's centroid
      missed_other        a pixel's point is within 1 voxel, the cloud point is not (voxel centroid shift)

    Far pixels: obstacle pixels whose point is > 2 voxels from every true surface; counted per camera,
    with their published confidence and range (medians) against those of all obstacle pixels.
    """
    cfg = builder.cfg
    vs = cfg.voxel_size_m
    truth, covered, passed, est, far_conf, far_rng, all_conf = [], [], [], [], [], [], []
    per_cam: dict[str, int] = {}
    for v, labels, g in _views_with_truth(scene, out, nav, cfg):
        p_cam, keep = g.p_cam, g.obstacle
        T = lookup(cfg.frame, v.frame_id, v.stamp_ns)
        _, depth_used, rng_used = builder.confident_pixels(v)
        p_est = backproject(depth_used, v.K) @ T[:3, :3].T + T[:3, 3]
        obstacle = labels == LABEL_OBSTACLE
        truth.append((p_cam @ T[:3, :3].T + T[:3, 3])[keep])
        covered.append(builder.usable_pixels(v)[keep])
        passed.append(obstacle[keep])
        est.append(p_est[keep])
        est_world = backproject(depth_used, v.K)[obstacle] @ v.T_map_cam[:3, :3].T + v.T_map_cam[:3, 3]
        far = scene.distance_to_surface(est_world) > 2 * vs if len(est_world) else np.zeros(0, bool)
        per_cam[v.camera] = int(far.sum())
        far_conf.append(v.confidence[obstacle][far])
        far_rng.append(rng_used[obstacle][far])
        all_conf.append(v.confidence[obstacle])
    if not truth:
        return {}
    gt, cov, ok, pe = (np.concatenate(a) for a in (truth, covered, passed, est))
    _, inverse, counts = np.unique(np.floor(gt / vs).astype(np.int64), axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    n = len(counts)
    centroids = np.stack([np.bincount(inverse, gt[:, i], n) for i in range(3)], axis=1) / counts[:, None]
    dist = cKDTree(nav.points).query(centroids)[0] if len(nav.points) else np.full(n, np.inf)
    missed = dist > vs
    any_cov = np.bincount(inverse, cov.astype(np.float64), n) > 0
    any_ok = np.bincount(inverse, ok.astype(np.float64), n) > 0
    close_px = ok & (np.linalg.norm(pe - centroids[inverse], axis=1) <= vs)
    any_close = np.bincount(inverse, close_px.astype(np.float64), n) > 0
    fc, fr, ac = (np.concatenate(a) for a in (far_conf, far_rng, all_conf))
    result = {
        "missed": float(missed.sum()),
        "missed_uncovered": float((missed & ~any_cov).sum()),
        "missed_filtered": float((missed & any_cov & ~any_ok).sum()),
        "missed_depth_off": float((missed & any_ok & ~any_close).sum()),
        "missed_other": float((missed & any_close).sum()),
        "far_pixels": float(len(fc)),
        "obstacle_pixels": float(len(ac)),
        "far_pixel_confidence_p50": float(np.median(fc)) if len(fc) else float("nan"),
        "obstacle_pixel_confidence_p50": float(np.median(ac)) if len(ac) else float("nan"),
        "far_pixel_range_p50_m": float(np.median(fr)) if len(fr) else float("nan"),
    }
    result.update({f"far_pixels_{cam}": float(k) for cam, k in per_cam.items()})
    return result


def drive_navigation(seq: SyntheticSequence, cfg: ReconConfig, depth_source: DepthSource,
                     render: Callable[[int, np.ndarray], np.ndarray] | None = None
                     ) -> Iterator[tuple[KeyframeOutput | FlushOutput, NavigationCloud, TfBuffer]]:
    """Run the engine over the sequence as the bag tool would (TF buffer filled from the robot's
    static extrinsics and odometry) and build each keyframe step's navigation cloud. ``render(stamp,
    T_world_cam)`` gives an image (a dynamic scene); default: the sequence's static scene."""
    engine = ReconstructionEngine(cfg, depth_source=depth_source)
    tf = TfBuffer()
    for cam in seq.camera_names:
        tf.set_transform(cfg.frames.base, optical_frame_id(cam), 0, seq.T_base_cam[cam], static=True)
    for stamp, T_odom_base in seq.poses:
        tf.set_transform(cfg.frames.odom, cfg.frames.base, stamp, T_odom_base)
        images = {}
        for cam in seq.camera_names:
            T = T_odom_base @ seq.T_base_cam[cam]
            rgb = render(stamp, T) if render else seq.scene.render(T, seq.K, seq.config.width, seq.config.height)[0]
            images[cam] = CameraImage(cam, stamp, rgb, seq.K, optical_frame_id(cam))
        out = engine.process(FrameSet(stamp, images, dict(seq.T_base_cam), T_odom_base))
        nav = navigation_cloud(cfg, out, tf.lookup) if out is not None else None
        if nav is not None:  # None: no depth at this step (it waits for the next keyframe)
            yield out, nav, tf
    final = engine.flush()  # the last keyframe's depth (depth.wait_for_next_keyframe)
    nav = navigation_cloud(cfg, final, tf.lookup)
    if nav is not None:
        yield final, nav, tf


class NoisyGroundTruthDepth:
    """Exact depth of a static scene plus a stereo-like error model: relative Gaussian noise
    (``sigma``), a fraction ``outliers`` of pixels with a uniformly wrong depth. Confidence is uniform
    in [0.5, 1] for good pixels and in [0.1, 1] for wrong ones, so the confidence threshold (0.3) catches
    a fifth of the wrong pixels and the navigation cloud's own filters must handle the rest. Seeded."""

    name = "noisy_ground_truth"

    def __init__(self, scene: Scene, sigma: float, outliers: float, seed: int = 0):
        self.scene = scene
        self.sigma = sigma
        self.outliers = outliers
        self.rng = np.random.default_rng(seed)

    def estimate(self, ref: View, sources: list[View], depth_range: tuple[float, float]) -> DepthEstimate:
        w, h = ref.size
        _, depth = self.scene.render(ref.T_world_cam, ref.K, w, h, supersample=1)
        depth = depth * (1.0 + self.sigma * self.rng.standard_normal(depth.shape))
        wrong = self.rng.random(depth.shape) < self.outliers
        depth[wrong] = self.rng.uniform(depth_range[0], depth_range[1], int(wrong.sum()))
        valid = (depth >= depth_range[0]) & (depth <= depth_range[1])
        confidence = np.where(wrong, self.rng.uniform(0.1, 1.0, depth.shape), self.rng.uniform(0.5, 1.0, depth.shape))
        confidence = np.where(valid, confidence, 0.0).astype(np.float32)
        return DepthEstimate(np.where(valid, depth, 0.0).astype(np.float32), confidence, valid)
