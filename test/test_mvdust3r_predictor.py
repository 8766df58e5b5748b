"""Engine-facing predictor: view ordering, intrinsics, token cache, poses and depth ranges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon_ros.models.mvdust3r import MVDust3R, MVDust3RConfig, MVDust3RPredictor, preprocess_views
from recon_ros.models.mvdust3r.predictor import depth_ranges

SIZES = dict(
    enc_embed_dim=32,
    enc_depth=1,
    enc_num_heads=2,
    dec_embed_dim=32,
    dec_depth=1,
    dec_num_heads=2,
    skip_dim=4,
    gs_mlp_dim=16,
)


def make_predictor(m_ref: bool, **kw) -> MVDust3RPredictor:
    torch.manual_seed(0)
    model = MVDust3R(MVDust3RConfig(**SIZES, m_ref_flag=m_ref, n_ref=4 if m_ref else 1))
    return MVDust3RPredictor(model, "cpu", **kw)


def images(n: int, hw: tuple[int, int] = (240, 320), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


K_RAW = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])


def test_mvd_prediction_with_known_intrinsics() -> None:
    pred = make_predictor(False)
    imgs = images(3)
    out = pred.predict(imgs, K=[K_RAW] * 3)
    assert out.pts3d.shape == (3, 224, 224, 3) and out.conf.shape == (3, 224, 224)
    assert out.c2w.shape == (3, 4, 4) and out.depth_ranges.shape == (3, 2)
    assert out.order == [0, 1, 2] and out.focal is None
    np.testing.assert_allclose(out.K224, preprocess_views(imgs, [K_RAW] * 3).K224)
    # pointmaps are the network's path-0 outputs
    prep = preprocess_views(imgs)
    with torch.no_grad():
        ref = pred.model(prep.images[None])
    np.testing.assert_allclose(out.pts3d, ref["pts3d"][0, 0].numpy(), atol=1e-6)


def test_unknown_intrinsics_use_focal_estimate() -> None:
    out = make_predictor(False).predict(images(2))
    assert out.focal is not None
    np.testing.assert_allclose(out.K224[:, 0, 0], out.focal, rtol=1e-6)
    np.testing.assert_allclose(out.K224[:, :2, 2], 112.0)


def test_mvdp_needs_four_views() -> None:
    pred = make_predictor(True)
    with pytest.raises(ValueError, match="at least 4 views"):
        pred.predict(images(3))


def test_mvdp_reorders_references_and_maps_results_back() -> None:
    pred = make_predictor(True, paths=(0, 2))
    imgs = images(5)
    out = pred.predict(imgs)
    assert out.order == [0, 3, 2, 1, 4]
    prep = preprocess_views([imgs[i] for i in out.order])
    with torch.no_grad():
        ref = pred.model(prep.images[None], paths=[0, 2])
    net_pts = ref["pts3d"][0].numpy()  # [path, slot, ...]; path 0 slot i = network input i
    for i, j in enumerate(out.order):
        np.testing.assert_allclose(out.pts3d[j], net_pts[0, i], atol=1e-6)
    # path 2 (reference = network input 2 = image order[2]); its slots 0 and 2 are swapped
    extra_pts, _ = out.extra_paths[2]
    np.testing.assert_allclose(extra_pts[out.order[2]], net_pts[1, 0], atol=1e-6)
    np.testing.assert_allclose(extra_pts[out.order[0]], net_pts[1, 2], atol=1e-6)


def test_keyframe_cache_gives_fresh_results() -> None:
    pred = make_predictor(False)
    frames = images(4, hw=(224, 224), seed=3)
    K = [K_RAW] * 3
    pred.predict(frames[:3], K, keys=["a", "b", "c"])
    misses = pred.cache.misses
    cached = pred.predict(frames[1:4], K, keys=["b", "c", "d"])
    assert pred.cache.misses == misses + 1  # only the new keyframe was encoded
    fresh = pred.predict(frames[1:4], K)
    np.testing.assert_allclose(cached.pts3d, fresh.pts3d, atol=1e-5)
    np.testing.assert_allclose(cached.conf, fresh.conf, atol=1e-5)


def test_depth_ranges_in_camera_frame() -> None:
    # camera 1 sits at z = -1 looking along +z: its depths are world z + 1
    pts = np.zeros((2, 4, 4, 3), dtype=np.float32)
    pts[..., 2] = np.linspace(1.0, 5.0, 16).reshape(4, 4)
    c2w = np.repeat(np.eye(4, dtype=np.float32)[None], 2, axis=0)
    c2w[1, 2, 3] = -1.0
    mask = np.ones((2, 4, 4), dtype=bool)
    r = depth_ranges(pts, c2w, mask, percentiles=(0.0, 100.0))
    np.testing.assert_allclose(r, [[1.0, 5.0], [2.0, 6.0]], rtol=1e-6)
