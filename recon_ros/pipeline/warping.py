"""Torch projection helpers shared by plane sweep and fusion (batched, no per-pixel loops)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def as_tensor(a: np.ndarray, device: str | torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # A copy when the array is read-only (decoded message buffers): torch must not alias it.
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:
        a = a.copy()
    return torch.as_tensor(a, dtype=dtype, device=device)


def pixel_rays(K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[3, H*W]`` rays ``K^-1 [u, v, 1]`` for pixel centres (integer u, v)."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=K.dtype, device=K.device),
        torch.arange(width, dtype=K.dtype, device=K.device),
        indexing="ij",
    )
    pix = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)])
    return torch.linalg.inv(K) @ pix


def project_depths(
    depth: torch.Tensor, K_ref: torch.Tensor, K_src: torch.Tensor, T_src_ref: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project reference pixels at ``depth`` ``[..., H, W]`` into a source camera.

    Returns ``(u, v, z)`` in the source image, each shaped like ``depth``.
    """
    h, w = depth.shape[-2:]
    rays = pixel_rays(K_ref, h, w)  # [3, HW]
    lead = depth.shape[:-2]
    pts = rays.unsqueeze(0) * depth.reshape(-1, 1, h * w)  # [B, 3, HW]
    P = K_src @ T_src_ref[:3, :3]
    q = P @ pts + (K_src @ T_src_ref[:3, 3:4]).unsqueeze(0)
    z = q[:, 2]
    zs = torch.where(z.abs() < 1e-8, torch.full_like(z, 1e-8), z)
    u, v = q[:, 0] / zs, q[:, 1] / zs
    return u.reshape(*lead, h, w), v.reshape(*lead, h, w), z.reshape(*lead, h, w)


def sample(image: torch.Tensor, u: torch.Tensor, v: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``image`` ``[C, Hs, Ws]`` at pixel coordinates ``u, v`` ``[..., H, W]`` (zeros outside).

    Returns ``[C, ..., H, W]``. Pixel centres are integers, hence ``align_corners=True``.
    """
    c, hs, ws = image.shape
    lead = u.shape
    gx = u.reshape(1, -1, lead[-1]) / max(ws - 1, 1) * 2 - 1
    gy = v.reshape(1, -1, lead[-1]) / max(hs - 1, 1) * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)
    out = F.grid_sample(image.unsqueeze(0), grid, mode=mode, padding_mode="zeros", align_corners=True)
    return out.reshape(c, *lead)


def inside(u: torch.Tensor, v: torch.Tensor, width: int, height: int, margin: float = 0.0) -> torch.Tensor:
    return (u >= margin) & (u <= width - 1 - margin) & (v >= margin) & (v <= height - 1 - margin)
