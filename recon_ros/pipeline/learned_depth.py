"""Learned depth sources: DiffMVS / CasDiffMVS behind the engine's ``DepthSource`` protocol.

``estimate()`` turns our views (uint8 RGB, K at processing resolution, camera-to-world poses) into the
network's inputs, runs the predictor (which resizes to multiples of 32 and back) with the configured
backend, and returns metric depth, a combined confidence, the per-stage confidences and the upstream
photometric mask. The diffusion noise is seeded from ``depth.seed`` and the keyframe id, so a rerun of
the same bag gives the same depth.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from recon_ros.config import ReconConfig
from recon_ros.geometry.camera import PinholeCamera
from recon_ros.geometry.se3 import invert
from recon_ros.models.diffmvs.checkpoint import load_diffmvs
from recon_ros.models.diffmvs.predictor import (
    DEFAULT_PHOTO_THRESHOLDS,
    DepthPrediction,
    DiffMVSPredictor,
    photometric_mask,
)
from recon_ros.pipeline.frames import View
from recon_ros.pipeline.sources import DepthEstimate
from recon_ros.pipeline.warping import as_tensor
from recon_ros.runtime.memory import is_out_of_memory, release_cached_memory

LOG = logging.getLogger("recon_ros")
LEARNED_DEPTH_SOURCES = ("diffmvs", "casdiffmvs")
MIN_OOM_SCALE = 0.25  # below a quarter of the view size the depth is not worth publishing

WEIGHTS_HELP = (
    "The official DiffMVS / CasDiffMVS weights are published by cvg/diffmvs (https://github.com/cvg/diffmvs, "
    "Apache-2.0): the README links a Google Drive zip with diffmvs_dtu.ckpt, diffmvs_blend.ckpt, "
    "casdiffmvs_dtu.ckpt and casdiffmvs_blend.ckpt, and a separate download of the CasDiffMVS checkpoint "
    "fine-tuned on BlendedMVG. Pass the file with `--depth-checkpoint FILE` on the CLI or the "
    "`depth.checkpoint` parameter (YAML / ROS parameter); `depth.preset` selects the settings "
    "(default '<source>_blend'; use '<source>_dtu' with the DTU checkpoints)."
)


class MissingCheckpointError(FileNotFoundError):
    """No usable checkpoint for a learned depth source (the message says where to get one)."""


def _seed_for(seed: int, keyframe_id: int, camera: str) -> int:
    # Stable across processes (no Python hash randomisation): seed, keyframe and camera name.
    h = 1469598103934665603
    for ch in f"{seed}/{keyframe_id}/{camera}".encode():
        h = ((h ^ ch) * 1099511628211) % (1 << 63)
    return h


class DiffMVSDepthSource:
    """``DepthSource`` running DiffMVS / CasDiffMVS (torch, onnxruntime or tensorrt backend)."""

    def __init__(
        self,
        predictor: DiffMVSPredictor,
        name: str = "diffmvs",
        seed: int = 0,
        thresholds: tuple[float, ...] | None = None,
    ) -> None:
        self.predictor = predictor
        self.name = name
        self.seed = int(seed)
        n_stages = 1 + len(predictor.cfg.refine_stages)
        thr = tuple(thresholds) if thresholds else DEFAULT_PHOTO_THRESHOLDS[:n_stages]
        if len(thr) < n_stages:
            raise ValueError(f"{name}: {n_stages} confidence stages but thresholds {thr}")
        self.thresholds = thr[:n_stages]
        # Fraction of the view size the network runs at; halved (and kept) after an out-of-memory error.
        self.scale = 1.0
        self.oom_fallbacks = 0

    def _predict(
        self, images: torch.Tensor, K: torch.Tensor, T_cam_world: torch.Tensor, depth_range: tuple[float, float],
        gen: torch.Generator,
    ) -> DepthPrediction:
        """The prediction at ``self.scale`` of the view size, brought back to full size."""
        h, w = images.shape[-2:]
        if self.scale < 1.0:
            sw, sh = max(32, round(w * self.scale)), max(32, round(h * self.scale))
            cam = [PinholeCamera.from_K(k.double().numpy(), w, h).resized(sw, sh).K for k in K]
            images = F.interpolate(images, size=(sh, sw), mode="area")
            K = torch.as_tensor(np.stack(cam), dtype=K.dtype)
        pred = self.predictor.predict(images, K, T_cam_world, float(depth_range[0]), float(depth_range[1]), gen)
        if pred.depth.shape[-2:] != (h, w):
            depth = F.interpolate(pred.depth[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            confs = [F.interpolate(c[None, None], size=(h, w), mode="nearest")[0, 0] for c in pred.confidences]
            pred = DepthPrediction(depth=depth, confidences=confs, network_size=pred.network_size)
        return pred

    def _inputs(self, ref: View, sources: list[View]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = ref.rgb.shape[:2]
        imgs, Ks, Ts = [], [], []
        for v in [ref, *sources]:
            rgb, K = v.rgb, np.asarray(v.K, dtype=np.float64)
            vh, vw = rgb.shape[:2]
            if (vh, vw) != (h, w):  # the network takes one size: bring sources to the reference's
                rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if vw > w else cv2.INTER_LINEAR)
                K = PinholeCamera.from_K(K, vw, vh).resized(w, h).K
            imgs.append(as_tensor(rgb, "cpu").permute(2, 0, 1) / 255.0)
            Ks.append(as_tensor(K, "cpu"))
            Ts.append(as_tensor(invert(v.T_world_cam), "cpu"))
        return torch.stack(imgs), torch.stack(Ks), torch.stack(Ts)

    def network_inputs(
        self, ref: View, sources: list[View], depth_range: tuple[float, float]
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor], torch.Tensor, tuple[int, int]]:
        """(imgs, proj_matrices, depth_values, (h, w)) the network gets for these views at full scale:
        what cvg/diffmvs' evaluation loader builds for the same images and cameras."""
        images, K, T_cam_world = self._inputs(ref, sources)
        return self.predictor.prepare_inputs(images, K, T_cam_world, float(depth_range[0]), float(depth_range[1]))

    def estimate(self, ref: View, sources: list[View], depth_range: tuple[float, float]) -> DepthEstimate:
        if not sources:
            raise ValueError(f"{self.name}: need at least one source view")
        images, K, T_cam_world = self._inputs(ref, sources)
        while True:
            gen = torch.Generator(device="cpu").manual_seed(_seed_for(self.seed, ref.keyframe_id, ref.camera))
            try:
                pred = self._predict(images, K, T_cam_world, depth_range, gen)
                break
            except Exception as exc:
                if not is_out_of_memory(exc) or self.scale <= MIN_OOM_SCALE:
                    raise
                old, self.scale = self.scale, self.scale / 2
                self.oom_fallbacks += 1
                release_cached_memory()
                h, w = images.shape[-2:]
                LOG.warning("%s: out of memory at %dx%d (%s); retrying at %dx%d and keeping that resolution",
                            self.name, round(w * old), round(h * old), type(exc).__name__,
                            round(w * self.scale), round(h * self.scale))
        stage = [c.detach().float().cpu().numpy() for c in pred.confidences]
        valid = photometric_mask(pred.confidences, self.thresholds).cpu().numpy()
        depth = pred.depth.detach().float().cpu().numpy()
        valid &= np.isfinite(depth) & (depth > 0)
        # One confidence for the engine: the weakest stage (the mask is the AND of all stages).
        confidence = np.minimum.reduce(stage).astype(np.float32)
        depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
        return DepthEstimate(depth=depth, confidence=confidence, valid=valid, stage_confidences=stage)


