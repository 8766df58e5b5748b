"""ONNX Runtime parity of the exported MV-DUSt3R / MV-DUSt3R+ graphs on the upstream fixtures.

Criterion |ref - ours| <= 1e-4 + 1e-4*|ref| for pts3d and conf (tighter than the fixtures' recommended
pts3d atol of 1e-3). One export + one forward per model (the reduced MVDp still costs ~30 s on one
CPU thread), so MVDp exports only head path 3 (all four paths still run through the decoder and the cross-reference
blocks); path 3 also checks the slot swap of a non-zero path.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recon_ros.testing import require_fixture

pytest.importorskip("onnxruntime")


def _check(ours: np.ndarray, ref: np.ndarray, name: str) -> None:
    assert ours.shape == ref.shape, name
    d = np.abs(ours.astype(np.float64) - ref)
    limit = 1e-4 + 1e-4 * np.abs(ref)
    assert (d <= limit).all(), f"{name}: max|d|={d.max():.3g}, worst ratio {(d / limit).max():.3g}"


def test_mvd_fixture_run_onnxruntime() -> None:
    from recon_ros.models.mvdust3r.fixture_run import run_fixture

    fixture = require_fixture("mvdust3r", "MVD")
    out = run_fixture("mvd", fixture, backend="onnxruntime")
    with np.load(fixture / "outputs.npz") as ref:
        _check(out["pts3d"], ref["pts3d"], "pts3d")
        _check(out["conf"], ref["conf"], "conf")
    with np.load(fixture / "poses.npz") as poses:
        np.testing.assert_array_equal(out["mask_pnp"], poses["mask_pnp"])


def test_mvdp_onnxruntime_path_3(tmp_path) -> None:
    from recon_ros.models.mvdust3r.checkpoint import load_mvdust3r
    from recon_ros.models.mvdust3r.config import from_manifest
    from recon_ros.runtime.runners import MVDust3RRunner

    fixture = require_fixture("mvdust3r", "MVDp")
    config = from_manifest(json.loads((fixture / "manifest.json").read_text()))
    net = load_mvdust3r(fixture / "weights.pt", config=config)
    images = torch.from_numpy(np.load(fixture / "inputs.npz")["img"]).float()[None]
    out = MVDust3RRunner(net, "onnxruntime", "cpu", cache_dir=tmp_path, threads=1)(images, paths=(3,))
    assert sorted(p.name for p in (tmp_path / "onnx").glob("*.onnx")) == ["mvdp_v4_p3.onnx"]
    with np.load(fixture / "outputs.npz") as ref:
        _check(out["pts3d"][0].numpy(), ref["pts3d"][[3]], "pts3d")
        _check(out["conf"][0].numpy(), ref["conf"][[3]], "conf")


def test_expm1_symbolic_is_accurate_for_small_and_large_arguments(tmp_path) -> None:
    import onnxruntime as ort

    from recon_ros.models.mvdust3r.export import register_expm1

    class M(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.expm1(x)

    register_expm1()
    x = torch.tensor([0.0, 1e-7, 1e-4, 0.3, 2.0, 12.0])
    torch.onnx.export(M(), (x,), str(tmp_path / "e.onnx"), input_names=["x"], opset_version=17, dynamo=False)
    got = ort.InferenceSession(str(tmp_path / "e.onnx"), providers=["CPUExecutionProvider"]).run(None, {
        "x": x.numpy()})[0]
    ref = np.expm1(x.numpy().astype(np.float64))
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=0)  # exp(x)-1 would be off by ~1e-1 at 1e-7
