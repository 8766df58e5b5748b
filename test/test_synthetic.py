"""Tests of the synthetic world: it is the ground truth for everything else, so it must be exact."""

from __future__ import annotations

import math
import types

import cv2
import numpy as np
import pytest

from recon_ros.synthetic import (
    CameraSpec,
    Scene,
    SceneParams,
    SyntheticConfig,
    SyntheticSequence,
    T_base_optical,
    default_rig,
    intrinsics,
    lap_frames,
    load_ground_truth,
    optical_frame_id,
    trajectory,
)
from recon_ros.synthetic.scene import _footprint_distance

W, H = 320, 240


@pytest.fixture(scope="module")
def seq() -> SyntheticSequence:
    return SyntheticSequence(SyntheticConfig(seed=0, n_frames=40, width=W, height=H, rate_hz=10.0))


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = cv2.remap(img.astype(np.float32), u.astype(np.float32)[None], v.astype(np.float32)[None],
                    cv2.INTER_LINEAR)
    return out.reshape(len(u), -1)


def _backproject(depth: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray, u: np.ndarray,
                 v: np.ndarray) -> np.ndarray:
    z = depth[v, u].astype(np.float64)
    pc = np.linalg.inv(K) @ np.stack([u, v, np.ones_like(u)]).astype(np.float64) * z
    return (T_world_cam[:3, :3] @ pc + T_world_cam[:3, 3:4]).T


# -- determinism -------------------------------------------------------------------------------------

