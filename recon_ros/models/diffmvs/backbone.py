"""2-D encoders: the multi-scale feature pyramid (all views) and the context network (reference view).

Attribute names (``conv``, ``bn``, ``conv0``..., ``inner1``, ``out1``...) are fixed by the official
state_dict; everything else is ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fast_ops import Conv3d, eager_cpu_float, to_channels_last, to_contiguous


class ConvBNReLU(nn.Module):
    """Bias-free conv + BatchNorm (+ ReLU): the checkpoint stores ``conv.weight`` and ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True, dims: int = 2) -> None:
        super().__init__()
        conv_cls = nn.Conv2d if dims == 2 else Conv3d
        bn_cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.conv = conv_cls(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = bn_cls(cout)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        if not self.training and eager_cpu_float(x):
            # Inference on the CPU: BatchNorm folded into the convolution (one pass over the output
            # instead of two; at full resolution the separate BatchNorm cost as much as the conv).
            x = self._folded_conv(x)
            return F.relu_(x) if self.relu else x
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x

    def _folded_conv(self, x: Tensor) -> Tensor:
        bn, conv = self.bn, self.conv
        assert bn.running_var is not None and bn.running_mean is not None
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
        bias = bn.bias - bn.running_mean * scale
        if isinstance(conv, Conv3d):
            return conv.conv_with(x, weight, bias)
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or strided conv-BN) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(cin, cout, 3, stride)
        self.conv2 = ConvBNReLU(cout, cout, 3, 1, relu=False)
        self.downsample = ConvBNReLU(cin, cout, 3, stride, relu=False) if stride != 1 else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y)


class FeaturePyramid(nn.Module):
    """FPN-style matching features at 1/8 (``stage1``), 1/4 (``stage2``) and optionally 1/2 (``stage3``).

    The coarse 1/8 features drive the full-range initial cost volume; finer levels feed the local cost
    volumes of the refinement stages, so each level is a separate 1x1/3x3 head on a shared top-down path.
    """

    def __init__(self, base: int, out_channels: tuple[int, int, int]) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv0 = nn.Sequential(ConvBNReLU(3, base), ConvBNReLU(base, base))
        self.conv1 = nn.Sequential(
            ConvBNReLU(base, base * 2, 5, 2), ConvBNReLU(base * 2, base * 2), ConvBNReLU(base * 2, base * 2)
        )
        self.conv2 = nn.Sequential(
            ConvBNReLU(base * 2, base * 4, 5, 2),
            ConvBNReLU(base * 4, base * 4),
            ConvBNReLU(base * 4, base * 4),
        )
        self.conv3 = nn.Sequential(
            ConvBNReLU(base * 4, base * 8, 5, 2),
            ConvBNReLU(base * 8, base * 8),
            ConvBNReLU(base * 8, base * 8),
        )
        top = base * 8
        self.out1 = nn.Conv2d(top, out_channels[0], 1, bias=False)
        self.inner1 = nn.Conv2d(base * 4, top, 1, bias=True)
        self.out2 = nn.Conv2d(top, out_channels[1], 3, padding=1, bias=False)
        if out_channels[2] > 0:
            self.inner2 = nn.Conv2d(base * 2, top, 1, bias=True)
            self.out3 = nn.Conv2d(top, out_channels[2], 3, padding=1, bias=False)

    def forward(self, img: Tensor) -> dict[str, Tensor]:
        out = self._forward(to_channels_last(img))
        return {k: to_contiguous(v) for k, v in out.items()}

    def _forward(self, img: Tensor) -> dict[str, Tensor]:
        c0 = self.conv0(img)
        c1 = self.conv1(c0)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        out = {"stage1": self.out1(c3)}
        path = F.interpolate(c3, scale_factor=2, mode="nearest") + self.inner1(c2)
        out["stage2"] = self.out2(path)
        if self.out_channels[2] > 0:
            path = F.interpolate(path, scale_factor=2, mode="nearest") + self.inner2(c1)
            out["stage3"] = self.out3(path)
        return out


class ContextNet(nn.Module):
    """Reference-view context: per stage, GRU hidden-state seed channels followed by context channels.

    ``out_dims[s] = hidden_dim[s] + context_dim[s]``; the model splits them. Levels are read off a small
    ResNet at 1/2 (stage3, CasDiffMVS only), 1/4 (stage2) and 1/8 (stage1).
    """

    def __init__(self, out_dims: tuple[int, int, int]) -> None:
        super().__init__()
        self.out_dims = out_dims
        self.conv1 = ConvBNReLU(3, 8)
        self.layer1 = nn.Sequential(ResidualBlock(8, 16, 2), ResidualBlock(16, 16))
        self.layer2 = nn.Sequential(ResidualBlock(16, 32, 2), ResidualBlock(32, 32))
        self.layer3 = nn.Sequential(ResidualBlock(32, 48, 2), ResidualBlock(48, 48))
        self.output1 = nn.Conv2d(48, out_dims[0], 3, padding=1)
        self.output2 = nn.Conv2d(32, out_dims[1], 3, padding=1)
        if out_dims[2] > 0:
            self.output3 = nn.Conv2d(16, out_dims[2], 3, padding=1)

    def forward(self, img: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        x = self.layer1(self.conv1(img))
        if self.out_dims[2] > 0:
            out["stage3"] = self.output3(x)
        x = self.layer2(x)
        out["stage2"] = self.output2(x)
        x = self.layer3(x)
        out["stage1"] = self.output1(x)
        return out
