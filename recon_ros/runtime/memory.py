"""Out-of-memory detection shared by the model stages (torch, ONNX Runtime and TensorRT word it differently)."""

from __future__ import annotations

import gc

import torch

# Lower-case substrings of the errors backends raise when memory runs out (ORT's CUDA arena: "Failed to
# allocate memory for requested buffer"; CUDA: "out of memory" / cudaErrorMemoryAllocation; C++ host
# allocations: std::bad_alloc).
_OOM_PHRASES = ("out of memory", "failed to allocate memory", "bad_alloc", "cudaerrormemoryallocation")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's ``OutOfMemoryError`` (CUDA), ``MemoryError`` (host) and errors whose message says
    memory ran out: ONNX Runtime raises its own exception types and TensorRT / CUDA report through
    ``RuntimeError``, so the message is the common ground."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return any(p in text for p in _OOM_PHRASES)


def release_cached_memory() -> None:
    """Give cached blocks back before retrying smaller (the failed attempt's tensors are garbage now)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
