"""Render a coloured point cloud to a PNG without a display (z-buffered point splats).

A bird's-eye-oblique virtual camera frames the cloud's bounding box; nearer points win. This is a
preview for reports and READMEs, not a viewer: use RViz or open3d's viewer for interaction.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from recon_ros.geometry.se3 import invert, make_transform

UP = np.array([0.0, 0.0, 1.0])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = UP) -> np.ndarray:
    """Camera-to-world pose of an optical frame (z forward, y down) at ``eye`` looking at ``target``."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:
        x = np.array([1.0, 0.0, 0.0])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return make_transform(np.stack([x, y, z], axis=1), eye)


def render_points(points: np.ndarray, colors: np.ndarray, width: int = 960, height: int = 720,
                  elevation_deg: float = 55.0, azimuth_deg: float = -60.0, splat: int = 2) -> np.ndarray:
    """RGB uint8 image of the cloud seen from above at an angle."""
    img = np.full((height, width, 3), 255, np.uint8)
    if len(points) == 0:
        return img
    lo, hi = np.percentile(points, 1, axis=0), np.percentile(points, 99, axis=0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo)) / 2 + 1e-6
    el, az = np.radians(elevation_deg), np.radians(azimuth_deg)
    direction = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    f = 0.9 * min(width, height)
    dist = radius * 2.2
    T_cam_world = invert(look_at(centre + direction * dist, centre))
    p = points @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    front = p[:, 2] > 1e-3
    p, c = p[front], colors[front]
    u = (f * p[:, 0] / p[:, 2] + width / 2).astype(np.int64)
    v = (f * p[:, 1] / p[:, 2] + height / 2).astype(np.int64)
    order = np.argsort(-p[:, 2])  # far first, so near points overwrite them
    u, v, c = u[order], v[order], c[order]
    for du in range(splat):
        for dv in range(splat):
            uu, vv = u + du, v + dv
            ok = (uu >= 0) & (uu < width) & (vv >= 0) & (vv < height)
            img[vv[ok], uu[ok]] = c[ok]
    return img


def save_png(path: str | Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def render_ply(ply_path: str | Path, png_path: str | Path, **kwargs) -> int:
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(ply_path))
    if cloud.is_empty():
        raise ValueError(f"{ply_path}: no points (not a point-cloud PLY?)")
    pts = np.asarray(cloud.points)
    if cloud.has_colors():
        cols = (np.asarray(cloud.colors) * 255).astype(np.uint8)
    else:
        cols = np.full((len(pts), 3), 80, np.uint8)
    save_png(png_path, render_points(pts, cols, **kwargs))
    return len(pts)
