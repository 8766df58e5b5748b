"""2D rotary position embedding on a regular patch grid.

Every view of MV-DUSt3R has the same patch grid, so the positions never depend on the data. The
cos/sin tables for a grid are built once (per grid, head width, device and dtype) and reused; under
``torch.onnx.export`` / tracing they become constants, which keeps the exported graph static.

Convention (checked by the fixtures): a head's channels are split in two halves; the first half is
rotated by the token's patch row, the second by its patch column. Inside each half, channel ``i`` and
``i + D/2`` form a rotation pair with frequency ``base ** (-2i / D)`` (D = half width).
"""

from __future__ import annotations

import torch


class GridRoPE:
    """Applies 2D RoPE to ``[..., tokens, head_dim]`` tensors laid out row-major on a patch grid."""

    def __init__(self, base: float = 100.0) -> None:
        self.base = float(base)
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _axis_angles(self, n: int, half: int, device: torch.device) -> torch.Tensor:
        # Angles in float32 like the reference so tables agree to the last bit before cos/sin.
        inv_freq = 1.0 / (self.base ** (torch.arange(0, half, 2, device=device).float() / half))
        t = torch.arange(n, device=device, dtype=torch.float32)
        angles = torch.outer(t, inv_freq)
        return torch.cat((angles, angles), dim=-1)  # [n, half]

    def tables(
        self, grid: tuple[int, int], head_dim: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin`` of shape ``[gh*gw, head_dim]`` for the row-major token order of ``grid``."""
        key = (grid, head_dim, str(device), dtype)
        cached = self._tables.get(key)
        if cached is not None:
            return cached
        gh, gw = grid
        half = head_dim // 2
        size = max(gh, gw)
        angles = self._axis_angles(size, half, device).to(dtype)
        rows = torch.arange(gh * gw, device=device) // gw
        cols = torch.arange(gh * gw, device=device) % gw
        full = torch.cat((angles[rows], angles[cols]), dim=-1)  # [N, head_dim]
        cos, sin = full.cos(), full.sin()
        # Tables built while torch.export / dynamo traces are fake tensors: never keep those.
        if type(cos) is torch.Tensor and not torch.compiler.is_compiling():
            self._tables[key] = (cos, sin)
        return cos, sin

    def __call__(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        cos, sin = self.tables(grid, x.shape[-1], x.device, x.dtype)
        q = x.shape[-1] // 4
        # rotate_half inside each of the two halves: (a, b) -> (-b, a)
        a1, b1, a2, b2 = x.split(q, dim=-1)
        rotated = torch.cat((-b1, a1, -b2, a2), dim=-1)
        return x * cos + rotated * sin
