"""MV-DUSt3R / MV-DUSt3R+ network.

Layout of the computation (V views, R reference-view paths; R = 1 for MV-DUSt3R):

* encoder: every view alone through a ViT with 2D RoPE -> tokens ``[B, V, N, C_enc]``;
* decoder: state ``[B, R, V, N, C]``. In path r, view r is the reference: it runs through
  ``dec_blocks`` and the other views through ``dec_blocks2``; a view's cross-attention reads the
  previous-layer tokens of every other view of the same path. MV-DUSt3R+ then runs
  ``dec_same_view_blocks``: each (path, view) token set cross-attends to the same view in the other
  paths. ``dec_norm`` closes the decoder;
* heads: per path, output slot 0 holds the reference view (``downstream_head1`` /
  ``downstream_GS_head.0``), slots > 0 the other views (``downstream_head2`` /
  ``downstream_GS_head.1``), all expressed in the reference camera frame. For path r > 0, slots 0 and r
  are swapped relative to input order (:func:`slot_to_view`).

Everything is indexed with tables built from Python integers, so shapes never depend on data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .blocks import DecoderBlock, EncoderBlock
from .config import MVDust3RConfig
from .heads import GaussianHead, PointHead
from .linear import Linear
from .rope import GridRoPE


def slot_to_view(n_views: int, n_paths: int) -> list[list[int]]:
    """``table[p][s]``: input view shown in output slot ``s`` of path ``p``."""
    table = []
    for p in range(n_paths):
        row = list(range(n_views))
        row[0], row[p] = row[p], row[0]
        table.append(row)
    return table


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[M, 3, H, W]`` -> ``[M, N, C]`` with tokens in row-major patch order."""
        return self.proj(x).flatten(2).transpose(1, 2)


def _index(rows: list[list[int]], device: torch.device) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long, device=device)


