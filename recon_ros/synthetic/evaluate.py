"""Accuracy of a reconstruction of a synthetic sequence against its exact ground truth."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from recon_ros.geometry.camera import project
from recon_ros.pipeline.depth_metrics import PublishedDepthScore
from recon_ros.pipeline.engine import CloudOutput, ViewOutput
from recon_ros.synthetic.sequence import SyntheticSequence

COMPLETENESS_THRESHOLD_M = 0.05


def depth_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """AbsRel and delta<1.25 of predicted vs. true depths (1-D arrays of matching pixels)."""
    if len(pred) == 0:
        return {"absrel": float("nan"), "delta_1_25": float("nan")}
    ratio = np.maximum(pred / gt, gt / pred)
    return {"absrel": float(np.mean(np.abs(pred - gt) / gt)), "delta_1_25": float(np.mean(ratio < 1.25))}


def evaluate(seq: SyntheticSequence, clouds: list[CloudOutput], map_points: np.ndarray,
             completeness_samples: int = 20_000) -> dict:
    """Per-view depth accuracy of fused pixels, kept fraction, and map accuracy/completeness."""
    index_of = {stamp: i for i, (stamp, _) in enumerate(seq.poses)}
    gt_cache: dict[int, dict[str, np.ndarray]] = {}
    per_view = []
    all_pred, all_gt, scene_depths = [], [], []
    for c in clouds:
        i = index_of[c.stamp_ns]
        if i not in gt_cache:
            gt_cache = {i: seq.render_frame(i).depths}  # keep one frame: bounded memory on long runs
        gt = gt_cache[i][c.camera]
        scene_depths.append(np.median(gt[gt > 0]))
        # Points are metric in the optical frame, so the full-resolution K finds their true pixel
        # whatever resolution depth was computed at.
        uv, z = project(c.points_cam.astype(np.float64), seq.K)
        h, w = gt.shape
        u = np.clip(np.round(uv[:, 0]).astype(int), 0, w - 1)
        v = np.clip(np.round(uv[:, 1]).astype(int), 0, h - 1)
        g = gt[v, u].astype(np.float64)
        ok = g > 0
        m = depth_metrics(z[ok], g[ok])
        per_view.append({"keyframe": c.keyframe_id, "camera": c.camera, "kept_fraction": c.kept_fraction,
                         "points": len(z), **m})
        all_pred.append(z[ok])
        all_gt.append(g[ok])
    pred = np.concatenate(all_pred) if all_pred else np.zeros(0)
    gtd = np.concatenate(all_gt) if all_gt else np.zeros(0)
    overall = depth_metrics(pred, gtd)
    report = {
        "keyframes": len({c.keyframe_id for c in clouds}),
        "depth_absrel": overall["absrel"],
        "depth_delta_1_25": overall["delta_1_25"],
        "kept_fraction": float(np.mean([c.kept_fraction for c in clouds])) if clouds else 0.0,
        "median_scene_depth_m": float(np.median(scene_depths)) if scene_depths else float("nan"),
        "map_points": len(map_points),
        "per_view": per_view,
    }
    if len(map_points):
        dist = seq.scene.distance_to_surface(map_points.astype(np.float64))
        report["cloud_median_error_m"] = float(np.median(dist))
        report["cloud_p90_error_m"] = float(np.percentile(dist, 90))
        report["completeness"] = _completeness(seq, map_points, completeness_samples)
    else:
        report.update(cloud_median_error_m=float("nan"), cloud_p90_error_m=float("nan"), completeness=0.0)
    report["cloud_median_error_rel"] = report["cloud_median_error_m"] / report["median_scene_depth_m"]
    report["completeness_threshold_m"] = COMPLETENESS_THRESHOLD_M
    return report


def _completeness(seq: SyntheticSequence, map_points: np.ndarray, n: int) -> float:
    """Fraction of true surface points, among those some keyframe camera could see, near the map."""
    from scipy.spatial import cKDTree

    samples = seq.scene.sample_surface(n, seed=0)
    seen = np.zeros(len(samples), bool)
    for i in range(0, len(seq.poses), max(1, len(seq.poses) // 20)):
        for cam in seq.camera_names:
            T = np.linalg.inv(seq.T_world_cam(i, cam))
            p = samples @ T[:3, :3].T + T[:3, 3]
            uv, z = project(p, seq.K)
            seen |= (z > 0.1) & (z < 8.0) & (uv[:, 0] >= 0) & (uv[:, 0] < seq.rig.width) & (uv[:, 1] >= 0) & (
                uv[:, 1] < seq.rig.height)
    if not seen.any():
        return 0.0
    d, _ = cKDTree(map_points).query(samples[seen], k=1)
    return float(np.mean(d < COMPLETENESS_THRESHOLD_M))


def evaluate_published(seq: SyntheticSequence, views: Iterable[ViewOutput]) -> dict:
    """Published depth images (``/recon/depth/<cam>/image``) against exact depth: per camera and overall.

    ``views``: every published depth image, e.g. ``BagRunResult.depth_views()``."""
    index_of = {stamp: i for i, (stamp, _) in enumerate(seq.poses)}
    score = PublishedDepthScore()
    for v in views:
        gt = seq.render_frame(index_of[v.stamp_ns], [v.camera]).depths[v.camera]
        if gt.shape != v.depth.shape:  # depth computed at depth.width: compare at that resolution
            gt = cv2.resize(gt, (v.depth.shape[1], v.depth.shape[0]), interpolation=cv2.INTER_NEAREST)
        score.add(v.camera, v.depth, v.confidence, gt)
    return score.report()
