"""MV-DUSt3R(+) at sizes other than 224x224, against upstream, and the full-field-of-view input mode.

Reference data: ``test/data/mvdust3r_upstream/`` made by ``generate.py`` in that folder (upstream
facebookresearch/mvdust3r at 18872ead676beac7af4a919fd7e02f5d1673c2b5, CPU, one thread, float32, PyTorch
RoPE fallback, the shared fixtures' reduced MVD / MVDp weights; no upstream code is in this repository):

* ``nonsquare.npz``: the MVD fixture's four views cut to 160x224 (rows 32..191) and upstream's pointmaps /
  confidences at pixels ``[::5, ::5]``, for MVD and MVDp (all four paths), and for MVD on the transposed
  (portrait, 224x160) views as upstream returns them (its head wrapper transposes portrait results);
* ``preprocess_fov.npz``: synthetic 4:3 and 16:9 camera images with upstream's demo loader output
  (``load_images(size=224)``, the square crop) and its long-side loader branch with the long side 224
  (what our ``"full_fov"`` mode reproduces).

Tolerances are the shared fixtures' recommended ones (pts3d rtol 1e-4 / atol 1e-3, conf rtol 1e-4 /
atol 1e-4): the same port at 224x224 stays within 9 % of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recon_ros.models.mvdust3r.checkpoint import load_mvdust3r
from recon_ros.models.mvdust3r.config import MVDust3RConfig, from_manifest
from recon_ros.models.mvdust3r.network import MVDust3R
from recon_ros.models.mvdust3r.preprocess import (
    crop_image,
    crop_image_full_fov,
    full_fov_size,
    normalize,
    preprocess_views,
)
from recon_ros.testing import require_fixture

DATA = Path(__file__).parent / "data" / "mvdust3r_upstream"
SUB = 5


def _load(name: str) -> tuple[MVDust3R, dict]:
    folder = require_fixture("mvdust3r", name)
    manifest = json.loads((folder / "manifest.json").read_text())
    return load_mvdust3r(folder / "weights.pt", config=from_manifest(manifest)), manifest["tolerances"]["recommended"]


def _assert_within(name: str, mine: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> None:
    assert mine.shape == ref.shape, f"{name}: shape {mine.shape} != upstream {ref.shape}"
    ratio = np.abs(mine.astype(np.float64) - ref) / (atol + rtol * np.abs(ref.astype(np.float64)))
    assert ratio.max() <= 1.0, f"{name}: worst |diff| / tolerance = {ratio.max():.3g}"


@pytest.fixture(scope="module")
def nonsquare() -> dict[str, np.ndarray]:
    return dict(np.load(DATA / "nonsquare.npz"))


def _run(net: MVDust3R, u8: np.ndarray, paths: list[int] | None = None) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = net(normalize(u8).unsqueeze(0), paths=paths)
    return {k: v[0].numpy() for k, v in out.items()}


def test_mvd_160x224_matches_upstream(nonsquare) -> None:
    net, tol = _load("MVD")
    u8 = nonsquare["img_uint8"]
    assert u8.shape == (4, 160, 224, 3)
    out = _run(net, u8)
    assert out["pts3d"].shape == (1, 4, 160, 224, 3)
    _assert_within("pts3d", out["pts3d"][:, :, ::SUB, ::SUB], nonsquare["mvd_pts3d_sub"], **tol["pts3d"])
    _assert_within("conf", out["conf"][:, :, ::SUB, ::SUB], nonsquare["mvd_conf_sub"], **tol["conf"])


def test_mvd_portrait_matches_upstream_transposed(nonsquare) -> None:
    """Portrait views (224x160): our output keeps the image layout; upstream's is transposed."""
    net, tol = _load("MVD")
    u8 = np.ascontiguousarray(nonsquare["img_uint8"].transpose(0, 2, 1, 3))
    out = _run(net, u8)
    assert out["pts3d"].shape == (1, 4, 224, 160, 3)
    pts = out["pts3d"].transpose(0, 1, 3, 2, 4)[:, :, ::SUB, ::SUB]
    conf = out["conf"].transpose(0, 1, 3, 2)[:, :, ::SUB, ::SUB]
    _assert_within("pts3d", pts, nonsquare["mvd_portrait_pts3d_sub"], **tol["pts3d"])
    _assert_within("conf", conf, nonsquare["mvd_portrait_conf_sub"], **tol["conf"])


