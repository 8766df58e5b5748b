"""Engine-facing MV-DUSt3R(+) inference: robot images in, pointmaps, intrinsics and poses out.

The network runs either eagerly in torch or through a runtime runner
(:class:`recon_ros.runtime.runners.MVDust3RRunner`: ONNX Runtime or TensorRT). Both expose the same
two calls, ``encode`` (per view) and ``decode`` (decoder + heads for the whole window), so the
encoder-token cache works the same way whatever runs the network.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ...geometry.pointmap_poses import DEFAULT_MIN_CONF_PERCENT, recover_poses
from ...runtime.memory import is_out_of_memory, release_cached_memory
from .network import MVDust3R, slot_to_view
from .preprocess import INPUT_MODES, preprocess_views, reference_order
from .token_cache import EncoderTokenCache


class NetworkRunner(Protocol):
    """What the predictor needs from a runtime runner (:class:`~recon_ros.runtime.runners.MVDust3RRunner`)."""

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...

    def decode(
        self, tokens: torch.Tensor, images: torch.Tensor, paths: Sequence[int] = (0,)
    ) -> dict[str, torch.Tensor]: ...


@dataclass
class PointmapPrediction:
    """Per-view results, indexed like the ``images`` passed to :meth:`MVDust3RPredictor.predict`.

    ``pts3d`` are in view 0's camera frame (OpenCV axes, units of the network's arbitrary scale).
    """

    pts3d: np.ndarray  # [V, h, w, 3] float32 (h x w: the network input, 224x224 in "square" mode)
    conf: np.ndarray  # [V, h, w] float32 (>= 1)
    K224: np.ndarray  # [V, 3, 3] intrinsics of the network-input crops (given K adjusted, or estimated)
    order: list[int]  # network input i was images[order[i]]
    c2w: np.ndarray  # [V, 4, 4] float32 camera-to-view-0 poses from PnP-RANSAC
    depth_ranges: np.ndarray  # [V, 2] robust (min, max) positive depth of confident points (NaN: no pose)
    mask: np.ndarray  # [V, h, w] bool confident points (used for PnP and depth ranges)
    pose_ok: np.ndarray  # [V] bool, False where PnP failed
    focal: float | None = None  # estimated focal when no K was given
    # Other requested paths: path p -> (pts3d [V,h,w,3] in the frame of input view order[p], conf).
    extra_paths: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def depth_ranges(
    pts3d: np.ndarray, c2w: np.ndarray, mask: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)
) -> np.ndarray:
    """Robust min/max of positive camera-frame depths of masked points, per view (NaN if none)."""
    out = np.full((pts3d.shape[0], 2), np.nan, dtype=np.float32)
    for i in range(pts3d.shape[0]):
        pts = pts3d[i][mask[i]].astype(np.float64)
        rot, t = c2w[i, :3, :3].astype(np.float64), c2w[i, :3, 3].astype(np.float64)
        z = ((pts - t) @ rot)[:, 2]  # rows are R^T (X - t)
        z = z[z > 0]
        if z.size:
            out[i] = np.percentile(z, percentiles)
    return out


class MVDust3RPredictor:
    """Runs a loaded :class:`MVDust3R` on lists of uint8 RGB images.

    ``paths``: which reference-view paths get heads (path 0 is always needed: its frame is view 0).
    With ``keys`` (one hashable keyframe id per image) encoder tokens are cached across calls.
    ``runner``: run the network through a runtime runner (ONNX Runtime / TensorRT encoder and decoder
    graphs, see :class:`~recon_ros.runtime.runners.MVDust3RRunner`) instead of eager torch; the model
    then only provides the configuration (and the weights the runner exports), and is not moved to
    ``device``. ``input_mode``: ``"square"`` (the demo's 224x224 centre crop) or ``"full_fov"`` (long
    side 224, e.g. 224x160 for a 4:3 camera; see :mod:`.preprocess`).
    """

    def __init__(
        self,
        model: MVDust3R,
        device: str | torch.device = "cpu",
        paths: Sequence[int] = (0,),
        cache_size: int = 32,
        min_conf_percent: float = DEFAULT_MIN_CONF_PERCENT,
        reorder: bool = True,
        runner: NetworkRunner | None = None,
        input_mode: str = "square",
    ) -> None:
        if input_mode not in INPUT_MODES:
            raise ValueError(f"unknown MV-DUSt3R input mode {input_mode!r}; choose one of {INPUT_MODES}")
        self.input_mode = input_mode
        self.device = torch.device(device)
        self.runner = runner
        # With a runner the torch weights would only duplicate the backend's copy on the device.
        self.model = (model.to(self.device) if runner is None else model).eval()
        self.network: MVDust3R | NetworkRunner = self.model if runner is None else runner
        self.paths = [int(p) for p in paths]
        if 0 not in self.paths:
            raise ValueError("paths must include path 0 (pointmaps in view 0's frame)")
        if any(p < 0 or p >= model.config.num_paths for p in self.paths):
            raise ValueError(f"paths must lie in 0..{model.config.num_paths - 1}, got {self.paths}")
        self.cache = EncoderTokenCache(cache_size)
        self.min_conf_percent = min_conf_percent
        self.reorder = reorder

    def release_memory(self, num_views: int) -> None:
        """Free what a failed ``num_views``-view run may hold: the runner's sessions / engines for that
        view count (each holds device memory, and a smaller window needs new ones) and torch's cached
        CUDA blocks (ONNX Runtime and TensorRT allocate outside torch's allocator)."""
        release = getattr(self.runner, "release", None)
        if callable(release):
            release(num_views)
        release_cached_memory()

    @torch.no_grad()
    def predict(
        self,
        images: list[np.ndarray],
        K: list[np.ndarray] | None = None,
        keys: list[Hashable] | None = None,
    ) -> PointmapPrediction:
        cfg = self.model.config
        v = len(images)
        if v < cfg.min_views:
            what = "MV-DUSt3R+" if cfg.m_ref_flag else "MV-DUSt3R"
            raise ValueError(f"{what} needs at least {cfg.min_views} views, got {v}")
        if keys is not None and len(keys) != v:
            raise ValueError(f"got {v} images but {len(keys)} keys")
        order, inverse = reference_order(v) if self.reorder else (list(range(v)), list(range(v)))
        prep = preprocess_views(
            [images[i] for i in order], None if K is None else [K[i] for i in order], mode=self.input_mode
        )
        imgs = prep.images.to(self.device)
        try:
            if keys is None:
                tokens = self.network.encode(imgs.unsqueeze(0))
            else:
                tokens = self.cache.encode(self.network, imgs, [keys[i] for i in order])
            out = self.network.decode(tokens, imgs.unsqueeze(0), paths=self.paths)
        except Exception as exc:
            if is_out_of_memory(exc):
                self.release_memory(v)
            raise
        pts_all = out["pts3d"][0].float().cpu().numpy()  # [P, slots, H, W, 3]
        conf_all = out["conf"][0].float().cpu().numpy()
        table = slot_to_view(v, cfg.num_paths)
        # path 0 slots are network-input views in order
        pts, conf = pts_all[self.paths.index(0)], conf_all[self.paths.index(0)]
        poses = recover_poses(pts, conf, K=prep.K224, min_conf_percent=self.min_conf_percent, refine=True)
        ranges = depth_ranges(pts, poses.c2w, poses.mask_pnp)
        ranges[~poses.pnp_ok] = np.nan  # no camera frame to measure depth in
        extra: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for j, p in enumerate(self.paths):
            if p == 0:
                continue
            slot_of_view = np.argsort(table[p])  # network view -> slot
            extra[p] = (pts_all[j][slot_of_view][inverse], conf_all[j][slot_of_view][inverse])
        return PointmapPrediction(
            pts3d=pts[inverse],
            conf=conf[inverse],
            K224=poses.K[inverse].astype(np.float64) if prep.K224 is None else prep.K224[inverse],
            order=order,
            c2w=poses.c2w[inverse],
            depth_ranges=ranges[inverse],
            mask=poses.mask_pnp[inverse],
            pose_ok=poses.pnp_ok[inverse],
            focal=poses.focal,
            extra_paths=extra,
        )
