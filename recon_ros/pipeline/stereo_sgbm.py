"""Depth for rectified camera pairs with OpenCV's StereoSGBM (semi-global matching).

When a source view is the rectified partner of the reference (same orientation, baseline along the
optical x axis, same focal length and principal row), semi-global matching along the rows is both
more accurate and much faster than a plane sweep: on Middlebury's Motorcycle pair SGBM reaches
about 1.5 % depth AbsRel where our ZNCC plane sweep had 17.6 %. A pair with the reference on the
right is matched mirrored (both images flipped left-right), so the reference is always SGBM's left
image. Depth from disparity ``d = u_left - u_right``: ``Z = f * B / (d - (cx_left - cx_right))``.
Left-right consistency (``disp12MaxDiff``), uniqueness and speckle removal are OpenCV's own.

Foreground fattening. SGBM's smoothness term carries the disparity of a thin foreground structure onto
the background seen around and through it (wheel rims, lattices): both views make the same mistake, so
left-right checks keep it, and on Motorcycle it was 95 % of the pixels more than 25 % off. Two measures:

1. Two SGBM runs. A weakly smoothed one (block 3, P2 = 12 per block pixel) carries less across depth
   edges; where it has no confident answer the usual one (block 5, P2 = 32) fills in.
2. An edge-aware check: the winner-take-all disparity of a guided-filter cost volume (cost-volume
   filtering, Hosni et al., TPAMI 2013: the cost aggregated with weights that stop at colour edges)
   over the disparities SGBM found. A pixel is dropped where that disparity is more than
   ``CVF_MAX_REL_DIFF`` farther, or, for a pixel of the fill run, differs either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from recon_ros.geometry.se3 import invert
from recon_ros.pipeline.frames import View

# Rectified means: relative rotation below this, baseline direction within this of the x axis.
MAX_ROTATION_DEG = 0.2
MAX_OFF_AXIS = 0.01  # |t_y|, |t_z| as a fraction of |t_x|
MAX_INTRINSICS_DIFF_PX = 0.5  # fx, fy, cy of the two cameras
ZNCC_WINDOW = 7  # window of the confidence score (as the plane sweep's)


@dataclass(frozen=True)
class SgbmRun:
    block: int
    p1: int  # smoothness penalties per block pixel (OpenCV's recommendation: 8 and 32)
    p2: int


# Measured on Motorcycle (published depth through the bag tool, the filter's defaults, left view): one run at
# block 5 / P2 32 (OpenCV's recommendation) 1.30 % AbsRel at 88.47 % coverage, delta 98.22 %; block 3 / P1 4 /
# P2 12 alone 0.97 % at 86.65 %, delta 98.94 % (lower P2 trades coverage for delta along the same curve);
# both runs, fine first, 1.27 % at 89.42 %, delta 98.29 %; with the edge-aware check below 0.95 % at
# 87.83 %, delta 99.07 % (OpenCV's SGBM on the same pixels: 1.83 %, 87.52 %, 96.86 %). Aloe: 1.28 % at
# 81.96 %, delta 99.02 % before; 1.04 % at 82.44 %, delta 99.56 % now (SGBM: 2.49 %, 74.52 %, 96.56 %).
FINE = SgbmRun(block=3, p1=4, p2=12)
COARSE = SgbmRun(block=5, p1=8, p2=32)
# A fine-run pixel counts when its ZNCC reaches this and its blob is not a speckle (the published filter's
# defaults: depth.publish_min_confidence, publish_speckle_size, publish_speckle_range).
FINE_MIN_CONFIDENCE = 0.4
FINE_SPECKLE_SIZE = 100
FINE_SPECKLE_RANGE = 0.02
# Where the two runs agree within this (px), the smoother run's disparity is kept: on a textured plane at
# 9.6 px disparity the fine run's disparity had 0.80 % AbsRel, this 0.43 % (one run: 0.42 %); Motorcycle
# 0.98 -> 0.98 %, Aloe 1.06 -> 1.04 % (at 1 px: 0.97 % and 1.03 %, but 0.4 and 0.6 points less coverage;
# measured with CVF_NEAR_PERCENTILE 99.9).
AGREE_PX = 0.5
# Guided filter of the cost volume: radius (px) and regularisation (intensities in [0, 1]); cost = 0.11 x
# truncated colour difference (at 7/255) + 0.89 x truncated x-gradient difference (at 2/255), the
# parameters of the cost-volume filtering paper. Relative inverse-depth difference that rejects: 0.10 /
# 0.15 / 0.20 / 0.30 / never on Motorcycle gave delta 99.09 / 99.07 / 99.03 / 98.86 / 98.29 % at coverage
# 87.63 / 87.83 / 88.01 / 88.35 / 89.42 % (Aloe: 99.57 / 99.56 / 99.52 / 99.45 / 99.09 % at 82.23 / 82.44 /
# 82.59 / 82.72 / 83.31 %).
CVF_RADIUS = 9
CVF_EPS = 1e-4
CVF_COLOUR_WEIGHT = 0.11
CVF_COLOUR_TRUNC = 7.0 / 255.0
CVF_GRADIENT_TRUNC = 2.0 / 255.0
CVF_MAX_REL_DIFF = 0.15
# The check's disparities: from the farthest SGBM found to this percentile of those of its confident pixels
# (ZNCC >= FINE_MIN_CONFIDENCE), one pixel of margin each way; nearer pixels are compared with the nearest
# disparity searched. Time is linear in the count. On Motorcycle 100 searches 0..175 (2.3 s for the view),
# 99.9 0..61 (1.4 s) at delta 99.02 % instead of 99.07 %: the cheaper choice, if that margin may go.
CVF_NEAR_PERCENTILE = 100.0
MEAN_OF_CHANNELS = np.full((1, 3), 1.0 / 3.0, np.float32)
# The peak ratio's floor on the costs (a cost is at most 0.11 x 7/255 + 0.89 x 2/255 = 0.01): about 1 % of that.
# Tracking the two lowest minima costs sgbm_depth about 14 % (bench pair, median of 7 alternating runs, h17).
PKR_EPS = 1e-4


@dataclass
class RectifiedPair:
    source: View
    baseline_m: float
    reference_is_left: bool
    disparity_offset_px: float  # cx_left - cx_right


def rectified_partner(ref: View, sources: list[View]) -> RectifiedPair | None:
    """The first source that forms a rectified stereo pair with ``ref`` at the same image size, if any.

    Only cameras of the same keyframe (a stereo rig, exposed together) count: a side camera moving along
    its x axis also forms a rectified pair with its previous keyframe, but there the multi-view plane
    sweep over all sources is the better estimate (one pair alone lowered the demo's fused fraction).
    """
    for s in sources:
        if s.size != ref.size or s.keyframe_id != ref.keyframe_id:
            continue
        T = invert(ref.T_world_cam) @ s.T_world_cam  # source camera in the reference optical frame
        R, t = T[:3, :3], T[:3, 3]
        angle = math.degrees(math.acos(float(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))
        tx = abs(float(t[0]))
        if angle > MAX_ROTATION_DEG or tx < 1e-6 or max(abs(t[1]), abs(t[2])) > MAX_OFF_AXIS * tx:
            continue
        Kr, Ks = ref.K, s.K
        if max(abs(Kr[0, 0] - Ks[0, 0]), abs(Kr[1, 1] - Ks[1, 1]), abs(Kr[1, 2] - Ks[1, 2])) > MAX_INTRINSICS_DIFF_PX:
            continue
        left_is_ref = t[0] > 0  # source to the right of the reference
        cx_left, cx_right = (Kr[0, 2], Ks[0, 2]) if left_is_ref else (Ks[0, 2], Kr[0, 2])
        return RectifiedPair(s, tx, bool(left_is_ref), float(cx_left - cx_right))
    return None


def _zncc(a: np.ndarray, b: np.ndarray, window: int) -> np.ndarray:
    """Windowed zero-mean normalised cross-correlation of two float32 images."""
    box = (window, window)
    mu_a, mu_b = cv2.blur(a, box), cv2.blur(b, box)
    var_a = np.maximum(cv2.blur(a * a, box) - mu_a**2, 0)
    var_b = np.maximum(cv2.blur(b * b, box) - mu_b**2, 0)
    cov = cv2.blur(a * b, box) - mu_a * mu_b
    return cov / (np.sqrt(var_a * var_b) + 1e-6)


def _sgbm(gl: np.ndarray, gr: np.ndarray, run: SgbmRun, min_disp: int, num: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(disparity, confidence, valid)`` of the left image: SGBM, then ZNCC parabola refinement."""
    h, w = gl.shape
    b = run.block
    matcher = cv2.StereoSGBM_create(
        minDisparity=min_disp, numDisparities=num, blockSize=b, P1=run.p1 * b * b, P2=run.p2 * b * b,
        disp12MaxDiff=1, uniquenessRatio=10, speckleWindowSize=100, speckleRange=2, mode=cv2.STEREO_SGBM_MODE_HH,
    )
    # SGBM leaves the first minDisparity + numDisparities columns empty; a wide search range (depth range
    # 1-12 m on Motorcycle: 192 px) would cost a quarter of the image. Padding the left edge keeps them:
    # measured on Motorcycle, coverage 71 % -> 90 % at the same AbsRel.
    pad = max(0, min_disp + num)
    disp = matcher.compute(cv2.copyMakeBorder(gl, 0, 0, pad, 0, cv2.BORDER_REPLICATE),
                           cv2.copyMakeBorder(gr, 0, 0, pad, 0, cv2.BORDER_REPLICATE))[:, pad:]
    disp = disp.astype(np.float32) / 16.0  # fixed point, 4 fractional bits
    valid = disp >= min_disp
    # SGBM's sub-pixel step locks to integer disparities (measured on a textured plane at 9.6 px true
    # disparity: 9.94 px, a 3.4 % depth error). Refine with a parabola through the ZNCC of the reference
    # and the partner at the rounded disparity and its two neighbours; the peak ZNCC is the confidence.
    # Only whole-pixel shifts are sampled, so neither image is interpolated (no blur asymmetry): on exactly
    # shifted synthetic pairs the bias stays within 0.03 px at every fraction where SGBM's own reaches 0.19 px
    # (test_subpixel_refinement_is_not_locked_to_whole_pixels). Alternatives measured on both real pairs (h18:
    # Gauss-Newton, equiangular, 5 samples, half-pixel grid, pre-blur, Gaussian window) were no better on both.
    d0 = np.round(np.where(valid, disp, 0.0)).astype(np.float32)
    ref_f, src_f = gl.astype(np.float32), gr.astype(np.float32)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    s_m, s_0, s_p = (_zncc(ref_f, cv2.remap(src_f, xs - (d0 + k), ys, cv2.INTER_LINEAR), ZNCC_WINDOW)
                     for k in (-1.0, 0.0, 1.0))
    curv = s_m - 2 * s_0 + s_p
    peak = (curv < -1e-6) & (s_0 >= s_m) & (s_0 >= s_p)
    shift = np.where(peak, 0.5 * (s_m - s_p) / np.where(peak, curv, -1.0), 0.0)
    disp = np.where(peak, d0 + np.clip(shift, -0.5, 0.5), disp).astype(np.float32)
    conf = np.where(valid, np.clip(s_0, 0.0, 1.0), 0.0).astype(np.float32)
    return disp, conf, valid


def _shift_right(a: np.ndarray, d: int) -> np.ndarray:
    """``out[:, x] = a[:, x - d]``, the edge column repeated where ``x - d`` falls outside."""
    out = np.empty_like(a)
    w = a.shape[1]
    d = max(-w, min(w, d))
    if d >= 0:
        out[:, d:], out[:, :d] = a[:, : w - d], a[:, :1]
    else:
        out[:, : w + d], out[:, w + d:] = a[:, -d:], a[:, -1:]
    return out


def cvf_disparity(rgb_l: np.ndarray, rgb_r: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Winner-take-all disparity in ``[lo, hi]`` of the left image from a guided-filtered cost volume."""
    return cvf_match(rgb_l, rgb_r, lo, hi)[0]


def cvf_match(rgb_l: np.ndarray, rgb_r: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """``(disparity, distinctiveness)``: the winner-take-all disparity in ``[lo, hi]`` of the left image from a
    guided-filtered cost volume, and ``1 - c1 / c2`` in [0, 1] with ``c1`` its cost and ``c2`` the cost of the
    second-lowest local minimum of the cost curve (the peak ratio, PKR, of Hu & Mordohai 2012; 1 where the curve
    has one minimum): near 0 where another disparity matches almost as well (repetitive texture, ambiguity).

    The guided filter (He et al.) with the left colour image as guide averages each disparity's matching
    cost over a window whose weights follow the image's colour edges, so a background pixel next to a thin
    foreground structure is matched with background support only; that is what SGBM's path smoothness
    lacks. One disparity at a time: memory stays at a few images, time is linear in ``hi - lo``.
    """
    h, w = rgb_l.shape[:2]
    guide = rgb_l.astype(np.float32) / 255.0
    right = rgb_r.astype(np.float32) / 255.0

    def grad_x(rgb: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        return cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=1) / 2.0

    gx_l, gx_r = grad_x(rgb_l), grad_x(rgb_r)
    size = (2 * CVF_RADIUS + 1, 2 * CVF_RADIUS + 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, -1, size, borderType=cv2.BORDER_REFLECT)

    chans = [np.ascontiguousarray(guide[..., i]) for i in range(3)]
    means = [box(c) for c in chans]
    cov = np.empty((h, w, 3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            cov[..., i, j] = cov[..., j, i] = box(chans[i] * chans[j]) - means[i] * means[j]
    inv = np.linalg.inv(cov + CVF_EPS * np.eye(3, dtype=np.float32)).astype(np.float32)
    inv_c = [[np.ascontiguousarray(inv[..., i, j]) for j in range(3)] for i in range(3)]
    best = np.full((h, w), np.inf, np.float32)
    arg = np.zeros((h, w), np.float32)
    # The two lowest local minima of the cost curve, found while streaming over d: slice d - 1 is one where it is
    # below slice d - 2 and not above slice d (the ends count with +inf outside the range).
    min1 = np.full((h, w), np.inf, np.float32)
    min2 = np.full((h, w), np.inf, np.float32)
    prev2 = prev1 = None

    def add_minimum(is_min: np.ndarray, value: np.ndarray) -> None:
        v = np.where(is_min, value, np.inf)
        min2[:] = np.where(v < min1, min1, np.minimum(min2, v))
        np.minimum(min1, v, out=min1)

    for d in range(lo, hi + 1):
        colour = cv2.transform(cv2.absdiff(guide, _shift_right(right, d)), MEAN_OF_CHANNELS)
        grad = cv2.absdiff(gx_l, _shift_right(gx_r, d))
        cost = (CVF_COLOUR_WEIGHT * np.minimum(colour, CVF_COLOUR_TRUNC)
                + (1.0 - CVF_COLOUR_WEIGHT) * np.minimum(grad, CVF_GRADIENT_TRUNC)).astype(np.float32)
        mean_p = box(cost)
        cov_ip = [box(chans[i] * cost) - means[i] * mean_p for i in range(3)]
        a = [inv_c[i][0] * cov_ip[0] + inv_c[i][1] * cov_ip[1] + inv_c[i][2] * cov_ip[2] for i in range(3)]
        b = mean_p - a[0] * means[0] - a[1] * means[1] - a[2] * means[2]
        filtered = box(a[0]) * chans[0] + box(a[1]) * chans[1] + box(a[2]) * chans[2] + box(b)
        better = filtered < best
        arg[better] = d
        best = np.where(better, filtered, best)
        if prev1 is not None:
            add_minimum((prev1 <= filtered) if prev2 is None else (prev1 < prev2) & (prev1 <= filtered), prev1)
        prev2, prev1 = prev1, filtered
    if prev1 is not None:
        add_minimum(np.ones((h, w), bool) if prev2 is None else prev1 < prev2, prev1)
    # The filtered cost may dip slightly below 0 (the guided filter is not a convex average): clamp; PKR_EPS keeps
    # a near-zero best cost from making any second minimum look far.
    c1 = np.maximum(min1, 0.0)
    distinct = np.where(np.isfinite(min2), 1.0 - (c1 + PKR_EPS) / np.maximum(min2 + PKR_EPS, c1 + PKR_EPS), 1.0)
    return arg, distinct.astype(np.float32)


def sgbm_depth(ref: View, pair: RectifiedPair, depth_range: tuple[float, float], fattening_check: bool = True
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``(depth, confidence, valid, distinctiveness)`` of ``ref`` from its rectified partner, at the view resolution.

    ``fattening_check`` (``depth.stereo_fattening_check``): the two runs and the edge-aware check of the
    module doc; False = one SGBM run (block 5, OpenCV's penalties), 5-7x faster, and no distinctiveness (None).
    The distinctiveness is the edge-aware cost volume's peak ratio (``cvf_match``): it only ranks pixels
    (depth_filter), it masks none."""
    from recon_ros.pipeline.depth_filter import speckle_mask  # depth_filter imports the fusion (heavier)

    rgb_l, rgb_r = ref.rgb, pair.source.rgb
    if not pair.reference_is_left:
        rgb_l, rgb_r = np.ascontiguousarray(rgb_l[:, ::-1]), np.ascontiguousarray(rgb_r[:, ::-1])
    gl = cv2.cvtColor(rgb_l, cv2.COLOR_RGB2GRAY)
    gr = cv2.cvtColor(rgb_r, cv2.COLOR_RGB2GRAY)
    h, w = gl.shape
    fB = float(ref.K[0, 0]) * pair.baseline_m
    dmin, dmax = depth_range
    d_lo = max(0.0, fB / dmax + pair.disparity_offset_px)
    d_hi = min(float(w - 1), fB / dmin + pair.disparity_offset_px)
    min_disp = int(math.floor(d_lo))
    num = max(16, int(math.ceil((d_hi - min_disp + 1) / 16.0)) * 16)

    def to_depth(disp: np.ndarray, valid: np.ndarray) -> np.ndarray:
        denom = disp - pair.disparity_offset_px
        ok = valid & (denom > 0)
        return np.where(ok, fB / np.where(ok, denom, 1.0), 0.0).astype(np.float32)

    if not fattening_check:
        disp, conf, valid = _sgbm(gl, gr, COARSE, min_disp, num)
        return _finish(disp, conf, valid, to_depth, depth_range, pair.reference_is_left)
    disp_f, conf_f, valid_f = _sgbm(gl, gr, FINE, min_disp, num)
    use_fine = speckle_mask(to_depth(disp_f, valid_f), valid_f & (conf_f >= FINE_MIN_CONFIDENCE),
                            FINE_SPECKLE_SIZE, FINE_SPECKLE_RANGE)
    disp_c, conf_c, valid_c = _sgbm(gl, gr, COARSE, min_disp, num)
    fill = valid_c & ~use_fine
    # Where both runs agree the smoother one's disparity is the more precise (its integer match is more
    # often the ZNCC peak the refinement needs); the pixel keeps the better of the two ZNCC scores, as the
    # fine run alone already vouched for it.
    coarse = fill | (use_fine & valid_c & (np.abs(disp_f - disp_c) <= AGREE_PX))
    disp = np.where(coarse, disp_c, disp_f)
    conf = np.where(coarse & ~use_fine, conf_c, np.where(coarse, np.maximum(conf_c, conf_f), conf_f))
    valid = use_fine | fill
    distinct = np.ones((h, w), np.float32)
    if valid.any():
        p_hi = np.percentile(disp[valid & (conf >= FINE_MIN_CONFIDENCE)], CVF_NEAR_PERCENTILE)
        lo = max(min_disp, int(math.floor(float(disp[valid].min()))) - 1)
        hi = min(min_disp + num - 1, int(math.ceil(float(p_hi))) + 1)
        edge_aware, distinct = cvf_match(rgb_l, rgb_r, lo, hi)
        # Relative difference of inverse depth (disparity less the principal-point offset); > 0: SGBM nearer.
        rel = (disp - edge_aware) / np.maximum(disp - pair.disparity_offset_px, 1e-3)
        valid &= ~((rel > CVF_MAX_REL_DIFF) | (fill & (rel < -CVF_MAX_REL_DIFF)))
    return _finish(disp, conf, valid, to_depth, depth_range, pair.reference_is_left, distinct)


def _finish(disp: np.ndarray, conf: np.ndarray, valid: np.ndarray,
            to_depth: Callable[[np.ndarray, np.ndarray], np.ndarray], depth_range: tuple[float, float],
            reference_is_left: bool, distinct: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Disparity -> depth in the range; confidence (and distinctiveness, when given) 0 where invalid; all
    un-mirrored for a right reference."""
    depth = to_depth(disp, valid)
    valid = valid & (depth > 0) & (depth >= depth_range[0]) & (depth <= depth_range[1])
    conf = np.where(valid, conf, 0.0).astype(np.float32)
    if distinct is not None:
        distinct = np.where(valid, distinct, 0.0).astype(np.float32)
    if not reference_is_left:
        depth, conf, valid = depth[:, ::-1], conf[:, ::-1], valid[:, ::-1]
        distinct = None if distinct is None else distinct[:, ::-1]
    distinct = None if distinct is None else np.ascontiguousarray(distinct)
    return np.ascontiguousarray(depth), np.ascontiguousarray(conf), np.ascontiguousarray(valid), distinct
