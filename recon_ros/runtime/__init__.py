"""Inference runtime: backends behind one interface (torch, onnxruntime, tensorrt), ONNX export
recipes, the FP16 graph variant, TensorRT engine building and the engine cache.

* :mod:`.backends` -- ``Backend`` protocol, :class:`TorchBackend`, :class:`OnnxRuntimeBackend`,
  :class:`TensorRTBackend` (TensorRT imported lazily).
* :mod:`.export` -- :func:`export_diffmvs`, :func:`export_mvdust3r` (FP32 and FP16 variants).
* :mod:`.fp16` -- :func:`convert_fp16` (mixed precision for strongly typed TensorRT 11).
* :mod:`.engine_builder` -- :func:`build_engine` (TensorRT 10 flag / TensorRT 11 strongly typed).
* :mod:`.engine_meta` -- engine files with a metadata header and the :class:`EngineCache`.
* :mod:`.runners` -- :class:`DiffMVSRunner`, :class:`MVDust3RRunner` (export on first use per shape).
"""

from .backends import (
    BACKEND_NAMES,
    Backend,
    BackendUnavailable,
    OnnxRuntimeBackend,
    TensorRTBackend,
    TorchBackend,
    tensorrt_available,
)
from .engine_meta import EngineCache, EngineMeta, StaleEngineError, check_compatible, read_engine, write_engine

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendUnavailable",
    "EngineCache",
    "EngineMeta",
    "OnnxRuntimeBackend",
    "StaleEngineError",
    "TensorRTBackend",
    "TorchBackend",
    "check_compatible",
    "read_engine",
    "tensorrt_available",
    "write_engine",
]
