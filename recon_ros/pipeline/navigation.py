"""Costmap-ready outputs from one keyframe's published depth: an obstacle cloud and clearing rays. No ROS here.

A costmap plugin (Nav2 voxel layer, STVL, obstacle layer) wants few points, no floor, a height band
and points in a frame it can transform. From the depth the engine publishes for the new keyframe
(NaN = invalid, with its confidence), per camera:

  pixels with finite depth and confidence >= navigation.min_confidence (never below the published threshold),
  or down to the published threshold where the view's sources pin the depth (well_triangulated_error_m)
    -> median filter: kept where the depth agrees with the median of the used pixels around it, and
       replaced by that median (speckle and flying pixels go, noise drops, edges stay)
    -> range clip [min_range, max_range] from the camera
    -> points in the navigation frame (TF at the image stamp)
    -> height above the ground: a RANSAC plane fit to the points near the known ground height
       (``navigation.ground_height_m``), or that known height when too few points fit
    -> obstacle points: height in [min_obstacle_height, max_obstacle_height]
    -> one point per voxel (centroid) with >= ``min_pixels_per_voxel`` pixels
    -> optionally (``min_neighbour_points``) only points with that many other points within one voxel
       edge: a 3-D outlier test (isolated wrong patches go; it also thins far, sparse surfaces)
    -> at most ``max_points`` (the voxels nearest the frame origin win: near obstacles matter most)

Clearing: the same confident pixels INCLUDING the ground, rays longer than max_range cut there,
voxel-downsampled, in each camera's optical frame; the frame origin is the camera, so a costmap
raytracing from the sensor origin clears exactly the space each ray crossed (see docs/NAV2.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial import cKDTree

from recon_ros.config import NavigationConfig
from recon_ros.geometry.camera import backproject, depth_sensitivity
from recon_ros.pipeline.engine import ViewOutput

#: (target frame, source frame, stamp) -> 4x4 target <- source; raises when TF cannot answer.
Lookup = Callable[[str, str, int], np.ndarray]

# Per-pixel outcome codes of NavigationCloud.labels.
LABEL_UNUSED, LABEL_GROUND, LABEL_BELOW, LABEL_ABOVE, LABEL_OBSTACLE = 0, 1, 2, 3, 4

DENSE_VOXEL_LIMIT = 16_000_000  # voxel key range up to which voxel_downsample counts densely (<= 128 MB)
FAR_M = 1e4  # stands for "no depth" in the upper median (any depth beyond every range clip)
# Matching error (source-image pixels) that navigation.well_triangulated_error_m is stated for: the plane sweep's
# sub-pixel refinement is good to about a tenth of a pixel on textured surfaces.
MATCHING_ERROR_PX = 0.1
GROUND_FIT_ITERATIONS = 64
GROUND_FIT_MIN_POINTS = 200  # fewer ground candidates than this: the fit is not trusted
GROUND_FIT_MAX_SAMPLES = 4000  # candidates scored per hypothesis (subsampled): bounds the cost
GROUND_FIT_MAX_TILT_DEG = 15.0  # plane normals farther than this from the frame's z are not ground


@dataclass
class GroundPlane:
    """Ground as ``n . p + d = 0`` in the navigation frame, n unit and pointing up."""

    normal: np.ndarray
    offset: float
    fitted: bool  # False: the known ground height was used
    inliers: int = 0

    def height(self, points: np.ndarray) -> np.ndarray:
        return points @ self.normal + self.offset


@dataclass
class ClearingRays:
    """End points of a camera's confident rays in its optical frame (ray origin = frame origin)."""

    camera: str
    frame_id: str
    stamp_ns: int
    points: np.ndarray  # [N, 3] float32


@dataclass
class NavigationCloud:
    """One keyframe step's costmap input."""

    stamp_ns: int
    frame_id: str
    points: np.ndarray  # [N, 3] float32 in frame_id
    colors: np.ndarray  # [N, 3] uint8, by height above ground (blue low, red high)
    clearing: list[ClearingRays]
    ground: GroundPlane | None
    counts: dict[str, int] = field(default_factory=dict)  # pixels per outcome, for status and tests
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> [h, w] LABEL_* per pixel
    build_s: float = 0.0


