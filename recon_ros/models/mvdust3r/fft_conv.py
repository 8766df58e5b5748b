"""Same-padded 2D convolution through tiled discrete Fourier transforms written as matrix products.

Why: the pts3d heads' skip branch runs two 5x5, 256 -> 256 channel convolutions at full image
resolution (about 330 GFLOP per output image); on CPU they are most of MV-DUSt3R's time, and
PyTorch's direct convolution reaches only a fraction of the machine's matrix-multiply speed on them.
Overlap-save on T x T output tiles turns each convolution into, per frequency bin, one
``[2*C_out, 2*C_in] @ [2*C_in, tiles]`` real matrix product: (T+k-1)(T+k-1)/2 bins per T*T pixels
instead of k*k multiply-adds per pixel and channel pair (5x5, T = 16: about 7x fewer operations).
The small DFTs themselves are multiplications with precomputed DFT matrices (large GEMMs), which is
much faster on CPU than many tiny FFT calls.

Numerics: float32 DFTs of size T+k-1 add rounding of order 1e-6 relative to the activations' scale
(measured on the skip branch: see the tests); the skip branch's result is scaled by 1e-4 before it
reaches the pointmap, so the network output changes by far less than the parity tolerance.

Only used for eager CPU inference (:func:`use_fft_conv`); exports and GPUs keep ``F.conv2d``
(cuDNN / TensorRT choose their own fast algorithms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Output tile side. 16 divides every supported image side (multiples of the 16-px patch).
TILE = 16


def use_fft_conv(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`fft_conv2d` should replace ``F.conv2d`` for this call."""
    k = weight.shape[-1]
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.shape[-2] == k
        and k >= 5
        and k % 2 == 1
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.onnx.is_in_onnx_export()
        and not torch.compiler.is_compiling()
    )


_MATS: dict[tuple[int, int, int], tuple[torch.Tensor, ...]] = {}


def _dft_matrices(f: int, k: int, t: int) -> tuple[torch.Tensor, ...]:
    """Real matrices of the transforms for DFT size ``f``, kernel ``k`` and output tile ``t``.

    * ``col``  ``[f, 2*fr]``: real rows -> (Re | Im) of their one-sided DFT (``fr = f//2 + 1`` bins);
    * ``row``  ``[2f, f]``: (Re; Im) of the full DFT along the other axis;
    * ``irow`` ``[2t, f]``: (Re; Im) of the inverse full DFT, first ``t`` outputs only;
    * ``icol`` ``[2*fr, t]``: (Re; Im) of one-sided bins -> first ``t`` real outputs of the inverse.
    Built in float64 with ``torch.fft`` on identity matrices, then rounded to float32.
    """
    key = (f, k, t)
    if key not in _MATS:
        eye = torch.eye(f, dtype=torch.float64)
        col = torch.fft.rfft(eye, dim=1)  # [f, fr]: x @ col = rfft(x)
        full = torch.fft.fft(eye, dim=0)  # [f, f]: full @ x = fft(x) along rows
        ifull = torch.fft.ifft(eye.to(torch.complex128), dim=0)[:t]  # [t, f]
        fr = col.shape[1]
        eye_r = torch.eye(fr, dtype=torch.complex128)
        icol_re = torch.fft.irfft(eye_r, n=f, dim=1)[:, :t]  # [fr, t]
        icol_im = torch.fft.irfft(1j * eye_r, n=f, dim=1)[:, :t]
        _MATS[key] = tuple(
            m.float().contiguous()
            for m in (
                torch.cat((col.real, col.imag), dim=1),
                torch.cat((full.real, full.imag), dim=0),
                torch.cat((ifull.real, ifull.imag), dim=0),
                torch.cat((icol_re, icol_im), dim=0),
            )
        )
    return _MATS[key]


def _forward_dft(tiles: torch.Tensor, col: torch.Tensor, row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``tiles [..., f(rows), n(cols)]`` -> (Re, Im) ``[f, fr, ...]`` of their 2D DFT (rows first in output)."""
    f = row.shape[1]
    fr = col.shape[1] // 2
    n = tiles.shape[-1]
    lead = tiles.shape[:-2]
    t1 = tiles.reshape(-1, n) @ col[:n]  # [..., f rows, 2fr]
    t1 = t1.reshape(-1, tiles.shape[-2], 2 * fr).transpose(0, 1).reshape(tiles.shape[-2], -1)  # [rows, ...*2fr]
    z = row[:, : tiles.shape[-2]] @ t1  # [2f, ...*2fr]
    z = z.reshape(2, f, *lead, 2, fr)
    re = z[0, ..., 0, :] - z[1, ..., 1, :]
    im = z[0, ..., 1, :] + z[1, ..., 0, :]
    return re, im  # [f, ..., fr]


def fft_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tile: int = TILE) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=k // 2)`` for odd square kernels, computed with tiled DFTs."""
    b, c, h, w = x.shape
    o, ci, k, _ = weight.shape
    if ci != c:
        raise ValueError(f"weight expects {ci} input channels, got {c}")
    p = k // 2
    f = tile + k - 1
    nh, nw = -(-h // tile), -(-w // tile)
    col, row, irow, icol = (m.to(x.device) for m in _dft_matrices(f, k, tile))
    fr = col.shape[1] // 2
    nt = b * nh * nw

    # Input tiles (overlap-save): [B, C, nh, nw, f, f], then 2D DFT -> [f, fr] bins.
    xp = F.pad(x, (p, nw * tile - w + p, p, nh * tile - h + p))
    tiles = xp.unfold(2, f, tile).unfold(3, f, tile).permute(1, 0, 2, 3, 4, 5)  # [C, B, nh, nw, f, f]
    xr, xi = _forward_dft(tiles.contiguous(), col, row)  # [f, C, B, nh, nw, fr]
    xm = torch.stack((xr, xi), dim=1).reshape(f, 2 * c, nt, fr).permute(0, 3, 1, 2)  # [f, fr, 2C, T]
    xm = xm.reshape(f * fr, 2 * c, nt)

    # Kernel DFT (zero-padded to f). Correlation (what conv2d computes) multiplies by conj(W).
    wr, wi = _forward_dft(weight, col, row)  # [f, O, C, fr]
    wr = wr.permute(0, 3, 1, 2).reshape(f * fr, o, c)
    wi = wi.permute(0, 3, 1, 2).reshape(f * fr, o, c)
    wm = torch.cat((torch.cat((wr, wi), dim=2), torch.cat((-wi, wr), dim=2)), dim=1)  # [bins, 2O, 2C]

    ym = torch.bmm(wm, xm)  # [bins, 2O, T] = (Re; Im) of the product
    # Inverse along rows (first `tile` outputs), then along columns.
    ym = ym.reshape(f, fr * 2 * o * nt)
    u = (irow @ ym).reshape(2, tile, fr, 2, o, nt)
    ur = u[0, :, :, 0] - u[1, :, :, 1]  # [tile, fr, O, T]
    ui = u[0, :, :, 1] + u[1, :, :, 0]
    uu = torch.cat((ur, ui), dim=1).permute(2, 3, 0, 1)  # [O, T, tile, 2fr]
    y = uu.reshape(-1, 2 * fr) @ icol  # [O*T*tile, tile]
    y = y.reshape(o, b, nh, nw, tile, tile).permute(1, 0, 2, 4, 3, 5).reshape(b, o, nh * tile, nw * tile)
    y = y[:, :, :h, :w]
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y.contiguous()