class MVDust3R(nn.Module):
    """MV-DUSt3R (``m_ref_flag=False``) or MV-DUSt3R+ (``m_ref_flag=True``) with official key names."""

    def __init__(self, config: MVDust3RConfig) -> None:
        super().__init__()
        cfg = config
        self.config = cfg
        self.rope = GridRoPE(cfg.rope_base)
        # Unused at inference; kept so the official state_dict loads strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dec_embed_dim))
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.enc_embed_dim)
        self.enc_blocks = nn.ModuleList(
            EncoderBlock(cfg.enc_embed_dim, cfg.enc_num_heads, cfg.mlp_ratio, cfg.norm_eps, self.rope)
            for _ in range(cfg.enc_depth)
        )
        self.enc_norm = nn.LayerNorm(cfg.enc_embed_dim, eps=cfg.norm_eps)
        self.decoder_embed = Linear(cfg.enc_embed_dim, cfg.dec_embed_dim)

        def dec_stack() -> nn.ModuleList:
            return nn.ModuleList(
                DecoderBlock(cfg.dec_embed_dim, cfg.dec_num_heads, cfg.mlp_ratio, cfg.norm_eps, self.rope)
                for _ in range(cfg.dec_depth)
            )

        self.dec_blocks = dec_stack()
        self.dec_norm = nn.LayerNorm(cfg.dec_embed_dim, eps=cfg.norm_eps)
        self.dec_same_view_blocks = dec_stack() if cfg.m_ref_flag else None
        self.dec_blocks2 = dec_stack()

        def point_head() -> PointHead:
            return PointHead(
                cfg.dec_embed_dim,
                cfg.patch_size,
                cfg.skip,
                cfg.skip_dim,
                cfg.skip_scale,
                (cfg.conf_mode[1], cfg.conf_mode[2]),
                cfg.bn_eps,
            )

        self.downstream_head1 = point_head()
        self.downstream_head2 = point_head()
        self.downstream_GS_head = (
            nn.ModuleList(
                GaussianHead(cfg.dec_embed_dim, cfg.patch_size, cfg.gs_mlp_dim, cfg.sh_degree, cfg.gs_norm_eps)
                for _ in range(2)
            )
            if cfg.gs
            else None
        )
        self._record: dict[str, list[torch.Tensor]] | None = None

    # ------------------------------------------------------------------ debugging support
    @contextmanager
    def recording(self) -> Iterator[dict[str, list[torch.Tensor]]]:
        """Collect intermediate tensors (names as in the parity fixtures' intermediates.npz)."""
        store: dict[str, list[torch.Tensor]] = {}
        self._record = store
        try:
            yield store
        finally:
            self._record = None

    def _rec(self, name: str, value: torch.Tensor) -> None:
        if self._record is not None:
            self._record.setdefault(name, []).append(value.detach().clone())

    # ------------------------------------------------------------------ encoder
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images ``[B, V, 3, H, W]`` -> encoder tokens ``[B, V, N, C_enc]``.

        Views do not interact in the encoder, so tokens can be cached per view and reused.
        """
        b, v, _, h, w = images.shape
        grid = self._grid(h, w)
        x = self.patch_embed(images.reshape(b * v, 3, h, w))
        self._rec("patch_embed_out", x)
        if self._record is not None:
            self._rec("patch_embed_pos", self.token_positions(grid).expand(b * v, -1, -1))
        for i, blk in enumerate(self.enc_blocks):
            x = blk(x, grid)
            self._rec(f"enc_block{i}_out", x)
        x = self.enc_norm(x)
        self._rec("enc_norm_out", x)
        return x.reshape(b, v, x.shape[1], x.shape[2])

    @staticmethod
    def token_positions(grid: tuple[int, int]) -> torch.Tensor:
        """``[1, N, 2]`` int64 ``(row, col)`` of each token (the positions RoPE rotates by)."""
        n = torch.arange(grid[0] * grid[1])
        return torch.stack((n // grid[1], n % grid[1]), dim=-1).unsqueeze(0)

    def _grid(self, h: int, w: int) -> tuple[int, int]:
        return self.config.grid_for(h, w)

    # ------------------------------------------------------------------ decoder
    def decoder(self, tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """Encoder tokens ``[B, V, N, C_enc]`` -> normalised decoder tokens ``[B, R, V, N, C]``.

        ``grid``: the patch grid (rows, cols) the tokens lie on (default: that of ``img_size``).
        Index ``[b, r, v]`` is input view v as seen by path r (input-view order, before the slot swap).
        """
        b, v, n, _ = tokens.shape
        r = self.config.num_paths
        if v < self.config.min_views:
            raise ValueError(f"{self.config.name} needs at least {self.config.min_views} views, got {v}")
        grid = self.config.grid_size if grid is None else grid
        if n != grid[0] * grid[1]:
            raise ValueError(f"expected {grid[0] * grid[1]} tokens per view ({grid[0]}x{grid[1]} patches), got {n}")
        dev = tokens.device
        x0 = self.decoder_embed(tokens)
        self._rec("decoder_embed_out", x0)
        c = x0.shape[-1]
        x = x0.unsqueeze(1).expand(b, r, v, n, c)

        # Index tables (Python ints -> constants under export).
        paths = list(range(r))
        non_ref = [[u for u in range(v) if u != p] for p in paths]  # [R, V-1]
        others_of = [[[u for u in range(v) if u != q] for q in row] for row in non_ref]  # [R, V-1, V-1]
        role_to_view = [[p, *row] for p, row in zip(paths, non_ref)]  # role 0 = reference
        view_to_role = [[row.index(u) for u in range(v)] for row in role_to_view]
        other_paths = [[q for q in paths if q != p] for p in paths]  # [R, R-1]
        p_idx = _index([[p] for p in paths], dev)  # [R, 1]
        p_idx3 = _index([[[p]] for p in paths], dev)  # [R, 1, 1]
        non_ref_t = _index(non_ref, dev)
        others_t = _index(others_of, dev)
        v2r_t = _index(view_to_role, dev)
        ref_t = _index(paths, dev)
        other_paths_t = _index(other_paths, dev)

        for layer in range(self.config.dec_depth):
            blk_ref, blk_non = self.dec_blocks[layer], self.dec_blocks2[layer]
            x_ref = x[:, ref_t, ref_t]  # [B, R, N, C]
            x_non = x[:, p_idx, non_ref_t]  # [B, R, V-1, N, C]

            # Reference view: memory = the other views of its path, projected with dec_blocks.
            k1, v1 = blk_ref.memory_kv(x_non, grid)  # [B, R, V-1, H, N, d]
            k1 = self._flatten_memory(k1, 2, b * r)
            v1 = self._flatten_memory(v1, 2, b * r)
            new_ref = blk_ref(x_ref.reshape(b * r, n, c), k1, v1, grid).reshape(b, r, 1, n, c)

            # Other views: memory = every other view of the path, projected with dec_blocks2.
            k2, v2 = blk_non.memory_kv(x, grid)  # [B, R, V, H, N, d]
            k2 = self._flatten_memory(k2[:, p_idx3, others_t], 3, b * r * (v - 1))
            v2 = self._flatten_memory(v2[:, p_idx3, others_t], 3, b * r * (v - 1))
            new_non = blk_non(x_non.reshape(b * r * (v - 1), n, c), k2, v2, grid).reshape(b, r, v - 1, n, c)

            x = torch.cat((new_ref, new_non), dim=2)[:, p_idx, v2r_t]  # back to view order
            if self.dec_same_view_blocks is None:
                self._rec(f"dec_layer{layer}_out", x)
                continue
            self._rec(f"dec_layer{layer}_perpath_out", x)
            # Cross-reference block: each (path, view) attends to the same view in the other paths.
            blk_sv = self.dec_same_view_blocks[layer]
            ks, vs = blk_sv.memory_kv(x, grid)  # [B, R, V, H, N, d]
            ks = self._flatten_memory(ks[:, other_paths_t].transpose(2, 3), 3, b * r * v)
            vs = self._flatten_memory(vs[:, other_paths_t].transpose(2, 3), 3, b * r * v)
            x = blk_sv(x.reshape(b * r * v, n, c), ks, vs, grid).reshape(b, r, v, n, c)
            self._rec(f"dec_layer{layer}_xref_out", x)

        x = self.dec_norm(x)
        self._rec("dec_norm_out", x)
        return x

    @staticmethod
    def _flatten_memory(t: torch.Tensor, mem_dim: int, m: int) -> torch.Tensor:
        """``[..., K(mem_dim), H, N, d]`` -> ``[M, H, K*N, d]``: concatenate K memory views' tokens."""
        t = t.movedim(mem_dim, -3)  # [..., H, K, N, d]
        h, k, n, d = t.shape[-4:]
        return t.reshape(m, h, k * n, d)

    # ------------------------------------------------------------------ heads
    def heads(
        self,
        dec: torch.Tensor,
        images: torch.Tensor,
        paths: Sequence[int] | None = None,
        gaussians: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Run the heads for ``paths`` only.

        Returns ``pts3d [B, P, V, H, W, 3]``, ``conf [B, P, V, H, W]`` and, with ``gaussians``,
        ``gs_rgb``, ``gs_opacity``, ``gs_scale``, ``gs_rotation`` ``[B, P, V, H, W, c]``; P indexes
        ``paths`` and V output slots (see :func:`slot_to_view`).
        """
        b, r, v, n, c = dec.shape
        paths = self._check_paths(paths, r)
        _, _, _, h, w = images.shape
        grid = self._grid(h, w)
        table = slot_to_view(v, r)
        sel = [table[p] for p in paths]
        np_ = len(paths)
        dev = dec.device
        p_col = _index([[p] for p in paths], dev)
        ref_views = _index([row[0] for row in sel], dev)
        other_views = _index([row[1:] for row in sel], dev)
        path_t = _index(list(paths), dev)

        tok1 = dec[:, path_t, ref_views].reshape(b * np_, n, c)
        tok2 = dec[:, p_col, other_views].reshape(b * np_ * (v - 1), n, c)
        img1 = images[:, ref_views].reshape(b * np_, 3, h, w)
        img2 = images[:, other_views].reshape(b * np_ * (v - 1), 3, h, w)

        rec1 = rec2 = None
        if self._record is not None:

            def make_rec(slots: int) -> Callable[[str, torch.Tensor], None]:
                return lambda name, t: self._rec(name, t.reshape(b, np_, slots, *t.shape[1:]))

            rec1, rec2 = make_rec(1), make_rec(v - 1)

        pts1, conf1 = self.downstream_head1(tok1, img1, grid, rec1)
        pts2, conf2 = self.downstream_head2(tok2, img2, grid, rec2)
        out = {
            "pts3d": self._join_slots(pts1, pts2, b, np_, v),
            "conf": self._join_slots(conf1, conf2, b, np_, v),
        }
        if gaussians:
            if self.downstream_GS_head is None:
                raise ValueError("this model has no Gaussian heads (gs=False)")
            g1 = self.downstream_GS_head[0](tok1, grid, rec1)
            g2 = self.downstream_GS_head[1](tok2, grid, rec2)
            for key in g1:
                out[key] = self._join_slots(g1[key], g2[key], b, np_, v)
        return out

    @staticmethod
    def _join_slots(first: torch.Tensor, rest: torch.Tensor, b: int, p: int, v: int) -> torch.Tensor:
        first = first.reshape(b, p, 1, *first.shape[1:])
        rest = rest.reshape(b, p, v - 1, *rest.shape[1:])
        return torch.cat((first, rest), dim=2)

    def _check_paths(self, paths: Sequence[int] | None, r: int) -> list[int]:
        if paths is None:
            return list(range(r))
        paths = [int(p) for p in paths]
        if not paths or any(p < 0 or p >= r for p in paths):
            raise ValueError(f"paths must be a non-empty subset of 0..{r - 1}, got {paths}")
        return paths

    # ------------------------------------------------------------------ full forward
    def decode(
        self,
        tokens: torch.Tensor,
        images: torch.Tensor,
        paths: Sequence[int] | None = None,
        gaussians: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Decoder + heads from encoder tokens (see :meth:`encode`); ``images`` feed the skip branch."""
        grid = self._grid(images.shape[-2], images.shape[-1])
        return self.heads(self.decoder(tokens, grid), images, paths, gaussians)

    def forward(
        self,
        images: torch.Tensor,
        paths: Sequence[int] | None = None,
        gaussians: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Normalised images ``[B, V, 3, H, W]`` (RGB in [-1, 1]) -> outputs of :meth:`heads`."""
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"expected images [B, V, 3, H, W], got {tuple(images.shape)}")
        return self.decode(self.encode(images), images, paths, gaussians)