def test_mvdp_160x224_matches_upstream(nonsquare) -> None:
    """Paths 0 and 3 (reference path and a swapped-slot path); the decoder runs all four either way."""
    net, tol = _load("MVDp")
    out = _run(net, nonsquare["img_uint8"], paths=[0, 3])
    for j, p in enumerate((0, 3)):
        ref_pts, ref_conf = nonsquare["mvdp_pts3d_sub"][p], nonsquare["mvdp_conf_sub"][p]
        _assert_within(f"pts3d path {p}", out["pts3d"][j][:, ::SUB, ::SUB], ref_pts, **tol["pts3d"])
        _assert_within(f"conf path {p}", out["conf"][j][:, ::SUB, ::SUB], ref_conf, **tol["conf"])


def test_sizes_beyond_the_configuration_are_refused() -> None:
    cfg = MVDust3RConfig()
    assert cfg.grid_for(160, 224) == (10, 14)
    assert cfg.grid_for(224, 128) == (14, 8)
    for h, w in ((170, 224), (240, 224), (224, 0)):
        with pytest.raises(ValueError, match="multiples of 16"):
            cfg.grid_for(h, w)


def test_preprocessing_matches_upstream_loaders() -> None:
    """Square mode = upstream demo loader; full_fov = upstream's long-side branch at 224 (bit-exact)."""
    data = np.load(DATA / "preprocess_fov.npz")
    n = len([k for k in data.files if k.startswith("raw_")])
    assert n >= 5
    for i in range(n):
        raw = data[f"raw_{i}"]
        np.testing.assert_array_equal(crop_image(raw)[0], data[f"square_{i}"])
        fov, plan = crop_image_full_fov(raw)
        np.testing.assert_array_equal(fov, data[f"fov_{i}"])
        assert full_fov_size(raw.shape[:2]) == fov.shape[:2]
        # 4:3 keeps (almost) the whole image: at most 15 rows of 224 lost to the multiple-of-16 crop
        assert fov.shape[1] == 224 and plan.resized_wh[1] - fov.shape[0] < 16


def test_full_fov_mixed_aspect_views_share_one_size() -> None:
    rng = np.random.default_rng(0)
    views = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)]
    K = [
        np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]]),
        np.array([[400.0, 0, 319.5], [0, 400, 179.5], [0, 0, 1]]),
    ]
    prep = preprocess_views(views, K, mode="full_fov")
    assert prep.images.shape == (2, 3, 112, 224)  # 16:9 -> 224x112 is the common size
    # The principal point stays centred: the crops are centred on the resized image.
    np.testing.assert_allclose(prep.K224[:, :2, 2], [[111.5, 55.5], [111.5, 55.5]], atol=0.5)
    with pytest.raises(ValueError, match="input mode"):
        preprocess_views(views, K, mode="wide")


def test_onnxruntime_split_graphs_at_160x224_match_torch(tmp_path) -> None:
    """Encoder and decoder graphs exported at 160x224 (static shapes, per-size names) run like torch."""
    from recon_ros.models.mvdust3r.predictor import MVDust3RPredictor
    from recon_ros.runtime.runners import MVDust3RRunner

    torch.manual_seed(0)
    tiny = dict(enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=32, dec_depth=1, dec_num_heads=2,
                skip_dim=4, gs_mlp_dim=16)
    net = MVDust3R(MVDust3RConfig(**tiny)).eval()
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(3)]
    K = [np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])] * 3
    ref = MVDust3RPredictor(net, "cpu", input_mode="full_fov").predict(frames, K)
    runner = MVDust3RRunner(net, "onnxruntime", "cpu", cache_dir=tmp_path, threads=1)
    out = MVDust3RPredictor(net, "cpu", runner=runner, input_mode="full_fov").predict(frames, K, keys=[1, 2, 3])
    assert out.pts3d.shape == (3, 160, 224, 3)
    # Same float32 computation in another runtime (only rounding differs): the fixtures' conf tolerance.
    np.testing.assert_allclose(out.pts3d, ref.pts3d, rtol=1e-4, atol=1e-4)
    names = {p.name for p in (tmp_path / "onnx").glob("*.onnx")}
    assert names == {"mvd_enc_v3_160x224.onnx", "mvd_dec_v3_p0_160x224.onnx"}
