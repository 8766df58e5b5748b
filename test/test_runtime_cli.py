"""`recon-ros export`: the command writes graphs that ONNX Runtime runs to the torch result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recon_ros.cli import main
from recon_ros.testing import require_fixture


def test_export_mvdust3r_split_graphs_match_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from recon_ros.pipeline.learned_pose import load_pose_model

    weights = require_fixture("mvdust3r", "MVD") / "weights.pt"
    out = tmp_path / "onnx" / "mvd_v2.onnx"
    assert main(["export", "--model", "mvdust3r", "--checkpoint", str(weights), "--views", "2",
                 "--graph", "split", "--out", str(out)]) == 0
    enc, dec = tmp_path / "onnx" / "mvd_v2_encoder.onnx", tmp_path / "onnx" / "mvd_v2_decoder.onnx"
    assert enc.is_file() and dec.is_file() and not out.exists()

    torch.manual_seed(0)
    images = torch.rand(1, 2, 3, 224, 224) * 2 - 1
    net = load_pose_model(weights, "mvdust3r")
    with torch.inference_mode():
        ref = net(images, paths=[0])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    tokens = ort.InferenceSession(str(enc), so).run(None, {"images": images.numpy()})[0]
    decoder = ort.InferenceSession(str(dec), so)
    pts3d, conf = decoder.run(["pts3d", "conf"], {"tokens": tokens, "images": images.numpy()})
    # Same rule as the runtime parity tests: 1e-4 absolute + 1e-4 relative (pointmap values reach ~10^3).
    np.testing.assert_allclose(pts3d, ref["pts3d"].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conf, ref["conf"].numpy(), rtol=1e-4, atol=1e-4)


def test_export_refuses_bad_diffmvs_size(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    weights = require_fixture("diffmvs", "diffmvs") / "weights.pt"
    code = main(["export", "--model", "diffmvs_blend", "--checkpoint", str(weights), "--height", "100",
                 "--out", str(tmp_path / "x.onnx")])
    assert code == 2 and "--height/--width must be multiples of 32, got 100x640" in caplog.text
    assert not (tmp_path / "x.onnx").exists()
