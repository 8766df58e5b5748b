"""The predictor's path from robot views (4:3 images, given K) to network input and back, on ground truth.

A stand-in network returns exact pointmaps of a synthetic box room for the pixels the predictor hands
it (every network-input pixel is mapped to its robot-image ray through the returned ``K224``), so what
is checked is the predictor's own geometry: the crop intrinsics (pixel-centre convention), the view
order, the poses recovered from the pointmaps (PnP with the given K), the depth ranges and the mapping
of network pixels back to robot pixels, in both input modes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon_ros.models.mvdust3r import MVDust3R, MVDust3RConfig, MVDust3RPredictor
from recon_ros.models.mvdust3r.preprocess import preprocess_views

ROBOT_HW = (480, 640)
K_ROBOT = np.array([[520.0, 0.0, 322.0], [0.0, 515.0, 236.0], [0.0, 0.0, 1.0]])
ROOM_MIN = np.array([-4.0, -2.5, -3.0])
ROOM_MAX = np.array([4.0, 2.0, 7.0])


def rot(axis: np.ndarray, deg: float) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.radians(deg)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def world_from_cams() -> np.ndarray:
    poses = []
    for i, (yaw, x) in enumerate(((0.0, 0.0), (12.0, 0.3), (-15.0, -0.4), (25.0, 0.2))):
        T = np.eye(4)
        T[:3, :3] = rot([0, 1, 0], yaw) @ rot([1, 0, 0], 4.0 * (i % 2))
        T[:3, 3] = [x, 0.1 * i, -0.2 * i]
        poses.append(T)
    return np.stack(poses)


def room_depth_along(dirs_world: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Distance along each unit ray from ``origin`` (inside the room) to the room's walls."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_hi = (ROOM_MAX - origin) / dirs_world
        t_lo = (ROOM_MIN - origin) / dirs_world
    t = np.where(dirs_world > 0, t_hi, t_lo)
    t[~np.isfinite(t)] = np.inf
    return t.min(axis=-1)


class GroundTruthNetwork:
    """Runner-like stand-in: ``decode`` returns exact path-0 pointmaps in camera 0's frame."""

    def __init__(self, K_crop: np.ndarray, T_wc: np.ndarray) -> None:
        self.K_crop, self.T_wc = K_crop, T_wc
        self.depth_true: list[np.ndarray] = []

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(1, images.shape[1], 1, 1)

    def decode(self, tokens: torch.Tensor, images: torch.Tensor, paths=(0,)) -> dict[str, torch.Tensor]:
        v, _, h, w = images.shape[1:]
        T_0w = np.linalg.inv(self.T_wc[0])
        pts = np.zeros((v, h, w, 3))
        vv, uu = np.mgrid[0:h, 0:w].astype(float)
        pix = np.stack((uu, vv, np.ones_like(uu)), axis=-1)
        self.depth_true = []
        for i in range(v):
            rays = pix @ np.linalg.inv(self.K_crop[i]).T  # z = 1 rays in camera i
            d_world = rays @ self.T_wc[i][:3, :3].T
            norm = np.linalg.norm(d_world, axis=-1, keepdims=True)
            t = room_depth_along(d_world / norm, self.T_wc[i][:3, 3])
            z = t / norm[..., 0]  # depth along the optical axis
            self.depth_true.append(z)
            X_w = self.T_wc[i][:3, 3] + d_world * z[..., None]
            pts[i] = X_w @ T_0w[:3, :3].T + T_0w[:3, 3]
        conf = np.full((1, 1, v, h, w), 5.0, np.float32)
        return {"pts3d": torch.from_numpy(pts[None, None].astype(np.float32)), "conf": torch.from_numpy(conf)}


@pytest.mark.parametrize("mode,hw", [("square", (224, 224)), ("full_fov", (160, 224))])
def test_robot_views_to_network_and_back(mode: str, hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (*ROBOT_HW, 3), dtype=np.uint8) for _ in range(4)]
    K = [K_ROBOT] * 4
    T_wc = world_from_cams()
    K_crop = preprocess_views(images, K, mode=mode).K224
    net = GroundTruthNetwork(K_crop, T_wc)
    model = MVDust3R(MVDust3RConfig(enc_embed_dim=16, enc_depth=1, enc_num_heads=1, dec_embed_dim=16, dec_depth=1,
                                    dec_num_heads=1, skip_dim=4, gs_mlp_dim=8))
    pred = MVDust3RPredictor(model, runner=net, reorder=False, input_mode=mode).predict(images, K)
    assert pred.pts3d.shape == (4, *hw, 3)

    # K224: the robot K carried through resize + crop, pixel centres kept (u' = sx (u + 0.5) - 0.5 - left).
    # Upstream's rules for 640x480: square resizes to 299x224 (long side round(224 * 4/3)) and crops
    # x 37..261; full_fov resizes to 224x168 and crops y 4..164.
    (rw, rh), left, top = {"square": ((299, 224), 37, 0), "full_fov": ((224, 168), 0, 4)}[mode]
    sx, sy = rw / 640, rh / 480
    expected = np.array([[sx * K_ROBOT[0, 0], 0, sx * (K_ROBOT[0, 2] + 0.5) - 0.5 - left],
                         [0, sy * K_ROBOT[1, 1], sy * (K_ROBOT[1, 2] + 0.5) - 0.5 - top], [0, 0, 1]])
    np.testing.assert_allclose(pred.K224, np.repeat(expected[None], 4, axis=0), atol=1e-9)

    # Poses relative to camera 0 from PnP (given K) on exact pointmaps: bounds far above float32 rounding.
    c2w_true = np.linalg.inv(T_wc[0])[None] @ T_wc
    for i in range(4):
        assert pred.pose_ok[i]
        dR = pred.c2w[i, :3, :3].astype(np.float64).T @ c2w_true[i, :3, :3]
        angle = np.degrees(np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1)))
        assert angle < 0.01, f"view {i}: rotation error {angle:.4f} deg"
        np.testing.assert_allclose(pred.c2w[i, :3, 3], c2w_true[i, :3, 3], atol=1e-3)

    # Depth ranges = percentiles of the true depths of the confident (here: all) pixels.
    for i in range(4):
        lo, hi = np.percentile(net.depth_true[i][pred.mask[i]], (2.0, 98.0))
        np.testing.assert_allclose(pred.depth_ranges[i], [lo, hi], rtol=1e-4)

    # Mapped back: a network pixel's point, projected with the robot K and the recovered pose, lands on
    # the robot pixel that the resize + crop took it from (within 0.01 px).
    A = K_crop[0] @ np.linalg.inv(K_ROBOT)  # robot pixel -> network pixel
    for i in (1, 3):
        vv, uu = np.mgrid[0 : hw[0] : 13, 0 : hw[1] : 17].astype(float)
        X0 = pred.pts3d[i][vv.astype(int), uu.astype(int)].astype(np.float64)
        c2w = pred.c2w[i].astype(np.float64)
        Xc = (X0 - c2w[:3, 3]) @ c2w[:3, :3]
        proj = Xc @ K_ROBOT.T
        robot_uv = proj[..., :2] / proj[..., 2:]
        net_uv = np.stack((uu, vv, np.ones_like(uu)), axis=-1) @ np.linalg.inv(A).T
        np.testing.assert_allclose(robot_uv, net_uv[..., :2], atol=0.01)
