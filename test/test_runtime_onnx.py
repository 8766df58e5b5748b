"""ONNX Runtime parity of the exported DiffMVS / CasDiffMVS graphs on the upstream fixtures.

FP32: same criterion as the fixtures, |ref - ours| <= 1e-4 + 1e-4*|ref| (measured max |d|: 1e-5 DiffMVS,
9e-6 CasDiffMVS). FP16 variant (ORT CPU; nodes without FP16 kernels run in FP32 between FP16 casts, so
this measures the FP16 storage/rounding error, not TensorRT's kernels): measured max |d| on the
fixtures was 8.8e-3 m depth (range 2-6 m) / 2.0e-3 confidence for DiffMVS and 6.1e-3 m / 5.2e-3 for
CasDiffMVS; the tolerances below are ~2.3x / ~2.9x the worst of those.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon_ros.testing import require_fixture

ort = pytest.importorskip("onnxruntime")

FP16_DEPTH_ATOL = 0.02  # metres
FP16_CONF_ATOL = 0.015


def _compare(ours: dict, fixture, atol: float, rtol: float, conf_atol: float | None = None) -> list[str]:
    bad = []
    with np.load(fixture / "outputs.npz") as ref:
        assert sorted(ours) == sorted(ref.files)
        for name in ref.files:
            r = ref[name].astype(np.float64)
            a = conf_atol if (conf_atol is not None and name.startswith("photometric")) else atol
            d = np.abs(r - ours[name])
            if ours[name].shape != r.shape or (d > a + rtol * np.abs(r)).any():
                bad.append(f"{name} max|d|={d.max():.3g}")
    return bad


@pytest.mark.parametrize("model", ["diffmvs", "casdiffmvs"])
def test_fixture_run_onnxruntime_fp32(model: str) -> None:
    from recon_ros.models.diffmvs.fixture_run import run_fixture

    fixture = require_fixture("diffmvs", model)
    out = run_fixture(model, fixture, backend="onnxruntime")
    assert not any(k.startswith("debug_") for k in out)
    bad = _compare(out, fixture, 1e-4, 1e-4)
    assert not bad, bad


@pytest.mark.parametrize("model", ["diffmvs", "casdiffmvs"])
def test_fp16_variant_within_measured_tolerance(model: str, tmp_path) -> None:
    from recon_ros.models.diffmvs.fixture_run import build_fixture_model, flatten_outputs, load_fixture_inputs
    from recon_ros.runtime.runners import DiffMVSRunner

    fixture = require_fixture("diffmvs", model)
    net, _ = build_fixture_model(fixture)
    imgs, proj, depth_values, noise = load_fixture_inputs(fixture)
    runner = DiffMVSRunner(net, "onnxruntime", "cpu", cache_dir=tmp_path, fp16=True, threads=1)
    out = flatten_outputs(runner(imgs, proj, depth_values, noise))
    bad = _compare(out, fixture, FP16_DEPTH_ATOL, 0.0, conf_atol=FP16_CONF_ATOL)
    assert not bad, bad
    # The variant really is FP16: weights of the convolutions are stored as float16.
    import onnx

    onnx_files = sorted(tmp_path.glob("onnx/*_fp16.onnx"))
    assert len(onnx_files) == 1
    g = onnx.load(str(onnx_files[0])).graph
    n16 = sum(i.data_type == onnx.TensorProto.FLOAT16 for i in g.initializer)
    assert n16 > len(g.initializer) // 2
    # Softmax and divisions stay FP32 (their inputs are float32 casts or float32 tensors).
    assert any(n.op_type == "Softmax" for n in g.node)
    # ... and a geometry-free re-run reproduces the same numbers (export cache hit, same session inputs).
    again = flatten_outputs(runner(imgs, proj, depth_values, noise))
    for k in out:
        np.testing.assert_array_equal(out[k], again[k])


def test_fp16_conversion_keeps_io_types_and_blocks_tiny_constants(tmp_path) -> None:
    from onnx import TensorProto, helper

    from recon_ros.runtime.fp16 import convert_fp16

    # x -> Conv(w) -> Add(1e-8) -> Softmax -> y : Conv in FP16, Add (eps below FP16 range) and Softmax FP32.
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 1, 1], [1.0, 2.0])
    eps = helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-8])
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"]),
            helper.make_node("Add", ["c", "eps"], ["a"]),
            helper.make_node("Softmax", ["a"], ["y"], axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])],
        [w, eps],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    out = convert_fp16(model, tmp_path / "m.onnx")
    types = {v.name: v.type.tensor_type.elem_type for v in [*out.graph.value_info, *out.graph.output]}
    assert types["y"] == TensorProto.FLOAT and types["c"] == TensorProto.FLOAT16 and types["a"] == TensorProto.FLOAT
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    ref = torch.softmax(torch.tensor(np.concatenate([x, 2 * x], 1)), 1).numpy()
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref, atol=1e-3)


def test_fp16_export_cache_is_keyed_by_its_fp32_layers(tmp_path) -> None:
    """A cached FP16 export made with other FP32 layers (or other conversion code) is stale, not reused."""
    import json

    from recon_ros.runtime.export import _cached, export_key

    sha = "ab" * 32
    assert export_key(sha, False, ("/head/",)) == sha  # FP32: weights and settings only
    assert export_key(sha, True, ("/head/",)) != export_key(sha, True, ("/head/", "/norm/"))
    assert export_key(sha, True, ("/a/", "/b/")) == export_key(sha, True, ("/b/", "/a/"))  # order-free
    onnx = tmp_path / "net_fp16.onnx"
    onnx.write_bytes(b"stand-in")
    meta = {"name": "net", "onnx_path": str(onnx), "input_names": ["x"], "output_names": ["y"],
            "input_shapes": {"x": [1]}, "weights_sha256": export_key(sha, True, ("/head/",)), "fp16": True}
    (tmp_path / "net_fp16.json").write_text(json.dumps(meta))
    assert _cached(tmp_path, "net", True, sha, ("/head/",)) is not None
    assert _cached(tmp_path, "net", True, sha, ("/head/", "/norm/")) is None
    assert _cached(tmp_path, "net", True, "cd" * 32, ("/head/",)) is None  # other weights
