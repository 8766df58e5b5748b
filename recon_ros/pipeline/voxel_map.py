"""The fused map: an open3d point cloud kept voxel-downsampled and bounded in size."""

from __future__ import annotations

import threading

import numpy as np

try:  # open3d is heavy; import errors surface with a clear hint when the map is first built.
    import open3d as o3d
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    o3d = None
    _IMPORT_ERROR = exc


class VoxelMap:
    """Points averaged per voxel. When ``max_points`` is exceeded the voxel grows by 25 % and the
    map is re-downsampled, so memory stays bounded however long the robot runs."""

    GROWTH = 1.25

    def __init__(self, voxel_size: float, max_points: int):
        if o3d is None:
            raise ImportError(f"open3d is required for the voxel map ({_IMPORT_ERROR}); pip install open3d-cpu")
        self.initial_voxel = float(voxel_size)
        self.voxel_size = float(voxel_size)
        self.max_points = int(max_points)
        self._cloud = o3d.geometry.PointCloud()
        self._lock = threading.Lock()
        self.version = 0

    def __len__(self) -> int:
        return len(self._cloud.points)

    def insert(self, points: np.ndarray, colors: np.ndarray) -> None:
        """Add world points ``[N,3]`` with uint8 colours ``[N,3]``."""
        if len(points) == 0:
            return
        new = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
        new.colors = o3d.utility.Vector3dVector(colors.astype(np.float64) / 255.0)
        with self._lock:
            merged = self._cloud + new
            merged = merged.voxel_down_sample(self.voxel_size)
            while len(merged.points) > self.max_points:
                self.voxel_size *= self.GROWTH
                merged = merged.voxel_down_sample(self.voxel_size)
            self._cloud = merged
            self.version += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(points ``[N,3]`` float32, colours ``[N,3]`` uint8) — a copy, safe to publish from another thread."""
        with self._lock:
            pts = np.asarray(self._cloud.points, dtype=np.float32).copy()
            cols = (np.asarray(self._cloud.colors) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        return pts, cols

    def clear(self) -> None:
        with self._lock:
            self._cloud = o3d.geometry.PointCloud()
            self.voxel_size = self.initial_voxel
            self.version += 1

    def save_ply(self, path: str) -> int:
        """Write the map as binary PLY; returns the number of points written."""
        with self._lock:
            cloud = o3d.geometry.PointCloud(self._cloud)
        if cloud.is_empty():  # open3d refuses to write an empty cloud; an empty map is still a valid PLY
            with open(path, "w") as f:
                f.write("ply\nformat ascii 1.0\nelement vertex 0\nproperty double x\nproperty double y\n"
                        "property double z\nend_header\n")
            return 0
        if not o3d.io.write_point_cloud(str(path), cloud, write_ascii=False):
            raise OSError(f"could not write PLY file {path}")
        return len(cloud.points)
