"""The CPU fast paths of the DiffMVS port compute what the plain torch ops compute (float32 rounding).

Tolerance 1e-5: oneDNN and im2col sum in different orders; measured max |d| 1.9e-6 on unit-variance
inputs (4->8 channels, 3x3x3). The end-to-end effect is covered by test_diffmvs_parity.py (1e-4).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recon_ros.models.diffmvs.backbone import FeaturePyramid
from recon_ros.models.diffmvs.fast_ops import Conv3d
from recon_ros.models.diffmvs.geometry import group_correlation

TOL = 1e-5


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_conv3d_matches_plain_conv3d(stride: int, bias: bool) -> None:
    torch.manual_seed(0)
    conv = Conv3d(4, 8, 3, stride=stride, padding=1, bias=bias).eval()
    x = torch.randn(1, 4, 12, 16, 20)
    with torch.inference_mode():
        ours = conv(x)
        plain = F.conv3d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    assert ours.shape == plain.shape
    assert (ours - plain).abs().max() <= TOL


def test_feature_pyramid_channels_last_matches_nchw_and_returns_nchw() -> None:
    torch.manual_seed(0)
    net = FeaturePyramid(8, (48, 32, 16)).eval()
    img = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        fast = net(img)
        plain = net._forward(img)  # the same layers on the NCHW input
    for k, v in plain.items():
        assert fast[k].is_contiguous()  # the cost volumes downstream expect NCHW
        assert (fast[k] - v).abs().max() <= TOL * max(1.0, float(v.abs().max()))


def test_group_correlation_consume_gives_the_same_values() -> None:
    torch.manual_seed(0)
    ref, warped = torch.randn(1, 8, 5, 6), torch.randn(1, 8, 3, 5, 6)
    expected = group_correlation(ref, warped.clone(), 4)
    with torch.inference_mode():
        consumed = group_correlation(ref, warped.clone(), 4, consume=True)
    assert torch.equal(expected, consumed)


@pytest.mark.parametrize("dims", [2, 3])
def test_conv_bn_relu_folded_matches_separate_batchnorm(dims: int) -> None:
    from recon_ros.models.diffmvs.backbone import ConvBNReLU

    torch.manual_seed(0)
    layer = ConvBNReLU(4, 8, 3, stride=2, dims=dims)
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        layer.bn.running_mean.uniform_(-1, 1)
        layer.bn.running_var.uniform_(0.5, 2)
        layer.bn.weight.uniform_(0.5, 1.5)
        layer.bn.bias.uniform_(-0.5, 0.5)
    layer.eval()
    x = torch.randn(1, 4, *([10] * (dims - 2)), 16, 20)
    with torch.inference_mode():
        folded = layer(x)
        separate = F.relu(layer.bn(layer.conv(x)))
    assert (folded - separate).abs().max() <= TOL
