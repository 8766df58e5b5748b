"""Learned camera poses: MV-DUSt3R(+) pointmaps -> PnP poses -> metres from the rig and odometry.

Per keyframe the source runs the network on a window of the newest ``pose.window_keyframes``
keyframes x cameras, recovers every view's pose in the pointmaps' frame by PnP-RANSAC with the known
intrinsics (inside :class:`MVDust3RPredictor`), and then fixes the arbitrary scale and frame of the
prediction with a Sim(3) fitted to camera centres whose metric positions are known:

* with odometry: every view of the window at ``T_odom_base @ T_base_cam`` (map = odom, so the
  published ``map->odom`` is identity);
* without odometry: the views of the older keyframes of the window at their map poses; the first
  keyframe defines the map (map = its base_link, so its cameras sit at ``T_base_cam``).

The new keyframe's base pose is then averaged from its aligned cameras and its views are placed with
the calibrated extrinsics, so the rig stays rigid and metric. Each view also gets a depth range from
its pointmap depths times the scale. A degenerate alignment, or one whose residual is large next to
the rig baseline, falls back to TF poses (or, without odometry, to the last known base pose) for that
keyframe; the reason is logged and reported in ``PoseUpdate.info``.

The network runs with the configured ``runtime.backend`` (torch, or the ONNX Runtime / TensorRT
encoder and decoder graphs of :class:`~recon_ros.runtime.runners.MVDust3RRunner`, which keep the
encoder-token cache). When it runs out of (GPU) memory, the window shrinks by one keyframe at a time
(the newest kept, never below the model's minimum views) and stays at the smaller size for the rest of
the run; if even the smallest window does not fit, that keyframe falls back to TF / rig poses. Both
are logged and counted in :meth:`MVDust3RPoseSource.status`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from recon_ros.config import ReconConfig
from recon_ros.geometry.se3 import Sim3, make_transform, umeyama
from recon_ros.pipeline.frames import FrameSet, Keyframe, View
from recon_ros.pipeline.sources import PoseUpdate
from recon_ros.runtime.memory import is_out_of_memory

if TYPE_CHECKING:
    from recon_ros.models.mvdust3r.config import MVDust3RConfig
    from recon_ros.models.mvdust3r.network import MVDust3R

LOG = logging.getLogger("recon_ros")

WEIGHTS_HELP = (
    "The official MV-DUSt3R weights are on Hugging Face: https://huggingface.co/Zhenggang/MV-DUSt3R "
    "(folder 'checkpoints/': MVD.pth for pose.source 'mvdust3r', MVDp_s1.pth or MVDp_s2.pth for "
    "'mvdust3r+'; licence CC BY-NC 4.0, non-commercial use only). Download one and pass it with "
    "--pose-checkpoint FILE or the parameter pose.checkpoint:=FILE."
)

# Margins around the pointmap's 2-98 % depth percentiles: the percentiles cut the extremes on
# purpose, and the network's depths are a few percent off; a too-tight range loses true surfaces.
DEPTH_RANGE_MARGIN = (0.8, 1.25)
MIN_DEPTH_M = 0.05
# Alignment accepted while the RMS centre residual is below this fraction of the rig baseline.
# Candidate for a parameter (pose.max_residual_fraction).
MAX_RESIDUAL_FRACTION = 0.15
# Metric target centres spread less than this (RMS, metres) cannot fix a scale.
MIN_TARGET_SPREAD_M = 1e-3
# Second/first singular value of the centred target centres below which they count as collinear;
# then the rotation comes from the cameras' orientations instead of the centres.
COLLINEAR_RATIO = 0.05
# Orientation weight of the alignment: camera axes this long join the centres in the fit (a typical
# scene depth: a rotation error moves the map by about this length x the angle).
AXIS_LENGTH_M = 1.0
# Used when the rig has one camera (no extrinsic baseline): residual relative to the centres' extent.
MIN_BASELINE_M = 0.01


class DegenerateAlignment(ValueError):
    """The known metric centres (or the predicted ones) cannot fix a Sim(3)."""


class PointmapPredictorLike(Protocol):
    """What the source needs from :class:`MVDust3RPredictor` (tests inject ground-truth pointmaps)."""

    def predict(self, images: list[np.ndarray], K: list[np.ndarray] | None = None, keys: list | None = None) -> Any:
        ...


# ---- alignment ---------------------------------------------------------------------------------


@dataclass
class MetricAlignment:
    sim: Sim3  # prediction frame -> map frame
    residual_m: float  # RMS distance between aligned predicted centres and the known ones
    n_views: int
    method: str  # "umeyama" or "orientations" (collinear centres)


def _nearest_rotation(M: np.ndarray) -> np.ndarray:
    U, _, Vt = np.linalg.svd(M)
    S = np.eye(3)
    if np.linalg.det(U @ Vt) < 0:
        S[2, 2] = -1.0
    return U @ S @ Vt


def align_to_metric(
    pred_c2w: np.ndarray, target_c2w: np.ndarray, axis_length_m: float = AXIS_LENGTH_M
) -> MetricAlignment:
    """Sim(3) taking predicted camera poses ``[N, 4, 4]`` onto known metric ones ``[N, 4, 4]``.

    Umeyama on the camera centres, refined with the cameras' orientations (see ``axis_length_m``;
    0 = centres only). When the known centres are collinear (one camera moving straight)
    the rotation about that line is unobservable from centres, so it is taken from the cameras'
    orientations (chordal mean of ``R_target R_pred^T``) and scale + translation solved by least
    squares given it. Raises :class:`DegenerateAlignment` when the centres cannot fix a scale.
    """
    pred_c2w = np.asarray(pred_c2w, np.float64)
    target_c2w = np.asarray(target_c2w, np.float64)
    src, dst = pred_c2w[:, :3, 3], target_c2w[:, :3, 3]
    n = len(src)
    if n < 2 or not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise DegenerateAlignment(f"need >= 2 finite camera centres with known metric poses, got {n}")
    dst_c, src_c = dst - dst.mean(0), src - src.mean(0)
    spread = float(np.sqrt((dst_c**2).sum(1).mean()))
    if spread < MIN_TARGET_SPREAD_M:
        raise DegenerateAlignment(
            f"known camera centres are coincident (RMS spread {spread * 1e3:.2f} mm): scale is undefined"
        )
    src_spread = float(np.sqrt((src_c**2).sum(1).mean()))
    if src_spread <= 1e-9 * (1.0 + float(np.abs(src).max())):
        raise DegenerateAlignment("predicted camera centres are coincident: scale is undefined")
    sv = np.linalg.svd(dst_c, compute_uv=False)
    if n >= 3 and sv[1] > COLLINEAR_RATIO * sv[0]:
        sim = umeyama(src, dst, with_scale=True)
        method = "umeyama"
    else:
        R = _nearest_rotation(sum(t[:3, :3] @ p[:3, :3].T for p, t in zip(pred_c2w, target_c2w)))
        rs = src_c @ R.T
        scale = float((rs * dst_c).sum() / (rs * rs).sum())
        sim = Sim3(scale, R, dst.mean(0) - scale * R @ src.mean(0))
        method = "orientations"
    if not np.isfinite(sim.scale) or sim.scale <= 0:
        raise DegenerateAlignment(f"alignment gave scale {sim.scale}")
    if axis_length_m > 0:
        # Refit with each camera's axis tips (axis_length_m along x, y, z) added to its centre. A rig
        # baseline of decimetres pins the rotation only to ~(centre error / baseline) rad, while
        # PnP orientations are far better; the tips weigh them in as the error they cause at scene
        # depth. Predicted tips use the first fit's scale, so the scale still comes from the centres.
        tips_src = src[:, None] + (axis_length_m / sim.scale) * pred_c2w[:, :3, :3].transpose(0, 2, 1)
        tips_dst = dst[:, None] + axis_length_m * target_c2w[:, :3, :3].transpose(0, 2, 1)
        fine = umeyama(
            np.concatenate([src, tips_src.reshape(-1, 3)]), np.concatenate([dst, tips_dst.reshape(-1, 3)])
        )
        # keep the centres' scale: the tips were built with it and would only pull towards it
        sim = Sim3(sim.scale, fine.R, dst.mean(0) - sim.scale * fine.R @ src.mean(0))
        method += "+axes"
    residual = float(np.sqrt(((sim.apply(src) - dst) ** 2).sum(1).mean()))
    return MetricAlignment(sim, residual, n, method)


def rig_baseline(T_base_cam: Mapping[str, np.ndarray]) -> float:
    """Largest distance between two cameras of the rig (0 for one camera)."""
    c = np.array([np.asarray(T)[:3, 3] for T in T_base_cam.values()], np.float64).reshape(-1, 3)
    if len(c) < 2:
        return 0.0
    return float(np.linalg.norm(c[:, None] - c[None], axis=-1).max())


def base_from_cameras(T_world_cam: Sequence[np.ndarray], T_base_cam: Sequence[np.ndarray]) -> np.ndarray:
    """Base pose that best explains camera poses given the rig extrinsics (chordal rotation mean,
    least-squares translation): keeps the calibrated, metric rig rigid instead of trusting every
    predicted view on its own."""
    R = _nearest_rotation(sum(np.asarray(w)[:3, :3] @ np.asarray(b)[:3, :3].T for w, b in zip(T_world_cam, T_base_cam)))
    t = np.mean([np.asarray(w)[:3, 3] - R @ np.asarray(b)[:3, 3] for w, b in zip(T_world_cam, T_base_cam)], axis=0)
    return make_transform(R, t)


# ---- the pose source ---------------------------------------------------------------------------


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """Short form of an error for the log (torch's out-of-memory message is a paragraph)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:limit] if text else ''}"


class _Fallback(Exception):
    def __init__(self, reason: str, info: dict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.info = dict(info or {})


class MVDust3RPoseSource:
    """``PoseSource`` for ``mvdust3r`` / ``mvdust3r+``. Holds the predictor (with its bounded encoder
    token cache) and one base pose; nothing grows with the length of the run.

    ``window_keyframes`` is the configured window; ``active_window`` the one in use, smaller after the
    network ran out of memory (see the module docstring). ``min_views`` is the model's minimum.
    """

    def __init__(
        self,
        predictor: PointmapPredictorLike,
        name: str = "mvdust3r+",
        window_keyframes: int = 2,
        min_views: int = 2,
        max_residual_fraction: float = MAX_RESIDUAL_FRACTION,
    ) -> None:
        if window_keyframes < 1:
            raise ValueError("pose.window_keyframes must be >= 1")
        self.predictor = predictor
        self.name = name
        self.window_keyframes = int(window_keyframes)
        self.active_window = int(window_keyframes)
        self.min_views = int(min_views)
        self.max_residual_fraction = float(max_residual_fraction)
        self._last_T_map_base: np.ndarray | None = None  # for the no-odometry fallback
        self.fallbacks = 0  # keyframes whose learned poses were rejected (any reason)
        self.oom_retries = 0  # times the window shrank after running out of memory
        self.oom_fallbacks = 0  # keyframes that ran out of memory even with the smallest window

    def status(self) -> dict[str, Any]:
        """Counters for status reports: window in use (vs configured), fallbacks, out-of-memory events."""
        return {
            "pose_window_keyframes": self.active_window,
            "pose_window_configured": self.window_keyframes,
            "pose_fallbacks": self.fallbacks,
            "pose_oom_retries": self.oom_retries,
            "pose_oom_fallbacks": self.oom_fallbacks,
        }

    def update(self, keyframe: Keyframe, window: list[Keyframe], frameset: FrameSet) -> PoseUpdate:
        older = [k for k in window if k is not keyframe]
        missing = [c for c in keyframe.views if c not in frameset.T_base_cam]
        if missing:
            raise ValueError(f"pose source '{self.name}' needs rig extrinsics (base_link->camera) for {missing}")
        oom_info: dict[str, Any] = {}
        while True:
            n = self.active_window
            kfs = [*(older[-(n - 1):] if n > 1 else []), keyframe]
            odometry = all(k.T_odom_base is not None for k in kfs)
            # Without odometry the first keyframe (or the first after a reset) defines the map frame.
            first = not odometry and len(window) <= 1
            try:
                update = self._learned(keyframe, kfs, frameset, odometry, first)
            except _Fallback as fb:
                fb.info.update(oom_info)
                return self._fallback(keyframe, frameset, odometry, first, fb)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                oom_info["out_of_memory"] = oom_info.get("out_of_memory", 0) + 1
                smaller = self._smaller_window(kfs)
                views = sum(len(k.views) for k in kfs)
                if smaller is None:
                    self.oom_fallbacks += 1
                    reason = (
                        f"out of memory even with the smallest window, {len(kfs)} keyframe(s) / {views} views "
                        f"({self.name} needs >= {self.min_views} views): {_first_line(exc)}"
                    )
                    info = {"views": views, "window_keyframes": len(kfs), **oom_info}
                    return self._fallback(keyframe, frameset, odometry, first, _Fallback(reason, info))
                new_views = sum(len(k.views) for k in kfs[-smaller:])
                self.oom_retries += 1
                LOG.warning(
                    "keyframe %d: %s ran out of memory with a window of %d keyframes (%d views); retrying with "
                    "%d keyframes (%d views) and keeping that window from now on (%s)",
                    keyframe.id, self.name, len(kfs), views, smaller, new_views, _first_line(exc),
                )
                self.active_window = smaller
                continue
            update.info.update(oom_info)
            update.info["window_keyframes"] = len(kfs)
            return update

    def _smaller_window(self, kfs: list[Keyframe]) -> int | None:
        """Keyframes of the next smaller window (one fewer, newest kept), or None when that would leave
        fewer views than the model needs."""
        n = len(kfs) - 1
        if n >= 1 and sum(len(k.views) for k in kfs[-n:]) >= self.min_views:
            return n
        return None

    # ---- learned path ------------------------------------------------------------------------
    def _learned(
        self, keyframe: Keyframe, kfs: list[Keyframe], fs: FrameSet, odometry: bool, first: bool
    ) -> PoseUpdate:
        views: list[View] = [v for k in kfs for v in k.views.values()]
        if len(views) < self.min_views:
            raise _Fallback(f"window has {len(views)} views, {self.name} needs >= {self.min_views}")
        pred = self.predictor.predict([v.rgb for v in views], [v.K for v in views], [v.key for v in views])

        # The rig is rigid and calibrated: the current frame set's extrinsics hold for older keyframes too.
        targets: list[np.ndarray | None] = []
        for k in kfs:
            for cam, v in k.views.items():
                if odometry:
                    targets.append(k.T_odom_base @ fs.T_base_cam[cam])  # type: ignore[operator]
                elif first:
                    targets.append(fs.T_base_cam[cam])
                else:
                    targets.append(None if k is keyframe else v.T_world_cam)
        pose_ok = np.asarray(pred.pose_ok, bool)
        used = [i for i, t in enumerate(targets) if t is not None and pose_ok[i]]
        info: dict[str, Any] = {
            "views": len(views),
            "pnp_failed": int((~pose_ok).sum()),
            "aligned_views": len(used),
            "mode": "odometry" if odometry else ("rig" if first else "map"),
        }
        if len(used) < 2:
            raise _Fallback(f"only {len(used)} views with a PnP pose and a known metric pose", info)
        try:
            al = align_to_metric(pred.c2w[used], np.stack([targets[i] for i in used]))  # type: ignore[misc]
        except DegenerateAlignment as exc:
            raise _Fallback(f"degenerate alignment: {exc}", info) from None
        baseline = rig_baseline(fs.T_base_cam)
        if baseline < MIN_BASELINE_M:
            c = np.stack([targets[i][:3, 3] for i in used])  # type: ignore[index]
            baseline = float(np.linalg.norm(c[:, None] - c[None], axis=-1).max())
        info.update(scale=al.sim.scale, residual_m=al.residual_m, baseline_m=baseline, method=al.method)
        if al.residual_m > self.max_residual_fraction * baseline:
            raise _Fallback(
                f"alignment residual {al.residual_m:.3f} m > {self.max_residual_fraction:.2f} x rig baseline "
                f"{baseline:.3f} m",
                info,
            )

        offset = len(views) - len(keyframe.views)  # the new keyframe's views come last
        cams = list(keyframe.views)
        ok = [j for j in range(len(cams)) if pose_ok[offset + j]]
        if not ok:
            raise _Fallback("PnP failed for every view of the new keyframe", info)
        aligned = [al.sim.apply_to_pose(pred.c2w[offset + j].astype(np.float64)) for j in ok]
        T_map_base = base_from_cameras(aligned, [fs.T_base_cam[cams[j]] for j in ok])
        ranges = np.asarray(pred.depth_ranges, np.float64)[offset:] * al.sim.scale
        for j, cam in enumerate(cams):
            view = keyframe.views[cam]
            view.T_world_cam = T_map_base @ fs.T_base_cam[cam]
            near, far = ranges[j]
            if np.isfinite(near) and np.isfinite(far) and far > near > 0:
                view.depth_range = (
                    max(float(near) * DEPTH_RANGE_MARGIN[0], MIN_DEPTH_M),
                    float(far) * DEPTH_RANGE_MARGIN[1],
                )
        self._last_T_map_base = T_map_base
        info["pose_from"] = self.name
        return PoseUpdate(
            T_map_odom=np.eye(4) if odometry else None, scale=al.sim.scale, residual_m=al.residual_m, info=info
        )

    # ---- fallback ------------------------------------------------------------------------------
    def _fallback(self, keyframe: Keyframe, fs: FrameSet, odometry: bool, first: bool, fb: _Fallback) -> PoseUpdate:
        self.fallbacks += 1
        info = dict(fb.info)
        info["fallback"] = fb.reason
        if odometry:
            T_map_base = keyframe.T_odom_base
            info["pose_from"] = "tf"
        elif first or self._last_T_map_base is None:
            T_map_base = np.eye(4)  # the first keyframe's base_link is the map
            info["pose_from"] = "rig"
        else:
            # No odometry and no usable prediction: assume the base has not moved. Wrong if it has,
            # but the only pose available; the log says so.
            T_map_base = self._last_T_map_base
            info["pose_from"] = "last_pose"
        assert T_map_base is not None
        LOG.warning(
            "keyframe %d: %s poses rejected (%s); using %s poses", keyframe.id, self.name, fb.reason, info["pose_from"]
        )
        for cam, view in keyframe.views.items():
            view.T_world_cam = T_map_base @ fs.T_base_cam[cam]
        self._last_T_map_base = T_map_base
        return PoseUpdate(
            T_map_odom=np.eye(4) if odometry else None,
            scale=float(info.get("scale", 1.0)),
            residual_m=float(info.get("residual_m", 0.0)),
            info=info,
        )


# ---- checkpoint loading ------------------------------------------------------------------------

_BLOCK = re.compile(r"^(enc_blocks|dec_blocks)\.(\d+)\.")
OFFICIAL_HEAD_WIDTH = 64  # 1024 / 16 (encoder) and 768 / 12 (decoder) in the official models


def _depth(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    idx = [int(m.group(2)) for k in state if (m := _BLOCK.match(k)) and m.group(1) == prefix]
    return max(idx) + 1 if idx else 0


def config_from_shapes(
    state: Mapping[str, torch.Tensor], manifest: Mapping[str, Any] | None = None
) -> MVDust3RConfig:
    """Network config of a state_dict whose sizes differ from the official ones (e.g. the reduced
    parity fixtures). Widths and depths come from tensor shapes; head counts do not show in any shape,
    so they come from a fixture ``manifest`` when given, else from the official head width (64)."""
    from recon_ros.models.mvdust3r.config import from_manifest, preset

    m_ref = any(k.startswith("dec_same_view_blocks.") for k in state)
    if manifest is not None and "reduced_config" in manifest:
        cfg = from_manifest(manifest)
        if cfg.m_ref_flag == m_ref:
            return cfg
    base = preset("mvdp" if m_ref else "mvd")
    enc_dim = int(state["patch_embed.proj.weight"].shape[0])
    dec_dim = int(state["decoder_embed.weight"].shape[0])
    for dim in (enc_dim, dec_dim):
        if dim % OFFICIAL_HEAD_WIDTH:
            raise ValueError(f"cannot infer attention heads for width {dim} (no manifest.json next to the file)")
    return replace(
        base,
        patch_size=int(state["patch_embed.proj.weight"].shape[-1]),
        enc_embed_dim=enc_dim,
        enc_depth=_depth(state, "enc_blocks"),
        enc_num_heads=enc_dim // OFFICIAL_HEAD_WIDTH,
        dec_embed_dim=dec_dim,
        dec_depth=_depth(state, "dec_blocks"),
        dec_num_heads=dec_dim // OFFICIAL_HEAD_WIDTH,
    )


def load_pose_model(path: str | Path, source: str = "mvdust3r+", device: str = "cpu") -> MVDust3R:
    """Load an MV-DUSt3R(+) checkpoint for ``source``: an official ``.pth`` or a plain state_dict of
    another size (config inferred from the tensor shapes). Errors say where the weights come from."""
    from recon_ros.models.checkpoint import CheckpointError, extract_state_dict, read_checkpoint
    from recon_ros.models.mvdust3r.checkpoint import fill_second_decoder, load_mvdust3r

    if not str(path).strip():
        raise ValueError(
            f"pose.source '{source}' needs an MV-DUSt3R checkpoint and pose.checkpoint is empty. {WEIGHTS_HELP}"
        )
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"MV-DUSt3R checkpoint not found: {p}. {WEIGHTS_HELP}")
    try:
        model = load_mvdust3r(p, device=device)  # official files: one read, sizes from the file
    except CheckpointError as exc:
        # Not the official sizes: infer them from the tensors (small files only reach this point).
        try:
            state = fill_second_decoder(extract_state_dict(read_checkpoint(p), p))
            mpath = p.parent / "manifest.json"
            manifest = json.loads(mpath.read_text()) if mpath.is_file() else None
            model = load_mvdust3r(p, config=config_from_shapes(state, manifest), device=device)
        except (CheckpointError, ValueError, KeyError, OSError):
            raise CheckpointError(f"{exc}. {WEIGHTS_HELP}") from exc
    plus = model.config.m_ref_flag
    if source == "mvdust3r+" and not plus:
        raise ValueError(
            f"{p} is an MV-DUSt3R (MVD) checkpoint; pose.source 'mvdust3r+' needs MVDp_s1.pth / MVDp_s2.pth. "
            + WEIGHTS_HELP
        )
    if source == "mvdust3r" and plus:
        raise ValueError(f"{p} is an MV-DUSt3R+ checkpoint; set pose.source to 'mvdust3r+' (or use MVD.pth)")
    LOG.info(
        "loaded %s from %s (enc %dx%d, dec %dx%d)", source, p, model.config.enc_depth, model.config.enc_embed_dim,
        model.config.dec_depth, model.config.dec_embed_dim,
    )
    return model


def build_learned_pose_source(cfg: ReconConfig, device: str = "cpu") -> MVDust3RPoseSource:
    """The ``pose.source`` mvdust3r / mvdust3r+ source, honouring ``runtime.backend`` (and
    ``runtime.fp16`` for onnxruntime / tensorrt, whose ONNX files and engines go to
    ``runtime.engine_cache_dir/<source>``)."""
    from recon_ros.models.mvdust3r.predictor import MVDust3RPredictor

    if cfg.pose.source not in ("mvdust3r", "mvdust3r+"):
        raise ValueError(f"unknown learned pose source {cfg.pose.source!r}")
    backend = cfg.runtime.backend
    # Other backends only export from the torch weights: keep them off the GPU.
    model = load_pose_model(cfg.pose.checkpoint, cfg.pose.source, device if backend == "torch" else "cpu")
    runner = None
    if backend != "torch":
        from recon_ros.runtime.runners import MVDust3RRunner

        cache_dir = Path(cfg.runtime.engine_cache_dir).expanduser() / cfg.pose.source
        runner = MVDust3RRunner(
            model, backend, device, cache_dir=cache_dir, fp16=cfg.runtime.fp16, threads=cfg.runtime.threads,
            on_stale=cfg.runtime.engine_on_stale,
        )
        runner.known_bad_tensorrt = cfg.runtime.known_bad_tensorrt
    window = cfg.pose.window_keyframes
    # Keys are (keyframe id, camera): one window's worth of entries (+ one keyframe of headroom)
    # lets every keyframe be encoded exactly once while it stays in the window.
    cache = (window + 1) * max(len(cfg.cameras), 1)
    predictor = MVDust3RPredictor(
        model, device=device, cache_size=cache, min_conf_percent=cfg.pose.min_confidence, runner=runner,
        input_mode=cfg.pose.input_mode,
    )
    LOG.info("pose source %s (%s backend%s on %s)", cfg.pose.source, backend,
             ", fp16" if cfg.runtime.fp16 and backend != "torch" else "", device)
    return MVDust3RPoseSource(predictor, cfg.pose.source, window, min_views=model.config.min_views)
