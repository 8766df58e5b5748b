"""The skip branch's tiled-FFT convolution equals ``F.conv2d`` (eager CPU inference path)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recon_ros.models.mvdust3r.fft_conv import fft_conv2d, kernel_spectrum
from recon_ros.models.mvdust3r.heads import ConvBNBlock


@pytest.mark.parametrize("shape", [(2, 7, 5, 32, 48, 5), (1, 3, 4, 20, 37, 3), (1, 64, 32, 48, 80, 5)])
def test_fft_conv_matches_conv2d(shape) -> None:
    b, c, o, h, w, k = shape
    g = torch.Generator().manual_seed(0)
    x, wt = torch.randn(b, c, h, w, generator=g), torch.randn(o, c, k, k, generator=g)
    bias = torch.randn(o, generator=g)
    ref = F.conv2d(x, wt, bias, padding=k // 2)
    out = fft_conv2d(x, kernel_spectrum(wt), bias, k)
    # float32 FFT rounding: measured 3.8e-7, 2.4e-7 and 1.9e-6 of the output scale on these sizes
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_conv_bn_block_fft_path_and_cache_follow_the_weights(monkeypatch) -> None:
    monkeypatch.setattr(ConvBNBlock, "use_fft", True)
    monkeypatch.setattr(ConvBNBlock, "use_winograd", False)  # the Winograd path takes precedence
    torch.manual_seed(0)
    blk = ConvBNBlock(64, 16, 5, True, 1e-5).eval()
    with torch.no_grad():
        blk.norm.running_mean.uniform_(-1, 1)
        blk.norm.running_var.uniform_(0.5, 2)
        blk.norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 64, 32, 48)
    with torch.no_grad():
        ref = blk.act(blk.norm(blk.conv(x)))  # the plain layers
        out = blk(x)
        assert blk._spectrum is not None  # the FFT path ran
        assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
        blk.conv.weight.mul_(2)  # an in-place weight change invalidates the cached spectrum
        ref2 = blk.act(blk.norm(blk.conv(x)))
        assert (blk(x) - ref2).abs().max() <= 1e-5 * ref2.abs().max()
