"""Import the upstream MV-DUSt3R model from a user-given checkout of facebookresearch/mvdust3r.

Nothing of upstream is copied here: the checkout stays where the user put it. Upstream's model module
imports training and rendering packages at import time that inference never calls (pytorch3d, gsplat,
einops for the DPT head, huggingface_hub's mixin, torchvision's transforms for the image loader);
where one is not installed we register a placeholder module whose functions raise if called, so the
forward pass runs on plain torch. The placeholder for ``torchvision.transforms`` implements only
``Compose``, ``ToTensor`` and ``Normalize`` (the demo's ``ImgNorm``), which are standard torchvision
semantics, not upstream code.

Used by ``bench_upstream_mvdust3r.py`` and by the script that generated the non-square fixtures under
``test/data/mvdust3r_upstream/``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _unavailable(name: str) -> Callable[..., Any]:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"{name} is a placeholder registered by benchmarks/upstream_mvdust3r.py")

    return fail


class _Inert:
    """Placeholder class for metric objects upstream builds at import time; unusable once built."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("placeholder registered by benchmarks/upstream_mvdust3r.py")


class _HubMixin:
    """Stands in for ``huggingface_hub.PyTorchModelHubMixin`` (accepts its class keywords)."""

    def __init_subclass__(cls, **_kwargs: Any) -> None:
        super().__init_subclass__()


class _Compose:
    def __init__(self, transforms: list[Callable[[Any], Any]]) -> None:
        self.transforms = transforms

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x


class _ToTensor:
    def __call__(self, pic: Any) -> torch.Tensor:
        arr = np.asarray(pic, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255.0)


class _Normalize:
    def __init__(self, mean: Any, std: Any) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _placeholder(name: str, **attrs: Any) -> None:
    if name in sys.modules:
        return
    parent = name.rpartition(".")[0]
    if not parent and importlib.util.find_spec(name) is not None:
        return  # the real package is installed
    if parent and parent not in sys.modules:
        return
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    if parent:
        setattr(sys.modules[parent], name.rpartition(".")[2], mod)


def _register_placeholders() -> None:
    _placeholder("pytorch3d")
    _placeholder("pytorch3d.ops", knn_points=_unavailable("knn_points"))
    _placeholder("pytorch3d.transforms", so3_relative_angle=_unavailable("so3_relative_angle"))
    _placeholder("gsplat")
    _placeholder(
        "gsplat.rendering", rasterization=_unavailable("rasterization"),
        spherical_harmonics=_unavailable("spherical_harmonics"),
    )
    _placeholder("einops", rearrange=_unavailable("rearrange"), repeat=_unavailable("repeat"))
    _placeholder("huggingface_hub", __version__="0.22.0", PyTorchModelHubMixin=_HubMixin)
    _placeholder("tqdm", tqdm=lambda x, *a, **k: x)
    _placeholder("torchvision")
    _placeholder(
        "torchvision.transforms", Compose=_Compose, ToTensor=_ToTensor, Normalize=_Normalize, RandomCrop=_Inert,
        Resize=_Inert,
    )
    _placeholder("torchmetrics")
    _placeholder("torchmetrics.functional", structural_similarity_index_measure=_unavailable("ssim"))
    _placeholder("torchmetrics.image", PeakSignalNoiseRatio=_Inert)
    _placeholder("torchmetrics.image.lpip", LearnedPerceptualImagePatchSimilarity=_Inert)
    _placeholder("imageio")


def import_upstream(checkout: str | Path) -> types.SimpleNamespace:
    """Upstream modules from ``checkout``: ``model`` (dust3r.model), ``image`` (dust3r.utils.image)."""
    root = Path(checkout).resolve()
    if not (root / "dust3r" / "model.py").is_file():
        raise FileNotFoundError(f"{root} is not a facebookresearch/mvdust3r checkout (no dust3r/model.py)")
    _register_placeholders()
    for p in (str(root), str(root / "croco")):
        if p not in sys.path:
            sys.path.insert(0, p)
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    model = importlib.import_module("dust3r.model")
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32  # upstream flips it at import; CPU ignores it anyway
    image = importlib.import_module("dust3r.utils.image")
    return types.SimpleNamespace(model=model, image=image, root=root)


def official_constructor(m_ref_flag: bool, sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """Keyword arguments of the demo's constructor (official sizes unless ``sizes`` overrides them)."""
    kw: dict[str, Any] = dict(
        pos_embed="RoPE100", img_size=(224, 224), head_type="linear", output_mode="pts3d",
        depth_mode=("exp", -float("inf"), float("inf")), conf_mode=("exp", 1, 1e9), enc_embed_dim=1024,
        enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, GS=True,
        sh_degree=0, pts_head_config={"skip": True},
    )
    if m_ref_flag:
        kw.update(m_ref_flag=True, n_ref=4)
    kw.update(sizes or {})
    return kw


def build_upstream(up: types.SimpleNamespace, m_ref_flag: bool, sizes: dict[str, int] | None = None) -> Any:
    return up.model.AsymmetricCroCo3DStereoMultiView(**official_constructor(m_ref_flag, sizes)).eval()


def upstream_forward(net: Any, images: torch.Tensor) -> tuple[Any, list[Any]]:
    """Run upstream on ``images [V, 3, H, W]`` (normalised) as the demo does: one batch, view dicts."""
    v, _, h, w = images.shape
    shape = torch.tensor([[h, w]], dtype=torch.int32)
    views = [{"img": images[i : i + 1], "true_shape": shape} for i in range(v)]
    return net(views[0], views[1:])
