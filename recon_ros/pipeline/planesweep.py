"""Classical plane-sweep stereo with ZNCC matching cost, in torch (CPU or GPU).

Two passes: a sweep at half resolution over ``num_planes`` fronto-parallel planes uniform in inverse
depth, then a full-resolution per-pixel sweep of 16 hypotheses spanning +-2 coarse steps around each pixel's best,
finished with a parabola fit. (A source that is the reference's rectified stereo partner is matched
with OpenCV's StereoSGBM instead, see ``stereo_sgbm.py``.) Per hypothesis the source images are warped
with ``grid_sample`` and ZNCC is computed with box filters; sources are combined by averaging the better half of their
scores, which tolerates a source that is occluded at that pixel.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from recon_ros.config import DepthConfig
from recon_ros.geometry.camera import PinholeCamera
from recon_ros.geometry.se3 import invert
from recon_ros.pipeline.frames import View
from recon_ros.pipeline.sources import DepthEstimate
from recon_ros.pipeline.stereo_sgbm import rectified_partner, sgbm_depth
from recon_ros.pipeline.warping import as_tensor, inside, project_depths, sample

REFINE_SAMPLES = 16
MIN_TEXTURE_STD = 2.0 / 255.0  # ZNCC is meaningless on flat patches


def to_gray(rgb: np.ndarray, device: str | torch.device) -> torch.Tensor:
    img = as_tensor(rgb, device) / 255.0
    return (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]).unsqueeze(0)  # [1,H,W]


class PlaneSweepDepth:
    name = "planesweep"

    def __init__(
        self, cfg: DepthConfig, device: str | torch.device = "cpu", confidence_threshold: float = 0.5, chunk: int = 16
    ):
        self.cfg = cfg
        self.confidence_threshold = confidence_threshold
        self.device = torch.device(device)
        self.chunk = chunk

    def _box(self, x: torch.Tensor) -> torch.Tensor:
        # Separable (1xw then wx1) box mean: 2w instead of w^2 adds per pixel, same result.
        w = self.cfg.zncc_window
        x = F.avg_pool2d(x, (1, w), stride=1, padding=(0, w // 2), count_include_pad=False)
        return F.avg_pool2d(x, (w, 1), stride=1, padding=(w // 2, 0), count_include_pad=False)

    def _scores(
        self, ref: torch.Tensor, ref_stats: tuple[torch.Tensor, torch.Tensor], K_ref: torch.Tensor,
        sources: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], depths: torch.Tensor,
    ) -> torch.Tensor:
        """Aggregated ZNCC ``[D, H, W]`` for per-pixel depth hypotheses ``depths`` ``[D, H, W]``."""
        mu_r, sd_r = ref_stats
        per_source = []
        for img, K_src, T_src_ref in sources:
            u, v, z = project_depths(depths, K_ref, K_src, T_src_ref)
            warped = sample(img, u, v)[0]  # [D,H,W]
            ok = inside(u, v, img.shape[-1], img.shape[-2]) & (z > 0)
            x = warped.unsqueeze(1)  # [D,1,H,W]
            mu_s = self._box(x)
            var_s = (self._box(x * x) - mu_s**2).clamp_min(0)
            cov = self._box(x * ref.unsqueeze(0)) - mu_s * mu_r
            ncc = (cov / (var_s.sqrt() * sd_r + 1e-6)).squeeze(1)
            ncc = torch.where(ok & (var_s.squeeze(1).sqrt() > MIN_TEXTURE_STD), ncc, -1.0)
            per_source.append(ncc)
        stacked = torch.stack(per_source)  # [S,D,H,W]
        k = max(1, math.ceil(len(per_source) / 2))
        return stacked.topk(k, dim=0).values.mean(0)

    def _prepare(self, ref: View, sources: list[View], scale: float):
        """Gray images, intrinsics and relative poses at ``scale`` x the view resolution."""
        def resized(v: View) -> tuple[torch.Tensor, torch.Tensor]:
            img = to_gray(v.rgb, self.device)
            K = v.K.copy()
            if scale != 1.0:
                h, w = img.shape[-2:]
                nh, nw = max(8, round(h * scale)), max(8, round(w * scale))
                img = F.interpolate(img.unsqueeze(0), size=(nh, nw), mode="area")[0]
                K = PinholeCamera.from_K(K, w, h).resized(nw, nh).K
            return img, as_tensor(K, self.device)

        ref_img, K_ref = resized(ref)
        mu_r = self._box(ref_img)
        sd_r = (self._box(ref_img * ref_img) - mu_r**2).clamp_min(0).sqrt()
        src = []
        for s in sources:
            img, K = resized(s)
            src.append((img, K, as_tensor(invert(s.T_world_cam) @ ref.T_world_cam, self.device)))
        return ref_img, (mu_r, sd_r), K_ref, src

    @torch.inference_mode()
    def estimate(self, ref: View, sources: list[View], depth_range: tuple[float, float]) -> DepthEstimate:
        h, w = ref.rgb.shape[:2]
        if not sources:
            zeros = np.zeros((h, w), np.float32)
            return DepthEstimate(zeros, zeros, zeros.astype(bool))
        pair = rectified_partner(ref, sources)
        if pair is not None:  # a rectified stereo pair: semi-global matching along the rows (stereo_sgbm.py)
            depth_np, conf_np, valid_np = sgbm_depth(ref, pair, depth_range)
            return DepthEstimate(depth_np, conf_np, valid_np & (conf_np >= self.confidence_threshold))
        dev = self.device
        dmin, dmax = depth_range
        inv = torch.linspace(1.0 / dmax, 1.0 / dmin, self.cfg.num_planes, device=dev)

        # Pass 1 at half resolution: fronto-parallel planes (4x cheaper; pass 2 restores detail).
        ref_lo, stats_lo, K_lo, src_lo = self._prepare(ref, sources, 0.5)
        hl, wl = ref_lo.shape[-2:]
        best_score = torch.full((hl, wl), -2.0, device=dev)
        best_inv = torch.zeros((hl, wl), device=dev)
        for start in range(0, len(inv), self.chunk):
            inv_c = inv[start : start + self.chunk]
            depths = (1.0 / inv_c).view(-1, 1, 1).expand(-1, hl, wl)
            score = self._scores(ref_lo, stats_lo, K_lo, src_lo, depths)
            s, i = score.max(0)
            better = s > best_score
            best_score = torch.where(better, s, best_score)
            best_inv = torch.where(better, inv_c[i], best_inv)
        best_inv = F.interpolate(best_inv[None, None], size=(h, w), mode="nearest")[0, 0]

        # Pass 2 at full resolution: per-pixel hypotheses around the coarse optimum, then a parabola.
        ref_img, stats, K_ref, src = self._prepare(ref, sources, 1.0)
        step = (inv[1] - inv[0]) if len(inv) > 1 else inv[0] * 0.1
        offsets = torch.linspace(-2.0, 2.0, REFINE_SAMPLES, device=dev) * step
        hyp_inv = (best_inv.unsqueeze(0) + offsets.view(-1, 1, 1)).clamp(min=inv[0] * 0.5)
        score = self._scores(ref_img, stats, K_ref, src, 1.0 / hyp_inv)
        s, i = score.max(0)
        i_c = i.clamp(1, REFINE_SAMPLES - 2)
        s_m = score.gather(0, (i_c - 1).unsqueeze(0))[0]
        s_0 = score.gather(0, i_c.unsqueeze(0))[0]
        s_p = score.gather(0, (i_c + 1).unsqueeze(0))[0]
        denom = s_m - 2 * s_0 + s_p
        shift = torch.where(denom < -1e-6, 0.5 * (s_m - s_p) / denom, torch.zeros_like(denom)).clamp(-0.5, 0.5)
        interior = (i >= 1) & (i <= REFINE_SAMPLES - 2)
        frac = torch.where(interior, i_c.float() + shift, i.float())
        inv_final = hyp_inv[0] + frac * (offsets[1] - offsets[0])
        depth = torch.where(inv_final > 0, 1.0 / inv_final.clamp_min(1e-6), torch.zeros_like(inv_final))
        conf = s.clamp(0, 1)
        valid = (conf >= self.confidence_threshold) & interior & (depth >= dmin) & (depth <= dmax)
        return DepthEstimate(depth.float().cpu().numpy(), conf.float().cpu().numpy(), valid.cpu().numpy())
