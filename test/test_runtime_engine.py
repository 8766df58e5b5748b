"""Engine files (metadata header), the engine cache, and TensorRT build/run where TensorRT + CUDA exist."""

from __future__ import annotations

import dataclasses
import struct

import pytest
import torch

from recon_ros.runtime.engine_meta import (
    EngineCache,
    EngineFileError,
    EngineMeta,
    StaleEngineError,
    check_compatible,
    read_engine,
    read_header,
    write_engine,
)


def _meta(**changes) -> EngineMeta:
    meta = EngineMeta(
        model="casdiffmvs_blend_v5_512x640", checkpoint_sha256="ab" * 32, onnx_sha256="cd" * 32,
        tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7", precision="fp16",
        input_shapes={"images": [5, 3, 512, 640], "noise_000": [1, 1, 128, 160]}, recon_ros_version="0.1.0",
    )
    return dataclasses.replace(meta, **changes)


def test_header_round_trip(tmp_path) -> None:
    blob = bytes(range(256)) * 10
    path = write_engine(tmp_path / "e.engine", _meta(), blob)
    meta, back = read_engine(path)
    assert meta == _meta() and back == blob
    assert path.read_bytes()[:8] == b"RECONENG"
    check_compatible(meta, _meta())  # no exception
    # recon_ros version alone does not make an engine stale
    check_compatible(meta, _meta(recon_ros_version="9.9.9"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gpu_name": "NVIDIA H100", "compute_capability": "9.0"}, "gpu_name"),
        ({"tensorrt_version": "11.0.0"}, "tensorrt_version"),
        ({"input_shapes": {"images": [4, 3, 512, 640], "noise_000": [1, 1, 128, 160]}}, "input_shapes"),
        ({"checkpoint_sha256": "ef" * 32}, "checkpoint_sha256"),
        ({"precision": "fp32"}, "precision"),
    ],
)
def test_stale_header_refused_naming_the_difference(tmp_path, change: dict, field: str) -> None:
    path = write_engine(tmp_path / "e.engine", _meta(**change), b"engine")
    meta, _ = read_engine(path)
    with pytest.raises(StaleEngineError, match=field) as info:
        check_compatible(meta, _meta(), str(path))
    assert str(path) in str(info.value)
    for k, v in change.items():
        assert repr(v) in str(info.value) or k != field


def test_not_an_engine_file_and_truncation(tmp_path) -> None:
    raw = tmp_path / "raw.engine"
    raw.write_bytes(b"\x00" * 64)  # a bare TensorRT engine without our header
    with pytest.raises(EngineFileError, match="not a recon_ros engine"):
        read_header(raw)
    good = write_engine(tmp_path / "g.engine", _meta(), b"x" * 100).read_bytes()
    (tmp_path / "t.engine").write_bytes(good[: struct.calcsize("<8sII") + 10])
    with pytest.raises(EngineFileError, match="truncated"):
        read_engine(tmp_path / "t.engine")


def test_cache_builds_reuses_rebuilds_and_refuses(tmp_path) -> None:
    builds = []

    def build() -> bytes:
        builds.append(1)
        return b"engine-%d" % len(builds)

    cache = EngineCache(tmp_path)
    p1 = cache.get(_meta(), build)
    assert len(builds) == 1 and read_engine(p1)[1] == b"engine-1"
    assert cache.get(_meta(), build) == p1 and len(builds) == 1  # reused
    other_shape = _meta(input_shapes={"images": [3, 3, 512, 640]})
    assert cache.get(other_shape, build) != p1  # shapes key the file name
    # same file name, other GPU: rebuilt (default) or refused
    stale = _meta(gpu_name="NVIDIA H100", compute_capability="9.0")
    with pytest.raises(StaleEngineError, match="gpu_name.*Orin"):
        EngineCache(tmp_path, on_stale="refuse").get(stale, build)
    n = len(builds)
    p2 = cache.get(stale, build)
    assert p2 == p1 and len(builds) == n + 1 and read_header(p2)[0].gpu_name == "NVIDIA H100"


def test_tensorrt_missing_gives_clear_error() -> None:
    from recon_ros.runtime.backends import BackendUnavailable, TensorRTBackend, tensorrt_available

    ok, reason = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is available here")
    assert reason
    with pytest.raises(BackendUnavailable):
        TensorRTBackend(b"", "cuda")


# ---------------------------------------------------------------- real TensorRT (skipped without it)
def _require_trt():
    pytest.importorskip("tensorrt", reason="TensorRT Python package not installed (not installable here)")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA device; torch sees none")


def test_tensorrt_build_and_run_matches_torch(tmp_path) -> None:
    _require_trt()
    from recon_ros.runtime.backends import TensorRTBackend
    from recon_ros.runtime.engine_builder import build_engine

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.conv(x), dim=1)

    net = Net().eval()
    x = torch.rand(1, 3, 32, 32)
    torch.onnx.export(net, (x,), str(tmp_path / "n.onnx"), input_names=["x"], output_names=["y"], dynamo=False)
    meta = build_engine(tmp_path / "n.onnx", tmp_path / "n.engine", timing_cache=tmp_path / "timing.cache")
    assert meta.input_shapes == {"x": [1, 3, 32, 32]} and (tmp_path / "timing.cache").is_file()
    for graph in (False, True):
        be = TensorRTBackend(tmp_path / "n.engine", "cuda", cuda_graph=graph)
        for _ in range(2):  # second call replays the captured graph
            y = be({"x": x.cuda()})["y"]
            torch.testing.assert_close(y.cpu(), net(x).detach(), atol=1e-4, rtol=1e-3)


def test_tensorrt_dynamic_profile(tmp_path) -> None:
    _require_trt()
    from recon_ros.runtime.backends import TensorRTBackend
    from recon_ros.runtime.engine_builder import build_engine

    net = torch.nn.Conv2d(3, 4, 1).eval()
    torch.onnx.export(net, (torch.rand(1, 3, 8, 8),), str(tmp_path / "d.onnx"), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {2: "h", 3: "w"}}, dynamo=False)
    build_engine(tmp_path / "d.onnx", tmp_path / "d.engine",
                 profiles=[{"x": ((1, 3, 8, 8), (1, 3, 16, 16), (1, 3, 32, 32))}])
    be = TensorRTBackend(tmp_path / "d.engine", "cuda")
    for s in (8, 24):
        x = torch.rand(1, 3, s, s, device="cuda")
        torch.testing.assert_close(be({"x": x})["y"], net.cuda()(x), atol=1e-4, rtol=1e-3)
