"""The navigation cloud's figures on the depth recon_ros PUBLISHES with the plane sweep (not exact depth).

Two synthetic scenes (seeds 0 and 1), 4 cameras at 192x144, five frames (five navigation clouds: a
keyframe's depth comes when the next keyframe exists, the last one's at the end-of-run flush), the same
driver and definitions as ``benchmarks/nav_figures.py --depth planesweep``
(``recon_ros/synthetic/nav_eval.py``). What the issue requires and does not yet hold on this depth is
asserted as strict xfail: such a test fails as soon as the figure is met, so that it gets promoted.
"""

from __future__ import annotations

import numpy as np
import pytest

from recon_ros.config import from_dict
from recon_ros.io.outputs import navigation_cloud
from recon_ros.pipeline.navigation import NavigationCloudBuilder
from recon_ros.pipeline.sources import build_depth_source
from recon_ros.synthetic import SyntheticConfig, SyntheticSequence
from recon_ros.synthetic.nav_eval import diagnose_navigation, drive_navigation, navigation_figures

W, H, FRAMES = 192, 144, 5  # measured ~5 s per scene for the plane sweep on this 2-core machine


@pytest.fixture(scope="module", params=[0, 1], ids=["scene_seed0", "scene_seed1"])
def published_run(request) -> list[dict]:
    seq = SyntheticSequence(SyntheticConfig(seed=request.param, n_frames=FRAMES, width=W, height=H, rate_hz=2.0))
    cfg = from_dict({"runtime.device": "cpu"})  # defaults: depth.source planesweep, depth.publish filtered
    assert cfg.depth.source == "planesweep" and cfg.depth.publish == "filtered"
    steps = []
    for out, nav, tf in drive_navigation(seq, cfg, build_depth_source(cfg, "cpu")):
        if not nav.labels:
            continue
        fig = navigation_figures(seq.scene, out, nav, tf.lookup, cfg.navigation,
                                 confidence_threshold=cfg.fusion.confidence_threshold)
        # The same depth through the 3-D outlier test (navigation.min_neighbour_points 2), for the trade-off.
        cfg2 = from_dict({"runtime.device": "cpu", "navigation.min_neighbour_points": 2})
        nav2 = navigation_cloud(cfg2, out, tf.lookup)
        fig2 = navigation_figures(seq.scene, out, nav2, tf.lookup, cfg2.navigation,
                                  confidence_threshold=cfg2.fusion.confidence_threshold)
        why = diagnose_navigation(seq.scene, out, nav, tf.lookup,
                                  NavigationCloudBuilder(cfg.navigation, cfg.fusion.confidence_threshold))
        steps.append({"default": fig, "neighbours2": fig2, "why": why})
    assert len(steps) >= 3, "expected navigation clouds from at least three keyframe steps"
    return steps


def test_floor_is_removed_on_published_depth(published_run) -> None:
    for s in published_run:
        f = s["default"]
        assert f["floor_pixels"] > 5000
        # Required >= 95 %; measured 99.5-100 % on both scenes.
        assert f["floor_removed"] >= 0.95, f


def test_covered_obstacle_voxels_are_kept_within_the_precision_tolerance(published_run) -> None:
    """Not the issue's figure (see the xfail below): of the true obstacle voxels that the published depth
    covers at all, the fraction with a cloud point within 2 voxels (the issue's precision tolerance)."""
    for s in published_run:
        f = s["default"]
        assert f["obstacle_voxels"] > 5000
        # Coverage of the published depth: measured 82.0-90.2 % of the obstacle voxels (holes = its mask;
        # 70.6-85.3 % when depth was estimated from earlier keyframes only).
        assert 0.75 <= f["obstacle_covered"] <= 1.0, f
        # Measured 94.8-98.9 %; the regression bound leaves 1.8 points for the plane sweep's thread-order noise.
        assert f["obstacle_kept_covered_2vox"] >= 0.93, f
        # Within one voxel (the old definition, among covered): measured 83.2-90.3 %.
        assert f["obstacle_kept_covered"] >= 0.8, f


def test_almost_every_point_is_near_a_true_surface(published_run) -> None:
    for s in published_run:
        f = s["default"]
        assert 1000 < f["points"] <= 20_000
        # p99 measured 6.7-10.7 cm and the far points (> 10 cm off) 14-167 of 11-13k points (<= 1.3 %), except
        # on the first keyframe (its only source is the next keyframe and nothing can check it): 11.7-12.1 cm,
        # 250-261 points (2.1 %).
        assert f["surface_p99_m"] <= 0.13, f
        assert f["far_points"] <= 0.025 * f["points"], f


def test_neighbour_test_trades_kept_voxels_for_fewer_far_points(published_run) -> None:
    far0 = sum(s["default"]["far_points"] for s in published_run)
    far2 = sum(s["neighbours2"]["far_points"] for s in published_run)
    # Measured per scene (5 steps): 722 -> 331 (x0.46) and 431 -> 243 (x0.56) far points.
    assert far2 <= 0.65 * far0, (far0, far2)
    for s in published_run:
        assert s["neighbours2"]["obstacle_kept_covered_2vox"] <= s["default"]["obstacle_kept_covered_2vox"] + 1e-9


@pytest.mark.xfail(strict=True, reason="issue #15 target not met on the published plane-sweep depth: obstacle "
                   "voxels kept 70-83 % (coverage of the published depth 82-90 %; docs/NAV2.md)")
def test_issue_target_obstacle_voxels_kept(published_run) -> None:
    assert all(s["default"]["obstacle_kept"] >= 0.95 for s in published_run)


@pytest.mark.xfail(strict=True, reason="issue #15 target not met on the published plane-sweep depth: worst point "
                   "0.14-0.34 m from a true surface (coherent 3-10 % depth errors at 2.5-5 m; docs/NAV2.md)")
def test_issue_target_no_point_farther_than_two_voxels(published_run) -> None:
    assert all(s["default"]["surface_max_m"] <= 2 * 0.05 for s in published_run)


def test_published_figures_definitions_are_consistent(published_run) -> None:
    for s in published_run:
        f = s["default"]
        # Looser tolerance and a subset can only keep more: the definitions nest.
        assert f["obstacle_kept"] <= f["obstacle_kept_2vox"] + 1e-12
        assert f["obstacle_kept_covered"] <= f["obstacle_kept_covered_2vox"] + 1e-12
        assert np.isfinite(f["surface_max_m"])


def test_why_voxels_are_missed_and_where_far_points_come_from(published_run) -> None:
    for s in published_run:
        f, why = s["default"], s["why"]
        causes = ("missed_uncovered", "missed_filtered", "missed_depth_off", "missed_other")
        # The causes partition the missed voxels, and those are the ones obstacle_kept counts as missed.
        assert sum(why[c] for c in causes) == why["missed"]
        assert abs(why["missed"] - (1.0 - f["obstacle_kept"]) * f["obstacle_voxels"]) < 0.5
        # Measured (not asserted: it moves with the published depth's coverage): holes in the published depth
        # cause 54-73 % of the misses (64 % over the 8 steps), the depth being > 1 voxel off 10-25 %, the
        # median filter / band 15-20 %.
        # Far pixels are few (measured 0.04-0.4 % of the obstacle pixels, 0.8-1.0 % on a first keyframe) and of
        # low published confidence (median 0.50-0.51 against 0.54-0.69 for all obstacle pixels).
        assert why["far_pixels"] <= 0.015 * why["obstacle_pixels"], why
        assert why["far_pixel_confidence_p50"] < why["obstacle_pixel_confidence_p50"], why
