"""A TensorRT engine proves itself before use (recon_ros.runtime.verify), with ONNX Runtime standing in
for the engine: no TensorRT or GPU here. A deliberately perturbed graph -- the depth output scaled by
3 % (a "scale jump"), or one weight tensor changed -- must be refused with an error naming the TensorRT
version, the GPU and the deviation; the faithful graph must pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from recon_ros.models.diffmvs import PRESETS, DiffMVSNet
from recon_ros.runtime.backends import OnnxRuntimeBackend
from recon_ros.runtime.export import export_diffmvs
from recon_ros.runtime.runners import DiffMVSRunner
from recon_ros.runtime.verify import (
    KNOWN_BAD_RUNS,
    TOLERANCE,
    EngineVerificationError,
    check_tensorrt_version,
    deviation,
    known_bad_reason,
    sample_path_for,
    verify_engine,
)

PLATFORM = {"tensorrt_version": "10.7.0.23", "gpu_name": "Orin (sm 8.7)"}


def _scaled_output(src: Path, dst: Path, output: str, factor: float) -> Path:
    """Copy of the graph whose output ``output`` is multiplied by ``factor`` (an engine drifting in scale)."""
    model = onnx.load(str(src))
    g = model.graph
    inner = f"{output}__unscaled"
    for node in g.node:
        node.output[:] = [inner if o == output else o for o in node.output]
        node.input[:] = [inner if i == output else i for i in node.input]
    g.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), f"{output}__factor"))
    g.node.append(helper.make_node("Mul", [inner, f"{output}__factor"], [output]))
    onnx.save(model, str(dst))
    return dst


def _tiny_graph(path: Path, weight_scale: float = 1.0) -> Path:
    """x [1,4,8,8] -> Conv 3x3 (fixed weights) -> Relu -> y."""
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((4, 4, 3, 3)) * weight_scale).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_known_bad_versions_match_whole_components() -> None:
    assert known_bad_reason("10.3.0.30") is not None
    assert known_bad_reason("10.3") is not None
    assert known_bad_reason("10.30.1") is None
    assert known_bad_reason("10.4.0.26") is None
    with pytest.raises(EngineVerificationError, match=r"TensorRT 10\.3\.0\.30 on Orin.*KNOWN_BAD_TENSORRT"):
        check_tensorrt_version("10.3.0.30", "Orin", policy="refuse")
    # default policy: a warning, and the engine must pass the sample KNOWN_BAD_RUNS times
    assert check_tensorrt_version("10.3.0.30", "Orin") == KNOWN_BAD_RUNS > 1
    assert check_tensorrt_version("10.7.0.23", "Orin", policy="refuse") == 1


def test_deviation_ignores_one_percent_and_catches_nan() -> None:
    ref = {"d": torch.linspace(1, 2, 1000)}
    one_flip = ref["d"].clone()
    one_flip[5] += 1.0  # 0.1 % of the elements: a flipped pixel, not a broken engine
    assert deviation({"d": one_flip}, ref)["d"] < 1e-6
    assert deviation({"d": ref["d"] * 1.03}, ref)["d"] == pytest.approx(0.03, rel=0.05)
    nan = ref["d"].clone()
    nan[0] = float("nan")
    assert deviation({"d": nan}, ref)["d"] == float("inf")
    assert deviation({}, ref)["d"] == float("inf")


def test_perturbed_tiny_graph_is_refused_and_faithful_one_passes(tmp_path: Path) -> None:
    ref = _tiny_graph(tmp_path / "tiny.onnx")
    shapes = {"x": [1, 4, 8, 8]}
    same = OnnxRuntimeBackend(_tiny_graph(tmp_path / "same.onnx"), "cpu")
    devs = verify_engine(same, ref, shapes, "fp32", **PLATFORM)
    assert devs["y"] == 0.0
    assert sample_path_for(ref).is_file()  # stored once, reused by later checks
    bad = OnnxRuntimeBackend(_tiny_graph(tmp_path / "bad.onnx", weight_scale=1.01), "cpu")
    with pytest.raises(EngineVerificationError) as err:
        verify_engine(bad, ref, shapes, "fp32", **PLATFORM)
    msg = str(err.value)
    assert "TensorRT 10.7.0.23" in msg and "Orin (sm 8.7)" in msg and "deviate from ONNX Runtime by" in msg
    # 1 % weight error is within the FP16 allowance but not the FP32 one
    verify_engine(bad, ref, shapes, "fp16", **PLATFORM)


def test_stored_sample_is_recomputed_for_another_graph(tmp_path: Path) -> None:
    ref = _tiny_graph(tmp_path / "tiny.onnx")
    engine = OnnxRuntimeBackend(ref, "cpu")
    verify_engine(engine, ref, {"x": [1, 4, 8, 8]}, "fp32", **PLATFORM)
    first = np.load(sample_path_for(ref))["out/y"].copy()
    _tiny_graph(ref, weight_scale=2.0)  # same file name, new graph: the stored reference must not be used
    verify_engine(OnnxRuntimeBackend(ref, "cpu"), ref, {"x": [1, 4, 8, 8]}, "fp32", **PLATFORM)
    assert not np.allclose(np.load(sample_path_for(ref))["out/y"], first)


@pytest.fixture(scope="module")
def diffmvs_export(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    net = DiffMVSNet(PRESETS["diffmvs_blend"]).eval()
    out = tmp_path_factory.mktemp("verify_diffmvs")
    return net, export_diffmvs(net, out / "onnx", 2, 64, 96), out


def test_diffmvs_engine_check_refuses_scale_drift(diffmvs_export) -> None:
    """The runner's engine check on the real DiffMVS graph (2 views, 64x96): ONNX Runtime on the same
    graph passes (measured deviation 0), the graph with its full-resolution depth scaled by 3 % is
    refused. The sample input is valid (finite outputs), so the check compares real depth maps."""
    net, exported, out = diffmvs_export
    runner = DiffMVSRunner(net, "onnxruntime", "cpu", cache_dir=out, threads=1)
    faithful = OnnxRuntimeBackend(exported.onnx_path, "cpu")
    devs = runner.verify(faithful, exported, PLATFORM["tensorrt_version"], PLATFORM["gpu_name"])
    assert max(devs.values()) <= TOLERANCE["fp32"]
    with np.load(sample_path_for(exported.onnx_path)) as z:
        outs = {k: z[k] for k in z.files if k.startswith("out/depth_")}
    assert outs and all(np.isfinite(v).all() and (v > 0).all() for v in outs.values())
    last_depth = [n for n in exported.output_names if n.startswith("depth_")][-1]
    drifted = OnnxRuntimeBackend(_scaled_output(exported.onnx_path, out / "drift.onnx", last_depth, 1.03), "cpu")
    with pytest.raises(EngineVerificationError, match=rf"TensorRT 10\.7\.0\.23 with Orin.*{last_depth}"):
        runner.verify(drifted, exported, PLATFORM["tensorrt_version"], PLATFORM["gpu_name"], "cache/x.engine")


def test_tensorrt_load_path_refuses_bad_version_and_drifting_engine(diffmvs_export, monkeypatch) -> None:
    """The runner's TensorRT path (``_make``) with TensorRT faked: a listed version is refused before
    anything is built; a built/cached engine that drifts is refused; a faithful one is returned."""
    import types

    from recon_ros.runtime import engine_builder, runners
    from recon_ros.runtime.engine_meta import EngineCache, EngineMeta

    net, exported, out = diffmvs_export
    last_depth = [n for n in exported.output_names if n.startswith("depth_")][-1]
    drift = _scaled_output(exported.onnx_path, out / "drift_make.onnx", last_depth, 1.05)
    version = {"v": "10.3.0.30"}
    engine_file = {"onnx": exported.onnx_path}
    built: list[str] = []

    def meta(model, onnx_path, sha, fp16, shapes, **extra) -> EngineMeta:
        return EngineMeta(model, sha, "x", version["v"], "Orin", "8.7", "fp32", dict(shapes))

    monkeypatch.setattr(runners, "import_tensorrt", lambda: types.SimpleNamespace(__version__=version["v"]))
    monkeypatch.setattr(engine_builder, "engine_meta", meta)
    monkeypatch.setattr(EngineCache, "get", lambda self, expected, build: built.append("get") or out / "e.engine")
    monkeypatch.setattr(
        runners, "TensorRTBackend", lambda path, device, cuda_graph=False: OnnxRuntimeBackend(engine_file["onnx"])
    )
    runner = DiffMVSRunner(net, "tensorrt", "cpu", cache_dir=out)
    runner.known_bad_tensorrt = "refuse"
    with pytest.raises(EngineVerificationError, match=r"TensorRT 10\.3\.0\.30 on Orin is listed as bad"):
        runner._make(exported)
    assert built == []  # refused before building
    # default policy under a listed version: an engine that drifts on its second run is refused
    runner.known_bad_tensorrt = "verify"
    calls = {"n": 0}

    def drifting_second_run(path, device, cuda_graph=False):
        good, bad = OnnxRuntimeBackend(exported.onnx_path), OnnxRuntimeBackend(drift)

        class Alternating:
            input_names, output_names = good.input_names, good.output_names

            def __call__(self, feeds):
                calls["n"] += 1
                return (bad if calls["n"] == 2 else good)(feeds)

        return Alternating()

    monkeypatch.setattr(runners, "TensorRTBackend", drifting_second_run)
    with pytest.raises(EngineVerificationError, match=r"at run 2 of 3"):
        runner._make(exported)
    monkeypatch.setattr(
        runners, "TensorRTBackend", lambda path, device, cuda_graph=False: OnnxRuntimeBackend(engine_file["onnx"])
    )
    assert runner._make(exported).output_names == exported.output_names  # faithful: passes 3 runs
    assert runner._make(exported).output_names == exported.output_names
