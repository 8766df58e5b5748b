"""Plane sweep on a fronto-parallel textured plane; fusion rejecting an inconsistent view."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from recon_ros.config import DepthConfig, FusionConfig
from recon_ros.geometry.se3 import make_transform
from recon_ros.pipeline.frames import View
from recon_ros.pipeline.fusion import (
    consistency_count,
    frustum_overlap,
    fuse_view,
    select_depth_sources,
    select_sources,
)
from recon_ros.pipeline.planesweep import PlaneSweepDepth

W, H = 160, 120
K = np.array([[120.0, 0, (W - 1) / 2], [0, 120.0, (H - 1) / 2], [0, 0, 1]])
PLANE_Z = 2.5


def texture(size=512, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    tex = np.zeros((size, size, 3), np.float32)
    for scale in (4, 8, 16, 32):
        noise = rng.random((size // scale, size // scale, 3)).astype(np.float32)
        tex += cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) / 4
    return (np.clip(tex, 0, 1) * 255).astype(np.uint8)


TEX = texture()


def render_plane(cam_x: float) -> np.ndarray:
    """Image of a textured plane z = PLANE_Z (world = reference camera), camera translated along x."""
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    X = (u - K[0, 2]) / K[0, 0] * PLANE_Z + cam_x
    Y = (v - K[1, 2]) / K[1, 1] * PLANE_Z
    # 1 texel = 1 cm on the plane, bilinear lookup
    tu, tv = X * 100 + 256, Y * 100 + 256
    u0, v0 = np.floor(tu).astype(int), np.floor(tv).astype(int)
    fu, fv = (tu - u0)[..., None], (tv - v0)[..., None]
    t = TEX.astype(np.float32)
    img = (t[v0, u0] * (1 - fu) * (1 - fv) + t[v0, u0 + 1] * fu * (1 - fv)
           + t[v0 + 1, u0] * (1 - fu) * fv + t[v0 + 1, u0 + 1] * fu * fv)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def view(kf: int, cam_x: float, depth=None) -> View:
    v = View(kf, "cam", kf, render_plane(cam_x), K, make_transform(np.eye(3), [cam_x, 0, 0]))
    if depth is not None:
        v.depth = depth.astype(np.float32)
        v.valid = np.ones(depth.shape, bool)
    return v


def test_planesweep_fronto_parallel_plane_within_one_percent():
    ref = view(0, 0.0)
    sources = [view(1, 0.15), view(2, -0.15), view(3, 0.3)]
    est = PlaneSweepDepth(DepthConfig(num_planes=64, zncc_window=7), "cpu", 0.5).estimate(ref, sources, (0.5, 10.0))
    border = 12  # ZNCC windows and sources leaving the image at the edges
    inner = (slice(border, H - border), slice(border, W - border))
    valid = est.valid[inner]
    rel = np.abs(est.depth[inner] - PLANE_Z) / PLANE_Z
    assert valid.mean() > 0.9, f"only {valid.mean():.2%} valid"
    assert np.median(rel[valid]) < 0.01, f"median rel error {np.median(rel[valid]):.4f}"
    assert np.mean(rel[valid] < 0.01) > 0.9, f"{np.mean(rel[valid] < 0.01):.2%} within 1 %"


def test_planesweep_without_sources_returns_no_depth():
    est = PlaneSweepDepth(DepthConfig(), "cpu").estimate(view(0, 0.0), [], (0.5, 10.0))
    assert not est.valid.any()


def test_fusion_rejects_inconsistent_view():
    truth = np.full((H, W), PLANE_Z)
    ref = view(0, 0.0, truth)
    good = [view(1, 0.2, truth), view(2, -0.2, truth)]
    outlier = view(3, 0.4, truth * 1.15)  # 15 % too far: disagrees everywhere
    count = consistency_count(ref, [*good, outlier], 1.0, 0.01)
    # the two consistent views agree on the pixels they see, the outlier never does
    assert count.max() == 2
    cfg = FusionConfig(min_consistent_views=2)
    kept = fuse_view(ref, [*good, outlier], cfg)
    assert kept.mean() > 0.6
    # seen from the outlier itself, nobody agrees: all its pixels are rejected
    outlier_kept = fuse_view(outlier, [ref, *good], cfg)
    assert not outlier_kept.any()


def test_fusion_counts_partial_agreement():
    truth = np.full((H, W), PLANE_Z)
    ref = view(0, 0.0, truth)
    bumped = truth.copy()
    bumped[:, : W // 2] *= 1.05  # left half of the source is wrong
    src = view(1, 0.2, bumped)
    count = consistency_count(ref, [src], 1.0, 0.01)
    # ref pixels that land on the source's right (correct) half agree, the others don't
    assert 0.2 < count.mean() < 0.8


@pytest.mark.parametrize("baseline", [0.01, 0.5])
def test_source_selection_prefers_parallax(baseline):
    ref = view(0, 0.0)
    near = view(1, baseline)
    chosen = select_depth_sources(ref, [near], (0.5, 10.0), 4, min_overlap=0.2, min_baseline_m=0.05)
    assert (near in chosen) == (baseline >= 0.05)


def test_equal_source_scores_go_to_the_nearest_view():
    """Views behind the reference on its axis see its whole sampled frustum (overlap 1.0) and, from 0.224 m
    (a tenth of the range's mid depth) on, have full parallax weight: they tie. The nearest comes first,
    whatever the candidates' order (keyframes arrive oldest first, and ties went to the oldest before)."""
    img = render_plane(0.0)

    def behind(kf: int, dz: float) -> View:
        return View(kf, "cam", kf, img, K, make_transform(np.eye(3), [0.0, 0.0, -dz]))

    ref = View(0, "cam", 0, img, K, np.eye(4))
    rng = (0.5, 10.0)
    far, middle, near = behind(1, 0.9), behind(2, 0.6), behind(3, 0.3)
    chosen = select_depth_sources(ref, [far, middle, near], rng, 2, min_overlap=0.2, min_baseline_m=0.05)
    assert [v.keyframe_id for v in chosen] == [3, 2]
    # a view with less parallax (weight 0.1 / 0.224) ranks below them
    close = behind(4, 0.1)
    chosen = select_depth_sources(ref, [close, far, middle, near], rng, 4, min_overlap=0.2, min_baseline_m=0.05)
    assert [v.keyframe_id for v in chosen] == [3, 2, 1, 4]
    # the consistency checks' selection is by overlap alone, and never the view itself
    assert [v.keyframe_id for v in select_sources(ref, [ref, close, far], rng, 4, 0.05)] == [4, 1]


def test_a_source_looking_another_way_ranks_below_the_neighbours():
    """A view from far behind sees more of the near frustum the overlap is sampled in than a neighbour that
    turned a little; the view-angle weight still ranks the neighbour first (a side camera in a turn)."""
    img = render_plane(0.0)
    ref = View(0, "cam", 0, img, K, np.eye(4))
    rng = (0.5, 10.0)
    turned = np.eye(4)
    turned[:3, :3] = Rotation.from_euler("y", 16, degrees=True).as_matrix()
    turned[:3, 3] = [0.25, 0.0, 0.0]
    behind = np.eye(4)
    behind[:3, :3] = Rotation.from_euler("y", -40, degrees=True).as_matrix()
    behind[:3, 3] = [0.7, 0.0, -1.0]
    neighbour, far = View(1, "cam", 1, img, K, turned), View(2, "other", 2, img, K, behind)
    assert frustum_overlap(ref, far, rng) > frustum_overlap(ref, neighbour, rng)
    chosen = select_depth_sources(ref, [far, neighbour], rng, 2, min_overlap=0.2, min_baseline_m=0.05)
    assert [v.keyframe_id for v in chosen] == [1, 2]
