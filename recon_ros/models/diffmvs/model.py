"""DiffMVS / CasDiffMVS network (one class, the variant is chosen by :class:`DiffMVSConfig`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import ContextNet, ConvBNReLU, FeaturePyramid
from .config import DiffMVSConfig
from .diffusion import DiffusionRefiner
from .geometry import (
    convex_upsample,
    depth_to_norm_inv,
    full_projection,
    group_correlation,
    norm_inv_to_depth,
    sample_inverse_depth_hypotheses,
    warp_to_reference,
)
from .init_depth import InitialDepth

#: Noise argument of :meth:`DiffMVSNet.forward`: explicit N(0,1) maps in call order, a seeded
#: generator, or None for the global RNG.
NoiseArg = Sequence[Tensor] | torch.Generator | None


class LocalCostVolume(nn.Module):
    """Cost volume over a few hypotheses around the current estimate (no parameters).

    The source views are weighted by the (nearest-upsampled) view weights of the initial stage, so
    occlusion reasoning is done once at 1/8 resolution and reused.
    """

    def __init__(self, groups: int, min_radius: float, max_radius: float) -> None:
        super().__init__()
        # One group count serves every refinement stage (the reference uses cost_dim_stage[1] for both;
        # the official settings have equal counts per stage).
        self.groups = groups
        self.min_radius = min_radius
        self.max_radius = max_radius

    def forward(
        self,
        u: Tensor,
        confidence: Tensor | None,
        *,
        features: list[Tensor],
        cams: Tensor,
        view_weights: Tensor,
        interval: float,
        num: int,
        depth_min: Tensor,
        depth_max: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Return ``(cost [B,G*num,H,W], samples [B,num,H,W])`` for the estimate ``u [B,1,H,W]``."""
        samples = sample_inverse_depth_hypotheses(
            u.squeeze(1), num, interval, confidence, self.min_radius, self.max_radius
        )
        depths = norm_inv_to_depth(samples, depth_min, depth_max)
        ref_feature = features[0]
        ref_proj = full_projection(cams[:, 0])
        acc: Tensor | None = None
        wsum: Tensor | None = None
        for v in range(1, len(features)):
            warped = warp_to_reference(features[v], full_projection(cams[:, v]), ref_proj, depths)
            corr = group_correlation(ref_feature, warped, self.groups, consume=True)
            weight = view_weights[:, v - 1 : v].unsqueeze(1)  # [B,1,1,H,W]
            if acc is None or wsum is None:
                acc = weight * corr
                wsum = 1e-8 + weight
            else:
                acc = acc + weight * corr
                wsum = wsum + weight
        assert acc is not None and wsum is not None, "at least one source view is required"
        volume = acc / wsum
        b, g, d, h, w = volume.shape
        return volume.reshape(b, g * d, h, w), samples


