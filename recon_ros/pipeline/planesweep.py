"""Classical plane-sweep stereo with ZNCC matching cost, in torch (CPU or GPU).

Two passes: a sweep at half resolution over ``num_planes`` fronto-parallel planes uniform in inverse
depth, then a full-resolution per-pixel sweep of 16 hypotheses spanning +-2 coarse steps around a smooth
centre surface (the pass-1 peak refined by a parabola, median-filtered, bilinearly upsampled), finished with
a parabola fit. (A source that is the reference's rectified stereo partner is matched with OpenCV's
StereoSGBM instead, see ``stereo_sgbm.py``.) Per hypothesis the source images are warped (OpenCV's
``remap`` on CPU with OpenCV >= 5, ``grid_sample`` otherwise) and ZNCC is computed with box filters; sources
are combined by averaging the better half of the sources that see the pixel, which tolerates a source that is
occluded there.

Where the time goes (320x240, 4 sources, 96 planes): about 3 M bilinear samples per source and a few dozen
elementwise passes over each. The implementation therefore (1) projects with rays precomputed once per
source (multiply-adds and one reciprocal per sample instead of a 3x3 matmul, a matrix inverse and a meshgrid
per call), (2) warps with ``remap`` on CPU and tells which samples are inside from the coordinate maps
(3.5x faster than ``grid_sample`` with an all-ones channel; OpenCV 4.x's remap snaps samples to 1/32 pixel,
which costs accuracy, so there ``grid_sample`` stays), (3) box-filters the three ZNCC moments at once
as one tall zero-padded image (OpenCV's running sums on CPU, 2.5x faster than shifted torch adds and 15x
faster than ``avg_pool2d``; now the largest single cost, about 30 % of a view), (4) computes ZNCC from the
box sums in place, on preallocated buffers in that padded layout (contiguous, no page faults from fresh
tensors), (5) keeps the better sources with a running max/min insertion instead of stacking all of them for
``topk``, and (6) avoids the CPU kernels that are 5-40x slower than float arithmetic (``where``, boolean
masks, interleaving stacks, ``sqrt`` of exact zeros). Per view on one thread this is 0.15-0.18 s, 0.60-0.66x
the time of the grid_sample version with the same scores within 4e-4 (OpenCV 5.1; with OpenCV 4.10,
0.80-0.84x; benchmarks/README.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from recon_ros.config import DepthConfig
from recon_ros.geometry.camera import PinholeCamera
from recon_ros.geometry.se3 import invert
from recon_ros.pipeline.frames import View
from recon_ros.pipeline.sources import DepthEstimate
from recon_ros.pipeline.stereo_sgbm import rectified_partner, sgbm_depth
from recon_ros.pipeline.warping import as_tensor

REFINE_SAMPLES = 16
REFINE_SPAN = 2.0  # coarse steps either side of the pass-1 peak
MIN_TEXTURE_STD = 2.0 / 255.0  # ZNCC is meaningless on flat patches
ZNCC_EPS = 1e-6
# A warped pixel is inside the source when all four bilinear taps are, i.e. its position is within the pixel
# centres [0, W - 1] x [0, H - 1]; 1e-4 px more absorbs float rounding at the border (as the bilinear weight
# >= 1 - 1e-4 on an all-ones channel that the code before did warp).
INSIDE_TOLERANCE_PX = 1e-4


# OpenCV 5's remap interpolates float images at the exact sample position (agrees with grid_sample within 4e-4
# in ZNCC); 4.x quantises positions to 1/32 pixel.
OPENCV_EXACT_REMAP = int(cv2.__version__.split(".")[0]) >= 5

# Pass 2 centres its hypotheses on the pass-1 peak after a median over this window (half-resolution pixels):
# neighbours' hypotheses enter each ZNCC window, so the centres must form a smooth surface (see estimate).
CENTER_MEDIAN = 5


def _parabola_peak(score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best score, fractional index of the peak (parabola through the best sample and its neighbours) and
    whether the best sample is interior, along dim 0 of ``score`` ``[N, H, W]``."""
    n = score.shape[0]
    s, i = score.max(0)
    if n < 3:  # no neighbours on both sides to fit through
        return s, i.float(), torch.zeros_like(s, dtype=torch.bool)
    i_c = i.clamp(1, n - 2)
    s_m = score.gather(0, (i_c - 1).unsqueeze(0))[0]
    s_0 = score.gather(0, i_c.unsqueeze(0))[0]
    s_p = score.gather(0, (i_c + 1).unsqueeze(0))[0]
    denom = s_m - 2 * s_0 + s_p
    shift = torch.where(denom < -1e-6, 0.5 * (s_m - s_p) / denom, torch.zeros_like(denom)).clamp(-0.5, 0.5)
    interior = (i >= 1) & (i <= n - 2)
    return s, torch.where(interior, i_c.float() + shift, i.float()), interior


