"""Transformer blocks of the MV-DUSt3R encoder and decoder.

Submodule names (``norm1``, ``attn.qkv``, ``cross_attn.projq`` ...) are those of the official
state_dict, so checkpoints load without a name map.

The decoder blocks take the cross-attention memory as already projected keys/values
(:meth:`DecoderBlock.memory_kv`). Projection is per token, so projecting each view once and gathering
the views a query needs gives the same numbers as projecting a concatenated memory per query, while
avoiding recomputing it for every query view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear
from .rope import GridRoPE


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.act = nn.GELU()  # exact erf GELU (the tanh approximation fails the fixtures)
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[..., N, C]`` -> ``[..., heads, N, C // heads]``."""
    *lead, n, c = x.shape
    return x.reshape(*lead, n, heads, c // heads).transpose(-3, -2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[..., heads, N, d]`` -> ``[..., N, heads * d]``."""
    *lead, h, n, d = x.shape
    return x.transpose(-3, -2).reshape(*lead, n, h * d)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, rope: GridRoPE) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = Linear(dim, 3 * dim)
        self.proj = Linear(dim, dim)
        self.rope = rope

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        m, n, c = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(m, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = self.rope(q, grid)
        k = self.rope(k, grid)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(_merge_heads(out))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, rope: GridRoPE) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.projq = Linear(dim, dim)
        self.projk = Linear(dim, dim)
        self.projv = Linear(dim, dim)
        self.proj = Linear(dim, dim)
        self.rope = rope

    def memory_kv(self, y: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (rotated) and values of memory tokens ``[..., N, C]`` as ``[..., heads, N, d]``."""
        k = self.rope(_split_heads(self.projk(y), self.num_heads), grid)
        v = _split_heads(self.projv(y), self.num_heads)
        return k, v

    def forward(
        self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        q = self.rope(_split_heads(self.projq(x), self.num_heads), grid)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(_merge_heads(out))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float, rope: GridRoPE) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = SelfAttention(dim, num_heads, rope)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), grid)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Self-attention within a view, cross-attention to other views' (or paths') tokens, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float, rope: GridRoPE) -> None:
        super().__init__()
        # Registration order mirrors the official state_dict order.
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = SelfAttention(dim, num_heads, rope)
        self.cross_attn = CrossAttention(dim, num_heads, rope)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=eps)

    def memory_kv(self, y: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-view keys/values of memory tokens ``[..., N, C]`` (each view normalised on its own)."""
        return self.cross_attn.memory_kv(self.norm_y(y), grid)

    def forward(
        self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """``x``: ``[M, N, C]`` queries; ``k``, ``v``: ``[M, heads, Nk, d]`` from :meth:`memory_kv`."""
        x = x + self.attn(self.norm1(x), grid)
        x = x + self.cross_attn(self.norm2(x), k, v, grid)
        return x + self.mlp(self.norm3(x))
