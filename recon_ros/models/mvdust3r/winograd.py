"""Same-padded stride-1 2D convolution by Winograd's minimal filtering F(4x4, 5x5), for the skip branch on CPU.

Why: the pts3d heads' skip branch runs two 5x5, 256 -> 256 channel convolutions at full image
resolution; on CPU they are most of MV-DUSt3R's time and oneDNN's direct convolution already runs
them close to the FMA peak, so only fewer multiplications help. F(4x4, 5x5) computes each 4x4 output
tile from an 8x8 input tile with 64 products per channel pair instead of 16 * 25 = 400 (6.25x fewer);
the transforms are cheap by comparison.

Layout (one image at a time, channels innermost, in chunks of ~400 tiles): the padded ``[H, W, C]``
image is cut into overlapping 8x8 tiles ``[tiles, 8, 8, C]``; the input transform ``B^T d B`` (two
batched 8x8 products, one per axis) gives ``V[tiles, 64, C]``, one row per point of the 8x8
transform grid; the 64 points' ``[tiles, C] @ [C, O]`` products run as one grouped 1x1 convolution on
a channels-last view, so oneDNN (AVX-512) does them rather than the BLAS, which on this AMD CPU runs
AVX2 kernels at about half the speed (measured: 0.196 s for the 64 products via torch.bmm, 0.079 s as
1x1 convolutions); the output transform ``A^T M A`` (bias added in the same product) maps
``M[tiles, 64, O]`` back to 4x4 pixel blocks. The result is a channels-last ``[B, O, H, W]`` tensor,
so the next layer reads its channels innermost without a reorder.

Transform matrices: the interpolation points are 0, +-1, +-2, +-1/2 and infinity; ``A^T``, ``G``, ``B^T``
follow from Vandermonde matrices of those points (correlation is the transpose of polynomial
multiplication), computed here in float64; the Lagrange scale factors sit in ``G`` so ``B^T`` has small
entries. Numerics: on random data the float32 result is within ~1e-5 of the activations' scale of
``F.conv2d`` (``test/test_mvdust3r_winograd.py`` states the measured bound); the skip branch's output is scaled by
1e-4 before it reaches the pointmap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Output tile side m and kernel side r of F(m x m, r x r); n = m + r - 1 is the input tile side.
OUT_TILE = 4
KERNEL = 5
#: The n - 1 finite interpolation points (the n-th is infinity). Small magnitudes keep the float32
#: error low: with +-3 instead of +-1/2 (or F(6x6, 5x5)) the error grows ~40x, measured.
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)


def _vandermonde(points: tuple[float, ...], cols: int) -> np.ndarray:
    """Rows ``[a^0 .. a^(cols-1)]`` per finite point, then the point at infinity (leading coefficient)."""
    v = np.zeros((len(points) + 1, cols))
    for i, a in enumerate(points):
        v[i] = [a**k for k in range(cols)]
    v[-1, -1] = 1.0
    return v


def winograd_matrices(m: int, r: int, points: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A^T [m, n]``, ``G [n, r]``, ``B^T [n, n]`` (float64) with ``y = A^T ((G g) * (B^T d))`` the
    correlation ``y[k] = sum_j g[j] d[k + j]`` of an n-sample input ``d`` with an r-tap filter ``g``."""
    n = m + r - 1
    if len(points) != n - 1:
        raise ValueError(f"F({m}, {r}) needs {n - 1} finite points, got {len(points)}")
    bt = np.linalg.inv(_vandermonde(points, n)).T
    scale = np.ones(n)
    for i, a in enumerate(points):
        scale[i] = np.prod([a - b for j, b in enumerate(points) if j != i])
    return _vandermonde(points, m).T, _vandermonde(points, r) / scale[:, None], bt * scale[:, None]


