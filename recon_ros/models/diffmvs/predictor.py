"""Engine-facing DiffMVS inference: metric depth for one reference view at its original resolution.

The network needs H, W divisible by 32; like the upstream evaluation loader (``datasets/mvs.py`` of
cvg/diffmvs, ``--dataset general``) we *resize* (never crop) to the largest multiples of 32 not above
the input size -- with ``cv2.resize(INTER_LINEAR)``'s arithmetic, see :func:`resize_linear` -- scale K
by the same factors (principal point as ``cx * s``, upstream's convention) and resize the outputs back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import DiffMVSConfig
from .model import DiffMVSNet

#: Per-stage photometric-confidence thresholds of the upstream fusion (``filter.py`` ``filter_depth``
#: default, the README demo and the ETH3D scripts): conf0 (initial cost volume) > 0.3, conf1 (1/4
#: refinement) > 0.5, conf2 (1/2 refinement, CasDiffMVS) > 0.5. The DTU scripts use (0.3, 0.0, 0.0)
#: and Tanks & Temples per-scene values; note that the upstream T&T "dynamic" filter compares DiffMVS's
#: conf1 against the *third* threshold. Strict ``>`` comparisons, combined with AND.
DEFAULT_PHOTO_THRESHOLDS: tuple[float, float, float] = (0.3, 0.5, 0.5)
DTU_PHOTO_THRESHOLDS: tuple[float, float, float] = (0.3, 0.0, 0.0)

#: Intrinsic scale of each ``stageN`` projection matrix (1/8, 1/4, 1/2, full resolution).
STAGE_SCALES: dict[str, float] = {"stage1": 0.125, "stage2": 0.25, "stage3": 0.5, "stage4": 1.0}


#: ``runner(imgs, proj_matrices, depth_values, noise) -> {"depth": [...], "photometric_confidence": [...]}``
NetworkRunner = Callable[[list[Tensor], dict[str, Tensor], Tensor, list[Tensor]], dict[str, list[Tensor]]]


@dataclass
class DepthPrediction:
    """Result of :meth:`DiffMVSPredictor.predict` (all maps at the original input resolution)."""

    #: ``[H,W]`` float32 metric depth of the reference view.
    depth: Tensor
    #: Per-stage photometric confidences ``[H,W]`` in [0,1] (2 for DiffMVS, 3 for CasDiffMVS).
    confidences: list[Tensor]
    #: (h, w) the network actually ran at (multiples of 32).
    network_size: tuple[int, int]


def network_size(height: int, width: int, base: int = 32) -> tuple[int, int]:
    """Largest multiples of ``base`` not above (height, width)."""
    h, w = height // base * base, width // base * base
    if h == 0 or w == 0:
        raise ValueError(f"image {height}x{width} is smaller than the {base}-pixel network granularity")
    return h, w


def _linear_taps(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices and weight of the second tap per output pixel, as ``cv2.resize`` computes them:
    ``f = (x + 0.5) * n_in / n_out - 0.5`` in double, clamped to the border with weight 0."""
    f = (torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
    i0 = torch.floor(f)
    frac = (f - i0).float()
    frac[i0 < 0] = 0.0
    i0 = i0.clamp(min=0).long()
    frac[i0 >= n_in - 1] = 0.0
    i0 = i0.clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0.to(device), i1.to(device), frac.to(device)


def resize_linear(images: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize of ``[..., H, W]`` float images that reproduces ``cv2.resize(img, (width, height))``
    on float32 (INTER_LINEAR: horizontal then vertical pass, float32 weights ``1 - f`` and ``f``) to
    about one float32 ulp. ``F.interpolate(mode="bilinear")`` uses the same sampling positions but
    rounds differently (4e-6 apart on [0, 1] images), which upstream-input parity does not allow."""
    in_h, in_w = images.shape[-2:]
    out = images
    if in_w != width:
        i0, i1, f = _linear_taps(in_w, width, images.device)
        out = out[..., i0] * (1.0 - f) + out[..., i1] * f
    if in_h != height:
        i0, i1, f = _linear_taps(in_h, height, images.device)
        f = f[:, None]
        out = out[..., i0, :] * (1.0 - f) + out[..., i1, :] * f
    return out


def scale_intrinsics(K: Tensor, sx: float, sy: float) -> Tensor:
    """Scale rows 0 and 1 of ``K [...,3,3]`` (principal point scaled as cx*s, no half-pixel shift)."""
    out = K.clone()
    out[..., 0, :] = out[..., 0, :] * sx
    out[..., 1, :] = out[..., 1, :] * sy
    return out


def build_proj_matrices(K: Tensor, T_cam_world: Tensor) -> dict[str, Tensor]:
    """Stage projection matrices ``[1,V,2,4,4]`` from full-resolution ``K [V,3,3]`` and ``T [V,4,4]``.

    Slot 0 holds the world-to-camera extrinsic, slot 1 K (rows 0-1 scaled per stage) with zeros
    elsewhere, exactly as the upstream data loader builds them.
    """
    num_views = K.shape[0]
    out = {}
    for name, s in STAGE_SCALES.items():
        mats = torch.zeros(num_views, 2, 4, 4, dtype=torch.float32, device=K.device)
        mats[:, 0] = T_cam_world.float()
        mats[:, 1, :3, :3] = scale_intrinsics(K.float(), s, s)
        out[name] = mats.unsqueeze(0)
    return out


def inverse_depth_values(depth_min: float, depth_max: float, num: int, device: torch.device) -> Tensor:
    """``[1,num]`` = linspace(1/depth_max, 1/depth_min, num) (computed in float64, stored float32)."""
    if not (0 < depth_min < depth_max):
        raise ValueError(f"need 0 < depth_min < depth_max, got {depth_min}, {depth_max}")
    vals = torch.linspace(1.0 / depth_max, 1.0 / depth_min, num, dtype=torch.float64)
    return vals.float().unsqueeze(0).to(device)


def photometric_mask(confidences: Sequence[Tensor], thresholds: Sequence[float] | None = None) -> Tensor:
    """Boolean mask ``conf_i > thresholds[i]`` for every stage, AND-combined (upstream fusion rule).

    ``thresholds`` defaults to :data:`DEFAULT_PHOTO_THRESHOLDS`; only the first ``len(confidences)``
    entries are used.
    """
    thr = DEFAULT_PHOTO_THRESHOLDS if thresholds is None else tuple(thresholds)
    if len(thr) < len(confidences):
        raise ValueError(f"{len(confidences)} confidence maps but only {len(thr)} thresholds")
    mask = torch.ones_like(confidences[0], dtype=torch.bool)
    for conf, t in zip(confidences, thr):
        mask &= conf > t
    return mask


class DiffMVSPredictor:
    """Wraps a loaded :class:`DiffMVSNet` for single-reference-view inference."""

    def __init__(
        self,
        model: DiffMVSNet,
        cfg: DiffMVSConfig | None = None,
        device: str | torch.device = "cpu",
        runner: NetworkRunner | None = None,
    ):
        """``runner``: optional replacement for the torch forward (e.g. an ONNX Runtime / TensorRT runner
        from :mod:`recon_ros.runtime.runners`) called as ``runner(imgs, proj, depth_values, noise_list)``;
        the noise is then drawn here from the generator, in the network's call order."""
        self.runner = runner
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.cfg = cfg if cfg is not None else model.cfg
        if self.cfg != model.cfg:
            raise ValueError("cfg does not match the configuration the model was built with")

    def draw_noise(self, size: tuple[int, int], generator: torch.Generator | None) -> list[Tensor]:
        """The N(0,1) maps one forward draws, in call order (same values the torch path would draw)."""
        dev = generator.device if generator is not None else self.device
        return [
            torch.randn(s, generator=generator, device=dev).to(self.device)
            for s in self.cfg.noise_shapes(1, size[0], size[1])
        ]

    def prepare_inputs(
        self, images: Tensor, K: Tensor, T_cam_world: Tensor, depth_min: float, depth_max: float
    ) -> tuple[list[Tensor], dict[str, Tensor], Tensor, tuple[int, int]]:
        """Resize to the network size and build (imgs, proj_matrices, depth_values, (h, w))."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [V,3,H,W], got {tuple(images.shape)}")
        num_views, _, height, width = images.shape
        if num_views < 2:
            raise ValueError("need a reference view and at least one source view")
        if K.shape != (num_views, 3, 3) or T_cam_world.shape != (num_views, 4, 4):
            raise ValueError(f"K must be [V,3,3] and T_cam_world [V,4,4] for V={num_views}")
        h, w = network_size(height, width)
        imgs = images.to(self.device, torch.float32)
        if (h, w) != (height, width):
            imgs = resize_linear(imgs, h, w)  # what the upstream loader's cv2.resize computes
        K_net = scale_intrinsics(K.to(self.device, torch.float32), w / width, h / height)
        proj = build_proj_matrices(K_net, T_cam_world.to(self.device, torch.float32))
        depth_values = inverse_depth_values(depth_min, depth_max, self.cfg.numdepth, self.device)
        return [imgs[v : v + 1] for v in range(num_views)], proj, depth_values, (h, w)

    def predict(
        self,
        images: Tensor,
        K: Tensor,
        T_cam_world: Tensor,
        depth_min: float,
        depth_max: float,
        generator: torch.Generator | None = None,
    ) -> DepthPrediction:
        """Depth of view 0.

        Args:
            images: ``[V,3,H,W]`` RGB in [0,1], view 0 the reference.
            K: ``[V,3,3]`` intrinsics at (H, W).
            T_cam_world: ``[V,4,4]`` world-to-camera extrinsics.
            depth_min, depth_max: metric depth range of the reference view.
            generator: seeds the diffusion noise (same seed -> same depth); None uses the global RNG.
        """
        height, width = images.shape[-2:]
        imgs, proj, depth_values, size = self.prepare_inputs(images, K, T_cam_world, depth_min, depth_max)
        with torch.inference_mode():
            if self.runner is None:
                out = self.model(imgs, proj, depth_values, noise=generator)
            else:
                out = self.runner(imgs, proj, depth_values, self.draw_noise(size, generator))
            depth = out["depth"][-1].unsqueeze(1)  # [1,1,h,w]
            confs = out["photometric_confidence"]
            if size != (height, width):
                depth = F.interpolate(depth, size=(height, width), mode="bilinear", align_corners=False)
                confs = [F.interpolate(c.unsqueeze(1), size=(height, width), mode="nearest").squeeze(1) for c in confs]
            return DepthPrediction(
                depth=depth[0, 0].float().clone(),
                confidences=[c[0].float().clone() for c in confs],
                network_size=size,
            )
