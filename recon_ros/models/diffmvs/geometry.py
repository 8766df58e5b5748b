"""Camera geometry and depth parameterisation shared by the DiffMVS modules.

Conventions (MVSNet style, as in the official checkpoints):

* A per-view camera is stored as ``[2,4,4]``: slot 0 the world-to-camera extrinsic ``[R|t; 0 0 0 1]``
  (x_cam = R x_world + t), slot 1 the intrinsic K (top-left 3x3) already scaled to the resolution of
  the feature map it is used with.
* Depth is handled as *normalised inverse depth* ``u = (1/d - 1/dmax) / (1/dmin - 1/dmax)`` in [0, 1]
  (0 = far limit, 1 = near limit), which makes hypothesis spacing uniform in disparity.

The arithmetic below deliberately follows the operation order of the reference implementation so
float32 results agree to ~1e-6 (e.g. the depth range is carried as ``1/(1/x)``, not ``x``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def norm_inv_to_depth(u: Tensor, depth_min: Tensor, depth_max: Tensor) -> Tensor:
    """Normalised inverse depth -> metric depth; 1/d is clamped at 1e-6 so u < 0 cannot explode."""
    inv_lo = 1 / depth_max
    inv_hi = 1 / depth_min
    inv = (inv_lo + (inv_hi - inv_lo) * u).clamp(min=1e-6)
    return 1 / inv


def depth_to_norm_inv(depth: Tensor, depth_min: Tensor, depth_max: Tensor) -> Tensor:
    """Metric depth -> normalised inverse depth (inverse of :func:`norm_inv_to_depth`)."""
    inv_lo = 1 / depth_max
    inv_hi = 1 / depth_min
    return (1 / depth - inv_lo) / (inv_hi - inv_lo)


def _invert_rigid_projection(proj: Tensor) -> Tensor:
    """Closed-form inverse of ``[[M, v], [0, 0, 0, 1]]`` (M any invertible 3x3).

    ``torch.linalg.inv`` has no ONNX (opset 17) export, so exports use this adjugate form. It relies on
    the bottom row being (0, 0, 0, 1), which holds for every projection built from an extrinsic.
    """
    m = proj[..., :3, :3]
    v = proj[..., :3, 3:4]
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    co00, co01, co02 = e * i - f * h, f * g - d * i, d * h - e * g
    det = a * co00 + b * co01 + c * co02
    adj = torch.stack(
        [
            torch.stack([co00, c * h - b * i, b * f - c * e], -1),
            torch.stack([co01, a * i - c * g, c * d - a * f], -1),
            torch.stack([co02, b * g - a * h, a * e - b * d], -1),
        ],
        -2,
    )
    m_inv = adj / det[..., None, None]
    top = torch.cat([m_inv, -(m_inv @ v)], -1)
    # The inverse of a matrix with bottom row (0, 0, 0, 1) has that same bottom row.
    bottom = proj[..., 3:4, :]
    return torch.cat([top, bottom], -2)


def full_projection(cam: Tensor) -> Tensor:
    """``[B,2,4,4]`` camera -> ``[B,4,4]`` matrix ``[K E[:3,:4]; E[3]]`` mapping world to pixels*depth."""
    top = cam[:, 1, :3, :3] @ cam[:, 0, :3, :4]
    return torch.cat([top, cam[:, 0, 3:4, :]], dim=1)


def warp_to_reference(src_feature: Tensor, src_proj: Tensor, ref_proj: Tensor, depth_hypotheses: Tensor) -> Tensor:
    """Sample a source-view feature map at the reference pixels lifted to each depth hypothesis.

    Args:
        src_feature: ``[B,C,H,W]`` source features (or image).
        src_proj: ``[B,4,4]`` source projection ``[K E[:3,:4]; 0 0 0 1]`` (see :func:`full_projection`),
            with K at the resolution of ``src_feature``; a ``[B,2,4,4]`` camera (extrinsic, K) is
            converted with :func:`full_projection`.
        ref_proj: reference projection, same conventions and resolution.
        depth_hypotheses: ``[B,D,Hr,Wr]`` metric depth per reference pixel and hypothesis (a single
            ``[B,Hr,Wr]`` depth map counts as D = 1).

    Returns:
        ``[B,C,D,Hr,Wr]``: bilinear samples (``align_corners=True`` pixel convention, integer pixel
        centres, zeros outside the source image). With the true depth, ``out[:, :, d]`` reproduces the
        reference view wherever the scene is visible in the source view.
    """
    if src_proj.dim() == 4:
        src_proj = full_projection(src_proj)
    if ref_proj.dim() == 4:
        ref_proj = full_projection(ref_proj)
    if depth_hypotheses.dim() == 3:
        depth_hypotheses = depth_hypotheses.unsqueeze(1)
    b, _, h_src, w_src = src_feature.shape
    num_d, h, w = depth_hypotheses.shape[1:]
    if torch.onnx.is_in_onnx_export():
        rel = src_proj @ _invert_rigid_projection(ref_proj)
    else:
        rel = src_proj @ torch.linalg.inv(ref_proj)
    rot = rel[:, :3, :3]
    trans = rel[:, :3, 3:4]

    ys = torch.arange(h, dtype=torch.float32, device=src_feature.device)
    xs = torch.arange(w, dtype=torch.float32, device=src_feature.device)
    grid_y = ys.view(h, 1).expand(h, w).reshape(-1)
    grid_x = xs.view(1, w).expand(h, w).reshape(-1)
    pix = torch.stack((grid_x, grid_y, torch.ones_like(grid_x)))  # [3, H*W] homogeneous pixels
    rays = rot @ pix.unsqueeze(0)  # [B,3,H*W]
    pts = rays.unsqueeze(2) * depth_hypotheses.reshape(b, 1, num_d, h * w) + trans.view(b, 3, 1, 1)
    z = pts[:, 2:3]
    # A point exactly on the source camera plane would divide by zero; nudge it like the reference.
    z = torch.where(z == 0, z + 1e-8, z)
    xy = pts[:, :2] / z
    gx = xy[:, 0] / ((w_src - 1) / 2) - 1
    gy = xy[:, 1] / ((h_src - 1) / 2) - 1
    grid = torch.stack((gx, gy), dim=3).reshape(b, num_d * h, w, 2)
    warped = F.grid_sample(src_feature, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return warped.reshape(b, -1, num_d, h, w)


def group_correlation(ref_feature: Tensor, warped_src: Tensor, groups: int, consume: bool = False) -> Tensor:
    """Group-wise correlation ``[B,G,D,H,W]``: mean of ref*src over each block of C/G channels.

    Channel c belongs to group ``c // (C/G)`` (contiguous blocks), matching the trained weights.
    ``consume``: the caller no longer needs ``warped_src``, so the product may overwrite it (same values;
    saves allocating and first-touching a volume as large as the warped features, eager inference only).
    """
    b, c, d, h, w = warped_src.shape
    src = warped_src.reshape(b, groups, c // groups, d, h, w)
    ref = ref_feature.reshape(b, groups, c // groups, 1, h, w)
    in_place = consume and not torch.is_grad_enabled() and not torch.jit.is_tracing() and not torch.jit.is_scripting()
    return (src.mul_(ref) if in_place else src * ref).mean(2)


def convex_upsample(u: Tensor, mask_logits: Tensor, ratio: int) -> Tensor:
    """Upsample ``u [N,1,H,W]`` by ``ratio`` as a softmax-weighted mix of each pixel's 3x3 neighbours.

    ``mask_logits [N, 9*r*r, H, W]`` (channel = k*r*r + i*r + j, k the neighbour in row-major order,
    (i,j) the sub-pixel). Neighbours outside the image count as 0 (zero padding), as in training.
    Returns ``[N, r*H, r*W]``.
    """
    n, _, h, w = u.shape
    weights = torch.softmax(mask_logits.reshape(n, 1, 9, ratio, ratio, h, w), dim=2)
    padded = F.pad(u, (1, 1, 1, 1))
    # Slicing instead of F.unfold keeps the graph ONNX-friendly; values are identical.
    neigh = torch.stack([padded[:, :, ky : ky + h, kx : kx + w] for ky in range(3) for kx in range(3)], 2)
    neigh = neigh.reshape(n, 1, 9, 1, 1, h, w)
    up = torch.sum(weights * neigh, dim=2)  # [N,1,r,r,H,W]
    return up.permute(0, 1, 4, 2, 5, 3).reshape(n, ratio * h, ratio * w)


def sample_inverse_depth_hypotheses(
    u: Tensor,
    num: int,
    interval: float,
    confidence: Tensor | None,
    min_radius: float,
    max_radius: float,
) -> Tensor:
    """``num`` evenly spaced normalised-inverse-depth samples around ``u [B,H,W]`` -> ``[B,num,H,W]``.

    Without a confidence the half-width is ``num//2 * interval``. With one (confidence-aware sampling)
    it shrinks to ``min_radius`` times that where the previous iteration was confident and grows to
    ``max_radius`` times where it was not: ``r = r_min + (1-conf)(r_max - r_min)``. Clamped to [0,1].
    """
    radius = num // 2 * interval
    if confidence is None:
        lo = u - radius
        hi = u + radius
    else:
        r_min = min_radius * radius
        r_max = max_radius * radius
        adaptive = r_min + (1 - confidence) * (r_max - r_min)
        lo = u - adaptive
        hi = u + adaptive
    step = (hi - lo) / (num - 1)
    steps = torch.arange(num, dtype=u.dtype, device=u.device).reshape(1, -1, 1, 1)
    samples = steps * step.unsqueeze(1) + lo.unsqueeze(1)
    return samples.clamp(min=0, max=1)
