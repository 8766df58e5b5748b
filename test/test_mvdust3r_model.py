"""MV-DUSt3R(+) network structure, path selection, token cache, preprocessing and view ordering."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recon_ros.models.mvdust3r import (
    EncoderTokenCache,
    MVDust3R,
    MVDust3RConfig,
    from_manifest,
    preset,
    reference_order,
    slot_to_view,
)
from recon_ros.models.mvdust3r.fixture_run import run_fixture
from recon_ros.models.mvdust3r.preprocess import plan_resize, preprocess_views
from recon_ros.testing import require_fixture

# Small random networks for behaviour tests (the fixtures cover numerical parity).
TINY = dict(
    enc_embed_dim=32,
    enc_depth=1,
    enc_num_heads=2,
    dec_embed_dim=32,
    dec_depth=2,
    dec_num_heads=2,
    skip_dim=8,
    gs_mlp_dim=16,
    img_size=(64, 64),
)


def tiny_model(m_ref: bool, seed: int = 0) -> MVDust3R:
    torch.manual_seed(seed)
    cfg = MVDust3RConfig(**TINY, m_ref_flag=m_ref, n_ref=4 if m_ref else 1)
    model = MVDust3R(cfg).eval()
    with torch.no_grad():  # non-trivial norms / BN statistics
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ".norm" in name:
                p.add_(0.1 * torch.randn_like(p))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize(("name", "folder"), [("mvd", "MVD"), ("mvdp", "MVDp")])
def test_full_size_keys_and_shapes_match_official(name: str, folder: str) -> None:
    manifest = json.loads((require_fixture("mvdust3r", folder) / "manifest.json").read_text())
    official = manifest["official_state_dict"]
    assert from_manifest(manifest, "official_config") == preset(name)
    with torch.device("meta"):
        model = MVDust3R(preset(name))
    mine = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    ref = [(k, list(s), d) for k, s, d in official["keys"]]
    assert len(mine) == official["n_keys"], f"{len(mine)} keys, official {official['n_keys']}"
    missing = sorted({k for k, *_ in ref} - {k for k, *_ in mine})
    extra = sorted({k for k, *_ in mine} - {k for k, *_ in ref})
    assert not missing and not extra, f"missing {missing[:3]}, unexpected {extra[:3]}"
    assert mine == ref, "same keys but shapes, dtypes or order differ"
    assert sum(p.numel() for p in model.parameters()) == official["n_params"]


@pytest.mark.parametrize("folder", ["MVD", "MVDp"])
def test_reduced_config_from_manifest_loads_weights(folder: str) -> None:
    path = require_fixture("mvdust3r", folder)
    cfg = from_manifest(json.loads((path / "manifest.json").read_text()))
    with torch.device("meta"):
        model = MVDust3R(cfg)
    state = torch.load(path / "weights.pt", weights_only=True)
    assert model.state_dict().keys() == state.keys()
    assert all(model.state_dict()[k].shape == v.shape for k, v in state.items())


def test_slot_table() -> None:
    assert slot_to_view(5, 1) == [[0, 1, 2, 3, 4]]
    assert slot_to_view(4, 4)[2] == [2, 1, 0, 3]


def test_path_selection_matches_all_paths() -> None:
    model = tiny_model(m_ref=True)
    images = torch.randn(1, 5, 3, 64, 64)
    with torch.no_grad():
        full = model(images, gaussians=True)
        some = model(images, paths=[3, 1], gaussians=True)
    for key, value in some.items():
        assert value.shape[1] == 2
        diff = (value - full[key][:, [3, 1]]).abs().max().item()
        assert diff <= 1e-6, f"{key}: max |Δ| {diff}"
    with pytest.raises(ValueError, match="paths"):
        model(images, paths=[4])


def test_no_gaussians_unless_asked() -> None:
    model = tiny_model(m_ref=False)
    with torch.no_grad():
        out = model(torch.randn(1, 2, 3, 64, 64))
    assert set(out) == {"pts3d", "conf"}
    assert out["pts3d"].shape == (1, 1, 2, 64, 64, 3)
    assert (out["conf"] >= 1).all()


def test_too_few_views_for_mvdp() -> None:
    model = tiny_model(m_ref=True)
    with pytest.raises(ValueError, match="at least 4 views"):
        model(torch.randn(1, 3, 3, 64, 64))


def test_token_cache_sliding_window_equals_fresh_run() -> None:
    model = tiny_model(m_ref=True)
    frames = torch.randn(6, 3, 64, 64)
    cache = EncoderTokenCache(max_entries=4)
    with torch.no_grad():
        first = cache.encode(model, frames[0:4], keys=[0, 1, 2, 3])
        model.decode(first, frames[None, 0:4])
        assert cache.misses == 4
        # slide by one keyframe: only keyframe 4 is encoded
        window = [1, 2, 3, 4]
        tokens = cache.encode(model, frames[window], keys=window)
        assert (cache.hits, cache.misses) == (3, 5)
        cached = model.decode(tokens, frames[None, window], gaussians=True)
        fresh = model(frames[None, window], gaussians=True)
    for key in fresh:
        diff = (cached[key] - fresh[key]).abs().max().item()
        assert diff <= 1e-5, f"{key}: max |Δ| {diff}"
    assert len(cache) == 4 and 0 not in cache  # LRU bound evicted keyframe 0


def test_preprocess_matches_upstream_loader_bit_exactly() -> None:
    folder = require_fixture("mvdust3r", "preprocess")
    manifest = json.loads((folder / "manifest.json").read_text())
    ref = np.load(folder / "preprocess.npz")
    out = run_fixture("preprocess", folder)
    for i, item in enumerate(manifest["items"]):
        plan = plan_resize(tuple(item["raw_HW"]))
        assert list(plan.resized_wh) == item["resized_WH"] and plan.resample == item["resample"]
        assert list(plan.crop_box_xyxy) == item["crop_box_xyxy"]
        diff = int(np.abs(out[f"crop_uint8_{i}"].astype(int) - ref[f"crop_uint8_{i}"]).max())
        assert diff == 0, f"crop {i}: max |Δ| {diff} grey levels"
        np.testing.assert_array_equal(out[f"true_shape_{i}"], ref[f"true_shape_{i}"])


def test_normalisation_matches_fixture_inputs() -> None:
    inputs = np.load(require_fixture("mvdust3r", "MVD") / "inputs.npz")
    prep = preprocess_views(list(inputs["img_uint8"]))  # already 224x224: resize is the identity
    assert np.array_equal(prep.images.numpy(), inputs["img"])


def test_intrinsics_follow_resize_and_crop() -> None:
    raw = np.zeros((240, 320, 3), dtype=np.uint8)
    K = np.array([[300.0, 0.0, 159.5], [0.0, 310.0, 119.5], [0.0, 0.0, 1.0]])
    prep = preprocess_views([raw], [K])
    sx, sy = 299 / 320, 224 / 240
    expected = np.array(
        [[300 * sx, 0, (159.5 + 0.5) * sx - 0.5 - 37], [0, 310 * sy, (119.5 + 0.5) * sy - 0.5], [0, 0, 1]]
    )
    np.testing.assert_allclose(prep.K224[0], expected, rtol=1e-12)
    # a 3D point projects to the same place whether it goes through K224 or through K and the resize/crop
    X = np.array([0.3, -0.2, 2.0])
    u_raw = (K @ X)[:2] / X[2]
    u_crop = (prep.K224[0] @ X)[:2] / X[2]
    np.testing.assert_allclose(u_crop, (u_raw + 0.5) * [sx, sy] - 0.5 - [37, 0], atol=1e-9)


@pytest.mark.parametrize(
    ("n", "perm"),
    [
        (2, [0, 1]),
        (4, [0, 3, 2, 1]),
        (8, [0, 3, 6, 1, 4, 5, 2, 7]),
        (12, [0, 4, 7, 10, 1, 5, 6, 2, 8, 9, 3, 11]),
    ],
)
def test_reference_order(n: int, perm: list[int]) -> None:
    order, inverse = reference_order(n)
    assert order == perm
    assert [order[i] for i in inverse] == list(range(n))


def test_run_fixture_rejects_other_backends_and_models(tmp_path) -> None:
    with pytest.raises(ValueError, match="backend"):
        run_fixture("mvd", tmp_path, backend="onnx")
    with pytest.raises(ValueError, match="unknown fixture model"):
        run_fixture("dust3r", tmp_path)


def test_export_trace_leaves_eager_model_intact() -> None:
    """Tracing with torch.export must not leave fake tensors in the RoPE table cache."""
    model = tiny_model(m_ref=False)
    images = torch.randn(1, 2, 3, 64, 64)

    class Encoder(torch.nn.Module):
        def __init__(self, net: MVDust3R) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.encode(x)

    model.rope._tables.clear()
    program = torch.export.export(Encoder(model), (images,))
    with torch.no_grad():
        eager = model.encode(images)
        exported = program.module()(images)
    assert isinstance(eager, torch.Tensor) and type(eager) is torch.Tensor
    assert (eager - exported).abs().max().item() <= 1e-5
