"""Depth initialisation at 1/8 resolution: full-range plane sweep, view weights, 3-D regularisation.

This is the only place where a full-range cost volume is built; everything later works on a few local
hypotheses around the current estimate. The view weights computed here are reused by all later stages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import ConvBNReLU
from .fast_ops import Conv3d
from .geometry import full_projection, group_correlation, norm_inv_to_depth, warp_to_reference


class DeconvBNReLU3d(nn.Module):
    """Stride-2 transposed 3-D conv + BatchNorm + ReLU (exactly doubles D, H, W)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose3d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.bn = nn.BatchNorm3d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class CostRegularization3d(nn.Module):
    """Small 3-D U-Net (two down/up levels with additive skips) producing one logit per hypothesis.

    Two stride-2 levels are why H/8, W/8 and the hypothesis count must be divisible by 4.
    """

    def __init__(self, cin: int, base: int = 8) -> None:
        super().__init__()
        self.conv0 = ConvBNReLU(cin, base, dims=3)
        self.conv1 = ConvBNReLU(base, base, dims=3)
        self.conv2 = ConvBNReLU(base, base * 2, stride=2, dims=3)
        self.conv3 = ConvBNReLU(base * 2, base * 2, dims=3)
        self.conv4 = ConvBNReLU(base * 2, base * 4, stride=2, dims=3)
        self.conv5 = ConvBNReLU(base * 4, base * 4, dims=3)
        self.conv6 = DeconvBNReLU3d(base * 4, base * 2)
        self.conv7 = DeconvBNReLU3d(base * 2, base)
        self.prob = Conv3d(base, 1, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        skip1 = self.conv1(self.conv0(x))
        skip2 = self.conv3(self.conv2(skip1))
        x = self.conv5(self.conv4(skip2))
        x = skip2 + self.conv6(x)
        x = skip1 + self.conv7(x)
        return self.prob(x)


class PixelViewWeight(nn.Module):
    """Per-pixel visibility weight of one source view: max over depth of a sigmoid score.

    Occluded or out-of-view pixels match poorly at every depth, so their maximum stays low and the view
    contributes little to the aggregated cost there.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(ConvBNReLU(groups, 8, dims=3), Conv3d(8, 1, 3, padding=1))

    def forward(self, corr: Tensor) -> Tensor:
        score = torch.sigmoid(self.conv(corr).squeeze(1))  # [B,D,H,W]
        return score.max(dim=1)[0].unsqueeze(1)  # [B,1,H,W]


def window4_sum(prob: Tensor) -> Tensor:
    """``out[d] = p[d-1] + p[d] + p[d+1] + p[d+2]`` along dim 1, zero outside the volume."""
    num_d = prob.shape[1]
    padded = F.pad(prob, (0, 0, 0, 0, 1, 2))
    return padded[:, 0:num_d] + padded[:, 1 : num_d + 1] + padded[:, 2 : num_d + 2] + padded[:, 3 : num_d + 3]


class InitialDepth(nn.Module):
    """Plane-sweep over ``numdepth_initial`` inverse-depth planes and soft-argmin regression.

    Returns ``(upmask, u, depth, view_weights, conf)``: 0.25-scaled convex-upsampling logits (from the
    context), normalised inverse depth ``[B,1,h,w]``, metric depth ``[B,h,w]``, view weights
    ``[B,V-1,h,w]`` and the photometric confidence ``[B,1,h,w]`` (probability mass of the 4 planes
    around the soft-argmin).
    """

    def __init__(self, context_dim: int, groups: int, ratio: int = 2) -> None:
        super().__init__()
        self.groups = groups
        self.pixel_view_weight = PixelViewWeight(groups)
        self.cost_regularization = CostRegularization3d(groups, 8)
        self.mask = nn.Sequential(
            nn.Conv2d(context_dim, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, ratio * ratio * 9, 1)
        )

    def forward(
        self,
        features: list[Tensor],
        context: Tensor,
        cams: Tensor,
        depth_hypotheses: Tensor,
        depth_min: Tensor,
        depth_max: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        num_d = depth_hypotheses.shape[1]
        upmask = 0.25 * self.mask(context)
        ref_feature = features[0]
        ref_proj = full_projection(cams[:, 0])
        # Aggregate sum_v w_v c_v / (sum_v w_v + 1e-8) on the fly (one view's volume in memory at a
        # time), in the same accumulation order as the reference code.
        acc: Tensor | None = None
        wsum: Tensor | None = None
        weights = []
        for v in range(1, len(features)):
            warped = warp_to_reference(features[v], full_projection(cams[:, v]), ref_proj, depth_hypotheses)
            corr = group_correlation(ref_feature, warped, self.groups, consume=True)
            weight = self.pixel_view_weight(corr)
            weights.append(weight)
            if acc is None or wsum is None:
                acc = weight.unsqueeze(1) * corr
                wsum = 1e-8 + weight.unsqueeze(1)
            else:
                acc = acc + weight.unsqueeze(1) * corr
                wsum = wsum + weight.unsqueeze(1)
        assert acc is not None and wsum is not None, "at least one source view is required"
        volume = acc / wsum
        view_weights = torch.cat(weights, dim=1)

        prob = torch.softmax(self.cost_regularization(volume).squeeze(1), dim=1)  # [B,D,h,w]
        planes = torch.arange(num_d, device=prob.device, dtype=torch.float32).view(1, num_d, 1, 1)
        index = torch.sum(planes * prob, dim=1, keepdim=True)
        u = index / (num_d - 1.0)
        depth = norm_inv_to_depth(u, depth_min, depth_max).squeeze(1)

        nearest = index.long().clamp(min=0, max=num_d - 1)  # floor (index >= 0)
        conf = torch.gather(window4_sum(prob), 1, nearest)
        return upmask, u, depth, view_weights, conf