def voxel_downsample(points: np.ndarray, voxel: float, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Centroid per occupied voxel -> (centroids [M,3] float32, pixel count [M]); voxels with fewer than
    ``min_count`` points are dropped. Vectorised: integer voxel keys, then ``bincount`` over the dense key
    range when it is small (a navigation cloud's is: ~10 x 10 x 2 m at 5 cm), else ``np.unique``
    (measured 2x faster than ``np.unique`` for 300k points, no Python loop over points either way).
    """
    if len(points) == 0:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.int64)
    q = np.floor(points / voxel).astype(np.int64)
    lo = np.array([q[:, i].min() for i in range(3)])  # per column: faster than min(axis=0) on [N, 3]
    q -= lo
    span = np.array([q[:, i].max() for i in range(3)]) + 1
    keys = (q[:, 0] * span[1] + q[:, 1]) * span[2] + q[:, 2]
    total = int(span.prod())
    if total <= DENSE_VOXEL_LIMIT:
        counts = np.bincount(keys, minlength=total)
        occupied = np.flatnonzero(counts >= min_count)
        sums = np.stack([np.bincount(keys, weights=points[:, i], minlength=total)[occupied] for i in range(3)], axis=1)
        counts = counts[occupied]
    else:
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        sums = np.stack([np.bincount(inverse, weights=points[:, i], minlength=len(counts)) for i in range(3)], axis=1)
        keep = counts >= min_count
        sums, counts = sums[keep], counts[keep]
    return (sums / counts[:, None]).astype(np.float32), counts


def fit_ground(points: np.ndarray, known_height: float, band: float, seed: int = 0) -> GroundPlane:
    """RANSAC plane through the points within ``band`` of ``z = known_height``; the known plane if too few.

    Inlier distance is a third of the band (≥ 1 cm); the winning plane is refined by least squares on
    its inliers. Normals tilted more than GROUND_FIT_MAX_TILT_DEG from z are rejected (a wall base or a
    box top is not the ground).
    """
    known = GroundPlane(np.array([0.0, 0.0, 1.0]), -known_height, fitted=False)
    cand = points[np.abs(points[:, 2] - known_height) <= band]
    if len(cand) < GROUND_FIT_MIN_POINTS:
        return known
    rng = np.random.default_rng(seed)
    if len(cand) > GROUND_FIT_MAX_SAMPLES:
        cand = cand[rng.choice(len(cand), GROUND_FIT_MAX_SAMPLES, replace=False)]
    tol = max(band / 3.0, 0.01)
    cos_tilt = np.cos(np.radians(GROUND_FIT_MAX_TILT_DEG))
    best_n, best_d, best_count = None, 0.0, 0
    tri = rng.integers(0, len(cand), size=(GROUND_FIT_ITERATIONS, 3))
    for i, j, k in tri:
        n = np.cross(cand[j] - cand[i], cand[k] - cand[i])
        norm = np.linalg.norm(n)
        if norm < 1e-9:
            continue
        n = n / norm
        if n[2] < 0:
            n = -n
        if n[2] < cos_tilt:
            continue
        d = -float(n @ cand[i])
        count = int((np.abs(cand @ n + d) <= tol).sum())
        if count > best_count:
            best_n, best_d, best_count = n, d, count
    if best_n is None or best_count < GROUND_FIT_MIN_POINTS // 2:
        return known
    # Least-squares refinement with a tighter inlier band, twice: the RANSAC band also takes in the foot
    # of walls and boxes, which would tilt the plane. The normal is the inliers' smallest principal axis.
    n, d, refine_tol = best_n, best_d, max(tol / 3.0, 0.01)
    inl = cand
    for _ in range(2):
        sel = cand[np.abs(cand @ n + d) <= refine_tol]
        if len(sel) < GROUND_FIT_MIN_POINTS // 2:
            break
        inl = sel
        centre = inl.mean(axis=0)
        _, _, vt = np.linalg.svd(inl - centre, full_matrices=False)
        m = vt[2] if vt[2][2] >= 0 else -vt[2]
        if m[2] < cos_tilt:
            break
        n, d = m, -float(m @ centre)
    return GroundPlane(n, d, fitted=True, inliers=len(inl))


class NavigationCloudBuilder:
    """Turns the views of one keyframe into a :class:`NavigationCloud` (see module doc)."""

    def __init__(self, cfg: NavigationConfig, confidence_threshold: float):
        self.cfg = cfg
        # The published threshold (fusion.confidence_threshold) is a floor: nothing below it is ever used.
        self.published_threshold = confidence_threshold
        self.confidence_threshold = max(confidence_threshold, cfg.min_confidence)

    def usable_pixels(self, view: ViewOutput) -> np.ndarray:
        """Published pixels the navigation outputs may use (before the median filter): confidence at or above
        ``min_confidence``, or at or above the published threshold where the view's sources pin the depth."""
        d = view.depth
        finite = np.isfinite(d) & (d > 0)
        ok = finite & (view.confidence >= self.confidence_threshold)
        err = self.cfg.well_triangulated_error_m
        band = finite & ~ok & (view.confidence >= self.published_threshold)
        if err > 0 and view.source_cameras and band.any():
            # a matching error of MATCHING_ERROR_PX moves the depth by MATCHING_ERROR_PX / sensitivity metres
            sensitivity = depth_sensitivity(d, view.K, view.T_map_cam, view.source_cameras, band)
            ok |= band & (sensitivity * err >= MATCHING_ERROR_PX)
        return ok

    def confident_pixels(self, view: ViewOutput) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mask, depth, range) of the pixels the navigation outputs may use: published (finite) depth and
        confidence at or above ``min_confidence`` (never below the published threshold), or between the two where
        the view's sources pin the depth (``well_triangulated_error_m``); with ``median_filter_px`` also within
        ``median_tolerance`` of their neighbourhood's median, and the depth returned is that median
        (median-filtered depth: speckle gone, noise down, edges kept). Range = distance from the camera."""
        d = view.depth
        ok = self.usable_pixels(view)
        z = np.where(ok, d, 0.0).astype(np.float32)
        k = self.cfg.median_filter_px
        if k > 1:
            # The median must come from used pixels: computed twice, with unused pixels (and the outside
            # of the image: medianBlur would replicate the border) as 0 and as +inf-like; a pixel is
            # kept when it agrees with both, which also needs a used majority around it.
            r = k // 2
            lo = cv2.medianBlur(cv2.copyMakeBorder(z, r, r, r, r, cv2.BORDER_CONSTANT, value=0.0), k)[r:-r, r:-r]
            hi_in = np.where(ok, z, FAR_M).astype(np.float32)
            hi = cv2.medianBlur(cv2.copyMakeBorder(hi_in, r, r, r, r, cv2.BORDER_CONSTANT, value=FAR_M), k)[r:-r, r:-r]
            tol = self.cfg.median_tolerance
            ok &= (np.abs(z - lo) <= tol * lo) & (np.abs(z - hi) <= tol * hi)
            z = np.where(ok, 0.5 * (lo + hi), 0.0)
        rng = np.linalg.norm(backproject(z, view.K), axis=2)
        return ok & (rng >= self.cfg.min_range_m), z, rng

    def clearing_rays(self, view: ViewOutput, ok: np.ndarray, depth: np.ndarray, rng: np.ndarray) -> ClearingRays:
        """Ray end points in the optical frame; rays longer than max_range are cut there (the space up to
        it is known free), one end point per voxel."""
        scale = np.minimum(1.0, self.cfg.max_range_m / np.maximum(rng, 1e-6))
        ends = backproject(depth * scale, view.K)[ok]
        ends, _ = voxel_downsample(ends, self.cfg.voxel_size_m)
        if len(ends) > self.cfg.max_points:  # evenly thinned (voxels come out in key order, not by place)
            ends = ends[np.linspace(0, len(ends) - 1, self.cfg.max_points).astype(np.int64)]
        return ClearingRays(view.camera, view.frame_id, view.stamp_ns, ends)

    def build(self, views: list[ViewOutput], stamp_ns: int, lookup: Lookup) -> NavigationCloud:
        """Navigation cloud of ``views`` stamped ``stamp_ns``. ``lookup(nav_frame, camera_frame, stamp)``
        gives each view's transform at its image stamp; a view whose transform is unavailable is skipped
        and counted (``counts['views_without_tf']``)."""
        t0 = time.perf_counter()
        cfg = self.cfg
        counts = dict.fromkeys(("pixels", "unconfident_or_out_of_range", "ground", "below_band", "above_band",
                                "obstacle_pixels", "sparse_voxels", "isolated_voxels", "capped",
                                "views_without_tf"), 0)
        used: list[tuple[ViewOutput, np.ndarray, np.ndarray]] = []  # (view, pixel mask, points in nav frame)
        clearing = []
        for v in views:
            counts["pixels"] += v.depth.size
            try:
                T = np.asarray(lookup(cfg.frame, v.frame_id, v.stamp_ns), np.float64)
            except LookupError:
                counts["views_without_tf"] += 1
                continue
            confident, depth, rng = self.confident_pixels(v)
            if cfg.clearing:
                clearing.append(self.clearing_rays(v, confident, depth, rng))
            ok = confident & (rng <= cfg.max_range_m)
            counts["unconfident_or_out_of_range"] += int(v.depth.size - ok.sum())
            p_cam = backproject(depth, v.K)[ok]
            used.append((v, ok, p_cam @ T[:3, :3].T + T[:3, 3]))
        pts = np.concatenate([p for _, _, p in used]) if used else np.zeros((0, 3))
        ground = fit_ground(pts, cfg.ground_height_m, cfg.ground_fit_band_m) if cfg.fit_ground else GroundPlane(
            np.array([0.0, 0.0, 1.0]), -cfg.ground_height_m, fitted=False)
        label = self.label_heights(ground.height(pts))
        for code, name in ((LABEL_GROUND, "ground"), (LABEL_BELOW, "below_band"), (LABEL_ABOVE, "above_band"),
                           (LABEL_OBSTACLE, "obstacle_pixels")):
            counts[name] = int((label == code).sum())
        labels, i = {}, 0
        for v, ok, p in used:  # per-pixel outcome, for tests and debugging
            img = np.full(ok.shape, LABEL_UNUSED, np.uint8)
            img[ok] = label[i:i + len(p)]
            labels[v.camera] = img
            i += len(p)
        centroids, support = voxel_downsample(pts[label == LABEL_OBSTACLE], cfg.voxel_size_m)
        sparse = support < cfg.min_pixels_per_voxel
        counts["sparse_voxels"] = int(sparse.sum())
        centroids = centroids[~sparse]
        if cfg.min_neighbour_points > 0 and len(centroids):
            # 1.01: voxel centroids of a flat surface sit about one voxel edge apart; count those too.
            others = cKDTree(centroids).query_ball_point(centroids, 1.01 * cfg.voxel_size_m, return_length=True) - 1
            isolated = others < cfg.min_neighbour_points
            counts["isolated_voxels"] = int(isolated.sum())
            centroids = centroids[~isolated]
        if len(centroids) > cfg.max_points:
            counts["capped"] = len(centroids) - cfg.max_points
            near = np.argsort(np.linalg.norm(centroids[:, :2], axis=1), kind="stable")[: cfg.max_points]
            centroids = centroids[np.sort(near)]
        # Colour by height above ground (blue low -> red high): readable in RViz without a colour map.
        frac = np.clip((ground.height(centroids.astype(np.float64)) - cfg.min_obstacle_height_m)
                       / (cfg.max_obstacle_height_m - cfg.min_obstacle_height_m), 0.0, 1.0)
        cols = np.stack([255 * frac, np.full_like(frac, 64), 255 * (1 - frac)], axis=1).astype(np.uint8)
        return NavigationCloud(stamp_ns, cfg.frame, centroids, cols, clearing, ground, counts, labels,
                               time.perf_counter() - t0)

    def label_heights(self, h: np.ndarray) -> np.ndarray:
        """Per point: ground (|h| < min height), below the band (holes, down-ramps), above it, or obstacle."""
        lo, hi = self.cfg.min_obstacle_height_m, self.cfg.max_obstacle_height_m
        out = np.full(h.shape, LABEL_OBSTACLE, np.uint8)
        out[h < lo] = LABEL_GROUND
        out[h <= -lo] = LABEL_BELOW
        out[h > hi] = LABEL_ABOVE
        return out
