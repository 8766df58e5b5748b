"""Pinhole cameras: intrinsics, rescaling, projection and back-projection.

Pixel convention: integer (u, v) are pixel centres, as in ROS CameraInfo and OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon_ros.geometry.se3 import invert, transform_points


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of an undistorted pinhole camera at one resolution."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_K(cls, K: np.ndarray, width: int, height: int) -> PinholeCamera:
        K = np.asarray(K, dtype=np.float64)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def resized(self, width: int, height: int) -> PinholeCamera:
        """Intrinsics after resizing the whole image to ``width x height``.

        Pixel centres map as ``u' = (u + 0.5) * sx - 0.5`` so the principal point keeps its place on
        the image plane (matters at 1/8 scale, where a half-pixel error is a large angle).
        """
        sx, sy = width / self.width, height / self.height
        return PinholeCamera(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height
        )

    def cropped(self, left: int, top: int, width: int, height: int) -> PinholeCamera:
        """Intrinsics of the ``width x height`` window whose top-left pixel is (left, top)."""
        return PinholeCamera(self.fx, self.fy, self.cx - left, self.cy - top, width, height)


def pixel_grid(width: int, height: int) -> np.ndarray:
    """``[H, W, 2]`` array of (u, v) pixel-centre coordinates."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    return np.stack([u, v], axis=-1)


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` camera-frame points from a depth map (z along the optical axis)."""
    h, w = depth.shape
    uv = pixel_grid(w, h)
    z = depth.astype(np.float64)
    x = (uv[..., 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[..., 1] - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], axis=-1)


def project(points: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``[..., 2]`` and depths ``[...]`` of camera-frame points ``[..., 3]``."""
    z = points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * points[..., 0] / z + K[0, 2]
        v = K[1, 1] * points[..., 1] / z + K[1, 2]
    return np.stack([u, v], axis=-1), z


def depth_sensitivity(depth: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray,
                      sources: list[tuple[np.ndarray, np.ndarray, tuple[int, int]]],
                      mask: np.ndarray | None = None) -> np.ndarray:
    """``[H, W]`` pixels a source image point moves per metre of depth change, the largest over the
    ``sources`` (``(K_source, T_world_source, (width, height))``) that see the point (in front of the source
    and inside its image), at each pixel's ``depth``; 0 where the depth is not finite and positive, outside
    ``mask`` (computed only there when given) or where no source sees the point.

    Multi-view stereo measures depth through this motion: a matching error of ``e`` pixels is a depth error
    of about ``e / sensitivity`` metres. It is small near the epipole (a camera moving along its optical axis
    sees no parallax straight ahead) and far away (it falls with depth squared).
    """
    h, w = depth.shape
    ok = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        ok &= mask
    v, u = np.nonzero(ok)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones(len(u))], axis=1)  # dX / ddepth
    points = rays * depth[v, u].astype(np.float64)[:, None]
    best = np.zeros(len(u))
    for K_s, T_world_src, (w_s, h_s) in sources:
        T = invert(T_world_src) @ T_world_cam
        d_point = rays @ T[:3, :3].T  # d X_source / d depth
        p = transform_points(T, points)
        uv, z = project(p, K_s)
        front = (z > 1e-3) & (uv[:, 0] >= 0) & (uv[:, 0] <= w_s - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h_s - 1)
        z = np.where(front, z, 1.0)
        # d (x / z) = (dx z - x dz) / z^2, scaled by the focal lengths
        du = K_s[0, 0] * (d_point[:, 0] * z - p[:, 0] * d_point[:, 2]) / z**2
        dv = K_s[1, 1] * (d_point[:, 1] * z - p[:, 1] * d_point[:, 2]) / z**2
        best = np.maximum(best, np.where(front, np.hypot(du, dv), 0.0))
    out = np.zeros((h, w), np.float32)
    out[v, u] = best
    return out
