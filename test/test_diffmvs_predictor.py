"""Predictor API, homography warping and noise handling of the DiffMVS port (no fixtures needed)."""

from __future__ import annotations

import math

import pytest
import torch

from recon_ros.models.diffmvs import (
    PRESETS,
    DiffMVSNet,
    DiffMVSPredictor,
    photometric_mask,
    warp_to_reference,
)
from recon_ros.models.diffmvs.geometry import full_projection
from recon_ros.models.diffmvs.predictor import DEFAULT_PHOTO_THRESHOLDS, build_proj_matrices

H_IN, W_IN = 70, 100  # deliberately not multiples of 32 -> network runs at 64x96


def _rot_y(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _extrinsic(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    T = torch.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def _texture(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Smooth RGB texture on the world plane (slow enough for bilinear sampling to be accurate)."""
    return torch.stack(
        [
            0.5 + 0.25 * torch.sin(3 * X) + 0.2 * torch.cos(2 * Y),
            0.5 + 0.3 * torch.cos(2.5 * X + Y),
            0.5 + 0.3 * torch.sin(2 * Y - X),
        ]
    )


def _render_plane(K: torch.Tensor, T: torch.Tensor, n: torch.Tensor, c: float, h: int, w: int):
    """Image and depth of the plane n.X = c (world frame) seen by camera (K, world-to-camera T)."""
    R, t = T[:3, :3], T[:3, 3]
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    rays = torch.linalg.inv(K) @ torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1)  # camera rays
    # world point X = R^T (lam * ray - t); solve n.X = c for lam (= depth, since ray_z = 1)
    lam = (c + n @ (R.T @ t)) / (n @ (R.T @ rays))
    X = R.T @ (lam * rays - t[:, None])
    img = _texture(X[0], X[1]).reshape(3, h, w)
    return img, lam.reshape(h, w)


@pytest.fixture(scope="module")
def scene() -> dict[str, torch.Tensor]:
    h, w = 48, 64
    K = torch.tensor([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    n, c = torch.tensor([0.15, -0.05, 1.0]), 4.0  # slanted plane about 4 m away
    T_ref = torch.eye(4)
    T_src = _extrinsic(_rot_y(3.0), torch.tensor([-0.3, 0.05, 0.1]))
    ref_img, ref_depth = _render_plane(K, T_ref, n, c, h, w)
    src_img, _ = _render_plane(K, T_src, n, c, h, w)
    cam = torch.zeros(2, 2, 4, 4)
    cam[0, 0], cam[1, 0] = T_ref, T_src
    cam[:, 1, :3, :3] = K
    return {"ref": ref_img, "src": src_img, "depth": ref_depth, "cam": cam, "K": K}


def test_warp_with_true_depth_reproduces_reference(scene: dict) -> None:
    cam = scene["cam"]
    P_ref, P_src = full_projection(cam[None, 0]), full_projection(cam[None, 1])
    depth = scene["depth"]
    hyps = torch.stack([depth * 0.92, depth, depth * 1.08])[None]  # [1,3,H,W]
    warped = warp_to_reference(scene["src"][None], P_src, P_ref, hyps)  # [1,3,D,H,W]
    assert warped.shape == (1, 3, 3, 48, 64)
    # Compare where the reference pixel lands well inside the source image (exact geometry check).
    valid = warped[0, :, 1].abs().sum(0) > 0
    valid[:, :6] = valid[:, -6:] = False
    valid[:4] = valid[-4:] = False
    assert valid.float().mean() > 0.5
    err = (warped[0] - scene["ref"][:, None]).abs().mean(0)  # [D,H,W]
    assert err[1][valid].max() < 0.005, err[1][valid].max()
    # A wrong depth misaligns the images; the true one must be the clear best.
    assert err[0][valid].mean() > 5 * err[1][valid].mean()
    assert err[2][valid].mean() > 5 * err[1][valid].mean()


def _build_predictor(preset: str, seed: int = 0) -> DiffMVSPredictor:
    torch.manual_seed(seed)
    net = DiffMVSNet(PRESETS[preset]).eval()
    return DiffMVSPredictor(net, net.cfg, "cpu")


def _views(scene: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three views of the plane at the odd test resolution."""
    n, c = torch.tensor([0.15, -0.05, 1.0]), 4.0
    K = torch.tensor([[70.0, 0, 49.5], [0, 70.0, 34.5], [0, 0, 1]])
    Ts = [
        torch.eye(4),
        _extrinsic(_rot_y(3.0), torch.tensor([-0.3, 0.05, 0.1])),
        _extrinsic(_rot_y(-2.0), torch.tensor([0.25, -0.05, 0.0])),
    ]
    imgs = torch.stack([_render_plane(K, T, n, c, H_IN, W_IN)[0] for T in Ts]).clamp(0, 1)
    return imgs, K.expand(3, 3, 3).clone(), torch.stack(Ts)


@pytest.mark.parametrize("preset", ["diffmvs_blend", "casdiffmvs_blend"])
def test_predict_resolution_and_determinism(scene: dict, preset: str) -> None:
    pred = _build_predictor(preset)
    imgs, K, T = _views(scene)
    a = pred.predict(imgs, K, T, 2.0, 8.0, generator=torch.Generator().manual_seed(7))
    b = pred.predict(imgs, K, T, 2.0, 8.0, generator=torch.Generator().manual_seed(7))
    assert a.network_size == (64, 96)
    assert a.depth.shape == (H_IN, W_IN) and a.depth.dtype == torch.float32
    n_conf = 3 if preset.startswith("cas") else 2
    assert len(a.confidences) == n_conf
    assert all(c.shape == (H_IN, W_IN) for c in a.confidences)
    assert torch.isfinite(a.depth).all()
    # normalised inverse depth is clamped to [0,1] -> depth within the range (bilinear keeps it there)
    assert a.depth.min() >= 2.0 - 1e-4 and a.depth.max() <= 8.0 + 1e-3
    assert torch.equal(a.depth, b.depth), "same seed must give identical depth"
    for ca, cb in zip(a.confidences, b.confidences):
        assert torch.equal(ca, cb)
        assert ca.min() >= 0 and ca.max() <= 1
    c = pred.predict(imgs, K, T, 2.0, 8.0, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(a.depth, c.depth), "the diffusion noise had no effect"


def test_projection_matrices_rescale_intrinsics(scene: dict) -> None:
    pred = _build_predictor("diffmvs_blend")
    imgs, K, T = _views(scene)
    net_imgs, proj, depth_values, size = pred.prepare_inputs(imgs, K, T, 2.0, 8.0)
    assert size == (64, 96)
    assert len(net_imgs) == 3 and net_imgs[0].shape == (1, 3, 64, 96)
    sx, sy = 96 / W_IN, 64 / H_IN
    for name, s in {"stage1": 1 / 8, "stage2": 1 / 4, "stage3": 1 / 2, "stage4": 1.0}.items():
        mats = proj[name]
        assert mats.shape == (1, 3, 2, 4, 4)
        for v in range(3):
            expect = K[v].clone()
            expect[0] *= sx * s
            expect[1] *= sy * s
            torch.testing.assert_close(mats[0, v, 1, :3, :3], expect)
            torch.testing.assert_close(mats[0, v, 0], T[v])
            assert mats[0, v, 1, 3].abs().sum() == 0 and mats[0, v, 1, :3, 3].abs().sum() == 0
    assert depth_values.shape == (1, 384)
    torch.testing.assert_close(depth_values[0, [0, -1]], torch.tensor([1 / 8.0, 1 / 2.0]))
    # stage matrices from build_proj_matrices agree with the pixel grid they are used on:
    # the principal point of the 1/4 stage equals the full-res one times 1/4 (no half-pixel shift).
    full = build_proj_matrices(K, T)
    assert torch.allclose(full["stage2"][0, 0, 1, 0, 2], K[0, 0, 2] * 0.25)


def test_noise_generator_equals_explicit_list() -> None:
    torch.manual_seed(0)
    net = DiffMVSNet(PRESETS["casdiffmvs_blend"]).eval()
    imgs = [torch.rand(1, 3, 64, 64) for _ in range(2)]
    K = torch.tensor([[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]]).expand(2, 3, 3)
    T = torch.stack([torch.eye(4), _extrinsic(torch.eye(3), torch.tensor([0.2, 0.0, 0.0]))])
    proj = build_proj_matrices(K, T)
    dv = torch.linspace(1 / 6, 1 / 2, 384)[None]
    shapes = net.cfg.noise_shapes(1, 64, 64)
    assert shapes == [(1, 1, 16, 16), (1, 1, 32, 32)]
    g = torch.Generator().manual_seed(3)
    explicit = [torch.randn(s, generator=g) for s in shapes]
    with torch.inference_mode():
        a = net(imgs, proj, dv, noise=torch.Generator().manual_seed(3))
        b = net(imgs, proj, dv, noise=explicit)
        assert all(torch.equal(x, y) for x, y in zip(a["depth"], b["depth"]))
        with pytest.raises(ValueError, match="noise"):
            net(imgs, proj, dv, noise=explicit[:1])


def test_photometric_mask_defaults() -> None:
    assert DEFAULT_PHOTO_THRESHOLDS == (0.3, 0.5, 0.5)
    c0 = torch.tensor([[0.31, 0.3, 0.9]])
    c1 = torch.tensor([[0.51, 0.9, 0.5]])
    assert photometric_mask([c0, c1]).tolist() == [[True, False, False]]
    assert photometric_mask([c0, c1], (0.0, 0.0, 0.0)).tolist() == [[True, True, True]]
    with pytest.raises(ValueError):
        photometric_mask([c0, c1, c1], (0.3, 0.5))


def test_multi_step_ddim_uses_one_noise_map_per_step() -> None:
    from recon_ros.models.diffmvs.diffusion import ddim_time_pairs

    assert ddim_time_pairs(1000, 1) == [(999, -1)]
    assert ddim_time_pairs(1000, 2) == [(999, 499), (499, -1)]
    cfg = PRESETS["casdiffmvs_blend"].with_runtime(sampling_timesteps=(0, 2, 3), ddim_eta=(0.0, 1.0, 0.5))
    torch.manual_seed(0)
    net = DiffMVSNet(cfg).eval()
    imgs = [torch.rand(1, 3, 32, 64) for _ in range(2)]
    K = torch.tensor([[40.0, 0, 32], [0, 40.0, 16], [0, 0, 1]]).expand(2, 3, 3)
    T = torch.stack([torch.eye(4), _extrinsic(torch.eye(3), torch.tensor([0.2, 0.0, 0.0]))])
    proj = build_proj_matrices(K, T)
    dv = torch.linspace(1 / 6, 1 / 2, 384)[None]
    shapes = cfg.noise_shapes(1, 32, 64)
    assert shapes == [(1, 1, 8, 16)] * 2 + [(1, 1, 16, 32)] * 3
    noise = [torch.randn(s) for s in shapes]
    with torch.inference_mode():
        out = net(imgs, proj, dv, noise=noise)
        assert out["depth"][-1].shape == (1, 32, 64) and torch.isfinite(out["depth"][-1]).all()
        # the later DDIM steps really consume their maps: changing the last one changes the result
        other = net(imgs, proj, dv, noise=[*noise[:-1], torch.randn(shapes[-1])])
        assert not torch.equal(out["depth"][-1], other["depth"][-1])
        with pytest.raises(ValueError, match="noise"):
            net(imgs, proj, dv, noise=noise[:-1])


def test_warp_accepts_camera_pairs_and_single_depth(scene: dict) -> None:
    cam = scene["cam"]
    a = warp_to_reference(scene["src"][None], cam[None, 1], cam[None, 0], scene["depth"][None])
    b = warp_to_reference(
        scene["src"][None], full_projection(cam[None, 1]), full_projection(cam[None, 0]), scene["depth"][None, None]
    )
    assert a.shape == (1, 3, 1, 48, 64)
    assert torch.equal(a, b)
