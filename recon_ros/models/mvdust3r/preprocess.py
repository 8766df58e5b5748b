"""Image preprocessing for MV-DUSt3R(+), and the reference-view ordering rule.

Two input modes (:data:`INPUT_MODES`):

* ``"square"`` follows the upstream demo's loader at size 224: the short side becomes 224 (Pillow
  LANCZOS when shrinking, BICUBIC when enlarging), then a centred 224x224 crop. A 4:3 camera loses a
  quarter of its width.
* ``"full_fov"`` follows upstream's loader branch for the other sizes with the long side 224: the long
  side becomes 224 (same filters), then a centred crop of each side to a multiple of 16 (640x480 ->
  224x168 -> 224x160, 1280x720 -> 224x126 -> 224x112). The network runs at that size (upstream accepts
  any multiple of 16 up to 224), and the camera keeps its whole width.

Pillow is required for bit-exact crops; OpenCV's filters differ by up to ~20 grey levels.

The intrinsics are carried through the same resize and crop (pixel-centre convention: integer pixel
coordinates are pixel centres, as in OpenCV), so pointmaps predicted on the crop can be related to the
real camera.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

MODEL_SIZE = 224
INPUT_MODES = ("square", "full_fov")
PATCH = 16


@dataclass(frozen=True)
class ResizePlan:
    """How one raw image becomes the model input."""

    resized_wh: tuple[int, int]
    resample: str  # "LANCZOS" or "BICUBIC"
    crop_box_xyxy: tuple[int, int, int, int]

    def intrinsics_transform(self, raw_wh: tuple[int, int]) -> np.ndarray:
        """3x3 matrix ``A`` with ``K_crop = A @ K_raw``."""
        sx = self.resized_wh[0] / raw_wh[0]
        sy = self.resized_wh[1] / raw_wh[1]
        left, top = self.crop_box_xyxy[:2]
        # pixel centres: u' = (u + 0.5) * s - 0.5, then shift by the crop origin
        return np.array(
            [[sx, 0.0, 0.5 * sx - 0.5 - left], [0.0, sy, 0.5 * sy - 0.5 - top], [0.0, 0.0, 1.0]]
        )


def plan_resize(raw_hw: tuple[int, int], size: int = MODEL_SIZE) -> ResizePlan:
    """Resize/crop plan of the upstream 224 loader for an image of ``raw_hw`` = (H, W)."""
    h1, w1 = int(raw_hw[0]), int(raw_hw[1])
    if h1 <= 0 or w1 <= 0:
        raise ValueError(f"empty image of shape {raw_hw}")
    long_edge = round(size * max(w1 / h1, h1 / w1))
    s = max(w1, h1)
    resample = "LANCZOS" if s > long_edge else "BICUBIC"
    w, h = (int(round(x * long_edge / s)) for x in (w1, h1))
    cx, cy = w // 2, h // 2
    half = min(cx, cy)
    return ResizePlan((w, h), resample, (cx - half, cy - half, cx + half, cy + half))


def plan_resize_full_fov(
    raw_hw: tuple[int, int], size: int = MODEL_SIZE, out_hw: tuple[int, int] | None = None
) -> ResizePlan:
    """Plan of upstream's long-side loader with long side ``size``: resize, then a centred crop of each
    side to a multiple of 16. ``out_hw`` forces a smaller common crop (all views of a window must have
    one size), centred the same way."""
    h1, w1 = int(raw_hw[0]), int(raw_hw[1])
    if h1 <= 0 or w1 <= 0:
        raise ValueError(f"empty image of shape {raw_hw}")
    s = max(w1, h1)
    resample = "LANCZOS" if s > size else "BICUBIC"
    w, h = (int(round(x * size / s)) for x in (w1, h1))
    cx, cy = w // 2, h // 2
    halfw, halfh = ((2 * cx) // PATCH) * (PATCH // 2), ((2 * cy) // PATCH) * (PATCH // 2)
    if out_hw is not None:
        if out_hw[0] > 2 * halfh or out_hw[1] > 2 * halfw:
            raise ValueError(f"cannot crop {out_hw} from an image resized to {h}x{w}")
        halfh, halfw = out_hw[0] // 2, out_hw[1] // 2
    if halfw == 0 or halfh == 0:
        raise ValueError(f"image of shape {raw_hw} is too elongated for a {size}-pixel long side")
    return ResizePlan((w, h), resample, (cx - halfw, cy - halfh, cx + halfw, cy + halfh))


def full_fov_size(raw_hw: tuple[int, int], size: int = MODEL_SIZE) -> tuple[int, int]:
    """Network input (H, W) of ``"full_fov"`` for a camera image of ``raw_hw``."""
    box = plan_resize_full_fov(raw_hw, size).crop_box_xyxy
    return box[3] - box[1], box[2] - box[0]


def _apply_plan(image: np.ndarray, plan: ResizePlan) -> np.ndarray:
    pil = Image.fromarray(np.ascontiguousarray(image))
    filt = Image.Resampling.LANCZOS if plan.resample == "LANCZOS" else Image.Resampling.BICUBIC
    return np.asarray(pil.resize(plan.resized_wh, filt).crop(plan.crop_box_xyxy), dtype=np.uint8)


def _check_rgb(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB image, got {image.dtype} {image.shape}")


def crop_image(image: np.ndarray, size: int = MODEL_SIZE) -> tuple[np.ndarray, ResizePlan]:
    """uint8 ``[H, W, 3]`` RGB -> uint8 ``[size, size, 3]`` crop and the plan that made it."""
    _check_rgb(image)
    plan = plan_resize(image.shape[:2], size)
    crop = _apply_plan(image, plan)
    if crop.shape[:2] != (size, size):
        raise ValueError(f"crop of an image of shape {image.shape} is {crop.shape[:2]}, not {size}x{size}")
    return crop, plan


def crop_image_full_fov(
    image: np.ndarray, size: int = MODEL_SIZE, out_hw: tuple[int, int] | None = None
) -> tuple[np.ndarray, ResizePlan]:
    """uint8 ``[H, W, 3]`` RGB -> the ``"full_fov"`` crop (long side ``size``, sides multiples of 16)."""
    _check_rgb(image)
    plan = plan_resize_full_fov(image.shape[:2], size, out_hw)
    return _apply_plan(image, plan), plan


def normalize(crop: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` -> float32 ``[..., 3, H, W]`` in [-1, 1] as ``(u8/255 - 0.5)/0.5``."""
    t = torch.from_numpy(np.ascontiguousarray(crop)).movedim(-1, -3)
    return t.float().div(255.0).sub(0.5).div(0.5)