class DiffMVSNet(nn.Module):
    """DiffMVS (refinement at 1/4, convex x4 to full res) and CasDiffMVS (1/4 and 1/2, convex x2 each).

    Pipeline: feature pyramid on every view and a context net on the reference view; a full-range
    plane sweep at 1/8 gives the initial depth and per-view visibility weights; each refinement stage
    then runs a DDIM-sampled diffusion model over the normalised inverse depth using small local cost
    volumes, and convex upsampling carries the result to the next resolution.
    """

    def __init__(self, cfg: DiffMVSConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hdim, cdim = cfg.hidden_dim, cfg.context_dim
        self.feature = FeaturePyramid(cfg.base_channels, cfg.feat_dim_stage)
        self.context = ContextNet(tuple(h + c for h, c in zip(hdim, cdim)))  # type: ignore[arg-type]
        inits: list[nn.Module] = [
            # 1/4 -> 1/8: the GRU state lives at the U-Net bottleneck (two levels down)
            nn.Sequential(ConvBNReLU(hdim[1], 32, 3, 2), nn.Conv2d(32, hdim[1], 3, padding=1, bias=False))
        ]
        if cfg.is_cascade:
            # 1/2 -> 1/8: three U-Net levels at stage 3
            inits.append(
                nn.Sequential(
                    ConvBNReLU(hdim[2], 32, 3, 2),
                    ConvBNReLU(32, 32, 3, 2),
                    nn.Conv2d(32, hdim[2], 3, padding=1, bias=False),
                )
            )
        self.hidden_init = nn.ModuleList(inits)
        self.update_block_depth2 = self._make_refiner(1)
        blocks = [self.update_block_depth2]
        if cfg.is_cascade:
            self.update_block_depth3 = self._make_refiner(2)
            blocks.append(self.update_block_depth3)
        # The official checkpoints store every refiner tensor twice: the reference model keeps the
        # same module objects in this list as well. Registering them again reproduces those keys.
        self.update_block = nn.ModuleList(blocks)
        self.depthnet = InitialDepth(cdim[0], cfg.cost_dim_stage[0])
        self.local_cost = LocalCostVolume(cfg.cost_dim_stage[1], cfg.min_radius, cfg.max_radius)

    def _make_refiner(self, s: int) -> DiffusionRefiner:
        cfg = self.cfg
        return DiffusionRefiner(
            dim=cfg.unet_dim[s],
            dim_mults=cfg.unet_dim_mults[s],
            hidden_dim=cfg.hidden_dim[s],
            num_sample=cfg.cost_num[s],
            groups_cost=cfg.cost_dim_stage[s],
            context_dim=cfg.context_dim[s],
            iters=cfg.stage_iters[s],
            up_ratio=cfg.up_ratio,
            timesteps=cfg.timesteps[s],
            sampling_timesteps=cfg.sampling_timesteps[s],
            ddim_eta=cfg.ddim_eta[s],
            noise_scale=cfg.scale[s],
            norm_groups=cfg.resnet_block_groups,
        )

    @staticmethod
    def _draw_noise(noise: NoiseArg, cursor: list[int], like: Tensor, count: int) -> list[Tensor]:
        """Next ``count`` N(0,1) maps shaped like ``like`` (explicit list, generator or global RNG)."""
        out = []
        for _ in range(count):
            if noise is None:
                out.append(torch.randn_like(like))
            elif isinstance(noise, torch.Generator):
                draw = torch.randn(like.shape, generator=noise, device=noise.device, dtype=like.dtype)
                out.append(draw.to(like.device))
            else:
                if cursor[0] >= len(noise):
                    raise ValueError(f"noise list too short: needs more than {len(noise)} maps")
                given = noise[cursor[0]]
                if not torch.jit.is_tracing() and tuple(given.shape) != tuple(like.shape):
                    raise ValueError(
                        f"noise map {cursor[0]} has shape {tuple(given.shape)}, expected {tuple(like.shape)}"
                    )
                out.append(given.to(device=like.device, dtype=like.dtype))
            cursor[0] += 1
        return out

    def forward(
        self,
        imgs: Sequence[Tensor],
        proj_matrices: dict[str, Tensor],
        depth_values: Tensor,
        noise: NoiseArg = None,
    ) -> dict[str, list[Tensor]]:
        """Run the network.

        Args:
            imgs: V tensors ``[B,3,H,W]`` (view 0 = reference), RGB in [0,1]; H, W multiples of 32.
            proj_matrices: ``stage1``/``stage2``/``stage3`` -> ``[B,V,2,4,4]`` (extrinsic, K scaled to
                1/8, 1/4, 1/2 resolution).
            depth_values: ``[B,N]`` inverse depths ``linspace(1/dmax, 1/dmin, N)``; only the ends and N
                are used.
            noise: see :data:`NoiseArg`; the list form must hold ``cfg.noise_shapes(...)`` maps in order.

        Returns:
            ``{"depth": [...], "conf": [], "photometric_confidence": [...]}``. ``depth`` holds metric maps
            ``[B,h,w]``: the 1/8 initial depth, its x2 convex upsampling, then per refinement stage the
            refined map and its convex upsampling (the last entry is full resolution). The confidences
            ``[B,H,W]`` (nearest-upsampled to full resolution) are conf0 of the initial cost volume and
            one sigmoid confidence per refinement stage. ``conf`` stays empty (training only upstream).
        """
        cfg = self.cfg
        inv_lo = depth_values[:, 0].float().view(-1, 1, 1, 1)
        inv_hi = depth_values[:, -1].float().view(-1, 1, 1, 1)
        depth_max = 1.0 / inv_lo
        depth_min = 1.0 / inv_hi
        base_interval = 1.0 / depth_values.shape[1]
        cursor = [0]

        features = [self.feature(img) for img in imgs]
        contexts = self.context(imgs[0])
        depths: list[Tensor] = []
        confidences: list[Tensor] = []

        # Stage 0: full-range initialisation at 1/8 resolution.
        feats = [f["stage1"] for f in features]
        cams = proj_matrices["stage1"].float()
        b, _, h, w = feats[0].shape
        n0 = cfg.numdepth_initial
        planes = torch.arange(n0, device=feats[0].device).view(1, -1, 1, 1) / (n0 - 1.0)
        hyp = norm_inv_to_depth(planes.expand(1, n0, h, w), depth_min, depth_max)
        upmask, u, depth0, view_weights, conf0 = self.depthnet(
            feats, torch.relu(contexts["stage1"]), cams, hyp, depth_min, depth_max
        )
        depths.append(depth0)
        confidences.append(F.interpolate(conf0, scale_factor=8, mode="nearest").squeeze(1))
        u_up = convex_upsample_metric(u, upmask, 2, depth_min, depth_max)
        depths.append(u_up)

        for s in cfg.refine_stages:
            key = f"stage{s + 1}"
            feats = [f[key] for f in features]
            cams = proj_matrices[key].float()
            u0 = depth_to_norm_inv(depths[-1].unsqueeze(1), depth_min, depth_max)
            weights = F.interpolate(view_weights, scale_factor=2**s, mode="nearest")
            hidden, context = torch.split(contexts[key], [cfg.hidden_dim[s], cfg.context_dim[s]], dim=1)
            hidden = torch.tanh(self.hidden_init[s - 1](hidden))
            context = torch.relu(context)
            cost_fn = partial(
                self.local_cost,
                features=feats,
                cams=cams,
                view_weights=weights,
                interval=base_interval * cfg.depth_interval_ratio[s],
                num=cfg.cost_num[s],
                depth_min=depth_min,
                depth_max=depth_max,
            )
            eps = self._draw_noise(noise, cursor, u0, cfg.sampling_timesteps[s])
            upmask, _, us, confs = self.update_block[s - 1](u0, hidden, context, cost_fn, eps)
            depths.append(norm_inv_to_depth(us[-1], depth_min, depth_max).squeeze(1))
            confidences.append(
                F.interpolate(confs[-1].unsqueeze(1), scale_factor=2 ** (3 - s), mode="nearest").squeeze(1)
            )
            depths.append(convex_upsample_metric(us[-1], upmask, cfg.up_ratio, depth_min, depth_max))
        if isinstance(noise, Sequence) and cursor[0] != len(noise):
            raise ValueError(f"noise list has {len(noise)} maps but the forward pass used {cursor[0]}")
        return {"depth": depths, "conf": [], "photometric_confidence": confidences}


def convex_upsample_metric(u: Tensor, upmask: Tensor, ratio: int, depth_min: Tensor, depth_max: Tensor) -> Tensor:
    """Convex-upsample normalised inverse depth ``[B,1,h,w]`` and return metric depth ``[B,rh,rw]``."""
    up = convex_upsample(u, upmask, ratio).unsqueeze(1)
    return norm_inv_to_depth(up, depth_min, depth_max).squeeze(1)