@dataclass(frozen=True)
class WinogradKernel:
    """A convolution weight in the transform domain, computed once per weight tensor."""

    #: ``[n*n, O, C, 1, 1]`` (contiguous), each point's ``[O, C]`` matrix as a 1x1 convolution weight.
    u: torch.Tensor
    #: ``B^T [n, n]`` (input transform) and ``A^T [m, n]`` (output transform), float32.
    bt: torch.Tensor
    at: torch.Tensor
    m: int
    r: int


def winograd_kernel(weight: torch.Tensor, m: int = OUT_TILE, points: tuple[float, ...] = POINTS) -> WinogradKernel:
    """``weight [O, C, r, r]`` -> its F(m x m, r x r) transform ``G g G^T`` per channel pair."""
    o, c, r, r2 = weight.shape
    if r != r2:
        raise ValueError(f"weight must have a square kernel, got {r}x{r2}")
    at, g, bt = winograd_matrices(m, r, points)
    n = m + r - 1
    gd = torch.from_numpy(g)
    u = torch.einsum("ax,ocxy,by->aboc", gd, weight.detach().double().cpu(), gd).reshape(n * n, o, c, 1, 1)
    u = u.to(torch.float32).contiguous()
    return WinogradKernel(
        u=u,
        bt=torch.from_numpy(bt).to(torch.float32),
        at=torch.from_numpy(at).to(torch.float32),
        m=m,
        r=r,
    )


#: Tiles per chunk: the transform-domain temporaries of a chunk (64 x tiles x 256 x 4 B, 26 MB at 400
#: tiles) stay near the L3 size and below glibc's mmap threshold, so they are reused, not re-faulted.
CHUNK_TILES = 400


