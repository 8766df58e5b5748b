"""Prediction heads: linear pointmap head with convolutional skip branch, and the Gaussian head.

Both heads predict ``c * p * p`` values per token (p = patch size) and unshuffle them into a
``p x p`` pixel block: channel ``c * p*p + p*i + j`` of token ``(row, col)`` is channel ``c`` of pixel
``(p*row + i, p*col + j)``. The unshuffle is written with reshape/permute so it exports to ONNX as
plain Reshape/Transpose nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .fft_conv import fft_conv2d, kernel_spectrum
from .linear import Linear, exporting
from .winograd import WinogradKernel, Workspace, winograd_conv2d, winograd_kernel

Recorder = Callable[[str, torch.Tensor], None] | None



def unshuffle_channels_first(x: torch.Tensor, grid: tuple[int, int], p: int) -> torch.Tensor:
    """``[M, gh*gw, c*p*p]`` -> ``[M, c, gh*p, gw*p]``."""
    m, _, ch = x.shape
    gh, gw = grid
    c = ch // (p * p)
    return x.reshape(m, gh, gw, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(m, c, gh * p, gw * p)


def unshuffle_channels_last(x: torch.Tensor, grid: tuple[int, int], p: int) -> torch.Tensor:
    """``[M, gh*gw, c*p*p]`` -> ``[M, gh*p, gw*p, c]``."""
    m, _, ch = x.shape
    gh, gw = grid
    c = ch // (p * p)
    return x.reshape(m, gh, gw, c, p, p).permute(0, 1, 4, 2, 5, 3).reshape(m, gh * p, gw * p, c)


class ConvBNBlock(nn.Module):
    """Conv (same padding) + BatchNorm, optionally followed by SELU.

    Eager CPU inference folds the BatchNorm into the convolution (running statistics) and applies SELU
    in place (two passes fewer over a 256-channel full-resolution tensor). Wide kernels (5x5, >= 64
    input channels) run as Winograd F(4x4, 5x5) convolutions (:mod:`.winograd`, ``use_winograd``), or,
    if switched on instead, as tiled FFT convolutions (:mod:`.fft_conv`, ``use_fft``); the transformed
    kernel is cached until a weight or statistic changes. Training, exports and GPUs run the plain layers.
    """

    #: Switch for the Winograd path. On: one 256 -> 256 5x5 layer at 224x224 took 0.77x the time of
    #: oneDNN's direct convolution with 2 threads on the loaded VM (0.42-0.68x at lower load, 0.52x on one
    #: thread; benchmarks/README.md, "Second round (v2)"); it caches a 16 MB transformed kernel per layer.
    use_winograd = True
    #: Switch for the FFT path. Off: it measured 0.63-0.93 of the direct convolution per layer on one
    #: thread, but the whole network with 2 threads was not faster than upstream with it (1.08, see
    #: benchmarks/README.md) and it caches 115 MB per layer. The parity tests pass either way.
    use_fft = False

    def __init__(self, cin: int, cout: int, kernel: int, activation: bool, bn_eps: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
        self.norm = nn.BatchNorm2d(cout, eps=bn_eps)
        self.act = nn.SELU() if activation else nn.Identity()
        self._spectrum: tuple[tuple, torch.Tensor] | None = None
        self._winograd: tuple[tuple, WinogradKernel] | None = None

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.norm
        assert bn.running_mean is not None and bn.running_var is not None
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = self.conv.weight * scale.view(-1, 1, 1, 1)
        bias = (self.conv.bias - bn.running_mean) * scale + bn.bias
        return weight, bias

    def _transformed(self, slot: str, build: Callable[[torch.Tensor], Any], weight: torch.Tensor) -> Any:
        """``build(weight)`` cached in attribute ``slot`` until a tensor the folded kernel depends on changes
        (identity and version: in-place edits bump it)."""
        params = (self.conv.weight, self.conv.bias, self.norm.weight, self.norm.bias, self.norm.running_mean,
                  self.norm.running_var)
        key = tuple((t.data_ptr(), t._version) for t in params if t is not None)
        cached = getattr(self, slot)
        if cached is None or cached[0] != key:
            cached = (key, build(weight.detach()))
            setattr(self, slot, cached)
        return cached[1]

    def forward(self, x: torch.Tensor, workspace: Workspace | None = None) -> torch.Tensor:
        """``workspace``: scratch buffers for the Winograd path, shared by a run of layers."""
        if self.training or exporting() or x.device.type != "cpu" or x.dtype != torch.float32:
            return self.act(self.norm(self.conv(x)))
        weight, bias = self._folded()
        k = self.conv.kernel_size[0]
        wide = k == 5 and self.conv.in_channels >= 64
        # The Winograd path writes into preallocated buffers, which autograd cannot follow.
        if wide and self.use_winograd and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
            y = winograd_conv2d(x, self._transformed("_winograd", winograd_kernel, weight), bias.detach(), workspace)
        elif wide and self.use_fft:
            y = fft_conv2d(x, self._transformed("_spectrum", kernel_spectrum, weight), bias, k)
        else:
            y = F.conv2d(x, weight, bias, padding=self.conv.padding)
        return F.selu(y, inplace=True) if isinstance(self.act, nn.SELU) else y


class PointHead(nn.Module):
    """Per-token linear prediction of xyz + confidence logit, refined by an image skip branch.

    The skip branch sees the RGB image and the raw xyz and adds ``skip_scale`` times its 3-channel
    output to the raw xyz. Depth mode 'exp': ``xyz / |xyz| * expm1(|xyz|)``; confidence mode 'exp':
    ``vmin + min(exp(c), vmax - vmin)``.
    """

    def __init__(
        self,
        dec_dim: int,
        patch_size: int,
        skip: bool,
        skip_dim: int,
        skip_scale: float,
        conf_range: tuple[float, float],
        bn_eps: float,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.skip_scale = skip_scale
        self.conf_min, self.conf_max = conf_range
        self.proj = Linear(dec_dim, 4 * patch_size**2)
        self.skip_proj: nn.Sequential | None = None
        if skip:
            self.skip_proj = nn.Sequential(
                ConvBNBlock(6, skip_dim, 3, True, bn_eps),
                ConvBNBlock(skip_dim, skip_dim, 5, True, bn_eps),
                ConvBNBlock(skip_dim, skip_dim, 5, True, bn_eps),
                ConvBNBlock(skip_dim, 3, 3, False, bn_eps),
            )

    def _skip(self, x: torch.Tensor) -> torch.Tensor:
        """The skip branch on ``[M, 6, H, W]``.

        Eager CPU runs it one image at a time, as upstream does: profiled on the reduced MV-DUSt3R
        (4 views, one thread), the convolutions took 95.5 s as batches of 3 against upstream's 80.3 s
        as single images, and the per-image working set (51 MB per 256-channel activation) also bounds
        the Winograd/FFT paths' temporaries. Activations stay channels-last (what the Winograd path reads
        and writes, and oneDNN's 3x3 layers take without a reorder); one workspace serves all layers and
        images and is dropped at the end. Exports and GPUs keep the batch (one kernel launch, static graph).
        """
        assert self.skip_proj is not None
        if x.device.type != "cpu" or exporting() or self.training:
            return self.skip_proj(x)
        workspace = Workspace()
        out = []
        for i in range(x.shape[0]):
            h = x[i : i + 1].contiguous(memory_format=torch.channels_last)
            for block in self.skip_proj:
                h = block(h, workspace)
            out.append(h)
        return torch.cat(out).contiguous()

    def forward(
        self, tokens: torch.Tensor, img: torch.Tensor, grid: tuple[int, int], record: Recorder = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens`` ``[M, N, C]``, ``img`` ``[M, 3, H, W]`` -> pts3d ``[M, H, W, 3]``, conf ``[M, H, W]``."""
        raw = self.proj(tokens)
        if record is not None:
            record("head_pts_proj_out", raw)
        feat = unshuffle_channels_first(raw, grid, self.patch_size)
        xyz, logit = feat[:, :3], feat[:, 3]
        if self.skip_proj is not None:
            skip = self._skip(torch.cat((img, xyz), dim=1))
            if record is not None:
                record("head_pts_skip_out", skip)
            xyz = xyz + skip * self.skip_scale
        xyz = xyz.permute(0, 2, 3, 1)
        dist = torch.linalg.vector_norm(xyz, dim=-1, keepdim=True)
        pts3d = xyz / dist.clamp(min=1e-8) * torch.expm1(dist)
        conf = self.conf_min + logit.exp().clamp(max=self.conf_max - self.conf_min)
        return pts3d, conf


