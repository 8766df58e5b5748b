"""``nn.Linear`` whose eager CPU float32 inference runs oneDNN's matrix product.

Why: torch's CPU ``F.linear`` in float32 calls MKL's sgemm, which on this machine's AMD CPU runs AVX2
kernels; oneDNN (the library behind torch's CPU convolutions) runs AVX-512 ones. Measured with 2
threads, median of 15 alternating runs: ``[784, 1024] -> 3072`` 28.3 ms (F.linear) vs 12.3 ms,
``[196, 768] -> 768`` 1.32 ms vs 0.64 ms; the products differ by rounding only (~1e-6 of the output
scale). The encoder/decoder projections and MLPs are most of MV-DUSt3R's time outside the skip branch.

Parameters and state_dict keys are those of ``nn.Linear``. Training (autograd), exports (tracing, ONNX,
torch.compile), GPUs and other dtypes take ``F.linear`` unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def exporting() -> bool:
    """True while tracing, exporting to ONNX or compiling: exports keep the plain operators."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def _has_onednn_linear() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return torch.ops.mkldnn._linear_pointwise.default is not None
    except (AttributeError, RuntimeError):
        return False


#: Whether this torch build has oneDNN's fused linear operator (``torch.ops.mkldnn._linear_pointwise``).
ONEDNN_LINEAR = _has_onednn_linear()


class Linear(nn.Linear):
    """Drop-in ``nn.Linear``; see the module docstring. ``use_onednn`` switches the fast path off."""

    use_onednn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.use_onednn
            and ONEDNN_LINEAR
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and self.weight.is_contiguous()
            and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
            and not exporting()
        ):
            # oneDNN needs plain row-major strides (a broadcast or sliced view fails to build its descriptor).
            k = x.shape[-1]
            x2 = x.reshape(-1, k)
            if x2.stride() != (k, 1):  # is_contiguous() passes odd strides on size-1 dimensions
                x2 = x2.clone(memory_format=torch.contiguous_format)
            y = torch.ops.mkldnn._linear_pointwise(x2, self.weight, self.bias, "none", [], "")
            return y.view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.weight, self.bias)
