"""DiffMVS / CasDiffMVS depth source with the fixture weights (official shapes, random values)."""

from __future__ import annotations

import numpy as np
import pytest

from recon_ros.config import ReconConfig
from recon_ros.pipeline.frames import CameraImage, FrameSet, View
from recon_ros.testing import require_fixture

W, H = 100, 70  # not multiples of 32: the predictor must resize and return full resolution


@pytest.fixture(scope="module")
def seq():
    from recon_ros.synthetic.sequence import SyntheticConfig, SyntheticSequence

    return SyntheticSequence(SyntheticConfig(seed=3, n_cameras=2, n_frames=6, width=W, height=H))


def _cfg(model: str = "diffmvs", **depth) -> ReconConfig:
    cfg = ReconConfig()
    cfg.depth.source = model
    cfg.depth.checkpoint = str(require_fixture("diffmvs", model) / "weights.pt")
    for k, v in depth.items():
        setattr(cfg.depth, k, v)
    return cfg


def _views(seq, frames=(0, 2, 4), cam=None) -> list[View]:
    cam = cam or seq.camera_names[0]
    out = []
    for i in frames:
        f = seq.render_frame(i, [cam])
        out.append(View(i, cam, f.stamp_ns, f.images[cam], seq.K.copy(), seq.T_world_cam(i, cam)))
    return out


def _source(cfg: ReconConfig):
    from recon_ros.pipeline.learned_depth import build_learned_depth_source

    return build_learned_depth_source(cfg, "cpu")


@pytest.mark.parametrize("model", ["diffmvs", "casdiffmvs"])
def test_full_resolution_and_reproducible(seq, model: str) -> None:
    src = _source(_cfg(model))
    ref, *others = _views(seq)
    a = src.estimate(ref, others, (0.5, 8.0))
    b = src.estimate(ref, others, (0.5, 8.0))
    assert a.depth.shape == a.confidence.shape == a.valid.shape == (H, W)
    assert len(a.stage_confidences) == (2 if model == "diffmvs" else 3)
    assert all(c.shape == (H, W) for c in a.stage_confidences)
    assert a.depth.dtype == np.float32 and a.valid.dtype == bool
    assert np.all((a.depth >= 0.5 - 1e-3) & (a.depth <= 8.0 + 1e-3))  # metric, within the hypothesis range
    np.testing.assert_array_equal(a.depth, b.depth)
    # Another seed draws other diffusion noise -> other depth (noise scale is non-zero in the blend presets).
    c = _source(_cfg(model, seed=7)).estimate(ref, others, (0.5, 8.0))
    assert np.abs(c.depth - a.depth).max() > 1e-4


def test_mask_follows_thresholds(seq) -> None:
    cfg = _cfg()
    ref, *others = _views(seq)
    default = _source(cfg).estimate(ref, others, (0.5, 8.0))
    c0, c1 = default.stage_confidences
    np.testing.assert_array_equal(default.valid, (c0 > 0.3) & (c1 > 0.5))
    np.testing.assert_array_equal(default.confidence, np.minimum(c0, c1))
    t0, t1 = float(np.median(c0)), float(np.median(c1))
    cfg.fusion.stage_confidence_thresholds = [t0, t1]
    custom = _source(cfg).estimate(ref, others, (0.5, 8.0))
    np.testing.assert_array_equal(custom.depth, default.depth)
    np.testing.assert_array_equal(custom.valid, (c0 > t0) & (c1 > t1))
    assert 0 < custom.valid.sum() < custom.valid.size


