"""Build TensorRT engines from ONNX files (TensorRT 10 and 11).

TensorRT 10 (JetPack 6) takes reduced precision from the ``FP16`` builder flag. TensorRT 11 dropped
weakly-typed networks: networks are strongly typed and take every tensor's precision from the ONNX
graph, so FP16 there means "export the FP16 ONNX variant" (:func:`recon_ros.runtime.fp16.convert_fp16`),
not a flag. :func:`build_engine` picks the right mode from the installed version.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .backends import import_tensorrt
from .engine_meta import EngineMeta, current_platform, sha256_file, write_engine

LOG = logging.getLogger("recon_ros")

#: name -> (min, opt, max) shapes of one optimisation profile.
Profile = Mapping[str, tuple[Sequence[int], Sequence[int], Sequence[int]]]


def trt_major(trt: Any) -> int:
    return int(trt.__version__.split(".")[0])


def _network_flags(trt: Any, strongly_typed: bool) -> int:
    flags = 0
    # EXPLICIT_BATCH is the only mode since TRT 10 and the enum member is deprecated/removed.
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def build_serialized(
    onnx_path: str | Path,
    fp16: bool = False,
    workspace_gb: float = 2.0,
    dla_core: int | None = None,
    timing_cache: str | Path | None = None,
    profiles: Sequence[Profile] = (),
) -> bytes:
    """Parse ``onnx_path`` and return the serialized engine.

    ``fp16``: TensorRT 10 sets the FP16 builder flag on an FP32 graph; TensorRT >= 11 builds a strongly
    typed network, so pass the FP16 ONNX variant instead (the flag is then meaningless and ignored).
    ``profiles``: one optimisation profile per entry for graphs with dynamic axes.
    ``dla_core``: run on that DLA (Jetson Orin), falling back to the GPU for unsupported layers.
    ``timing_cache``: file read before and written after the build (speeds up rebuilds a lot).
    """
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = trt_major(trt) >= 11
    network = builder.create_network(_network_flags(trt, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16 and not strongly_typed:
        if not builder.platform_has_fast_fp16:
            LOG.warning("this GPU has no fast FP16; building FP16 anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    elif fp16:
        LOG.info("TensorRT %s: strongly typed network, precision comes from the ONNX graph", trt.__version__)
    if dla_core is not None:
        if builder.num_DLA_cores <= dla_core:
            raise RuntimeError(f"DLA core {dla_core} requested but this device has {builder.num_DLA_cores}")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    cache = None
    if timing_cache is not None:
        data = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=False)

    for spec in profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in spec.items():
            profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
        config.add_optimization_profile(profile)

    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    if cache is not None:
        Path(timing_cache).parent.mkdir(parents=True, exist_ok=True)
        Path(timing_cache).write_bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(blob)


def engine_meta(
    model: str,
    onnx_path: str | Path,
    checkpoint_sha256: str,
    fp16: bool,
    input_shapes: Mapping[str, Sequence[int]],
    **extra: Any,
) -> EngineMeta:
    """Header describing the engine this machine would build from ``onnx_path``."""
    from recon_ros import __version__

    return EngineMeta(
        model=model,
        checkpoint_sha256=checkpoint_sha256,
        onnx_sha256=sha256_file(onnx_path),
        precision="fp16" if fp16 else "fp32",
        input_shapes={k: [int(s) for s in v] for k, v in input_shapes.items()},
        recon_ros_version=__version__,
        extra=dict(extra),
        **current_platform(),
    )


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path,
    fp16: bool = False,
    workspace_gb: float = 2.0,
    dla_core: int | None = None,
    timing_cache: str | Path | None = None,
    profiles: Sequence[Profile] = (),
    model: str = "",
    checkpoint_sha256: str = "",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> EngineMeta:
    """Build and write ``out_path`` (metadata header + engine); returns the header.

    ``input_shapes`` default to the ONNX graph's static input shapes (dynamic axes: the profiles' max).
    """
    if input_shapes is None:
        input_shapes = onnx_input_shapes(onnx_path, profiles)
    blob = build_serialized(onnx_path, fp16, workspace_gb, dla_core, timing_cache, profiles)
    meta = engine_meta(model or Path(onnx_path).stem, onnx_path, checkpoint_sha256, fp16, input_shapes)
    write_engine(out_path, meta, blob)
    return meta


def onnx_input_shapes(onnx_path: str | Path, profiles: Sequence[Profile] = ()) -> dict[str, list[int]]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    init = {i.name for i in model.graph.initializer}
    shapes: dict[str, list[int]] = {}
    for inp in model.graph.input:
        if inp.name in init:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim]
        for spec in profiles:
            if inp.name in spec:
                dims = [int(x) for x in spec[inp.name][2]]
        shapes[inp.name] = dims
    return shapes
