"""The filter between a depth source and the published depth image (``/recon/depth/<cam>/image``).

Depth sources (plane sweep, DiffMVS/CasDiffMVS, rectified-pair SGBM) return a dense estimate with a
photometric mask. Measured on the demo scene that raw estimate is right for most pixels (median
0.7 % off) but carries a heavy tail of wrong matches (7 % of pixels more than 10 % off), and every
one of them is a phantom obstacle in a costmap. A pixel is published only when:

1. its photometric confidence reaches ``depth.publish_min_confidence``;
2. it is not in a small isolated blob of inverse depth (OpenCV's speckle filter, as StereoSGBM
   users run it): wrong matches come in small patches that disagree with their surroundings;
3. when other views of the same segment already have depth: at least
   ``depth.publish_min_consistent_views`` of them agree with it (round trip within
   ``depth.publish_pixel_threshold`` px and ``depth.publish_relative_depth_threshold``; the rule the
   fusion uses, which a wrong match rarely passes since two views would have to be wrong alike).
   A pixel that none of them can check (none has depth where it lands) needs a photometric confidence
   of ``depth.publish_unchecked_min_confidence`` instead.

The published confidence combines the photometric score, the geometric agreement (how many views
agree, and how closely), the distance from depth edges and holes (``edge_confidence``) and from the
local surface (``surface_confidence``), so that sorting by it sorts pixels by error.
``depth.publish: raw`` publishes the unfiltered estimate.
"""

from __future__ import annotations

import cv2
import numpy as np

from recon_ros.config import DepthConfig
from recon_ros.pipeline.frames import View
from recon_ros.pipeline.fusion import consistency, select_sources

# Inverse depth is quantised for cv2.filterSpeckles (int16): this many units per 1/m. 1/12 m^-1 to
# 1/0.3 m^-1 spans 25..1067 units, well inside int16, and 64 units per 1/m resolves 1.5 % at 4 m.
INV_DEPTH_UNITS = 64.0
# Confidence falls near depth edges: window (px) and the relative inverse-depth range that costs 1/e.
EDGE_WINDOW = 9
EDGE_SCALE_REL = 0.075
PUBLISHED_CONFIDENCE_FLOOR = 0.5
# Confidence falls with the agreeing views' relative depth difference: 1/e at this fraction of
# depth.publish_relative_depth_threshold; and with the distance from the local surface (5x5 median of the
# published depth): 1/e at SURFACE_SCALE_REL. Measured (top half by confidence / all, AbsRel): second rig
# 0.54 with photometric x agreement count x edges, 0.51 adding the residual, 0.46-0.48 adding both; the
# surface term at 0.01 rather than 0.005: Aloe 0.489 vs 0.498, Motorcycle 0.347 vs 0.370.
AGREEMENT_SCALE = 0.5
SURFACE_SCALE_REL = 0.01
SURFACE_WINDOW = 5  # cv2.medianBlur takes 3 or 5 for float images
# A depth source's distinctiveness (SGBM pairs: the cost curve's peak ratio, stereo_sgbm.cvf_match) enters the
# score as this power. Measured (top half by confidence / all, AbsRel, published depth through the bag tool):
# power 0 / 0.25 / 0.5: Aloe 0.596 / 0.586 / 0.578, Motorcycle 0.408 / 0.356 / 0.360 (AUSE 0.26 -> 0.24 % and
# 0.22 -> 0.17 %); the mask, hence AbsRel, coverage and delta, unchanged. Plane-sweep views have none (factor 1).
DISTINCTIVENESS_POWER = 0.5


def speckle_mask(depth: np.ndarray, valid: np.ndarray, max_size: int, max_diff_rel: float) -> np.ndarray:
    """``valid`` minus connected blobs of at most ``max_size`` pixels (neighbours within ``max_diff_rel``).

    Blobs are grown over inverse depth, so the allowed step between neighbours is relative to depth
    (``max_diff_rel`` at the blob's median depth, evaluated through the quantisation).
    """
    if max_size <= 0 or not valid.any():
        return valid.copy()
    inv = np.where(valid & (depth > 0), 1.0 / np.maximum(depth, 1e-6), 0.0)
    units = np.clip(np.round(inv * INV_DEPTH_UNITS * 16), 0, np.iinfo(np.int16).max).astype(np.int16)
    median_units = float(np.median(units[units > 0])) if (units > 0).any() else 0.0
    max_diff = max(1, int(round(max_diff_rel * median_units)))
    filtered = units.copy()
    cv2.filterSpeckles(filtered, 0, int(max_size), max_diff)
    return valid & (filtered > 0)


def edge_confidence(depth: np.ndarray, valid: np.ndarray, window: int, scale_rel: float) -> np.ndarray:
    """In [0, 1]: low near depth discontinuities and holes, where wrong matches concentrate.

    ``exp(-r / scale_rel) * f`` with ``r`` the relative inverse-depth range over the ``window``
    neighbourhood and ``f`` the fraction of it with depth. Measured on Motorcycle: ordering by ZNCC
    alone gives the top half 0.81 % AbsRel vs 1.30 % for all; times this factor 0.53 %.
    """
    inv = np.where(valid & (depth > 0), 1.0 / np.maximum(depth, 1e-6), 0.0).astype(np.float32)
    kernel = np.ones((window, window), np.uint8)
    hi = cv2.dilate(np.where(valid, inv, -1e6).astype(np.float32), kernel)
    lo = cv2.erode(np.where(valid, inv, 1e6).astype(np.float32), kernel)
    rel_range = np.clip(hi - lo, 0.0, None) / np.maximum(inv, 1e-6)
    filled = cv2.blur(valid.astype(np.float32), (window, window))
    return np.where(valid, np.exp(-rel_range / scale_rel) * filled, 0.0).astype(np.float32)


