"""The navigation cloud (<prefix>/obstacles) and its clearing rays (<prefix>/clearing).

Figures on two synthetic scenes with ground truth (floor removed, obstacle voxels kept, distance to the
true surfaces), a moving box marked where it is and cleared where it was in a model of a costmap voxel
layer, and the unit rules: confidence threshold, range clip, height band, cap, TF, ground fit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from recon_ros.config import ConfigError, NavigationConfig, ReconConfig, from_dict
from recon_ros.io.messages import MessageKit, pointcloud2_to_numpy
from recon_ros.io.outputs import navigation_messages, output_topics
from recon_ros.pipeline.engine import ViewOutput
from recon_ros.pipeline.navigation import (
    LABEL_GROUND,
    LABEL_OBSTACLE,
    NavigationCloud,
    NavigationCloudBuilder,
    fit_ground,
    voxel_downsample,
)
from recon_ros.pipeline.tf_buffer import TransformUnavailable
from recon_ros.synthetic import SceneParams, SyntheticConfig, SyntheticSequence
from recon_ros.synthetic.moving import MovingBox, MovingBoxScene, MovingSceneDepth
from recon_ros.synthetic.nav_eval import NoisyGroundTruthDepth, navigation_figures
from recon_ros.synthetic.nav_eval import drive_navigation as drive
from recon_ros.synthetic.trajectory import pose_2d

W, H = 192, 144  # small: 4 cameras x a few keyframes per scene keep the module under a minute


def nav_config(**navigation) -> ReconConfig:
    # depth.publish raw: these figures measure the navigation cloud on the (noisy) depth it is given; the
    # published-depth filter (issue #12) leaves holes where its median finds no majority (obstacle_kept
    # 0.90 with the filter on seed 0), which is the filter's trade-off, not the builder's.
    cfg = from_dict({"runtime.device": "cpu", "depth.publish": "raw",
                     **{f"navigation.{k}": v for k, v in navigation.items()}})
    return cfg


# ---- figures on two synthetic scenes -----------------------------------------------------------------
@pytest.fixture(scope="module", params=[0, 1], ids=["scene_seed0", "scene_seed1"])
def scene_run(request) -> tuple[SyntheticSequence, list[dict]]:
    """Four keyframes (one every 0.2 m) of the 4-camera robot in a furnished room; depth = exact depth
    with 0.5 % relative noise and 0.5 % wrong pixels (NoisyGroundTruthDepth; about the error of fused
    plane-sweep depth, 0.65 % AbsRel in the README). Raw per-view plane sweep: see docs/NAV2.md."""
    seq = SyntheticSequence(SyntheticConfig(seed=request.param, n_frames=4, width=W, height=H, rate_hz=2.0))
    cfg = nav_config()
    figures = []
    for out, nav, tf in drive(seq, cfg, NoisyGroundTruthDepth(seq.scene, 0.005, 0.005, seed=request.param)):
        if nav.labels:
            figures.append({**navigation_figures(seq.scene, out, nav, tf.lookup, cfg.navigation),
                            "capped": nav.counts["capped"], "frame": nav.frame_id, "stamp": nav.stamp_ns,
                            "out_stamp": out.depth_stamp_ns})
    assert len(figures) >= 2, "expected navigation clouds from at least two keyframe steps"
    return seq, figures


def test_floor_is_removed(scene_run) -> None:
    _, figures = scene_run
    for f in figures:
        assert f["floor_pixels"] > 5000  # the floor is well seen: the figure means something
        # Required >= 95 %; measured 100.0 % on both scenes (the floor's height error at 0.5 % depth
        # noise is ~1 cm, the band starts at 5 cm).
        assert f["floor_removed"] >= 0.95, f


def test_obstacle_voxels_are_kept(scene_run) -> None:
    _, figures = scene_run
    for f in figures:
        assert f["obstacle_voxels"] > 3000
        # Required >= 95 %; measured 99.2-99.7 % (losses: voxels at depth edges and the image border,
        # where the median filter finds no used majority).
        assert f["obstacle_kept"] >= 0.95, f


def test_no_point_farther_than_two_voxels_from_a_true_surface(scene_run) -> None:
    _, figures = scene_run
    for f in figures:
        assert 1000 < f["points"] <= 20_000 and f["capped"] == 0
        # Required <= 2 voxels = 10 cm; measured max 7.5-8.7 cm, p99 2.1-2.4 cm (0.5 % noise is 2.5 cm
        # at the 5 m range clip; every wrong pixel the confidence let through was removed).
        assert f["surface_max_m"] <= 2 * 0.05, f


def test_cloud_is_in_base_link_stamped_with_the_image_stamp(scene_run) -> None:
    _, figures = scene_run
    assert all(f["frame"] == "base_link" and f["stamp"] == f["out_stamp"] for f in figures)


# ---- unit rules on a hand-made view -------------------------------------------------------------------
K = np.array([[100.0, 0.0, 79.5], [0.0, 100.0, 59.5], [0.0, 0.0, 1.0]])
T_BASE_CAM = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.5], [0, 0, 0, 1.0]])


def wall_view(depth_m: float = 2.0, confidence: float = 1.0, stamp: int = 10) -> ViewOutput:
    """A camera 0.5 m above the floor looking along base +x at a wall; lower rows see the floor."""
    h, w = 120, 160
    v, _ = np.mgrid[0:h, 0:w].astype(np.float64)
    # Rows below the horizon hit the floor (z = 0) before the wall: depth = 0.5 * fy / (v - cy).
    with np.errstate(divide="ignore"):
        floor_depth = np.where(v > K[1, 2], 0.5 * K[1, 1] / (v - K[1, 2]), np.inf)
    depth = np.minimum(floor_depth, depth_m).astype(np.float32)
    conf = np.full((h, w), confidence, np.float32)
    return ViewOutput("front", "front_optical_frame", stamp, depth, conf, K, np.eye(4), keyframe_id=0)


def lookup_base(target: str, source: str, stamp: int) -> np.ndarray:
    if (target, source) != ("base_link", "front_optical_frame"):
        raise TransformUnavailable("tf_missing", f"{target} <- {source}")
    return T_BASE_CAM


def build(view: ViewOutput, **kw) -> NavigationCloud:
    return NavigationCloudBuilder(NavigationConfig(**kw), 0.3).build([view], view.stamp_ns, lookup_base)


def test_wall_kept_floor_removed_in_base_link() -> None:
    nav = build(wall_view())
    assert nav.ground is not None and nav.ground.fitted
    # Exact floor: fitted plane z = 0 within 2 cm (measured 1.4 cm: the 5x5 median of the floor's depth,
    # convex in the image row, is biased near the horizon).
    assert abs(nav.ground.offset) < 0.02
    assert len(nav.points) > 100
    # Wall at x = 2 m in base_link, between 5 cm and 2 m high (the camera sees up to ~1.7 m).
    assert np.allclose(nav.points[:, 0], 2.0, atol=0.03)
    assert nav.points[:, 2].min() >= 0.05 - 0.03 and nav.points[:, 2].max() <= 2.0
    labels = nav.labels["front"]
    assert (labels == LABEL_GROUND).sum() > 1000 and (labels == LABEL_OBSTACLE).sum() > 1000


def test_pixels_below_the_confidence_threshold_are_never_used() -> None:
    view = wall_view()
    view.confidence[:, :80] = 0.29  # left half of the image just below the published threshold 0.3
    nav = build(view)
    # Image left (u < 80) is base +y: no point may come from there (1 voxel of margin for the centre column).
    assert len(nav.points) > 50 and nav.points[:, 1].max() < 0.05
    assert (nav.labels["front"][:, :80] == 0).all()
    assert all(np.all(r.points[:, 0] >= -0.05) for r in nav.clearing)  # clearing rays too (optical x)


def test_range_clip_height_band_and_cap() -> None:
    assert len(build(wall_view(6.0), max_range_m=5.0).points) == 0  # wall beyond the range clip
    low = build(wall_view(), max_obstacle_height_m=0.5)
    # Heights count from the fitted ground (here ~1 cm off z = 0: the median filter on the sloped floor).
    assert low.ground.height(low.points.astype(np.float64)).max() <= 0.5 + 1e-6 and low.counts["above_band"] > 0
    capped = build(wall_view(depth_m=1.0), voxel_size_m=0.02, max_points=100)
    assert len(capped.points) == 100 and capped.counts["capped"] > 0


def test_neighbour_test_removes_an_isolated_patch_and_keeps_the_wall() -> None:
    view = wall_view()
    view.depth[20, 20] = 1.0  # one pixel 1 m in front of the 2 m wall: one voxel, no neighbours
    plain = build(view, median_filter_px=0)  # the median would remove it first
    assert (plain.points[:, 0] < 1.5).sum() == 1  # without the test the pixel is a point
    tested = build(view, median_filter_px=0, min_neighbour_points=2)
    assert (tested.points[:, 0] < 1.5).sum() == 0 and tested.counts["isolated_voxels"] >= 1
    # The wall (a continuous surface: 4 face neighbours per voxel inside it) keeps almost all its points;
    # only voxels at its border could go (measured: every wall point kept).
    assert len(tested.points) >= 0.8 * (len(plain.points) - 1)
    with pytest.raises(ConfigError, match="min_neighbour_points"):
        from_dict({"navigation.min_neighbour_points": -1})


def test_view_without_transform_is_skipped_and_counted() -> None:
    view = wall_view()
    view.frame_id = "unknown_optical_frame"
    nav = build(view)
    assert len(nav.points) == 0 and nav.counts["views_without_tf"] == 1


def test_ground_fit_follows_a_pitched_robot() -> None:
    """The base pitched 5 deg nose-down (e.g. braking): with the known flat ground the far floor would
    rise above the band; the fitted plane removes it."""
    pitch = math.radians(-5.0)  # about base y: the floor ahead rises in the base frame
    R = np.array([[math.cos(pitch), 0, math.sin(pitch)], [0, 1, 0], [-math.sin(pitch), 0, math.cos(pitch)]])
    floor = np.random.default_rng(0).uniform([0.5, -2, 0], [5, 2, 0], (5000, 3))
    tilted = floor @ R.T  # floor points as the pitched base sees them
    plane = fit_ground(tilted, 0.0, 0.5)
    assert plane.fitted and plane.normal @ (R @ [0, 0, 1.0]) > math.cos(math.radians(0.5))
    assert np.abs(plane.height(tilted)).max() < 0.01
    assert (tilted[:, 2] > 0.05).mean() > 0.8  # the known ground alone would call most of it obstacles


def test_voxel_downsample_centroids_and_support() -> None:
    pts = np.array([[0.01, 0.01, 0.01], [0.03, 0.03, 0.03], [0.51, 0.0, 0.0]])
    cen, count = voxel_downsample(pts, 0.05)
    assert len(cen) == 2 and sorted(count.tolist()) == [1, 2]
    assert np.allclose(cen[np.argmax(count)], [0.02, 0.02, 0.02], atol=1e-6)


def test_low_confidence_pixels_are_used_only_where_the_sources_pin_the_depth() -> None:
    """Between the published threshold (0.3 here) and min_confidence (0.52 default) a pixel is used only where a
    0.1 px matching error moves its depth by at most well_triangulated_error_m (0.005 m: >= 20 px per metre).
    A source beside the camera moves a wall point at 2 m by f b / Z^2 = 25 b px per metre of depth."""

    def beside(b: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        T = np.eye(4)
        T[0, 3] = -b  # b metres to the side (it sees most of the wall)
        return K, T, (160, 120)

    view = wall_view()
    view.confidence[:] = 0.51
    view.source_cameras = [beside(1.0)]  # 25 px per metre: pinned
    pinned = build(view)
    assert len(pinned.points) > 50
    view.source_cameras = [beside(0.4)]  # 10 px per metre (1 cm per 0.1 px): not pinned
    assert len(build(view).points) == 0
    view.source_cameras = [beside(0.4), beside(1.0)]  # the best source counts
    assert len(build(view).points) == len(pinned.points)
    assert len(build(view, well_triangulated_error_m=0.0).points) == 0  # off
    view.source_cameras = []  # sources unknown
    assert len(build(view).points) == 0
    # never below the published threshold, however well triangulated
    view.confidence[:] = 0.29
    view.source_cameras = [beside(5.0)]
    assert len(build(view).points) == 0


def test_navigation_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="min_obstacle_height_m"):
        from_dict({"navigation.min_obstacle_height_m": 1.0, "navigation.max_obstacle_height_m": 0.5})
    with pytest.raises(ConfigError, match="median_filter_px"):
        from_dict({"navigation.median_filter_px": 4})
    with pytest.raises(ConfigError, match="well_triangulated_error_m"):
        from_dict({"navigation.well_triangulated_error_m": -0.01})


def test_messages_topics_and_frames() -> None:
    cfg = ReconConfig()
    kit = MessageKit.for_rosbags()
    nav = build(wall_view())
    msgs = navigation_messages(kit, cfg, nav)
    assert [t for t, _ in msgs] == ["/recon/obstacles", "/recon/clearing"]
    obstacles, clearing = msgs[0][1], msgs[1][1]
    assert obstacles.header.frame_id == "base_link" and clearing.header.frame_id == "front_optical_frame"
    pts, _ = pointcloud2_to_numpy(obstacles)
    assert np.allclose(pts, nav.points)
    assert output_topics(cfg)["/recon/obstacles"] == "sensor_msgs/msg/PointCloud2"
    cfg.navigation.enabled = False
    assert "/recon/obstacles" not in output_topics(cfg)


# ---- clearing: a box moves ----------------------------------------------------------------------------
class VoxelLayerModel:
    """What a costmap voxel layer does with our two topics, per update: raytrace-clear every clearing
    ray from its sensor origin (the message frame's origin) to its end point, then mark every obstacle
    point (Nav2 VoxelLayer order: clearing observations first, then marking)."""

    def __init__(self, res: float, lo: tuple[float, float, float], hi: tuple[float, float, float]):
        self.res = res
        self.lo = np.asarray(lo)
        self.grid = np.zeros(np.ceil((np.asarray(hi) - self.lo) / res).astype(int), bool)

    def _index(self, pts: np.ndarray) -> tuple[np.ndarray, ...]:
        idx = np.floor((pts - self.lo) / self.res).astype(int)
        inside = ((idx >= 0) & (idx < self.grid.shape)).all(axis=1)
        return tuple(idx[inside].T)

    def clear(self, origin: np.ndarray, ends: np.ndarray) -> None:
        length = np.linalg.norm(ends - origin, axis=1)
        steps = np.arange(0.0, length.max() + self.res, self.res / 2)
        # Samples along each ray, stopping one voxel short of the end point (it holds the surface).
        t = steps[None, :] / np.maximum(length[:, None], 1e-9)
        ok = steps[None, :] < (length[:, None] - self.res)
        pts = origin + t[..., None] * (ends - origin)[:, None, :]
        self.grid[self._index(pts[ok])] = False

    def mark(self, pts: np.ndarray) -> None:
        self.grid[self._index(pts)] = True

    def marked_centres(self) -> np.ndarray:
        return (np.argwhere(self.grid) + 0.5) * self.res + self.lo


def test_moving_box_is_marked_where_it_is_and_cleared_where_it_was() -> None:
    # Empty room (seed 5: the robot starts on a straight side heading -x); the box stands 2 m ahead,
    # 0.5 m to the left, and jumps 1.1 m to the right between frames 4 and 5. Measured: 83 voxels marked
    # at the old place before the move, 0 after; 87 at the new place; no ghost voxel at any step.
    params = SceneParams(seed=5, n_floor_boxes=0, n_shelves=0)
    seq = SyntheticSequence(SyntheticConfig(seed=5, n_frames=10, width=160, height=120, rate_hz=5.0),
                            scene_params=params)
    x0, y0, yaw = pose_2d(seq.poses[0][1])
    ahead = np.array([math.cos(yaw), math.sin(yaw)])
    left = np.array([-math.sin(yaw), math.cos(yaw)])
    before = np.array([x0, y0]) + 2.0 * ahead + 0.5 * left
    after = np.array([x0, y0]) + 2.0 * ahead - 0.6 * left
    moving = MovingBox(tuple(before), tuple(after), move_stamp_ns=seq.poses[5][0])
    scene = MovingBoxScene(params, moving)
    # Range clip 3 m: the wall behind the box is out of range, so only rays cut at the range clear it.
    cfg = nav_config(max_range_m=3.0)
    cfg.keyframes.min_translation_m = 0.05  # a keyframe per frame (8 cm apart)

    costmap = VoxelLayerModel(0.1, (-4.0, -3.0, 0.0), (4.0, 3.0, 2.0))
    # Control: the obstacle cloud alone as marking AND clearing source (no ground hits, origin base_link).
    naive = VoxelLayerModel(0.1, (-4.0, -3.0, 0.0), (4.0, 3.0, 2.0))
    history = []
    render = lambda stamp, T: scene.render(stamp, T, seq.K, 160, 120)[0]  # noqa: E731
    for _out, nav, tf in drive(seq, cfg, MovingSceneDepth(scene), render=render):
        for rays in nav.clearing:
            T = tf.lookup("odom", rays.frame_id, rays.stamp_ns)
            costmap.clear(T[:3, 3], rays.points @ T[:3, :3].T + T[:3, 3])
        T = tf.lookup("odom", nav.frame_id, nav.stamp_ns)
        obstacles = nav.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        costmap.mark(obstacles)
        if len(obstacles):
            naive.clear(T[:3, 3], obstacles)
        naive.mark(obstacles)
        marked = costmap.marked_centres()
        box_now = scene.at(nav.stamp_ns)
        history.append({
            "moved": nav.stamp_ns >= moving.move_stamp_ns,
            "at_old_place": int(_in_box(marked, moving.box(moved=False), 0.1).sum()),
            "at_new_place": int(_in_box(marked, moving.box(moved=True), 0.1).sum()),
            # Ghosts: marked voxels no current surface explains (> 1.5 voxels from every true surface).
            "ghosts": int((box_now.distance_to_surface(marked) > 0.15).sum()),
            "naive_at_old_place": int(_in_box(naive.marked_centres(), moving.box(moved=False), 0.1).sum()),
        })
    pre = [h for h in history if not h["moved"] and h["at_old_place"]]
    post = [h for h in history if h["moved"]]
    assert pre and len(post) >= 3
    assert pre[-1]["at_old_place"] >= 20  # the box was marked where it stood
    assert post[-1]["at_new_place"] >= 20  # ... is marked where it is now
    assert post[-1]["at_old_place"] == 0  # ... and cleared where it was
    assert post[-1]["ghosts"] == 0
    assert all(h["ghosts"] == 0 for h in history)
    # Control: without the clearing rays (obstacle cloud as its own clearing source) the old box lingers
    # (measured: 67 of its 94 voxels still marked 5 steps after the move).
    assert post[-1]["naive_at_old_place"] >= 10


def _in_box(pts: np.ndarray, box, margin: float) -> np.ndarray:
    lo = np.asarray(box.center) - np.asarray(box.half) - margin
    hi = np.asarray(box.center) + np.asarray(box.half) + margin
    return ((pts >= lo) & (pts <= hi)).all(axis=1)