def _grouped_1x1(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """Grouped 1x1 convolution through oneDNN whatever the thread count: ``F.conv2d`` sends 1x1
    kernels on small batches with one thread to its im2col path (per-group BLAS products and a
    concatenation, measured 2x slower here)."""
    if torch.backends.mkldnn.is_available():
        return torch.ops.aten.mkldnn_convolution(x, weight, None, [0, 0], [1, 1], [1, 1], groups)
    return F.conv2d(x, weight, groups=groups)


class Workspace:
    """Scratch buffers reused from one call to the next.

    Why: allocated fresh on every call, the first touch of the transform-domain buffers' pages cost
    more than the transforms themselves (measured on one 256-channel 224x224 layer: the tile gather
    0.064 s -> 0.013 s, the copies 0.065 s -> 0.013 s with reuse). Hold one for a run of layers and
    drop it afterwards to give the memory back (about 110 MB for 256 channels at 224x224).
    """

    def __init__(self) -> None:
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A float32 ``shape`` view of the buffer ``name``, grown when too small (contents undefined)."""
        numel = int(np.prod(shape))
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=torch.float32)
            self._bufs[name] = buf
        return buf[:numel].view(shape)


def _one_image(
    x: torch.Tensor, kernel: WinogradKernel, bias: torch.Tensor | None, ws: Workspace, out: torch.Tensor
) -> None:
    """``x [H, W, C]`` -> ``out [H, W, O]`` (both may be strided views), in chunks of tile rows."""
    h, w, c = x.shape
    m, r = kernel.m, kernel.r
    n = m + r - 1
    nn_ = n * n
    p = r // 2
    o = kernel.u.shape[1]
    nh, nw = -(-h // m), -(-w // m)
    # Zero-padded copy (tile-aligned): only the border is cleared, the interior is overwritten.
    xp = ws.get("pad", (nh * m + r - 1, nw * m + r - 1, c))
    xp[:p].zero_()
    xp[p + h :].zero_()
    xp[:, :p].zero_()
    xp[:, p + w :].zero_()
    xp[p : p + h, p : p + w].copy_(x)
    # Sides that are not multiples of the tile: whole tiles go to a scratch image, cropped at the end.
    full = out if (nh * m, nw * m) == (h, w) else ws.get("out", (nh * m, nw * m, o))
    rows = max(1, CHUNK_TILES // nw)
    u = kernel.u.view(nn_ * o, c, 1, 1)
    bt, at = kernel.bt, kernel.at
    for i0 in range(0, nh, rows):
        rr = min(rows, nh - i0)
        t = rr * nw
        # Tile-major layout throughout ([tiles, ..., C]): a tile's n rows of n pixels are n runs of
        # n*C contiguous values in the channels-last input, and the transformed tiles come out as the
        # [tiles, 64, C] rows the grouped product reads, so no transposes between the stages
        # (measured against a point-major layout with two transposes: 0.78 vs 0.93 of the direct
        # convolution per layer with 2 threads on the shared VM, equal with 1 thread).
        d = ws.get("a", (rr, nw, n, n, c))
        strip = xp[i0 * m : (i0 + rr) * m + r - 1]
        d.copy_(strip.unfold(0, n, m).unfold(1, n, m).permute(0, 1, 3, 4, 2))
        # Input transform B^T d B, one axis at a time (16 multiply-adds per value instead of 64):
        # [t, x, (y C)] -> [t, a, (y C)], then [(t a), y, C] -> [(t a), b, C].
        t1 = ws.get("b", (t, n, n * c))
        torch.bmm(bt.expand(t, n, n), d.view(t, n, n * c), out=t1)
        v = ws.get("a", (t * n, n, c))  # d is dead
        torch.bmm(bt.expand(t * n, n, n), t1.view(t * n, n, c), out=v)
        # The 64 products [tiles, C] @ [C, O] as ONE grouped 1x1 convolution on the channels-last
        # [1, 64*C, rr, nw] view of v: oneDNN's AVX-512 kernel, and one parallel region instead of 64
        # (64 separate calls took 3-7x longer as soon as another process shared the 2 cores).
        prod = _grouped_1x1(v.view(1, rr, nw, nn_ * c).permute(0, 3, 1, 2), u, nn_)
        pm = prod.permute(0, 2, 3, 1).reshape(t, n, n * o)  # [t, a, (b O)], a view of the output
        # Output transform A^T M A the same way, bias added in the last product.
        z = ws.get("b", (t, m, n * o))
        torch.bmm(at.expand(t, m, n), pm, out=z)
        del prod, pm
        y = ws.get("a", (t * m, m, o))
        if bias is None:
            torch.bmm(at.expand(t * m, m, n), z.view(t * m, n, o), out=y)
        else:
            torch.baddbmm(bias.view(1, 1, o), at.expand(t * m, m, n), z.view(t * m, n, o), out=y)
        # [rr, nw, p, q, O] -> pixel rows [rr, p, nw, q, O]: runs of 4*O contiguous values.
        full[i0 * m : (i0 + rr) * m].view(rr, m, nw, m, o).copy_(y.view(rr, nw, m, m, o).permute(0, 2, 1, 3, 4))
    if full is not out:
        out.copy_(full[:h, :w])


def winograd_conv2d(
    x: torch.Tensor, kernel: WinogradKernel, bias: torch.Tensor | None, workspace: Workspace | None = None
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=r // 2)`` for ``x [B, C, H, W]`` (float32, CPU) with
    ``kernel = winograd_kernel(weight)``; returns a channels-last ``[B, O, H, W]`` tensor."""
    if x.dim() != 4:
        raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError(f"x must be float32 on the CPU, got {x.dtype} on {x.device}")
    b, c, h, w = x.shape
    if kernel.u.shape[2] != c:
        raise ValueError(f"kernel expects {kernel.u.shape[2]} input channels, got {c}")
    ws = workspace if workspace is not None else Workspace()
    out = torch.empty(b, h, w, kernel.u.shape[1], dtype=torch.float32)
    xh = x.permute(0, 2, 3, 1)
    for i in range(b):
        _one_image(xh[i], kernel, bias, ws, out[i])
    return out.permute(0, 3, 1, 2)
