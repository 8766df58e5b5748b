"""Camera poses (and, when unknown, the focal length) from MV-DUSt3R pointmaps.

The network returns, for every view, a pointmap expressed in one reference camera frame (view 0 for
path 0) plus a per-pixel confidence. This module recovers each view's camera-to-reference pose the way
the upstream demo does, so results can be compared with it:

1. confidence masks: keep points whose confidence is at least the ``p``-th percentile value of all
   views' confidences (``sorted(conf)[int(N * p * 0.01)]``, p = 3 by default);
2. focal (only if intrinsics are unknown): robust fit of ``pixel - pp = f * (x, y) / z`` on the
   reference view's own pointmap, least squares followed by 10 reweighting steps with weights
   ``1 / |residual|`` (a Weiszfeld-type L1 fit); principal point at ``(W/2, H/2)``, integer pixel
   coordinates; confidence cut at the reference view's own 3rd percentile;
3. per-view PnP-RANSAC (OpenCV, default parameters) between the masked 3D points and their pixel
   coordinates, with the estimated or the given intrinsics. Optionally the result is refined with
   Levenberg-Marquardt on the RANSAC inliers.

Poses are camera-to-world 4x4 matrices (OpenCV camera axes) in the pointmaps' frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from recon_ros.geometry import se3
from recon_ros.geometry.camera import pixel_grid as pixel_centres

#: Confidence percentile the upstream demo uses by default.
DEFAULT_MIN_CONF_PERCENT = 3.0


def _kth_smallest(conf: np.ndarray, rank: float) -> float:
    flat = np.asarray(conf).reshape(-1)
    if flat.size == 0:
        raise ValueError("empty confidence map")
    k = min(int(rank), flat.shape[0] - 1)
    return float(np.partition(flat, k)[k])


def percentile_threshold(conf: np.ndarray, percent: float) -> float:
    """``sorted(conf.ravel())[int(N * percent * 0.01)]`` (upstream's rule, same float arithmetic)."""
    return _kth_smallest(conf, np.asarray(conf).size * float(percent) * 0.01)


def focal_threshold(conf0: np.ndarray) -> float:
    """Reference-view cut for the focal fit: ``sorted(conf0.ravel())[int(N * 0.03)]``."""
    return _kth_smallest(conf0, np.asarray(conf0).size * 0.03)


def pixel_grid(h: int, w: int) -> np.ndarray:
    """``[H, W, 2]`` float32 integer pixel coordinates ``(x, y)`` (float32 as the upstream focal fit uses)."""
    return pixel_centres(w, h).astype(np.float32)


def estimate_focal(pts3d: np.ndarray, mask: np.ndarray | None = None, iterations: int = 10) -> float:
    """Focal (pixels) of a camera whose own-frame pointmap is ``pts3d`` ``[H, W, 3]``.

    Computed in float32 like the reference implementation; the result is clipped at 0.
    """
    pts = torch.as_tensor(np.asarray(pts3d, dtype=np.float32))
    h, w, _ = pts.shape
    pp = torch.tensor([w / 2, h / 2], dtype=torch.float32)
    pixels = torch.from_numpy(pixel_grid(h, w)) - pp
    if mask is not None:
        m = torch.as_tensor(np.asarray(mask, dtype=bool))
        pixels, pts = pixels[m], pts[m]
    else:
        pixels, pts = pixels.reshape(-1, 2), pts.reshape(-1, 3)
    if pts.shape[0] == 0:
        raise ValueError("no valid points for the focal estimate")
    xy_over_z = (pts[:, :2] / pts[:, 2:3]).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    dot_xy_px = (xy_over_z * pixels).sum(dim=-1)
    dot_xy_xy = xy_over_z.square().sum(dim=-1)
    focal = dot_xy_px.mean() / dot_xy_xy.mean()
    for _ in range(iterations):
        residual = (pixels - focal * xy_over_z).norm(dim=-1)
        weight = residual.clamp(min=1e-8).reciprocal()
        focal = (weight * dot_xy_px).mean() / (weight * dot_xy_xy).mean()
    return float(focal.clamp(min=0.0).item())


def intrinsics_from_focal(focal: float, h: int, w: int) -> np.ndarray:
    """``[[f, 0, W/2], [0, f, H/2], [0, 0, 1]]`` in float32 (the demo's intrinsics)."""
    k = np.eye(3, dtype=np.float32)
    k[0, 0] = k[1, 1] = focal
    k[0, 2], k[1, 2] = w / 2, h / 2
    return k


def _fallback_c2w() -> np.ndarray:
    # Upstream's failure value: w2c = [I | (1, 1, 1)], so c2w = [I | -1].
    c2w = np.eye(4, dtype=np.float32)
    c2w[:3, 3] = -1.0
    return c2w


def pnp_pose(
    pts3d: np.ndarray, mask: np.ndarray, K: np.ndarray, refine: bool = False
) -> tuple[np.ndarray, bool]:
    """Camera-to-world pose of the view whose pixels see ``pts3d`` ``[H, W, 3]`` (world points).

    Returns ``(c2w float32 [4, 4], ok)``; on failure ``ok`` is False and ``c2w`` is upstream's fallback.
    """
    h, w, _ = pts3d.shape
    m = np.asarray(mask, dtype=bool)
    obj = np.ascontiguousarray(np.asarray(pts3d, dtype=np.float32)[m])
    img = np.ascontiguousarray(pixel_grid(h, w)[m])
    camera = np.asarray(K, dtype=np.float32)
    dist = np.zeros((5, 1))
    if obj.shape[0] < 6:
        return _fallback_c2w(), False
    try:
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(obj, img, camera, dist)
    except cv2.error:
        return _fallback_c2w(), False
    if not ok:
        return _fallback_c2w(), False
    if refine and inliers is not None and len(inliers) >= 6:
        idx = inliers.reshape(-1)
        rvec, tvec = cv2.solvePnPRefineLM(obj[idx], img[idx], camera, dist, rvec, tvec)
    rot, _ = cv2.Rodrigues(rvec)
    w2c = torch.eye(4)
    w2c[:3, :3] = torch.tensor(rot, dtype=torch.float32)
    w2c[:3, 3] = torch.tensor(tvec.reshape(3), dtype=torch.float32)
    return torch.linalg.inv(w2c).numpy(), True


@dataclass
class PoseRecovery:
    c2w: np.ndarray  # [V, 4, 4] float32 camera-to-reference poses
    pnp_ok: np.ndarray  # [V] bool, False where PnP failed (c2w holds the fallback)
    K: np.ndarray  # [V, 3, 3] float32 intrinsics used for PnP
    focal: float | None  # estimated focal (None when intrinsics were given)
    conf_thres_all: float
    mask_pnp: np.ndarray  # [V, H, W] bool
    conf_thres_focal: float | None
    mask_focal: np.ndarray | None  # [H, W] bool


def recover_poses(
    pts3d: np.ndarray,
    conf: np.ndarray,
    K: np.ndarray | None = None,
    min_conf_percent: float = DEFAULT_MIN_CONF_PERCENT,
    refine: bool = False,
) -> PoseRecovery:
    """Poses of all views from pointmaps ``pts3d`` ``[V, H, W, 3]`` in view 0's frame.

    ``K``: None (estimate a shared focal from view 0, principal point at the image centre, as the
    upstream demo does), one ``[3, 3]`` matrix for all views, or ``[V, 3, 3]``.
    ``refine=False`` reproduces the upstream demo; ``True`` adds an LM refinement on the inliers.
    """
    pts3d = np.asarray(pts3d, dtype=np.float32)
    conf = np.asarray(conf, dtype=np.float32)
    if pts3d.ndim != 4 or pts3d.shape[-1] != 3 or conf.shape != pts3d.shape[:3]:
        raise ValueError(f"expected pts3d [V,H,W,3] and conf [V,H,W], got {pts3d.shape} and {conf.shape}")
    v, h, w, _ = pts3d.shape
    thr_all = percentile_threshold(conf, min_conf_percent)
    mask_pnp = conf >= thr_all
    focal = thr_focal = mask_focal = None
    if K is None:
        thr_focal = focal_threshold(conf[0])
        mask_focal = conf[0] >= thr_focal
        focal = estimate_focal(pts3d[0], mask_focal)
        Ks = np.broadcast_to(intrinsics_from_focal(focal, h, w), (v, 3, 3)).copy()
    else:
        Ks = np.asarray(K, dtype=np.float32)
        Ks = np.broadcast_to(Ks, (v, 3, 3)).copy() if Ks.shape == (3, 3) else Ks
        if Ks.shape != (v, 3, 3):
            raise ValueError(f"K must be [3,3] or [{v},3,3], got {Ks.shape}")
    poses, oks = zip(*(pnp_pose(pts3d[i], mask_pnp[i], Ks[i], refine) for i in range(v)))
    return PoseRecovery(
        c2w=np.stack(poses).astype(np.float32),
        pnp_ok=np.array(oks, dtype=bool),
        K=Ks,
        focal=focal,
        conf_thres_all=thr_all,
        mask_pnp=mask_pnp,
        conf_thres_focal=thr_focal,
        mask_focal=mask_focal,
    )


def rotation_angle_deg(r1: np.ndarray, r2: np.ndarray) -> float:
    """Angle of ``r1^T r2`` in degrees."""
    return se3.rotation_angle_deg(np.asarray(r1, dtype=np.float64).T @ np.asarray(r2, dtype=np.float64))
