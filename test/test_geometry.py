"""Projection, SE(3)/Sim(3) and Umeyama."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from recon_ros.geometry.camera import PinholeCamera, backproject, depth_sensitivity, project
from recon_ros.geometry.se3 import (
    from_quaternion,
    interpolate,
    invert,
    make_transform,
    rotation_angle_deg,
    to_quaternion,
    transform_points,
    umeyama,
)

RNG = np.random.default_rng(0)


def random_pose(rng=RNG, t_scale=2.0):
    return make_transform(Rotation.random(random_state=rng.integers(1 << 30)).as_matrix(), rng.normal(size=3) * t_scale)


def test_backproject_project_round_trip():
    K = np.array([[200.0, 0, 79.5], [0, 210.0, 59.5], [0, 0, 1]])
    depth = RNG.uniform(0.5, 8.0, size=(120, 160))
    pts = backproject(depth, K)
    uv, z = project(pts, K)
    u, v = np.meshgrid(np.arange(160), np.arange(120))
    np.testing.assert_allclose(uv[..., 0], u, atol=1e-9)
    np.testing.assert_allclose(uv[..., 1], v, atol=1e-9)
    np.testing.assert_allclose(z, depth, rtol=1e-12)


def test_resized_intrinsics_keep_the_image_plane():
    cam = PinholeCamera(300.0, 300.0, 319.5, 239.5, 640, 480)
    half = cam.resized(320, 240)
    # The principal point is the image centre at both resolutions (pixel-centre convention).
    assert half.cx == pytest.approx(159.5) and half.cy == pytest.approx(119.5)
    assert half.fx == pytest.approx(150.0)
    # A 3-D point projects to corresponding pixel positions: u' = (u + 0.5) / 2 - 0.5.
    p = np.array([0.3, -0.2, 2.0])
    u_full = cam.fx * p[0] / p[2] + cam.cx
    u_half = half.fx * p[0] / p[2] + half.cx
    assert u_half == pytest.approx((u_full + 0.5) / 2 - 0.5)


def test_invert_and_quaternion_round_trip():
    T = random_pose()
    np.testing.assert_allclose(invert(T) @ T, np.eye(4), atol=1e-12)
    t, q = to_quaternion(T)
    np.testing.assert_allclose(from_quaternion(t, q), T, atol=1e-12)


def test_interpolate_midpoint():
    T0 = make_transform(np.eye(3), [0, 0, 0])
    T1 = make_transform(Rotation.from_euler("z", 90, degrees=True).as_matrix(), [2, 0, 0])
    mid = interpolate(T0, T1, 0.5)
    assert rotation_angle_deg(mid[:3, :3]) == pytest.approx(45.0)
    np.testing.assert_allclose(mid[:3, 3], [1, 0, 0])


def test_umeyama_recovers_similarity():
    src = RNG.normal(size=(20, 3))
    R = Rotation.from_euler("xyz", [10, -40, 70], degrees=True).as_matrix()
    dst = 0.37 * src @ R.T + np.array([1.0, -2.0, 0.5])
    sim = umeyama(src, dst)
    assert sim.scale == pytest.approx(0.37, rel=1e-10)
    np.testing.assert_allclose(sim.R, R, atol=1e-10)
    np.testing.assert_allclose(sim.apply(src), dst, atol=1e-10)
    # Poses move rigidly: a camera at src[0] looking along R0 ends up at dst[0] looking along R @ R0.
    pose = make_transform(np.eye(3), src[0])
    np.testing.assert_allclose(sim.apply_to_pose(pose)[:3, 3], dst[0], atol=1e-10)


def test_umeyama_handles_reflection_and_rejects_degenerate():
    src = RNG.normal(size=(10, 3))
    dst = src * np.array([1, 1, -1])  # a mirror image is not a rotation
    sim = umeyama(src, dst)
    assert np.linalg.det(sim.R) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="coincident"):
        umeyama(np.ones((5, 3)), RNG.normal(size=(5, 3)))
    with pytest.raises(ValueError, match="at least 3"):
        umeyama(src[:2], dst[:2])


def test_transform_points_matches_matrix_product():
    T = random_pose()
    p = RNG.normal(size=(7, 3))
    ref = (T @ np.c_[p, np.ones(7)].T).T[:, :3]
    np.testing.assert_allclose(transform_points(T, p), ref, atol=1e-12)


def test_depth_sensitivity_is_the_parallax_per_metre_of_depth():
    K = np.array([[200.0, 0, 79.5], [0, 200.0, 59.5], [0, 0, 1]])
    depth = np.full((120, 160), 2.0)
    depth[0, 0] = np.nan
    sideways = np.eye(4)
    sideways[0, 3] = 0.3  # a source 0.3 m to the side: disparity f b / Z, so f b / Z^2 per metre
    s = depth_sensitivity(depth, K, np.eye(4), [(K, sideways, (160, 120))])
    # the source sees reference pixel u at u - f b / Z = u - 30: the 30 left columns fall outside it
    assert np.allclose(s[1:, 30:], 200.0 * 0.3 / 4.0, rtol=1e-6)
    assert (s[:, :30] == 0).all()
    assert s[0, 0] == 0.0  # no depth
    forward = np.eye(4)
    forward[2, 3] = -0.5  # a source 0.5 m behind, on the optical axis: no parallax at the epipole
    f = depth_sensitivity(depth, K, np.eye(4), [(K, forward, (160, 120))])
    assert f[59, 79] < 0.05 * f[59, 0] and f[59, 0] > 0
    # the image point at r px from the epipole sits at f x / (Z + b) = r Z / (Z + b): r b / (Z + b)^2 per metre
    assert f[59, 0] == pytest.approx(79.5 * 0.5 / 2.5**2, rel=1e-3)
    # the largest over the sources
    both = depth_sensitivity(depth, K, np.eye(4), [(K, forward, (160, 120)), (K, sideways, (160, 120))])
    assert np.allclose(both, np.maximum(s, f))
