"""ONNX export of the DiffMVS port: onnxruntime on the fixture networks matches the upstream outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recon_ros.models.diffmvs.export import export_onnx, output_names
from recon_ros.models.diffmvs.fixture_run import build_fixture_model, load_fixture_inputs
from recon_ros.models.diffmvs.geometry import _invert_rigid_projection
from recon_ros.testing import require_fixture


def test_closed_form_inverse_matches_linalg() -> None:
    """The export-time homography inverse equals torch.linalg.inv on camera-like matrices."""
    g = torch.Generator().manual_seed(0)
    mats = torch.zeros(5, 4, 4)
    for i in range(5):
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g))
        K = torch.tensor([[100.0 + i, 0, 40], [0, 95.0, 30], [0, 0, 1]])
        mats[i, :3, :3] = K @ q
        mats[i, :3, 3] = K @ torch.randn(3, generator=g)
        mats[i, 3, 3] = 1
    torch.testing.assert_close(_invert_rigid_projection(mats), torch.linalg.inv(mats), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["diffmvs", "casdiffmvs"])
def test_onnxruntime_matches_fixture_outputs(model: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    fixture = require_fixture("diffmvs", model)
    net, _ = build_fixture_model(fixture)
    imgs, proj, depth_values, noise = load_fixture_inputs(fixture)
    _, _, height, width = imgs[0].shape
    path = export_onnx(net, tmp_path / f"{model}.onnx", len(imgs), height, width)

    feeds = {
        "images": torch.cat(imgs).numpy(),
        "proj_matrices": torch.cat([proj[f"stage{s}"] for s in (1, 2, 3)]).numpy(),
        "depth_values": depth_values.numpy(),
    }
    feeds.update({f"noise_{i:03d}": n.numpy() for i, n in enumerate(noise)})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(feeds)
    outs = session.run(None, feeds)

    report, failures = [], []
    with np.load(fixture / "outputs.npz") as ref:
        assert sorted(ref.files) == sorted(output_names(net))
        for name, ours in zip(output_names(net), outs):
            r = ref[name]
            assert ours.shape == r.shape, name
            diff = np.abs(r.astype(np.float64) - ours)
            report.append(f"{name}={diff.max():.2g}")
            if (diff > 1e-4 + 1e-4 * np.abs(r)).any():
                failures.append(name)
    print(f"{model} onnxruntime max|d|: " + ", ".join(report))
    assert not failures, f"out of tolerance: {failures}; max|d|: {', '.join(report)}"