def _checkpoint_path(cfg: ReconConfig) -> Path:
    ckpt = cfg.depth.checkpoint.strip()
    if not ckpt:
        raise MissingCheckpointError(
            f"depth.source '{cfg.depth.source}' needs a checkpoint but depth.checkpoint is empty. " + WEIGHTS_HELP
        )
    path = Path(ckpt).expanduser()
    if not path.is_file():
        raise MissingCheckpointError(f"depth.checkpoint '{path}' does not exist. " + WEIGHTS_HELP)
    return path


def build_learned_depth_source(cfg: ReconConfig, device: str = "cpu") -> DiffMVSDepthSource:
    """The ``depth.source`` diffmvs / casdiffmvs source, honouring ``runtime.backend``."""
    source = cfg.depth.source
    if source not in LEARNED_DEPTH_SOURCES:
        raise ValueError(f"depth.source {source!r} is not a learned source ({LEARNED_DEPTH_SOURCES})")
    preset = cfg.depth.preset or f"{source}_blend"
    if not preset.startswith(source):
        raise ValueError(f"depth.preset {preset!r} does not match depth.source {source!r}")
    path = _checkpoint_path(cfg)
    net = load_diffmvs(path, preset, "cpu")
    backend = cfg.runtime.backend
    runner = None
    if backend != "torch":
        from recon_ros.runtime.runners import DiffMVSRunner

        cache = Path(cfg.runtime.engine_cache_dir).expanduser() / source
        runner = DiffMVSRunner(
            net, backend, device, cache_dir=cache, fp16=cfg.runtime.fp16, threads=cfg.runtime.threads,
            on_stale=cfg.runtime.engine_on_stale,
        )
        runner.known_bad_tensorrt = cfg.runtime.known_bad_tensorrt
    predictor = DiffMVSPredictor(net, device=device, runner=runner)
    thresholds = tuple(float(t) for t in cfg.fusion.stage_confidence_thresholds) or None
    LOG.info("depth source %s (%s, %s backend on %s) from %s", source, preset, backend, device, path)
    return DiffMVSDepthSource(predictor, source, cfg.depth.seed, thresholds)
