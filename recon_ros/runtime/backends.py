"""Inference backends behind one interface: named torch tensors in, named torch tensors out.

Every backend is a callable ``backend(inputs: dict[str, Tensor]) -> dict[str, Tensor]`` with ``name``,
``input_names`` and ``output_names``. Callers never see numpy, ONNX Runtime values or TensorRT
bindings, so the engine code is identical whatever runs the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

BACKEND_NAMES = ("torch", "onnxruntime", "tensorrt")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (package missing, no GPU, ...)."""


@runtime_checkable
class Backend(Protocol):
    name: str
    input_names: list[str]
    output_names: list[str]

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]: ...


def _check_inputs(inputs: dict[str, Tensor], names: Sequence[str]) -> None:
    missing = [n for n in names if n not in inputs]
    extra = [n for n in inputs if n not in names]
    if missing or extra:
        raise KeyError(f"backend inputs: missing {missing}, unexpected {extra}; expected {list(names)}")


class TorchBackend:
    """A module whose ``forward`` takes the inputs positionally (in ``input_names`` order) and returns
    a tensor or a tuple of tensors (in ``output_names`` order) -- the same contract as the ONNX export."""

    name = "torch"

    def __init__(self, module: nn.Module, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        self.module = module.eval()
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        _check_inputs(inputs, self.input_names)
        with torch.inference_mode():
            out = self.module(*(inputs[n] for n in self.input_names))
        outs = (out,) if isinstance(out, Tensor) else tuple(out)
        if len(outs) != len(self.output_names):
            raise RuntimeError(f"module returned {len(outs)} outputs, expected {len(self.output_names)}")
        return dict(zip(self.output_names, outs))


_ORT_TO_TORCH = {
    "tensor(float)": torch.float32,
    "tensor(float16)": torch.float16,
    "tensor(double)": torch.float64,
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
    "tensor(bool)": torch.bool,
}


class OnnxRuntimeBackend:
    """ONNX Runtime session; CUDA execution provider when ``device`` is CUDA and ORT has it.

    On CPU, tensors cross as zero-copy numpy views. On CUDA, I/O binding hands ORT the torch buffers
    directly (outputs are allocated by torch from the model's static output shapes), so nothing is
    copied through the host.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, device: str | torch.device = "cpu", threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a hard dependency of the package
            raise BackendUnavailable("backend 'onnxruntime' needs the onnxruntime package") from exc
        self.device = torch.device(device)
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable(
                    "backend 'onnxruntime' on CUDA needs onnxruntime-gpu (CUDAExecutionProvider is not available; "
                    f"have {ort.get_available_providers()})"
                )
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": self.device.index or 0}))
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._out_meta = [(o.shape, _ORT_TO_TORCH.get(o.type, torch.float32)) for o in self.session.get_outputs()]

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        _check_inputs(inputs, self.input_names)
        if self.device.type == "cuda":
            return self._run_cuda(inputs)
        feeds = {n: inputs[n].detach().cpu().contiguous().numpy() for n in self.input_names}
        outs = self.session.run(self.output_names, feeds)
        return {n: torch.from_numpy(np.ascontiguousarray(o)) for n, o in zip(self.output_names, outs)}

    def _run_cuda(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:  # pragma: no cover - needs a GPU
        binding = self.session.io_binding()
        idx = self.device.index or 0
        keep = []
        for n in self.input_names:
            t = inputs[n].to(self.device).contiguous()
            keep.append(t)
            binding.bind_input(n, "cuda", idx, _np_dtype(t.dtype), list(t.shape), t.data_ptr())
        outs: dict[str, Tensor] = {}
        for n, (shape, dtype) in zip(self.output_names, self._out_meta):
            if not all(isinstance(s, int) for s in shape):
                binding.bind_output(n, "cuda", idx)  # dynamic: let ORT allocate, copied back below
                continue
            t = torch.empty(shape, dtype=dtype, device=self.device)
            outs[n] = t
            binding.bind_output(n, "cuda", idx, _np_dtype(dtype), list(shape), t.data_ptr())
        self.session.run_with_iobinding(binding)
        if len(outs) != len(self.output_names):
            values = binding.get_outputs()
            for n, v in zip(self.output_names, values):
                outs.setdefault(n, torch.from_numpy(v.numpy()).to(self.device))
        return {n: outs[n] for n in self.output_names}


def _np_dtype(dtype: torch.dtype) -> type:
    return {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64, torch.int32: np.int32,
            torch.bool: np.bool_, torch.float64: np.float64}[dtype]


def import_tensorrt() -> Any:
    """``import tensorrt`` with an actionable error (the wheel ships with JetPack / NVIDIA's index)."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(
            "backend 'tensorrt' needs the TensorRT Python package (>= 10): on Jetson it comes with JetPack 6 "
            "(python3-libnvinfer), on x86 `pip install tensorrt` from NVIDIA's index; or use "
            "runtime.backend 'onnxruntime' / 'torch'"
        ) from exc
    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise BackendUnavailable(f"TensorRT {trt.__version__} found; recon_ros needs the TensorRT 10+ tensor API")
    return trt


def _trt_to_torch(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.bool: torch.bool}
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    return table[dtype]


class TensorRTBackend:
    """A deserialized TensorRT engine run with the TensorRT 10+ named-tensor API.

    I/O buffers are torch CUDA tensors (inputs are used in place when already contiguous on the
    device with the engine's dtype); everything is enqueued on one CUDA stream. With ``cuda_graph``
    and static shapes, the first call captures ``execute_async_v3`` in a CUDA graph and later calls
    copy the inputs into the captured buffers and replay it (saves the per-layer launch overhead,
    which dominates small networks on Jetson).
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path | bytes, device: str | torch.device = "cuda", cuda_graph: bool = False):
        trt = import_tensorrt()
        self.trt = trt
        self.device = torch.device(device)
        if self.device.type != "cuda" or not torch.cuda.is_available():
            raise BackendUnavailable("backend 'tensorrt' needs a CUDA device visible to torch")
        if isinstance(engine_path, bytes):
            blob = engine_path
        else:
            from .engine_meta import read_engine

            _, blob = read_engine(engine_path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        with torch.cuda.device(self.device):
            self.engine = self.runtime.deserialize_cuda_engine(blob)
            if self.engine is None:
                raise RuntimeError(f"TensorRT could not deserialize {engine_path!r} (built for another TRT/GPU?)")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self.dtypes = {n: _trt_to_torch(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self.static = all(-1 not in tuple(self.engine.get_tensor_shape(n)) for n in names)
        self.use_graph = cuda_graph and self.static
        self._graph: torch.cuda.CUDAGraph | None = None
        self._buffers: dict[str, Tensor] = {}

    def _bind(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        ctx = self.context
        bound: dict[str, Tensor] = {}
        for n in self.input_names:
            t = inputs[n].to(self.device, self.dtypes[n]).contiguous()
            if not self.static:
                ctx.set_input_shape(n, tuple(t.shape))
            bound[n] = t
        for n in self.output_names:
            shape = tuple(ctx.get_tensor_shape(n))
            if any(s < 0 for s in shape):
                raise RuntimeError(f"output {n} has unresolved shape {shape}; are all input shapes set?")
            bound[n] = torch.empty(shape, dtype=self.dtypes[n], device=self.device)
        for n, t in bound.items():
            ctx.set_tensor_address(n, t.data_ptr())
        return bound

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        _check_inputs(inputs, self.input_names)
        with torch.cuda.device(self.device):
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.stream):
                if self.use_graph:
                    outs = self._run_graph(inputs)
                else:
                    bound = self._bind(inputs)
                    if not self.context.execute_async_v3(self.stream.cuda_stream):
                        raise RuntimeError("TensorRT execute_async_v3 failed")
                    outs = {n: bound[n] for n in self.output_names}
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return outs

    def _run_graph(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        if self._graph is None:
            self._buffers = self._bind(inputs)
            # One eager run first: TensorRT allocates lazily and must not do so inside the capture.
            self.context.execute_async_v3(self.stream.cuda_stream)
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                self.context.execute_async_v3(self.stream.cuda_stream)
            self._graph = graph
        else:
            for n in self.input_names:
                self._buffers[n].copy_(inputs[n].to(self.device, self.dtypes[n]), non_blocking=True)
        self._graph.replay()
        # Replays overwrite the buffers: hand out copies so results of earlier calls stay valid.
        return {n: self._buffers[n].clone() for n in self.output_names}


def tensorrt_available() -> tuple[bool, str]:
    """(usable, reason) -- whether TensorRT imports and torch sees a CUDA device."""
    try:
        import_tensorrt()
    except BackendUnavailable as exc:
        return False, str(exc)
    if not torch.cuda.is_available():
        return False, "TensorRT imports but torch sees no CUDA device"
    return True, ""
