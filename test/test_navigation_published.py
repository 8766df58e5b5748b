"""The navigation cloud's figures on the depth recon_ros PUBLISHES with the plane sweep (not exact depth).

Two synthetic scenes (seeds 0 and 1), 4 cameras at 320x240, five frames (four navigation clouds: a
keyframe's depth comes when the next keyframe exists, the first keyframe's together with the second's,
the last one's at the end-of-run flush), default configuration (range 3 m, navigation.min_confidence), the same
driver and definitions as ``benchmarks/nav_figures.py --depth planesweep``
(``recon_ros/synthetic/nav_eval.py``). What the issue requires and does not yet hold on this depth is
asserted as strict xfail: such a test fails as soon as the figure is met, so that it gets promoted. Scene 1
again over 10 frames (9 clouds) covers a turn.
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

W, H, FRAMES = 320, 240, 5  # the demo's resolution; measured ~5 s per scene for the plane sweep on this 2-core machine


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
        # The same depth with every published pixel (navigation.min_confidence 0.5), for the trade-off.
        cfg2 = from_dict({"runtime.device": "cpu", "navigation.min_confidence": 0.5})
        nav2 = navigation_cloud(cfg2, out, tf.lookup)
        fig2 = navigation_figures(seq.scene, out, nav2, tf.lookup, cfg2.navigation,
                                  confidence_threshold=cfg2.fusion.confidence_threshold)
        why = diagnose_navigation(seq.scene, out, nav, tf.lookup,
                                  NavigationCloudBuilder(cfg.navigation, cfg.fusion.confidence_threshold))
        steps.append({"default": fig, "all_published": fig2, "why": why})
    assert len(steps) >= 3, "expected navigation clouds from at least three keyframe steps"
    return steps


def test_floor_is_removed_on_published_depth(published_run) -> None:
    for s in published_run:
        f = s["default"]
        assert f["floor_pixels"] > 5000
        # Required >= 95 %; measured 99.8-100 % on both scenes.
        assert f["floor_removed"] >= 0.95, f


def test_covered_obstacle_voxels_are_kept_within_the_precision_tolerance(published_run) -> None:
    """Not the issue's figure (see the xfail below): of the true obstacle voxels that the published depth
    covers at all, the fraction with a cloud point within 2 voxels (the issue's precision tolerance)."""
    for s in published_run:
        f = s["default"]
        assert f["obstacle_voxels"] > 4000  # measured 4668-7257 within 3 m
        # Coverage of the published depth: measured 89.2-97.3 % of the obstacle voxels within 3 m (holes = its
        # mask; 82-90 % at 192x144 within 5 m).
        assert 0.85 <= f["obstacle_covered"] <= 1.0, f
        # Measured 93.3-97.6 % (98.7-99.8 % with every published pixel, navigation.min_confidence 0.5); the
        # regression bound leaves 2 points for the plane sweep's thread-order noise.
        assert f["obstacle_kept_covered_2vox"] >= 0.9, f
        # Within one voxel (the old definition, among covered): measured 84.1-93.8 %.
        assert f["obstacle_kept_covered"] >= 0.8, f


def test_almost_every_point_is_near_a_true_surface(published_run) -> None:
    for s in published_run:
        f = s["default"]
        assert 1000 < f["points"] <= 20_000
        # p99 measured 2.1-3.2 cm, no point > 10 cm off (0-17 of 4.7-8.5k with every published pixel).
        assert f["surface_p99_m"] <= 0.05, f
        assert f["far_points"] <= 0.005 * f["points"], f


def test_min_confidence_trades_kept_voxels_for_points_off_the_surface(published_run) -> None:
    """navigation.min_confidence 0.52 (default) against 0.5 (every published pixel) on the same depth."""
    far_all = sum(s["all_published"]["far_points"] for s in published_run)
    far_default = sum(s["default"]["far_points"] for s in published_run)
    # Measured per scene (4 steps): 21 and 38 points > 10 cm off with every pixel, 0 and 0 at the default.
    assert far_default < far_all, (far_default, far_all)
    for s in published_run:
        # ...and every step keeps fewer obstacle voxels (measured 2.9-8.6 points fewer within one voxel)
        assert s["default"]["obstacle_kept"] < s["all_published"]["obstacle_kept"] + 1e-9


@pytest.mark.xfail(strict=True, reason="issue #15 target not met on the published plane-sweep depth: obstacle "
                   "voxels kept 78.5-90.8 % (87.1-95.3 % with navigation.min_confidence 0.5; coverage of the "
                   "published depth 89-97 %; docs/NAV2.md)")
def test_issue_target_obstacle_voxels_kept(published_run) -> None:
    assert all(s["default"]["obstacle_kept"] >= 0.95 for s in published_run)


def test_issue_target_no_point_farther_than_two_voxels(published_run) -> None:
    # Measured 4.2-7.3 cm (9.7-15.9 cm with navigation.min_confidence 0.5; 14-34 cm at 192x144 within 5 m).
    assert all(s["default"]["surface_max_m"] <= 2 * 0.05 for s in published_run), [
        s["default"]["surface_max_m"] for s in published_run]


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
        # Measured (not asserted: it moves with the published depth's coverage): holes (no pixel the cloud may
        # use) cause 71-88 % of the misses (80 % over the 8 steps), the median filter / band 8-23 %, the depth
        # being > 1 voxel off 1-5 %.
        # Far pixels: none at the default (with every published pixel 0.02-0.03 % of the obstacle pixels, of
        # published confidence 0.50-0.51 against 0.72-0.86 for all obstacle pixels).
        assert why["far_pixels"] <= 0.002 * why["obstacle_pixels"], why
        if why["far_pixels"]:
            assert why["far_pixel_confidence_p50"] < why["obstacle_pixel_confidence_p50"], why


@pytest.fixture(scope="module")
def turning_run() -> list[dict]:
    """Scene 1 over 10 frames: from the sixth frame on the robot turns at 33 degrees per second (16 per
    keyframe), so the side cameras sweep across the room (``benchmarks/nav_figures.py --frames 10``)."""
    seq = SyntheticSequence(SyntheticConfig(seed=1, n_frames=10, width=W, height=H, rate_hz=2.0))
    cfg = from_dict({"runtime.device": "cpu"})
    steps = []
    for out, nav, tf in drive_navigation(seq, cfg, build_depth_source(cfg, "cpu")):
        if nav.labels:
            fig = navigation_figures(seq.scene, out, nav, tf.lookup, cfg.navigation,
                                     confidence_threshold=cfg.fusion.confidence_threshold)
            steps.append(fig | {"keyframe": out.depth_keyframe_id})
    return steps


def test_surface_and_floor_targets_hold_through_a_turn(turning_run) -> None:
    assert len(turning_run) == 9
    turn = [f for f in turning_run if f["keyframe"] >= 6]  # 6-8 turning, 9 the end-of-run flush
    assert len(turn) == 4
    for f in turning_run:
        # Measured (2026-12-03): floor removed 99.9-100 %, largest distance 4.6-7.6 cm, no point > 10 cm off,
        # p99 2.3-3.1 cm.
        assert f["floor_removed"] >= 0.95, f
        assert f["surface_max_m"] <= 2 * 0.05, f
        assert f["far_points"] == 0, f
        assert f["surface_p99_m"] <= 0.05, f
    # Not the target (the strict xfail above covers it): measured 89.9-93.6 % kept and 95.9-96.8 % covered while
    # turning, 82.5 / 91.3 % at the flush (78.5-92.9 / 92.8-97.3 % on the straight steps); among covered voxels
    # within 2 voxels 95.2-98.5 %. Before the depth sources were chosen for coverage and viewing direction
    # (fusion.select_depth_sources) the turning steps kept 81.4-84.8 %: the side camera got the front cameras of
    # keyframes a metre behind as sources instead of its neighbours.
    for f in turn:
        assert f["obstacle_covered"] >= 0.88, f
        assert f["obstacle_kept_covered_2vox"] >= 0.93, f
    assert all(f["obstacle_kept"] >= 0.87 for f in turn if f["keyframe"] <= 8), turn