def test_sources_of_other_size_are_resized(seq) -> None:
    import cv2

    ref, *others = _views(seq)
    small = others[0]
    K = small.K.copy()
    K[:2] *= 0.5
    others[0] = View(small.keyframe_id, small.camera, small.stamp_ns, cv2.resize(small.rgb, (W // 2, H // 2)),
                     K, small.T_world_cam)
    est = _source(_cfg()).estimate(ref, others, (0.5, 8.0))
    assert est.depth.shape == (H, W) and np.isfinite(est.depth).all()


@pytest.mark.parametrize("value", ["", "/nonexistent/diffmvs_blend.ckpt"])
def test_missing_checkpoint_says_where_weights_are(value: str) -> None:
    from recon_ros.pipeline.learned_depth import MissingCheckpointError, build_learned_depth_source

    cfg = ReconConfig()
    cfg.depth.source = "casdiffmvs"
    cfg.depth.checkpoint = value
    with pytest.raises(MissingCheckpointError) as info:
        build_learned_depth_source(cfg, "cpu")
    msg = str(info.value)
    for needle in ("cvg/diffmvs", "Google Drive", "casdiffmvs_blend.ckpt", "BlendedMVG", "--depth-checkpoint",
                   "depth.checkpoint"):
        assert needle in msg, needle


def test_onnxruntime_backend_matches_torch(seq, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    ref, *others = _views(seq)
    torch_est = _source(_cfg()).estimate(ref, others, (0.5, 8.0))
    cfg = _cfg()
    cfg.runtime.backend = "onnxruntime"
    cfg.runtime.engine_cache_dir = str(tmp_path)
    src = _source(cfg)
    ort_est = src.estimate(ref, others, (0.5, 8.0))
    np.testing.assert_allclose(ort_est.depth, torch_est.depth, atol=1e-4, rtol=1e-4)
    assert (ort_est.valid != torch_est.valid).mean() < 1e-3  # only pixels within 1e-5 of a threshold may flip
    assert len(list((tmp_path / "diffmvs" / "onnx").glob("*_v3_64x96.onnx"))) == 1  # cached by shapes


def test_engine_run_with_diffmvs_completes(seq) -> None:
    from recon_ros.pipeline.engine import ReconstructionEngine

    cfg = _cfg()
    cfg.cameras = list(seq.camera_names)
    cfg.runtime.device = "cpu"
    cfg.keyframes.min_translation_m = 0.0
    cfg.keyframes.max_interval_s = 1e-3
    cfg.fusion.delay_keyframes = 1
    cfg.depth.num_sources = 2
    engine = ReconstructionEngine(cfg)
    outs = []
    for i in range(4):
        f = seq.render_frame(i)
        images = {c: CameraImage(c, f.stamp_ns, f.images[c], seq.K.copy(), f"{c}_optical_frame") for c in f.images}
        out = engine.process(FrameSet(f.stamp_ns, images, dict(seq.T_base_cam), f.T_odom_base))
        if out is not None:
            outs.append(out)
    outs.append(engine.flush())
    assert engine.drops.total() == 0, engine.drops.as_dict()
    depth_views = [v for o in outs[:-1] for v in o.views]
    assert depth_views and all(v.depth.shape == (H, W) for v in depth_views)
    assert engine.depth_source.name == "diffmvs"


def test_out_of_memory_falls_back_to_half_resolution(seq, monkeypatch, caplog) -> None:
    """Inject CUDA OOM for inputs wider than 64 px: the source retries at half size, says so, keeps it."""
    import logging

    import torch

    src = _source(_cfg("diffmvs"))
    ref, *others = _views(seq)
    real = src.predictor.predict
    widths: list[int] = []

    def predict(images, *args, **kw):
        widths.append(images.shape[-1])
        if images.shape[-1] > 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(images, *args, **kw)

    monkeypatch.setattr(src.predictor, "predict", predict)
    with caplog.at_level(logging.WARNING, logger="recon_ros"):
        a = src.estimate(ref, others, (0.5, 8.0))
        b = src.estimate(ref, others, (0.5, 8.0))
    assert widths == [W, W // 2, W // 2]  # one failure, then the smaller size is kept
    assert src.scale == 0.5 and src.oom_fallbacks == 1
    assert "diffmvs: out of memory at 100x70 (OutOfMemoryError); retrying at 50x35" in caplog.text
    assert a.depth.shape == (H, W) and np.all(a.depth[a.valid] > 0)  # published at the view's size
    np.testing.assert_array_equal(a.depth, b.depth)
    # Not an OOM: the error propagates (the engine counts it as processing_error).
    monkeypatch.setattr(src.predictor, "predict", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bad")))
    with pytest.raises(RuntimeError, match="bad"):
        src.estimate(ref, others, (0.5, 8.0))