def _mlp(dim: int, hidden: int, out: int) -> nn.Sequential:
    # Indices 0 and 2 carry the weights, as in the official keys ``mlp_rgb.0`` / ``mlp_rgb.2``.
    return nn.Sequential(Linear(dim, hidden, bias=False), nn.ReLU(), Linear(hidden, out, bias=False))


class GaussianHead(nn.Module):
    """Per-pixel 3D Gaussian parameters: colour (SH coefficients), opacity, scale, rotation."""

    def __init__(self, dec_dim: int, patch_size: int, mlp_dim: int, sh_degree: int, eps: float) -> None:
        super().__init__()
        self.patch_size = patch_size
        pp = patch_size**2
        sh = (sh_degree + 1) ** 2
        self.norm = nn.LayerNorm(dec_dim, eps=eps)
        self.mlp_rgb = _mlp(dec_dim, mlp_dim, pp * 3 * sh)
        self.mlp_opacity = _mlp(dec_dim, mlp_dim, pp)
        self.mlp_scale2 = _mlp(dec_dim, mlp_dim, pp * 3)
        self.mlp_rotation = _mlp(dec_dim, mlp_dim, pp * 4)

    def forward(
        self, tokens: torch.Tensor, grid: tuple[int, int], record: Recorder = None
    ) -> dict[str, torch.Tensor]:
        """``tokens`` ``[M, N, C]`` -> dict of ``[M, H, W, c]`` tensors."""
        t = self.norm(tokens)
        raw = {
            "rgb": self.mlp_rgb(t),
            "opacity": self.mlp_opacity(t),
            "scale": self.mlp_scale2(t),
            "rotation": self.mlp_rotation(t),
        }
        if record is not None:
            record("head_gs_norm_out", t)
            for name, value in raw.items():
                record(f"head_gs_{name}_raw", value)
        p = self.patch_size
        rgb = unshuffle_channels_last(raw["rgb"], grid, p)
        opacity = unshuffle_channels_last(torch.sigmoid(raw["opacity"]), grid, p)
        scale = unshuffle_channels_last(raw["scale"] * 0.1, grid, p)
        rot = unshuffle_channels_last(raw["rotation"], grid, p)
        rot = rot / torch.linalg.vector_norm(rot, dim=-1, keepdim=True).clamp(min=1e-5)
        return {"gs_rgb": rgb, "gs_opacity": opacity, "gs_scale": scale, "gs_rotation": rot}