def to_gray(rgb: np.ndarray, device: str | torch.device) -> torch.Tensor:
    img = as_tensor(rgb, device) / 255.0
    return (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]).unsqueeze(0)  # [1,H,W]


def _window_sums(x: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    """``out[i] = sum(x[i + j * stride] for j in range(window))`` over a 1-D tensor.

    Binary doubling (sums of 1, 2, 4, ... terms, combined by the bits of ``window``: 4 adds for 7, not 6),
    each add over contiguous 1-D slices, which is the fastest elementwise layout on CPU.
    """
    n_out = x.numel() - (window - 1) * stride
    powers = [x]  # powers[j][i]: sum of 2**j terms starting at i
    while 2 ** len(powers) <= window:
        p, half = powers[-1], 2 ** (len(powers) - 1) * stride
        powers.append(p[:-half] + p[half:])
    out, used = None, 0
    for j in reversed(range(len(powers))):
        if window & (1 << j):
            part = powers[j][used * stride : used * stride + n_out]
            out = part if out is None else out + part
            used += 1 << j
    assert out is not None
    return out


def box_sum_padded(padded: torch.Tensor, window: int) -> torch.Tensor:
    """Window sums of the images in ``padded`` ``[..., H + 2r, W + 2r]`` (contiguous, r = window // 2 zeros on
    every side): ``[..., H, W]``, a strided view.

    The images are treated as one tall image (on CPU: OpenCV's running-sum box filter, 2.5x faster than the
    torch adds) or one flat array (elsewhere): a window of an inner pixel never leaves its own padded image,
    so sums that bleed across image boundaries only land in positions that are dropped.
    """
    *lead, hp, wp = padded.shape
    r = window // 2
    h, w = hp - 2 * r, wp - 2 * r
    if padded.device.type == "cpu":
        tall = padded.numpy().reshape(-1, wp)
        sums = torch.from_numpy(cv2.boxFilter(tall, -1, (window, window), normalize=False,
                                              borderType=cv2.BORDER_CONSTANT)).view(-1)[r * wp + r :]
    else:
        sums = _window_sums(_window_sums(padded.reshape(-1), window, 1), window, wp)
    return sums.as_strided((*lead, h, w), _padded_strides(lead, hp, wp))


def _padded_strides(lead: list[int], hp: int, wp: int) -> tuple[int, ...]:
    strides = [wp, 1]
    step = hp * wp
    for n in reversed(lead):
        strides.insert(0, step)
        step *= n
    return tuple(strides)


def box_sum(x: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over a ``window`` x ``window`` neighbourhood of the last two dims, zero outside the image."""
    r = window // 2
    return box_sum_padded(F.pad(x, (r, r, r, r)).contiguous(), window)


def _box_sums_full(padded: torch.Tensor, window: int, out: torch.Tensor, opencv: bool) -> torch.Tensor:
    """Window sums of ``padded`` ``[..., Hp, Wp]`` (zero borders of ``window // 2``) written to ``out`` in the same
    layout: the sum for inner pixel (y, x) lands at (y + r, x + r); border positions hold partial sums (OpenCV)
    or are left as they are."""
    *_, hp, wp = padded.shape
    if opencv:
        cv2.boxFilter(padded.numpy().reshape(-1, wp), -1, (window, window), dst=out.numpy().reshape(-1, wp),
                      normalize=False, borderType=cv2.BORDER_CONSTANT)
    else:
        r = window // 2
        out[..., r : hp - r, r : wp - r] = box_sum_padded(padded, window)
    return out


@dataclass
class _Source:
    """One source image at one scale, with what projecting reference pixels into it needs."""

    image: torch.Tensor  # [1, 1, Hs, Ws] gray (grid_sample)
    gray: np.ndarray | None  # [Hs, Ws] float32 for OpenCV (CPU), else None
    # Reference pixel p = (u, v, 1) at inverse depth s projects to (rays[:, p] + s ray_o) in the source,
    # homogeneous: source pixels (OpenCV's remap) or grid_sample's normalised coordinates (z is the same).
    rays: torch.Tensor  # [3, H*W]
    ray_o: tuple[float, float, float]


@dataclass
class _Reference:
    """Reference statistics in the zero-padded layout ``[H + 2r, W + 2r]`` of the ZNCC moments, so that every
    per-hypothesis operation runs over contiguous memory (the r-wide border is computed and dropped)."""

    image: torch.Tensor  # [H, W] gray
    padded: torch.Tensor  # the gray image, zero border
    mean: torch.Tensor  # box mean (border 0)
    inv_count: torch.Tensor  # 1 / pixels of each box inside the image (border 1)
    # ZNCC with the moments' box SUMS (S0 = sum w, S1 = sum w^2, S2 = sum w r) and count c:
    #   ncc = (S2 - S0 mean) / (sqrt(S1 - S0^2 / c) std sqrt(c) + eps c)
    # equals cov / (std_w std + eps) with cov, std_w from box means (multiply both by c); textured when
    # S1 - S0^2 / c > MIN_TEXTURE_STD^2 c.
    std_sqrt_count: torch.Tensor  # std * sqrt(c) (border 1)
    eps_count: torch.Tensor  # ZNCC_EPS * c (border 1)
    texture_threshold: torch.Tensor  # MIN_TEXTURE_STD^2 * c (border inf: never textured)


class PlaneSweepDepth:
    name = "planesweep"

    def __init__(
        self, cfg: DepthConfig, device: str | torch.device = "cpu", confidence_threshold: float = 0.5, chunk: int = 16
    ):
        self.cfg = cfg
        self.confidence_threshold = confidence_threshold
        self.device = torch.device(device)
        self.chunk = chunk
        cpu = self.device.type == "cpu"
        # Where OpenCV does the work on CPU (see _warp and _box_sums_full); torch elsewhere, or when False. Warps
        # use remap only from OpenCV 5 on: OpenCV 4.x's remap snaps samples to 1/32 pixel (measured with 4.10:
        # scores up to 0.027 off grid_sample's; the second rig's published AbsRel 0.695 -> 0.718 %, and still
        # 0.716 % with remap in the coarse pass only).
        self.remap_coarse = self.remap_fine = cpu and OPENCV_EXACT_REMAP
        self.opencv_box = cpu

    def _warp(self, src: _Source, inv_depths: torch.Tensor, warped: torch.Tensor, inside: torch.Tensor,
              coords: torch.Tensor, r: int) -> None:
        """Warp ``src`` to the reference at ``inv_depths`` (``[D]`` planes or ``[D, H*W]`` per pixel).

        Writes, in the padded layout ``[D, H + 2r, W + 2r]``, the bilinear samples (zero outside the source,
        like ``grid_sample``'s zero padding: a sample with taps outside is blended with zeros) into the inner
        part of ``warped``, and 1.0 / 0.0 into the inner part of ``inside``: all four taps inside the source
        (see INSIDE_TOLERANCE_PX) and the point in front of it. ``coords`` ``[3, D, H*W]`` is
        scratch (fresh tensors of this size cost page faults: 2-3x the time of the arithmetic).

        ``inside`` comes from the coordinates (cheaper than warping an all-ones channel). CPU with OpenCV >= 5:
        OpenCV's ``remap`` on the coordinate maps, 3.5-3.8x faster than ``grid_sample`` with an all-ones
        channel (measured per chunk and source, 1 thread: 0.91 vs 3.5 ms at 160x120 x 16 planes, 1.2 vs 4.5 ms
        at 320x240 x 4 hypotheses; the samples agree within 4e-4 in ZNCC). ``warpPerspective`` per plane,
        which computes the homography's coordinates itself, measured no faster
        (1.0 ms) once ``inside`` is added.
        """
        d, hp, wp = warped.shape
        h, w = hp - 2 * r, wp - 2 * r
        inner = (slice(None), slice(r, r + h), slice(r, r + w))
        hs, ws = src.image.shape[-2:]
        tol = INSIDE_TOLERANCE_PX
        if inv_depths.dim() == 1:
            inv_depths = inv_depths.view(-1, 1)
        z = torch.add(src.rays[2], inv_depths, alpha=src.ray_o[2], out=coords[2])  # [D, HW]: source depth / ref depth
        # Behind the source camera: far outside (Z clamped to 1e-8 before the reciprocal), and explicitly not
        # inside, since a point on the source's optical axis would still land on a pixel (0 * 1e8).
        front = torch.gt(z, 1e-8).float() if z.min() <= 1e-8 else None
        inv_z = z.clamp_min_(1e-8).reciprocal_()
        if src.gray is None:  # grid_sample's interleaved grid, written in place (a stack is slow on CPU)
            grid = inv_z.new_empty((d, h * w, 2))
            gx, gy = grid[..., 0], grid[..., 1]
        else:
            gx, gy = coords[0], coords[1]
        torch.add(src.rays[0], inv_depths, alpha=src.ray_o[0], out=gx).mul_(inv_z)
        torch.add(src.rays[1], inv_depths, alpha=src.ray_o[1], out=gy).mul_(inv_z)
        if src.gray is not None:
            dst = warped[inner].numpy()
            mx, my = gx.view(d, h, w).numpy(), gy.view(d, h, w).numpy()
            for j in range(d):
                cv2.remap(src.gray, mx[j], my[j], cv2.INTER_LINEAR, dst=dst[j], borderMode=cv2.BORDER_CONSTANT)
            # inside: |g - c| <= c + tol with c the source's centre (pixels), for x and y
            cx, cy, bx, by = (ws - 1) / 2, (hs - 1) / 2, (ws - 1) / 2 + tol, (hs - 1) / 2 + tol
            ix = torch.le(gx.sub_(cx).abs_(), bx, out=inv_z)
            iy = torch.le(gy.sub_(cy).abs_(), by, out=gx)
        else:
            sampled = F.grid_sample(src.image, grid.view(1, d * h, w, 2), mode="bilinear", padding_mode="zeros",
                                    align_corners=True)
            warped[inner] = sampled.view(d, h, w)
            # the same in grid_sample's coordinates (centre 0, half size 1)
            bx, by = 1.0 + 2.0 * tol / max(ws - 1, 1), 1.0 + 2.0 * tol / max(hs - 1, 1)
            ix = torch.le(torch.abs(gx, out=coords[0]), bx, out=coords[0])
            iy = torch.le(torch.abs(gy, out=coords[1]), by, out=coords[1])
        torch.mul(ix.view(d, h, w), iy.view(d, h, w), out=inside[inner])
        if front is not None:
            inside[inner].mul_(front.view(d, h, w))

    def _scores(self, ref: _Reference, sources: list[_Source], inv_depths: torch.Tensor) -> torch.Tensor:
        """Aggregated ZNCC ``[D, H, W]`` for inverse depths ``[D]`` (planes) or ``[D, H*W]`` (per pixel).

        CPU torch runs ``where``, boolean comparisons, interleaving stacks, allocations and non-contiguous
        writes several times slower than in-place float arithmetic on contiguous memory (measured, torch 2.13),
        so every step works in place on preallocated buffers in the padded layout, and the masks are floats
        written by comparisons with ``out=`` and applied with a multiply-add.
        """
        h, w = ref.image.shape
        d = inv_depths.shape[0]
        win = self.cfg.zncc_window
        r = win // 2
        hp, wp = h + 2 * r, w + 2 * r
        k = max(1, math.ceil(len(sources) / 2))
        new = inv_depths.new_empty
        moments = new((3, d, hp, wp))  # warped source w, w^2, w * reference; zero borders
        moments[0].zero_()
        warped = moments[0]
        # (OpenCV writes every position; the torch box sums only the inner ones, so the border must be finite)
        sums = new((3, d, hp, wp)) if self.opencv_box else inv_depths.new_zeros((3, d, hp, wp))
        s0, s1, s2 = sums
        inside, tmp = inv_depths.new_zeros((d, hp, wp)), new((d, hp, wp))
        seen = new((d, hp, wp))
        coords = new((3, d, h * w))
        top = [new((d, hp, wp)) for _ in range(k)]  # the k best scores so far, best first
        for i, src in enumerate(sources):
            self._warp(src, inv_depths, warped, inside, coords, r)
            if i == 0:
                seen.copy_(inside)
            else:
                seen.add_(inside)  # sources that see the pixel
            torch.mul(warped, warped, out=moments[1])
            torch.mul(warped, ref.padded, out=moments[2])
            _box_sums_full(moments, win, sums, self.opencv_box)
            torch.mul(s0, ref.inv_count, out=tmp)
            s1.addcmul_(s0, tmp, value=-1.0)  # S1 - S0^2 / c: c x the source's variance
            s2.addcmul_(s0, ref.mean, value=-1.0)  # S2 - S0 mean: c x the covariance
            # Scored only inside the source image and where the warped source is textured.
            torch.gt(s1, ref.texture_threshold, out=tmp)
            ok = inside.mul_(tmp)
            # The floor keeps sqrt off exact zeros (7x slower than other values in torch 2.13 on CPU); it only moves
            # pixels that are masked as untextured anyway (their s1 is below MIN_TEXTURE_STD^2 c >= 6e-5).
            torch.addcmul(ref.eps_count, s1.clamp_min_(1e-12).sqrt_(), ref.std_sqrt_count, out=s1)
            ncc = s2.div_(s1)
            # ncc where ok, else -1 (the worst score); the first source writes the top slot directly.
            dst = top[0] if i == 0 else s1
            torch.addcmul(torch.sub(ok, 1.0, out=tmp), ncc, ok, out=dst)
            if i == 0:
                continue
            # Insert into the running top-k (2 ops per slot, 1 for the last slot of a full list): equals topk
            # over the stacked sources.
            filled = min(i, k)
            for j in range(filled):
                if j == k - 1:  # the last slot keeps the larger; what falls out is dropped
                    torch.maximum(top[j], dst, out=top[j])
                    break
                # what falls out of slot j moves on (into the free slot after the last filled one)
                lo = top[filled] if j == filled - 1 else (tmp if dst is s1 else s1)
                torch.minimum(top[j], dst, out=lo)
                torch.maximum(top[j], dst, out=top[j])
                dst = lo
        inner = (slice(None), slice(r, r + h), slice(r, r + w))
        if len(sources) > 1 and k > 1:
            # The better half of the sources that SEE the pixel: ceil(n / 2) of them. Near the image borders
            # fewer sources see a pixel, and counting the others as worst scores rejected it (second rig:
            # 86.6 % -> 89.4 % of pixels valid, raw AbsRel 6.0 % -> 4.1 %).
            total, count = top[0], s0.fill_(1.0)
            for j in range(1, k):
                wj = torch.gt(seen, 2 * j, out=tmp)
                total.addcmul_(top[j], wj)
                count.add_(wj)
            return total.div_(count)[inner]
        return top[0][inner]

    def _prepare(self, ref: View, sources: list[View], scale: float) -> tuple[_Reference, list[_Source]]:
        """Gray images, reference statistics and source projections at ``scale`` x the view resolution."""
        def resized(v: View) -> tuple[torch.Tensor, np.ndarray]:
            img = to_gray(v.rgb, self.device)
            K = v.K.copy()
            if scale != 1.0:
                h, w = img.shape[-2:]
                nh, nw = max(8, round(h * scale)), max(8, round(w * scale))
                img = F.interpolate(img.unsqueeze(0), size=(nh, nw), mode="area")[0]
                K = PinholeCamera.from_K(K, w, h).resized(nw, nh).K
            return img, K

        win = self.cfg.zncc_window
        r = win // 2
        ref_img, K_ref = resized(ref)
        h, w = ref_img.shape[-2:]
        count = box_sum(torch.ones((h, w), device=self.device), win)
        mom = box_sum(torch.stack([ref_img[0], ref_img[0] * ref_img[0]]), win) / count
        std = (mom[1] - mom[0] ** 2).clamp_min(0).sqrt()

        def padded(x: torch.Tensor, border: float) -> torch.Tensor:
            return F.pad(x, (r, r, r, r), value=border).contiguous()

        reference = _Reference(
            ref_img[0], padded(ref_img[0], 0.0), padded(mom[0], 0.0), padded(1.0 / count, 1.0),
            padded(std * count.sqrt(), 1.0), padded(ZNCC_EPS * count, 1.0),
            padded(MIN_TEXTURE_STD**2 * count, math.inf))
        v = torch.arange(h, dtype=torch.float64, device=self.device).view(h, 1)
        u = torch.arange(w, dtype=torch.float64, device=self.device).view(1, w)
        remap = self.remap_coarse if scale < 1.0 else self.remap_fine
        src = []
        for s in sources:
            img, K = resized(s)
            hs, ws = img.shape[-2:]
            T = invert(s.T_world_cam) @ ref.T_world_cam
            # One matrix per source maps reference pixels (u, v, 1) x depth to the source's homogeneous pixel:
            # per sample only multiply-adds and one reciprocal (composed in float64, once per view). For
            # grid_sample, in its coordinates (g = 2 / (Ws - 1) * u - 1, align_corners=True).
            N = np.eye(3)
            if not remap:
                N = np.array([[2.0 / max(ws - 1, 1), 0.0, -1.0], [0.0, 2.0 / max(hs - 1, 1), -1.0], [0.0, 0.0, 1.0]])
            M = N @ K @ T[:3, :3] @ np.linalg.inv(K_ref)
            o = N @ K @ T[:3, 3]
            rays = torch.stack([(m[0] * u + (m[1] * v + m[2])).view(-1) for m in M.tolist()]).float()  # [3, HW]
            image = img.unsqueeze(0)
            gray = img[0].contiguous().numpy() if remap else None  # None: grid_sample
            src.append(_Source(image, gray, rays, (float(o[0]), float(o[1]), float(o[2]))))
        return reference, src

    @torch.inference_mode()
    def estimate(self, ref: View, sources: list[View], depth_range: tuple[float, float]) -> DepthEstimate:
        h, w = ref.rgb.shape[:2]
        if not sources:
            zeros = np.zeros((h, w), np.float32)
            return DepthEstimate(zeros, zeros, zeros.astype(bool))
        pair = rectified_partner(ref, sources)
        if pair is not None:  # a rectified stereo pair: semi-global matching along the rows (stereo_sgbm.py)
            depth_np, conf_np, valid_np, distinct = sgbm_depth(ref, pair, depth_range, self.cfg.stereo_fattening_check)
            return DepthEstimate(depth_np, conf_np, valid_np & (conf_np >= self.confidence_threshold),
                                 consistent_with=(pair.source.key,), distinctiveness=distinct)
        dev = self.device
        dmin, dmax = depth_range
        inv = torch.linspace(1.0 / dmax, 1.0 / dmin, self.cfg.num_planes, device=dev)

        # Pass 1 at half resolution: fronto-parallel planes (4x cheaper; pass 2 restores detail).
        ref_lo, src_lo = self._prepare(ref, sources, 0.5)
        hl, wl = ref_lo.image.shape
        volume = torch.cat([self._scores(ref_lo, src_lo, inv[j : j + self.chunk])
                            for j in range(0, len(inv), self.chunk)])  # [P, h/2, w/2]
        step = (inv[1] - inv[0]) if len(inv) > 1 else inv[0] * 0.1
        # Sub-plane peak, median-filtered and bilinearly upsampled: a continuous centre surface for pass 2.
        # Pass 2's ZNCC windows warp each neighbour at its own hypothesis, so a piecewise-constant centre (the
        # best plane, upsampled by nearest) pulled every pixel towards its coarse plane: a sawtooth of +-3 %
        # depth error across smooth walls (measured on the second rig: 44 % of pixels within 1 %, now 65 %).
        _, frac1, _ = _parabola_peak(volume)
        inv_lo = inv[0] + frac1 * step
        m = CENTER_MEDIAN
        if inv_lo.device.type == "cpu" and m in (3, 5):  # OpenCV's median takes float images for 3 and 5 only
            # Zero padding as unfold's, so every window holds the same m * m values: the same output, 0.09 instead
            # of 14 ms at 160x120 (1 thread, CPU time).
            padded_lo = np.pad(inv_lo.numpy(), m // 2)
            inv_lo = torch.from_numpy(cv2.medianBlur(padded_lo, m)[m // 2 : m // 2 + hl, m // 2 : m // 2 + wl].copy())
        else:
            inv_lo = F.unfold(inv_lo[None, None], m, padding=m // 2).median(1).values.view(hl, wl)
        best_inv = F.interpolate(inv_lo[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]

        # Pass 2 at full resolution: per-pixel hypotheses around the coarse optimum, then a parabola.
        ref_full, src = self._prepare(ref, sources, 1.0)
        step2 = max(1, self.chunk * hl * wl // (h * w))
        offsets = torch.linspace(-REFINE_SPAN, REFINE_SPAN, REFINE_SAMPLES, device=dev) * step
        hyp_inv = (best_inv.unsqueeze(0) + offsets.view(-1, 1, 1)).clamp(min=inv[0] * 0.5)
        hyp_flat = hyp_inv.view(REFINE_SAMPLES, h * w)
        # Chunks of hypotheses holding about as many samples as a pass-1 chunk: the moments stay in cache.
        score = torch.cat([self._scores(ref_full, src, hyp_flat[j : j + step2])
                           for j in range(0, REFINE_SAMPLES, step2)])
        s, frac, interior = _parabola_peak(score)
        inv_final = hyp_inv[0] + frac * (offsets[1] - offsets[0])
        depth = torch.where(inv_final > 0, 1.0 / inv_final.clamp_min(1e-6), torch.zeros_like(inv_final))
        conf = s.clamp(0, 1)
        valid = (conf >= self.confidence_threshold) & interior & (depth >= dmin) & (depth <= dmax)
        return DepthEstimate(depth.float().cpu().numpy(), conf.float().cpu().numpy(), valid.cpu().numpy())