def surface_confidence(depth: np.ndarray, valid: np.ndarray, scale_rel: float) -> np.ndarray:
    """In [0, 1]: ``exp(-|d - m| / (d * scale_rel))`` with ``m`` the median of the published depth over the
    SURFACE_WINDOW neighbourhood (unpublished pixels count as 0, so the median also drops next to holes).
    Noise and wrong matches stand off the surface their neighbours describe; a smooth surface does not."""
    z = np.where(valid, depth, 0.0).astype(np.float32)
    median = cv2.medianBlur(z, SURFACE_WINDOW)
    dev = np.abs(z - median) / np.maximum(z, 1e-6)
    return np.where(valid, np.exp(-dev / scale_rel), 0.0).astype(np.float32)


class PublishedDepthFilter:
    """Decides which pixels of an estimate are published, and with what confidence."""

    def __init__(self, cfg: DepthConfig, max_views: int = 8, device: str = "cpu") -> None:
        self.cfg = cfg
        self.max_views = max_views
        self.device = device

    @property
    def enabled(self) -> bool:
        return self.cfg.publish != "raw"

    def apply(self, view: View, neighbours: list[View], depth_range: tuple[float, float]
              ) -> tuple[np.ndarray, np.ndarray]:
        """``(published mask, published confidence)`` for ``view`` (depth, confidence and valid set).

        ``neighbours``: other views of the same segment; those with depth are used for the check.
        """
        assert view.depth is not None and view.valid is not None and view.confidence is not None
        cfg = self.cfg
        raw = view.valid & (view.depth > 0) & np.isfinite(view.depth)
        conf = np.clip(np.nan_to_num(view.confidence, nan=0.0), 0.0, 1.0).astype(np.float32)
        if not self.enabled:
            return raw, conf
        mask = raw & (conf >= cfg.publish_min_confidence)
        mask = speckle_mask(view.depth, mask, cfg.publish_speckle_size, cfg.publish_speckle_range)
        # SGBM already made a rectified pair left-right consistent (OpenCV's disp12MaxDiff, 1 px): checking
        # the pair again with this filter's stricter relative threshold cost Motorcycle 3.4 points of
        # coverage (88.5 -> 85.1 %, below SGBM's own 87.5 %) for 0.4 points of delta.
        with_depth = [n for n in neighbours if n.depth is not None and n.key != view.key
                      and n.key not in view.consistent_with]
        others = select_sources(view, with_depth, depth_range, self.max_views, 0.05) if with_depth else []
        if others:
            count, checked, mean_rel = consistency(view, others, cfg.publish_pixel_threshold,
                                                   cfg.publish_relative_depth_threshold, self.device)
        else:  # nothing to check against (the first keyframe of a run or segment, a lone rectified pair)
            count = checked = np.zeros(mask.shape, np.int32)
            mean_rel = np.full(mask.shape, np.inf, np.float32)
        # Disagreement rejects; a pixel no neighbour can check (none has depth where it lands: new parts of
        # the scene, the far side of the view, every pixel of a first keyframe) is published only when its
        # match is very good, or when the depth source itself checked it (SGBM's left-right check). Measured
        # on the second rig (relative threshold 0.02, depth at once from earlier keyframes): requiring
        # agreement everywhere 0.62 % AbsRel at 76.3 % coverage, unchecked pixels at confidence >= 0.9 0.69 %
        # at 79.4 %, at any confidence 0.98 %. On the navigation figures a first keyframe published
        # unchecked held 66-139 points > 10 cm off a surface, the others 0-6.
        vouched = bool(view.consistent_with) | (conf >= cfg.publish_unchecked_min_confidence)
        mask &= (count >= cfg.publish_min_consistent_views) | ((checked == 0) & vouched)
        # Agreement raises confidence: two agreeing views are worth more than one...
        agreement = np.minimum(count, 2).astype(np.float32) / 2.0
        # ...and closer agreement more: the agreeing views' mean relative depth difference, with a pixel
        # none agrees with (published unchecked) counted as AGREEMENT_SCALE off.
        scale = AGREEMENT_SCALE * cfg.publish_relative_depth_threshold
        residual = np.where(np.isfinite(mean_rel), mean_rel, scale).astype(np.float32)
        conf = conf * (0.5 + 0.5 * agreement) * np.exp(-residual / scale)
        score = (conf * edge_confidence(view.depth, mask, EDGE_WINDOW, EDGE_SCALE_REL)
                 * surface_confidence(view.depth, mask, SURFACE_SCALE_REL))
        if view.distinctiveness is not None:  # ranks only: the mask above is already decided
            score = score * np.clip(view.distinctiveness, 0.0, 1.0) ** DISTINCTIVENESS_POWER
        # A published pixel passed every check: its confidence starts at PUBLISHED_CONFIDENCE_FLOOR, above
        # the thresholds consumers apply (the navigation cloud uses fusion.confidence_threshold, 0.3), and
        # the score only ranks pixels within [floor, 1] (a monotone map: sparsification and AUSE unchanged).
        published = PUBLISHED_CONFIDENCE_FLOOR + (1.0 - PUBLISHED_CONFIDENCE_FLOOR) * score
        return mask, np.where(mask, published, 0.0).astype(np.float32)
