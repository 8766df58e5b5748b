"""CPU fast paths that compute the same function as the plain torch op (to float32 rounding).

PyTorch's CPU convolution dispatch sends 3-D convolutions with few channels (the 4-group correlation
volumes of the depth initialisation) to ``slow_conv3d`` (im2col + GEMM), 16x slower here than oneDNN
on the same input (measured: 4->8 channels on a 48x64x80 volume, 0.27 s vs 0.017 s, one thread). Tracing
and ONNX export keep the plain op, so exported graphs are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def eager_cpu_float(x: Tensor) -> bool:
    """True when ``x`` runs eagerly in float32 on a CPU with oneDNN (not traced, scripted or exported)."""
    return _eager_cpu_float(x)


def to_channels_last(x: Tensor) -> Tensor:
    """NHWC memory layout for a 2-D encoder's input on the CPU: oneDNN then convolves without reordering
    every activation to and from its blocked layout (feature pyramid on 5 views of 640x512: 1.09 s ->
    0.64 s, one thread). Values are unchanged; elsewhere a no-op."""
    return x.contiguous(memory_format=torch.channels_last) if _eager_cpu_float(x) else x


def to_contiguous(x: Tensor) -> Tensor:
    """Back to the default NCHW layout (grid sampling and the cost volumes are faster on it)."""
    return x.contiguous() if _eager_cpu_float(x) else x


def _eager_cpu_float(x: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.onnx.is_in_onnx_export()
        and not torch.compiler.is_compiling()
    )


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters and state_dict keys) that runs oneDNN directly on the CPU."""

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_with(x, self.weight, self.bias)

    def conv_with(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """This layer's convolution with other weights (e.g. BatchNorm folded in)."""
        if self.padding_mode == "zeros" and not isinstance(self.padding, str) and _eager_cpu_float(x):
            return torch.mkldnn_convolution(
                x.contiguous(), weight, bias, self.padding, self.stride, self.dilation, self.groups
            )
        return F.conv3d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
