"""Pinhole cameras: intrinsics, rescaling, projection and back-projection.

Pixel convention: integer (u, v) are pixel centres, as in ROS CameraInfo and OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
