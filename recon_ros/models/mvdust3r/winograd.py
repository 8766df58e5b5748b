"""Same-padded stride-1 2D convolution by Winograd's minimal filtering F(4x4, 5x5), for the skip branch on CPU.

Why: the pts3d heads' skip branch runs two 5x5, 256 -> 256 channel convolutions at full image
resolution; on CPU they are most of MV-DUSt3R's time and oneDNN's direct convolution already runs
them close to the FMA peak, so only fewer multiplications help. F(4x4, 5x5) computes each 4x4 output
tile from an 8x8 input tile with 64 products per channel pair instead of 16 * 25 = 400 (6.25x fewer);
the transforms are cheap by comparison.

Layout (one image at a time, channels innermost): the input transform turns the padded ``[H, W, C]``
image into ``V[64, tiles, C]`` (one row per point of the 8x8 transform grid); each of the 64 points is
then an independent ``[tiles, C] @ [C, O]`` product, run as a 1x1 convolution on a channels-last view
so oneDNN (AVX-512) does it rather than the BLAS, which on this AMD CPU runs AVX2 kernels at about half
the speed; the output transform maps ``M[64, tiles, O]`` back to 4x4 pixel blocks. The result is a
channels-last ``[B, O, H, W]`` tensor, so the next layer reads its channels innermost without a reorder.

Transform matrices: the interpolation points are 0, +-1, +-2, +-1/2 and infinity; ``A^T``, ``G``, ``B^T``
follow from Vandermonde matrices of those points (correlation is the transpose of polynomial
multiplication), computed here in float64; the Lagrange scale factors sit in ``G`` so ``B^T`` has small
entries. Numerics: on random data the float32 result is within ~1e-5 of the activations' scale of
``F.conv2d`` (``test_winograd_conv.py`` states the measured bound); the skip branch's output is scaled by
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

    #: ``[n*n, O, C, 1, 1]``, each point's ``[O, C]`` matrix as a channels-last 1x1 convolution weight.
    u: torch.Tensor
    #: ``kron(B^T, B^T)`` ``[n*n, n*n]`` (input transform) and ``kron(A^T, A^T)`` ``[m*m, n*n]`` (output).
    kb: torch.Tensor
    ka: torch.Tensor
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
    # [O, C, 1, 1] is the same memory in either format; channels-last strides keep oneDNN from reordering.
    u = u.to(torch.float32).contiguous()
    u = u.as_strided(u.shape, (o * c, c, 1, c, c))
    return WinogradKernel(
        u=u,
        kb=torch.from_numpy(np.kron(bt, bt)).to(torch.float32),
        ka=torch.from_numpy(np.kron(at, at)).to(torch.float32),
        m=m,
        r=r,
    )


class Workspace:
    """Scratch buffers reused from one call to the next.

    Why: the transform-domain tensors are 4x the activation (205 MB for 256 channels at 224x224);
    allocated fresh on every call, the first touch of their pages cost more than the transforms
    themselves (measured: gather 0.064 s -> 0.013 s, copies 0.065 s -> 0.013 s per layer with reuse).
    Hold one for a run of layers and drop it afterwards to give the memory back.
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
    """``x [H, W, C]`` -> ``out [H, W, O]`` (both may be strided views)."""
    h, w, c = x.shape
    m, r = kernel.m, kernel.r
    n = m + r - 1
    p = r // 2
    o = kernel.u.shape[1]
    nh, nw = -(-h // m), -(-w // m)
    tiles = nh * nw
    hp, wp = nh * m + r - 1, nw * m + r - 1
    # Zero-padded copy: only the border is cleared, the interior is overwritten.
    xp = ws.get("pad", (hp, wp, c))
    xp[:p].zero_()
    xp[p + h :].zero_()
    xp[:, :p].zero_()
    xp[:, p + w :].zero_()
    xp[p : p + h, p : p + w].copy_(x)
    # Overlapping n x n tiles, [n, n, nh, nw, C]: each row of C channels is copied as one block.
    d = ws.get("a", (n * n, tiles * c))
    d.view(n, n, nh, nw, c).copy_(xp.unfold(0, n, m).unfold(1, n, m).permute(3, 4, 0, 1, 2))
    v = ws.get("b", (n * n, tiles * c))
    torch.mm(kernel.kb, d, out=v)
    v5 = v.view(n * n, 1, nh, nw, c)
    prod = ws.get("a", (n * n, tiles * o))  # d is dead after the input transform
    pv = prod.view(n * n, nh, nw, o)
    for k in range(n * n):
        # [1, C, nh, nw] channels-last view of V's k-th row: oneDNN's 1x1 convolution reads it in place.
        pv[k].copy_(F.conv2d(v5[k].permute(0, 3, 1, 2), kernel.u[k])[0].permute(1, 2, 0))
    y = ws.get("b", (m * m, tiles * o))  # v is dead after the products
    if bias is None:
        torch.mm(kernel.ka, prod, out=y)
    else:
        torch.addmm(bias.repeat(tiles), kernel.ka, prod, out=y)
    blocks = y.view(m, m, nh, nw, o).permute(2, 0, 3, 1, 4)  # [nh, m, nw, m, O]
    if (nh * m, nw * m) == (h, w):
        out.view(nh, m, nw, m, o).copy_(blocks)
    else:
        out.copy_(blocks.reshape(nh * m, nw * m, o)[:h, :w])


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