def _corresponding_colours(
    seq: SyntheticSequence, TA: np.ndarray, TB: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """RGB of 4000 random pixels of view A and of the same surface points seen in view B, kept where
    the point is visible in B (not occluded) and away from depth discontinuities in A (> 1000 kept)."""
    a, da = seq.scene.render(TA, seq.K, W, H)
    b, db = seq.scene.render(TB, seq.K, W, H)
    u, v = rng.integers(2, W - 2, 4000), rng.integers(2, H - 2, 4000)
    pw = _backproject(da, seq.K, TA, u, v)
    TBi = np.linalg.inv(TB)
    pb = pw @ TBi[:3, :3].T + TBi[:3, 3]
    uvb = pb @ seq.K.T
    ub, vb = uvb[:, 0] / uvb[:, 2], uvb[:, 1] / uvb[:, 2]
    ok = (pb[:, 2] > 0.1) & (ub > 1) & (ub < W - 2) & (vb > 1) & (vb < H - 2)
    ok &= np.abs(_bilinear(db, ub, vb)[:, 0] - pb[:, 2]) < 0.01 * pb[:, 2]
    ok &= np.abs(cv2.Laplacian(da, cv2.CV_32F))[v, u] < 0.05
    assert ok.sum() > 1000
    return a[v, u].astype(float)[ok], _bilinear(b, ub, vb)[ok]


def test_same_seed_renders_identically_and_other_seed_differs(seq: SyntheticSequence) -> None:
    T = seq.T_world_cam(5, "front")
    rgb_a, depth_a = seq.scene.render(T, seq.K, W, H)
    rgb_b, depth_b = Scene(seed=0).render(T, seq.K, W, H)
    assert np.array_equal(rgb_a, rgb_b) and np.array_equal(depth_a, depth_b)

    other = Scene(seed=1)
    assert [b.center for b in other.objects] != [b.center for b in seq.scene.objects]
    rgb_c, _ = other.render(T, seq.K, W, H)
    assert np.abs(rgb_c.astype(int) - rgb_a.astype(int)).mean() > 10.0


def test_sequence_is_deterministic(seq: SyntheticSequence) -> None:
    again = SyntheticSequence(seq.config)
    for (s1, T1), (s2, T2) in zip(seq.poses, again.poses):
        assert s1 == s2 and np.array_equal(T1, T2)
    f1, f2 = seq.render_frame(7, ["left"]), again.render_frame(7, ["left"])
    assert np.array_equal(f1.images["left"], f2.images["left"])


# -- geometry exactness ------------------------------------------------------------------------------

def test_backprojected_depth_lies_on_a_surface(seq: SyntheticSequence) -> None:
    rng = np.random.default_rng(0)
    for index, cam in [(0, "front"), (9, "left"), (17, "right"), (33, "back")]:
        T = seq.T_world_cam(index, cam)
        _, depth = seq.scene.render(T, seq.K, W, H)
        assert depth.dtype == np.float32 and depth.shape == (H, W)
        assert (depth > 0).all(), "closed room: every pixel sees something"
        u, v = rng.integers(0, W, 3000), rng.integers(0, H, 3000)
        d = seq.scene.distance_to_surface(_backproject(depth, seq.K, T, u, v))
        assert d.max() < 1e-4, d.max()


def test_depth_is_optical_z_on_a_fronto_parallel_wall() -> None:
    # Empty room, camera 1.5 m up at x = 1 looking straight at the +x wall (x = 4): every pixel that
    # sees that wall has depth exactly 3 (z-depth, not ray length).
    scene = Scene(SceneParams(seed=0, n_floor_boxes=0, n_shelves=0))
    rig = default_rig(4, 200, 150, 60.0)
    T_world_base = np.eye(4)
    T_world_base[:3, 3] = [1.0 - rig.cameras[0].position[0], 0.0, 1.5 - rig.cameras[0].position[2]]
    T = T_world_base @ T_base_optical(rig.cameras[0])
    _, depth = scene.render(T, intrinsics(rig), 200, 150)
    # With a 60 deg hfov from 3 m the view spans +-1.73 m horizontally, +-1.3 m vertically: all wall.
    np.testing.assert_allclose(depth, 3.0, atol=1e-5)


def test_distance_to_surface_is_exact() -> None:
    scene = Scene(SceneParams(seed=0, n_floor_boxes=0, n_shelves=0))
    pts = np.array([[0.0, 0.0, 0.2], [1.0, 0.5, 2.9], [3.7, 0.0, 1.5], [0.0, 0.0, 1.5], [5.0, 0.0, 1.0]])
    np.testing.assert_allclose(scene.distance_to_surface(pts), [0.2, 0.1, 0.3, 1.5, 1.0], atol=1e-12)
    full = Scene(seed=2)
    box = full.objects[0]
    top = np.array([[box.center[0], box.center[1], box.center[2] + box.half[2] + 0.05]])
    assert full.distance_to_surface(top)[0] == pytest.approx(0.05, abs=1e-12)


def test_sample_surface_points_are_on_visible_surfaces(seq: SyntheticSequence) -> None:
    pts = seq.scene.sample_surface(5000, seed=1)
    assert pts.shape == (5000, 3)
    assert seq.scene.distance_to_surface(pts).max() < 1e-9
    lx, ly, lz = seq.scene.params.room
    assert (np.abs(pts[:, 0]) <= lx / 2 + 1e-9).all() and (np.abs(pts[:, 1]) <= ly / 2 + 1e-9).all()
    # No sample hidden under a box standing on the floor.
    floor = pts[np.abs(pts[:, 2]) < 1e-9]
    for box in seq.scene.objects:
        if box.center[2] - box.half[2] < 1e-9:
            assert _footprint_distance(floor[:, :2], box).min() > 0.0


# -- appearance --------------------------------------------------------------------------------------

def test_multiview_colour_consistency(seq: SyntheticSequence) -> None:
    """Lambertian check: a point seen from two poses ~12-16 cm apart has the same colour in both.

    Measured (seed 0, 320x240): median |diff| 0.4-2.2 grey levels, 95th percentile <= 11 (bilinear
    resampling of fine texture), against ~45 for randomly paired pixels.
    """
    rng = np.random.default_rng(0)
    for ia, ib, cam in [(0, 3, "front"), (20, 24, "back")]:
        TA, TB = seq.T_world_cam(ia, cam), seq.T_world_cam(ib, cam)
        col_a, col_b = _corresponding_colours(seq, TA, TB, rng)
        diff = np.abs(col_a - col_b).mean(axis=1)
        shuffled = np.abs(col_a - col_b[rng.permutation(len(col_b))])
        assert np.median(diff) < 4.0, np.median(diff)
        assert np.percentile(diff, 95) < 16.0, np.percentile(diff, 95)
        assert np.median(diff) < 0.15 * np.median(shuffled.mean(axis=1))


def _look_at(eye: tuple[float, ...], target: tuple[float, ...]) -> np.ndarray:
    """T_world_cam of an optical frame at `eye` looking at `target` with image-down towards world -z."""
    z = np.subtract(target, eye, dtype=float)
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, np.cross(z, x), z, eye
    return T


def test_wide_baseline_colour_has_no_view_dependent_bias(seq: SyntheticSequence) -> None:
    """Two views ~40-90 deg apart of the same region: no brightness bias between them.

    Measured (seeds 0-2): mean signed grey difference within +-0.25, median |diff| 2-3.5, p95 <= 20;
    a mere 5 % view-dependent brightness term already gives a bias of 0.5-8.5.
    """
    rng = np.random.default_rng(1)
    views = [((4.0, 0.0, 1.5), (1.0, -1.2, 1.2), (1.0, 1.2, 1.2)),
             ((0.0, 3.0, 1.2), (-1.2, 0.5, 1.0), (1.2, 0.5, 1.4)),
             ((0.0, 0.0, 0.0), (-1.5, -1.0, 1.0), (1.5, -1.0, 1.3))]
    for target, eye_a, eye_b in views:
        TA, TB = _look_at(eye_a, target), _look_at(eye_b, target)
        col_a, col_b = _corresponding_colours(seq, TA, TB, rng)
        signed = (col_a - col_b).mean(axis=1)
        assert abs(signed.mean()) < 1.0, (target, signed.mean())
        assert np.median(np.abs(signed)) < 4.5 and np.percentile(np.abs(signed), 95) < 25.0


def _local_std(rgb: np.ndarray, k: int = 7) -> np.ndarray:
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    m, m2 = cv2.blur(g, (k, k)), cv2.blur(g * g, (k, k))
    return np.sqrt(np.maximum(m2 - m * m, 0.0))


def test_texture_is_rich_enough_for_stereo(seq: SyntheticSequence) -> None:
    """Std of 7x7 grey patches > 4 levels on > 95 % of pixels (measured >= 99.7 % at 320x240)."""
    for index in (0, 25):
        frame = seq.render_frame(index)
        for name, rgb in frame.images.items():
            frac = float((_local_std(rgb) > 4.0).mean())
            assert frac > 0.95, (index, name, frac)
    # Full resolution too: smaller pixels mean less contrast per window.
    big = SyntheticSequence(SyntheticConfig(seed=0, n_frames=1, width=640, height=480))
    rgb = big.render_frame(0, ["front"]).images["front"]
    assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8
    assert (_local_std(rgb) > 4.0).mean() > 0.95


def test_supersampling_converges() -> None:
    """Looking diagonally across the room (far, grazing floor): 2x2 rays/pixel are close to 4x4
    (measured mean |diff| 1.4 grey levels) while 1 ray/pixel aliases (5.4)."""
    scene = Scene(seed=0)
    K = intrinsics(default_rig(4, W, H))
    T = _look_at((-3.0, -2.0, 0.8), (4.0, 3.0, 1.0))
    ref, depth_ref = scene.render(T, K, W, H, supersample=4)
    ss2, depth2 = scene.render(T, K, W, H)
    ss1, _ = scene.render(T, K, W, H, supersample=1)
    assert np.array_equal(depth_ref, depth2), "depth is the centre ray whatever the supersampling"
    err2 = np.abs(ss2.astype(float) - ref).mean()
    err1 = np.abs(ss1.astype(float) - ref).mean()
    assert err2 < 2.5 and err2 < 0.4 * err1, (err1, err2)


# -- rig -----------------------------------------------------------------------------------------------

def test_T_base_optical_axes() -> None:
    rig = default_rig()
    assert rig.names == ["front", "left", "right", "back"]
    cams = {c.name: T_base_optical(c) for c in rig.cameras}
    ex, ey, ez = np.eye(3)
    R = cams["front"][:3, :3]
    np.testing.assert_allclose(R @ ez, [1, 0, 0], atol=1e-12)  # optical z -> base +x
    np.testing.assert_allclose(R @ ex, [0, -1, 0], atol=1e-12)  # optical x (right) -> base -y
    np.testing.assert_allclose(R @ ey, [0, 0, -1], atol=1e-12)  # optical y (down) -> base -z
    np.testing.assert_allclose(cams["left"][:3, :3] @ ez, [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(cams["right"][:3, :3] @ ez, [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(cams["back"][:3, :3] @ ez, [-1, 0, 0], atol=1e-12)
    for c in rig.cameras:
        T = cams[c.name]
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
        assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0)
        assert 0.15 <= math.hypot(*c.position[:2]) <= 0.25 and 0.5 <= c.position[2] <= 1.0
        # Camera looks radially outwards from the base centre.
        assert float(T[:2, 2] @ np.asarray(c.position[:2])) > 0
    # Positive pitch tilts the view down (REP-103 rotation about +y).
    down = T_base_optical(CameraSpec("f", (0.2, 0.0, 0.8), 0.0, 30.0))[:3, :3] @ ez
    np.testing.assert_allclose(down, [math.cos(math.radians(30)), 0, -math.sin(math.radians(30))], atol=1e-12)
    assert optical_frame_id("front") == "front_optical_frame"
    six = default_rig(6)
    assert six.names == [f"cam{i}" for i in range(6)]
    assert [c.yaw_deg for c in six.cameras] == pytest.approx([0, 60, 120, 180, 240, 300])


def test_intrinsics_match_hfov_and_pixel_centre_convention() -> None:
    rig = default_rig(4, 640, 480, 90.0)
    K = intrinsics(rig)
    assert K[0, 2] == 319.5 and K[1, 2] == 239.5 and K[0, 0] == K[1, 1]
    # The left edge of pixel 0 (u = -0.5) is at hfov/2 off axis.
    ray = np.linalg.inv(K) @ [-0.5, 239.5, 1.0]
    assert math.degrees(math.atan2(-ray[0], ray[2])) == pytest.approx(45.0)


# -- trajectory -----------------------------------------------------------------------------------------

def test_trajectory_keeps_clearance_from_walls_and_objects() -> None:
    rate = 10.0
    lap = lap_frames(rate)
    scenes = [Scene(SceneParams(seed=s, clearance_m=0.8)) for s in (0, 3)]
    for tseed in (0, 1, 2):
        poses = trajectory(lap + 5, rate, tseed)
        xy = np.array([T[:2, 3] for _, T in poses])
        for scene in scenes:
            lx, ly, _ = scene.params.room
            wall = np.minimum(lx / 2 - np.abs(xy[:, 0]), ly / 2 - np.abs(xy[:, 1]))
            assert wall.min() >= 0.8
            for box in scene.objects:
                assert _footprint_distance(xy, box).min() >= 0.8
        for _, T in poses:
            assert T[2, 3] == 0.0 and np.allclose(T[:3, 2], [0, 0, 1])


def test_trajectory_speed_turning_stamps_and_looping() -> None:
    rate = 10.0
    lap = lap_frames(rate)
    poses = trajectory(2 * lap + 3, rate, seed=4)
    stamps = np.array([s for s, _ in poses])
    assert (np.diff(stamps) == 100_000_000).all()
    xy = np.array([T[:2, 3] for _, T in poses])
    speed = np.linalg.norm(np.diff(xy, axis=0), axis=1) * rate
    assert speed.min() >= 0.3 and speed.max() <= 0.5
    yaw = np.unwrap([math.atan2(T[1, 0], T[0, 0]) for _, T in poses])
    # Smooth turning: bounded yaw rate, and a full turn over one lap.
    assert np.abs(np.diff(yaw)).max() * rate < 1.0
    assert abs(abs(yaw[lap] - yaw[0]) - 2 * math.pi) < 1e-6
    # The robot faces its direction of travel.
    heading = np.arctan2(np.diff(xy[:, 1]), np.diff(xy[:, 0]))
    err = np.angle(np.exp(1j * (heading - (yaw[:-1] + yaw[1:]) / 2)))
    assert np.abs(err).max() < 0.05
    # Endurance: poses repeat exactly after a lap while stamps keep increasing.
    assert np.array_equal(poses[lap][1], poses[0][1]) and np.array_equal(poses[2 * lap + 2][1], poses[2][1])
    assert poses[lap][0] > poses[0][0]


# -- sequence -----------------------------------------------------------------------------------------

def test_frames_are_lazy_and_well_formed(seq: SyntheticSequence) -> None:
    gen = seq.frames(stop=2)
    assert isinstance(gen, types.GeneratorType)
    frames = list(gen)
    assert [f.index for f in frames] == [0, 1]
    f = frames[1]
    assert f.stamp_ns == seq.poses[1][0] and np.array_equal(f.T_odom_base, seq.poses[1][1])
    assert sorted(f.images) == sorted(seq.camera_names) == sorted(seq.T_base_cam)
    for name in seq.camera_names:
        assert f.images[name].shape == (H, W, 3) and f.images[name].dtype == np.uint8
        assert f.depths[name].shape == (H, W) and f.depths[name].dtype == np.float32


def test_ground_truth_roundtrip(tmp_path) -> None:
    small = SyntheticSequence(SyntheticConfig(seed=5, n_frames=3, width=64, height=48, n_cameras=2))
    path = small.save_ground_truth(tmp_path / "gt", include_depth=True)
    assert path.exists() and path.suffix == ".npz"
    gt = load_ground_truth(path)
    assert gt.config == small.config and gt.camera_names == small.camera_names
    np.testing.assert_array_equal(gt.K, small.K)
    np.testing.assert_array_equal(gt.stamps_ns, [s for s, _ in small.poses])
    np.testing.assert_array_equal(gt.T_odom_base, np.stack([T for _, T in small.poses]))
    for name in small.camera_names:
        np.testing.assert_array_equal(gt.T_base_cam[name], small.T_base_cam[name])
    frame = gt.sequence().render_frame(2)
    assert gt.depths is not None and gt.depths.shape == (3, 2, 48, 64)
    np.testing.assert_array_equal(gt.depths[2, 1], frame.depths[small.camera_names[1]])
    np.testing.assert_array_equal(frame.images["cam0"], small.render_frame(2).images["cam0"])
