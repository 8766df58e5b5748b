"""The skip branch's Winograd F(4x4, 5x5) convolution equals ``F.conv2d`` (eager CPU inference path)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recon_ros.models.mvdust3r.heads import ConvBNBlock, PointHead
from recon_ros.models.mvdust3r.winograd import (
    OUT_TILE,
    POINTS,
    Workspace,
    winograd_conv2d,
    winograd_kernel,
    winograd_matrices,
)


def test_transform_matrices_compute_a_1d_correlation() -> None:
    at, g, bt = winograd_matrices(OUT_TILE, 5, POINTS)
    rng = np.random.default_rng(0)
    d, w = rng.standard_normal(OUT_TILE + 4), rng.standard_normal(5)
    ref = np.array([d[k : k + 5] @ w for k in range(OUT_TILE)])
    # float64 with entries up to 2^4 * 2^4: measured 7e-15
    np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), ref, atol=1e-12)
    with pytest.raises(ValueError, match="needs 7 finite points"):
        winograd_matrices(OUT_TILE, 5, POINTS[:-1])


# (batch, C, O, H, W): square, non-square (224x160-like), sides not multiples of the 4-px tile, tiny.
SHAPES = [(1, 256, 256, 64, 64), (2, 64, 32, 48, 80), (1, 32, 16, 37, 22), (2, 8, 4, 7, 5)]


@pytest.mark.parametrize("shape", SHAPES)
def test_winograd_conv_matches_conv2d(shape) -> None:
    b, c, o, h, w = shape
    g = torch.Generator().manual_seed(0)
    x, wt = torch.randn(b, c, h, w, generator=g), torch.randn(o, c, 5, 5, generator=g) / (5 * c**0.5)
    bias = torch.randn(o, generator=g)
    ref = F.conv2d(x.double(), wt.double(), bias.double(), padding=2)
    ws = Workspace()
    for memory_format in (torch.contiguous_format, torch.channels_last):
        out = winograd_conv2d(x.contiguous(memory_format=memory_format), winograd_kernel(wt), bias, ws)
        assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
        # float32 rounding of the transforms (entries up to 16): measured 2.3e-6 .. 9.6e-6 of the output
        # scale on these shapes, largest at 256 channels (F.conv2d in float32: 1.4e-7 .. 4.3e-7); 2e-5.
        assert (out.double() - ref).abs().max() <= 2e-5 * ref.abs().max()


def test_winograd_conv_rejects_bad_input() -> None:
    k = winograd_kernel(torch.randn(4, 8, 5, 5))
    with pytest.raises(ValueError, match="input channels"):
        winograd_conv2d(torch.randn(1, 6, 8, 8), k, None)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        winograd_conv2d(torch.randn(8, 8, 8), k, None)
    with pytest.raises(ValueError, match="float32"):
        winograd_conv2d(torch.randn(1, 8, 8, 8, dtype=torch.float64), k, None)


def _randomise_bn(blk: ConvBNBlock) -> None:
    with torch.no_grad():
        blk.norm.running_mean.uniform_(-1, 1)
        blk.norm.running_var.uniform_(0.5, 2)
        blk.norm.weight.uniform_(0.5, 1.5)
        blk.norm.bias.uniform_(-0.5, 0.5)


def test_conv_bn_block_winograd_path_and_cache_follow_the_weights() -> None:
    assert ConvBNBlock.use_winograd
    torch.manual_seed(0)
    blk = ConvBNBlock(64, 16, 5, True, 1e-5).eval()
    _randomise_bn(blk)
    x = torch.randn(2, 64, 32, 48)
    with torch.no_grad():
        ref = blk.act(blk.norm(blk.conv(x)))  # the plain layers
        out = blk(x)
        assert blk._winograd is not None  # the Winograd path ran
        # same float32 rounding as above, after SELU: measured 5.5e-6 of the output scale; 2e-5
        assert (out - ref).abs().max() <= 2e-5 * ref.abs().max()
        blk.conv.weight.mul_(2)  # an in-place weight change invalidates the cached transform
        ref2 = blk.act(blk.norm(blk.conv(x)))
        assert (blk(x) - ref2).abs().max() <= 2e-5 * ref2.abs().max()
    # With autograd recording, the plain path runs (the Winograd path writes into buffers).
    blk._winograd = None
    blk(x.requires_grad_()).sum().backward()
    assert blk._winograd is None and x.grad is not None


def test_skip_branch_equals_plain_layers_non_square() -> None:
    torch.manual_seed(0)
    head = PointHead(32, 16, True, 64, 1e-4, (1.0, 1e9), 1e-5).eval()
    for blk in head.skip_proj:
        _randomise_bn(blk)
    x = torch.randn(3, 6, 48, 80)
    with torch.no_grad():
        out = head._skip(x)
        ref = x
        for blk in head.skip_proj:
            ref = blk.act(blk.norm(blk.conv(ref)))
    assert out.shape == ref.shape and out.is_contiguous()
    # four layers of float32 rounding, two of them Winograd: measured 2.3e-6 of the output scale
    assert (out - ref).abs().max() <= 2e-5 * ref.abs().max()
