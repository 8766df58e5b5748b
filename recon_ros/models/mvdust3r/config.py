"""Configuration of the MV-DUSt3R / MV-DUSt3R+ networks.

Field names follow the upstream constructor arguments where one exists, so a fixture manifest's
``reduced_config`` (or an official constructor) maps onto this dataclass without a translation table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class MVDust3RConfig:
    """Sizes and options of one MV-DUSt3R(+) network.

    ``m_ref_flag`` switches on MV-DUSt3R+ (``n_ref`` reference-view paths plus the cross-reference
    blocks ``dec_same_view_blocks``); without it the network is MV-DUSt3R with a single reference view.
    """

    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    dec_embed_dim: int = 768
    dec_depth: int = 12
    dec_num_heads: int = 12
    mlp_ratio: float = 4.0
    rope_base: float = 100.0
    # Encoder / decoder LayerNorms use 1e-6, the Gaussian-head LayerNorm PyTorch's default 1e-5,
    # the skip-branch BatchNorms 1e-5 (upstream values; the fixtures barely detect the first).
    norm_eps: float = 1e-6
    gs_norm_eps: float = 1e-5
    bn_eps: float = 1e-5
    # Point head: xyz + confidence per pixel, optional convolutional skip branch of fixed width.
    skip: bool = True
    skip_dim: int = 256
    skip_scale: float = 1e-4
    depth_mode: tuple[str, float, float] = ("exp", -math.inf, math.inf)
    conf_mode: tuple[str, float, float] = ("exp", 1.0, 1e9)
    # Gaussian heads (hidden width is hard-coded upstream).
    gs: bool = True
    sh_degree: int = 0
    gs_mlp_dim: int = 768
    # MV-DUSt3R+ multi-reference decoding.
    m_ref_flag: bool = False
    n_ref: int = 1

    def __post_init__(self) -> None:
        h, w = self.img_size
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")
        if self.enc_embed_dim % self.enc_num_heads or self.dec_embed_dim % self.dec_num_heads:
            raise ValueError("embedding widths must be divisible by the number of heads")
        for dim, heads in ((self.enc_embed_dim, self.enc_num_heads), (self.dec_embed_dim, self.dec_num_heads)):
            if (dim // heads) % 4:
                raise ValueError("2D RoPE needs a head width divisible by 4")
        if self.m_ref_flag and self.n_ref < 2:
            raise ValueError("MV-DUSt3R+ (m_ref_flag=True) needs n_ref >= 2")
        if self.depth_mode[0] != "exp" or self.conf_mode[0] != "exp":
            raise ValueError("only the 'exp' depth and confidence modes of the official models are supported")

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size

    def grid_for(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid (rows, cols) of a ``height x width`` input.

        Like upstream, any size whose sides are multiples of ``patch_size`` runs (RoPE positions are
        per token, the heads unshuffle per patch); sizes beyond ``img_size`` are refused because the
        official weights were trained up to 224x224 only.
        """
        p = self.patch_size
        h_max, w_max = self.img_size
        if height % p or width % p or not (0 < height <= h_max and 0 < width <= w_max):
            raise ValueError(
                f"images must be HxW with H, W multiples of {p}, H <= {h_max} and W <= {w_max}; got {height}x{width}"
            )
        return height // p, width // p

    @property
    def num_paths(self) -> int:
        """Number of reference-view paths the decoder runs (1 for MV-DUSt3R)."""
        return self.n_ref if self.m_ref_flag else 1

    @property
    def min_views(self) -> int:
        return max(2, self.num_paths)

    @property
    def name(self) -> str:
        return "mvdp" if self.m_ref_flag else "mvd"


PRESETS: dict[str, MVDust3RConfig] = {
    # MVD.pth
    "mvd": MVDust3RConfig(),
    # MVDp_s1.pth / MVDp_s2.pth (the demo fixes n_ref = 4)
    "mvdp": MVDust3RConfig(m_ref_flag=True, n_ref=4),
}


def preset(name: str) -> MVDust3RConfig:
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown MV-DUSt3R preset {name!r}; choose one of {sorted(PRESETS)}") from None


def _as_float(value: Any) -> float:
    # JSON manifests spell infinities as strings.
    return float(value) if isinstance(value, str) else float(value)


def from_manifest(manifest: Mapping[str, Any], which: str = "reduced_config") -> MVDust3RConfig:
    """Config from a fixture manifest's ``reduced_config`` (or ``official_config``).

    Sizes the manifest lists under ``hardcoded_sizes_kept`` are fixed upstream and keep our defaults.
    """
    cfg = dict(manifest[which])
    known = {f.name for f in fields(MVDust3RConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in cfg.items():
        if key == "img_size":
            kwargs["img_size"] = tuple(int(v) for v in value)
        elif key == "pos_embed":
            if not str(value).startswith("RoPE"):
                raise ValueError(f"unsupported pos_embed {value!r}")
            kwargs["rope_base"] = float(str(value)[len("RoPE"):])
        elif key in ("depth_mode", "conf_mode"):
            kwargs[key] = (str(value[0]), _as_float(value[1]), _as_float(value[2]))
        elif key == "GS":
            kwargs["gs"] = bool(value)
        elif key == "pts_head_config":
            kwargs["skip"] = bool(dict(value).get("skip", False))
        elif key in ("head_type", "output_mode"):
            if (key, value) not in (("head_type", "linear"), ("output_mode", "pts3d")):
                raise ValueError(f"unsupported {key}={value!r}")
        elif key in known:
            kwargs[key] = value
        else:
            raise ValueError(f"unknown configuration option {key!r} in manifest")
    if kwargs.get("m_ref_flag") and "n_ref" not in kwargs:
        kwargs["n_ref"] = 4
    return replace(MVDust3RConfig(), **kwargs)
