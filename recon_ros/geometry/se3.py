"""Rigid (SE(3)) and similarity (Sim(3)) transforms as 4x4 numpy matrices, plus Umeyama alignment.

Naming: ``T_a_b`` maps points expressed in frame ``b`` into frame ``a`` (``p_a = T_a_b @ p_b``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp


def make_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 homogeneous matrix from a 3x3 rotation (or scaled rotation) and a translation."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (cheaper and more exact than ``np.linalg.inv``)."""
    R, t = T[:3, :3], T[:3, 3]
    return make_transform(R.T, -R.T @ t)


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to an ``[..., 3]`` array of points."""
    return points @ T[:3, :3].T + T[:3, 3]


def from_quaternion(translation: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    """4x4 from a translation and a ROS-ordered (x, y, z, w) quaternion."""
    return make_transform(Rotation.from_quat(quat_xyzw).as_matrix(), translation)


def to_quaternion(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(translation, quaternion x y z w) of a rigid transform."""
    return T[:3, 3].copy(), Rotation.from_matrix(T[:3, :3]).as_quat()


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle of a rotation matrix in degrees (numerically safe near 0 and 180)."""
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)))


def interpolate(T0: np.ndarray, T1: np.ndarray, alpha: float) -> np.ndarray:
    """Pose between ``T0`` (alpha=0) and ``T1`` (alpha=1): linear translation, slerp rotation."""
    rots = Rotation.from_matrix(np.stack([T0[:3, :3], T1[:3, :3]]))
    R = Slerp([0.0, 1.0], rots)([alpha]).as_matrix()[0]
    return make_transform(R, (1 - alpha) * T0[:3, 3] + alpha * T1[:3, 3])


@dataclass(frozen=True)
class Sim3:
    """Similarity ``x -> s R x + t``."""

    scale: float
    R: np.ndarray
    t: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.R.T + self.t

    def apply_to_pose(self, T_world_cam: np.ndarray) -> np.ndarray:
        """Map a camera-to-world pose into the target frame, keeping it rigid (scale moves the centre)."""
        return make_transform(self.R @ T_world_cam[:3, :3], self.apply(T_world_cam[:3, 3]))

    def matrix(self) -> np.ndarray:
        return make_transform(self.scale * self.R, self.t)


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> Sim3:
    """Least-squares similarity aligning ``src`` to ``dst`` (Umeyama 1991), both ``[N, 3]``, N >= 3.

    Raises ValueError when the points are degenerate (all coincident), because the scale is then
    undefined and a silent identity would corrupt the map.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise ValueError(f"umeyama: expected two [N,3] arrays of equal shape, got {src.shape} and {dst.shape}")
    if len(src) < 3:
        raise ValueError(f"umeyama: need at least 3 point pairs, got {len(src)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs**2).sum() / len(src)
    if var_s < 1e-18:
        raise ValueError("umeyama: source points are all coincident; scale is undefined")
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    scale = float(np.trace(np.diag(D) @ S) / var_s) if with_scale else 1.0
    t = mu_d - scale * R @ mu_s
    return Sim3(scale, R, t)
