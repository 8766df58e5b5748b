"""Same-padded 2D convolution through tiled FFTs (overlap-save), for the skip branch on CPU.

Why: the pts3d heads' skip branch runs two 5x5, 256 -> 256 channel convolutions at full image
resolution (about 330 GFLOP per output image); on CPU they are most of MV-DUSt3R's time. Split into
T x T output tiles (inputs of T+k-1 with the halo), a convolution becomes one complex matrix product
per frequency bin, ``[C_out, C_in] @ [C_in, tiles]``: (T+k-1) * ((T+k-1)//2 + 1) bins per T*T pixels
instead of k*k multiply-adds per pixel and channel pair (5x5, T = 16: about 5x fewer real operations,
including the transforms).

Numerics: float32 FFTs of size T+k-1 add rounding of order 1e-6 relative to the activations' scale
(``test_fft_conv_matches_conv2d``); the skip branch's result is scaled by 1e-4 before it reaches the
pointmap, so the network output moves far less than the parity tolerance.

The kernel spectrum is computed once per weight tensor (``FFTConvKernel``; complex64
``[bins, C_out, C_in]``, 115 MB for a 256 -> 256 5x5 layer at T = 16) and reused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Output tile side. 16 divides every supported image side (multiples of the 16-px patch).
TILE = 16


def kernel_spectrum(weight: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """``weight [O, C, k, k]`` -> complex ``[bins, O, C]``: conjugated DFT of the zero-padded kernel
    (conjugated because ``conv2d`` computes a correlation)."""
    o, c, k, _ = weight.shape
    f = tile + k - 1
    spec = torch.fft.rfft2(weight.double(), s=(f, f)).conj()  # [O, C, f, fr]
    return spec.permute(2, 3, 0, 1).reshape(-1, o, c).to(torch.complex64).contiguous()


def fft_conv2d(
    x: torch.Tensor, spectrum: torch.Tensor, bias: torch.Tensor | None, k: int, tile: int = TILE
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=k // 2)`` with ``spectrum = kernel_spectrum(weight, tile)``."""
    b, c, h, w = x.shape
    bins, o, ci = spectrum.shape
    if ci != c:
        raise ValueError(f"kernel expects {ci} input channels, got {c}")
    p = k // 2
    f = tile + k - 1
    nh, nw = -(-h // tile), -(-w // tile)
    xp = F.pad(x, (p, nw * tile - w + p, p, nh * tile - h + p))
    # Tiles with the frequency axes first, so the spectrum is already [bins, C, tiles] for the product.
    tiles = xp.unfold(2, f, tile).unfold(3, f, tile).permute(4, 5, 1, 0, 2, 3).contiguous()  # [f, f, C, B, nh, nw]
    spec_x = torch.fft.rfft2(tiles, dim=(0, 1))  # [f, fr, C, B, nh, nw]
    fr = spec_x.shape[1]
    if f * fr != bins:
        raise ValueError(f"spectrum has {bins} bins, expected {f * fr} for tile {tile} and kernel {k}")
    prod = torch.matmul(spectrum, spec_x.reshape(bins, c, b * nh * nw))  # [bins, O, tiles]
    y = torch.fft.irfft2(prod.reshape(f, fr, o, b, nh, nw), s=(f, f), dim=(0, 1))[:tile, :tile]
    y = y.permute(3, 2, 4, 0, 5, 1).reshape(b, o, nh * tile, nw * tile)[:, :, :h, :w]
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y.contiguous()