@dataclass
class PreprocessedViews:
    images: torch.Tensor  # [V, 3, h, w] float32 in [-1, 1] (224x224 in "square" mode)
    crops: np.ndarray  # [V, h, w, 3] uint8
    K224: np.ndarray | None  # [V, 3, 3] intrinsics of the crops (None if no K was given)
    plans: list[ResizePlan]


def preprocess_views(
    images: Sequence[np.ndarray], K: Sequence[np.ndarray] | None = None, size: int = MODEL_SIZE,
    mode: str = "square",
) -> PreprocessedViews:
    """Crop and normalise robot images; carry intrinsics ``K`` (3x3 each) through the same resize.

    ``mode``: ``"square"`` (the demo's crop) or ``"full_fov"`` (see the module doc). In ``"full_fov"``
    views of different aspect ratios are cropped to the largest size every view has (centred), since
    the network needs one size per window.
    """
    if mode not in INPUT_MODES:
        raise ValueError(f"unknown MV-DUSt3R input mode {mode!r}; choose one of {INPUT_MODES}")
    if K is not None and len(K) != len(images):
        raise ValueError(f"got {len(images)} images but {len(K)} intrinsics")
    common: tuple[int, int] | None = None
    if mode == "full_fov":
        for img in images:
            _check_rgb(img)
        sizes = [full_fov_size(img.shape[:2], size) for img in images]
        common = (min(s[0] for s in sizes), min(s[1] for s in sizes))
    crops, plans, ks = [], [], []
    for i, img in enumerate(images):
        crop, plan = crop_image(img, size) if common is None else crop_image_full_fov(img, size, common)
        crops.append(crop)
        plans.append(plan)
        if K is not None:
            k = np.asarray(K[i], dtype=np.float64)
            if k.shape != (3, 3):
                raise ValueError(f"intrinsics {i} must be 3x3, got {k.shape}")
            ks.append(plan.intrinsics_transform((img.shape[1], img.shape[0])) @ k)
    stack = np.stack(crops)
    return PreprocessedViews(normalize(stack), stack, np.stack(ks) if K is not None else None, plans)


def reference_order(n: int) -> tuple[list[int], list[int]]:
    """The upstream demo's input reordering, which spreads MV-DUSt3R+'s reference views (the first
    four inputs) over the sequence.

    Returns ``(perm, inverse)``: model input ``i`` is original view ``perm[i]``; original view ``j`` is
    model input ``inverse[j]``. With 4-11 views positions 1 and 3 are swapped, with 7-11 also 2 and 6;
    with 12 or more, position k (k = 1, 2, 3) is swapped with ``k*n // 4 + 1``, in that order.
    """
    if n < 1:
        raise ValueError("need at least one view")
    perm = list(range(n))
    if n < 12:
        swaps = []
        if n > 3:
            swaps.append((1, 3))
        if n > 6:
            swaps.append((2, 6))
    else:
        swaps = [(k, k * n // 4 + 1) for k in (1, 2, 3)]
    for a, b in swaps:
        perm[a], perm[b] = perm[b], perm[a]
    inverse = [0] * n
    for i, j in enumerate(perm):
        inverse[j] = i
    return perm, inverse
