"""The MV-DUSt3R(+) pose source: checkpoint loading and its errors, the window it feeds the network,
the encoder-token cache, and one run of the whole chain (bag -> engine -> mvdust3r+ -> planesweep)
with the reduced parity-fixture weights as the checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recon_ros.config import from_dict
from recon_ros.models.checkpoint import CheckpointError
from recon_ros.models.mvdust3r.config import from_manifest
from recon_ros.pipeline.frames import CameraImage, FrameSet, Keyframe, View
from recon_ros.pipeline.learned_pose import (
    WEIGHTS_HELP,
    MVDust3RPoseSource,
    build_learned_pose_source,
    config_from_shapes,
    load_pose_model,
)
from recon_ros.pipeline.sources import build_pose_source
from recon_ros.testing import require_fixture


def _assert_names_weights(text: str) -> None:
    assert "huggingface.co/Zhenggang/MV-DUSt3R" in text
    assert "checkpoints/" in text and "CC BY-NC 4.0" in text
    assert "--pose-checkpoint" in text and "pose.checkpoint" in text


def test_empty_checkpoint_says_where_the_weights_are() -> None:
    cfg = from_dict({"pose": {"source": "mvdust3r+", "checkpoint": ""}})
    with pytest.raises(ValueError) as err:
        build_pose_source(cfg, "cpu")
    _assert_names_weights(str(err.value))
    assert "pose.checkpoint is empty" in str(err.value)


def test_missing_checkpoint_says_where_the_weights_are(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_pose_model(tmp_path / "MVDp_s2.pth", "mvdust3r+")
    _assert_names_weights(str(err.value))
    assert str(tmp_path / "MVDp_s2.pth") in str(err.value)


def test_unreadable_checkpoint_names_the_file_and_the_weights(tmp_path: Path) -> None:
    bad = tmp_path / "MVD.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        load_pose_model(bad, "mvdust3r")
    assert str(bad) in str(err.value)
    _assert_names_weights(str(err.value))


def test_reduced_fixture_config_is_inferred() -> None:
    import torch

    folder = require_fixture("mvdust3r", "MVDp")
    manifest = json.loads((folder / "manifest.json").read_text())
    state = torch.load(folder / "weights.pt", weights_only=True)
    assert config_from_shapes(state, manifest) == from_manifest(manifest)
    # Without a manifest the head counts are not in any shape; widths that are no multiple of the
    # official head width (64) are refused rather than guessed.
    with pytest.raises(ValueError, match="heads"):
        config_from_shapes(state, None)


def test_checkpoint_kind_must_match_the_source(tmp_path: Path) -> None:
    folder = require_fixture("mvdust3r", "MVD")
    with pytest.raises(ValueError, match="MVDp_s1.pth"):
        load_pose_model(folder / "weights.pt", "mvdust3r+")
    # a copy without the manifest next to it cannot be sized (heads unknown): clear error
    shutil.copy(folder / "weights.pt", tmp_path / "weights.pt")
    with pytest.raises(CheckpointError) as err:
        load_pose_model(tmp_path / "weights.pt", "mvdust3r")
    _assert_names_weights(str(err.value))


class RecordingPredictor:
    """Returns exact poses for the keys it is asked about; records what the source asked for."""

    def __init__(self, poses: dict) -> None:
        self.poses = poses
        self.calls: list[list] = []

    def predict(self, images, K=None, keys=None):
        from recon_ros.models.mvdust3r.predictor import PointmapPrediction

        self.calls.append(list(keys))
        T0 = np.linalg.inv(self.poses[keys[0]])
        c2w = np.stack([T0 @ self.poses[k] for k in keys])
        c2w[:, :3, 3] *= 0.5  # arbitrary network scale
        n = len(keys)
        ranges = np.tile([1.0, 2.0], (n, 1))
        return PointmapPrediction(
            np.zeros((n, 1, 1, 3)), np.ones((n, 1, 1)), np.stack(K), list(range(n)), c2w, ranges,
            np.ones((n, 1, 1), bool), np.ones(n, bool),
        )


def _rig() -> dict[str, np.ndarray]:
    rig = {}
    for i, name in enumerate(("a", "b", "c")):
        T = np.eye(4)
        T[:3, 3] = [0.2 * np.cos(2 * np.pi * i / 3), 0.2 * np.sin(2 * np.pi * i / 3), 0.5]
        rig[name] = T
    return rig


def test_window_is_the_newest_keyframes_and_state_stays_bounded() -> None:
    rig = _rig()
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    rgb = np.zeros((48, 64, 3), np.uint8)
    poses: dict = {}
    pred = RecordingPredictor(poses)
    source = MVDust3RPoseSource(pred, "mvdust3r", window_keyframes=3, min_views=2)
    window: list[Keyframe] = []
    for k in range(7):
        T_odom_base = np.eye(4)
        T_odom_base[:3, 3] = [0.3 * k, 0.05 * k**1.5, 0.0]
        for cam, T in rig.items():
            poses[(k, cam)] = T_odom_base @ T
        views = {cam: View(k, cam, k, rgb, K, np.eye(4)) for cam in rig}
        kf = Keyframe(k, k, views, T_odom_base)
        fs = FrameSet(k, {c: CameraImage(c, k, rgb, K) for c in rig}, rig, T_odom_base)
        window = [*window[-4:], kf]  # the engine passes its whole buffer (here 5 keyframes)
        u = source.update(kf, window, fs)
        assert "fallback" not in u.info, u.info
        assert u.scale == pytest.approx(2.0)
        for cam, view in kf.views.items():
            np.testing.assert_allclose(view.T_world_cam, poses[(k, cam)], atol=1e-9)
            assert view.depth_range == pytest.approx((2.0 * 0.8, 4.0 * 1.25))  # x scale, with margin
    # the last call saw keyframes 4, 5, 6 (pose.window_keyframes = 3), keyframe by keyframe, camera by camera
    assert pred.calls[-1] == [(k, c) for k in (4, 5, 6) for c in rig]
    assert [len(c) for c in pred.calls] == [3, 6, 9, 9, 9, 9, 9]
    # only one base pose is remembered, whatever the run length
    assert source._last_T_map_base.shape == (4, 4)


def test_fixture_weights_run_through_the_engine(tmp_path: Path) -> None:
    """bag (2 cameras, 3 frames, 96x72) -> engine -> mvdust3r+ (reduced fixture weights) -> planesweep.

    mvdust3r+ needs 4 views: the first keyframe (2 views) falls back to TF, the next two run the
    network on 2 keyframes x 2 cameras. Random fixture weights give meaningless pointmaps, so what
    must hold is the plumbing: finite poses, every keyframe encoded once, a bounded cache."""
    folder = require_fixture("mvdust3r", "MVDp")
    from recon_ros.bag_tool import run_bag
    from recon_ros.synthetic.bag import write_sequence_bag
    from recon_ros.synthetic.sequence import SyntheticConfig, SyntheticSequence

    seq = SyntheticSequence(SyntheticConfig(n_frames=3, width=96, height=72, n_cameras=2))
    bag = tmp_path / "tiny"
    write_sequence_bag(seq, bag, progress=False)
    cfg = from_dict(
        {
            "cameras": seq.camera_names,
            "pose": {"source": "mvdust3r+", "checkpoint": str(folder / "weights.pt"), "window_keyframes": 2},
            "depth": {"source": "planesweep", "num_planes": 8},
            "keyframes": {"min_translation_m": 0.001, "min_interval_s": 0.0},
            "runtime": {"device": "cpu"},
        }
    )
    result = run_bag(bag, None, cfg, progress=False, keep_outputs=True)
    engine = result.engine
    assert engine is not None
    assert engine.keyframe_count == 3 and not engine.drops.as_dict()
    source = engine.pose_source
    assert isinstance(source, MVDust3RPoseSource) and source.name == "mvdust3r+"
    for kf in engine.keyframes:
        for view in kf.views.values():
            assert np.isfinite(view.T_world_cam).all()
            np.testing.assert_allclose(view.T_world_cam[:3, :3] @ view.T_world_cam[:3, :3].T, np.eye(3), atol=1e-6)
    assert np.isfinite(engine.status()["scale"])
    cache = source.predictor.cache
    # 3 keyframes x 2 cameras encoded once each; the 2nd network call reused keyframe 1's tokens
    assert (cache.misses, cache.hits) == (6, 2)
    assert len(cache) <= cache.max_entries == (2 + 1) * 2


def test_build_sizes_the_cache_to_the_window() -> None:
    folder = require_fixture("mvdust3r", "MVDp")
    cfg = from_dict(
        {
            "cameras": ["front", "left", "right", "back"],  # known by build time (named or discovered)
            "pose": {"source": "mvdust3r+", "checkpoint": str(folder / "weights.pt"), "window_keyframes": 3},
            "runtime": {"device": "cpu"},
        }
    )
    source = build_learned_pose_source(cfg, "cpu")
    assert source.window_keyframes == 3 and source.min_views == 4
    assert source.predictor.cache.max_entries == 4 * len(cfg.cameras)
    assert "Hugging Face" in WEIGHTS_HELP


# ---- runtime backend and running out of memory ----------------------------------------------------


def test_build_honours_the_runtime_backend(tmp_path: Path) -> None:
    from recon_ros.runtime.runners import MVDust3RRunner

    folder = require_fixture("mvdust3r", "MVDp")
    cfg = from_dict(
        {
            "pose": {"source": "mvdust3r+", "checkpoint": str(folder / "weights.pt"), "window_keyframes": 2},
            "runtime": {"device": "cpu", "backend": "onnxruntime", "fp16": True, "engine_cache_dir": str(tmp_path)},
        }
    )
    source = build_learned_pose_source(cfg, "cpu")
    runner = source.predictor.runner
    assert isinstance(runner, MVDust3RRunner)
    assert (runner.backend, runner.fp16, runner.cache_dir) == ("onnxruntime", True, tmp_path / "mvdust3r+")
    assert source.predictor.network is runner  # encoder and decoder graphs, token cache in front
    torch_cfg = from_dict({"pose": {"source": "mvdust3r+", "checkpoint": str(folder / "weights.pt")}})
    assert build_learned_pose_source(torch_cfg, "cpu").predictor.runner is None


class OomPredictor(RecordingPredictor):
    """Like :class:`RecordingPredictor`, but the "network" runs out of memory above ``max_views`` views
    (from call number ``after`` on: memory taken by something else later in the run)."""

    def __init__(
        self, poses: dict, max_views: int, error: type[BaseException] | None = None, after: int = 0
    ) -> None:
        super().__init__(poses)
        self.max_views = max_views
        self.error = error
        self.after = after

    def predict(self, images, K=None, keys=None):
        import torch

        if len(images) > self.max_views and len(self.calls) >= self.after:
            self.calls.append(list(keys))
            if self.error is not None:
                raise self.error("Failed to allocate memory for requested buffer of size 2147483648")
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB (window of {len(images)} views)\nmore details"
            )
        return super().predict(images, K, keys)


def _run_keyframes(source: MVDust3RPoseSource, poses: dict, n: int, odometry: bool = True) -> list:
    rig = _rig()
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    rgb = np.zeros((48, 64, 3), np.uint8)
    window: list[Keyframe] = []
    updates = []
    for k in range(n):
        T_odom_base = np.eye(4)
        T_odom_base[:3, 3] = [0.3 * k, 0.05 * k**1.5, 0.0]
        for cam, T in rig.items():
            poses[(k, cam)] = T_odom_base @ T
        views = {cam: View(k, cam, k, rgb, K, np.eye(4)) for cam in rig}
        kf = Keyframe(k, k, views, T_odom_base if odometry else None)
        fs = FrameSet(k, {c: CameraImage(c, k, rgb, K) for c in rig}, rig, T_odom_base if odometry else None)
        window = [*window[-4:], kf]
        updates.append(source.update(kf, window, fs))
        for cam, view in kf.views.items():  # processing went on with correct poses
            np.testing.assert_allclose(view.T_world_cam, poses[(k, cam)], atol=1e-9)
    return updates


def test_out_of_memory_shrinks_the_window_and_remembers_it(caplog: pytest.LogCaptureFixture) -> None:
    poses: dict = {}
    pred = OomPredictor(poses, max_views=6)  # 3 cameras: at most 2 keyframes fit
    source = MVDust3RPoseSource(pred, "mvdust3r", window_keyframes=4, min_views=2)
    with caplog.at_level("WARNING", logger="recon_ros"):
        updates = _run_keyframes(source, poses, 6)
    # keyframe 2: 9 views fail, 6 succeed; keyframe 3 on starts with the remembered 2-keyframe window
    assert [len(c) for c in pred.calls] == [3, 6, 9, 6, 6, 6, 6]
    assert source.active_window == 2 and source.window_keyframes == 4
    assert source.status() == {
        "pose_window_keyframes": 2, "pose_window_configured": 4, "pose_fallbacks": 0,
        "pose_oom_retries": 1, "pose_oom_fallbacks": 0,
    }
    oom = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert len(oom) == 1
    assert "keyframe 2: mvdust3r ran out of memory with a window of 3 keyframes (9 views); retrying with " \
           "2 keyframes (6 views)" in oom[0]
    assert "OutOfMemoryError: CUDA out of memory" in oom[0] and "more details" not in oom[0]
    assert updates[2].info["out_of_memory"] == 1 and updates[2].info["window_keyframes"] == 2
    assert "fallback" not in updates[2].info and "out_of_memory" not in updates[3].info


def test_out_of_memory_steps_down_one_keyframe_at_a_time() -> None:
    poses: dict = {}
    pred = OomPredictor(poses, max_views=3, after=2)
    source = MVDust3RPoseSource(pred, "mvdust3r", window_keyframes=3, min_views=2)
    _run_keyframes(source, poses, 4)
    # keyframe 2 tried 9, then 6, then 3 views: two retries, one keyframe dropped each
    assert [len(c) for c in pred.calls] == [3, 6, 9, 6, 3, 3]
    assert (source.active_window, source.oom_retries, source.oom_fallbacks) == (1, 2, 0)


@pytest.mark.parametrize("odometry", [True, False], ids=["tf", "no_odometry"])
def test_out_of_memory_at_the_minimum_window_falls_back(odometry: bool, caplog: pytest.LogCaptureFixture) -> None:
    class Fail(Exception):  # stands in for ONNX Runtime's exception type (not a RuntimeError)
        pass

    poses: dict = {}
    pred = OomPredictor(poses, max_views=2, error=Fail)  # even one keyframe (3 views) does not fit
    source = MVDust3RPoseSource(pred, "mvdust3r", window_keyframes=2, min_views=2)
    with caplog.at_level("WARNING", logger="recon_ros"):
        if odometry:
            updates = _run_keyframes(source, poses, 3)
        else:
            rig = _rig()
            K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
            rgb = np.zeros((48, 64, 3), np.uint8)
            views = {cam: View(0, cam, 0, rgb, K, np.eye(4)) for cam in rig}
            kf = Keyframe(0, 0, views, None)
            updates = [source.update(kf, [kf], FrameSet(0, {c: CameraImage(c, 0, rgb, K) for c in rig}, rig, None))]
            for cam, view in kf.views.items():  # the first keyframe's base_link is the map
                np.testing.assert_allclose(view.T_world_cam, rig[cam])
    n = len(updates)
    # one keyframe (3 views) is the smallest window: it fails too, so every keyframe falls back and the
    # run goes on; keyframe 1 first tried its 2-keyframe window (one retry)
    assert [len(c) for c in pred.calls] == ([3, 6, 3, 3] if odometry else [3])
    assert source.oom_fallbacks == n and source.fallbacks == n
    assert source.oom_retries == (1 if odometry else 0)
    assert all(u.info["pose_from"] == ("tf" if odometry else "rig") for u in updates)
    assert all("out of memory even with the smallest window, 1 keyframe(s) / 3 views" in u.info["fallback"]
               for u in updates)
    logs = [r.getMessage() for r in caplog.records]
    assert sum("poses rejected (out of memory even with the smallest window" in m and "Fail: Failed to allocate" in m
               for m in logs) == n
    assert source.status()["pose_oom_fallbacks"] == n


def test_other_errors_are_not_taken_for_out_of_memory() -> None:
    class Broken(RecordingPredictor):
        def predict(self, images, K=None, keys=None):
            raise RuntimeError("shape mismatch")

    source = MVDust3RPoseSource(Broken({}), "mvdust3r", window_keyframes=2, min_views=2)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        _run_keyframes(source, {}, 1)
    assert (source.oom_retries, source.oom_fallbacks, source.active_window) == (0, 0, 2)


def test_out_of_memory_in_the_network_call_of_a_real_predictor(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole chain with a (tiny, random) MV-DUSt3R: the decoder call raises torch's OutOfMemoryError
    for windows above 6 views; the source shrinks its window and carries on (random weights give no
    usable poses, so the keyframes then fall back for the residual, which is not what is tested here)."""
    import torch

    from recon_ros.models.mvdust3r import MVDust3R, MVDust3RConfig, MVDust3RPredictor

    torch.manual_seed(0)
    net = MVDust3R(MVDust3RConfig(enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=32, dec_depth=1,
                                  dec_num_heads=2, skip_dim=4, gs_mlp_dim=16))
    pred = MVDust3RPredictor(net, "cpu", cache_size=12)
    decoded: list[int] = []
    real_decode = net.decode

    def decode(tokens, images, paths=None, gaussians=False):
        decoded.append(tokens.shape[1])
        if tokens.shape[1] > 6:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real_decode(tokens, images, paths, gaussians)

    monkeypatch.setattr(net, "decode", decode)
    source = MVDust3RPoseSource(pred, "mvdust3r", window_keyframes=3, min_views=net.config.min_views)
    rig = _rig()
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    rng = np.random.default_rng(0)
    window: list[Keyframe] = []
    with caplog.at_level("WARNING", logger="recon_ros"):
        for k in range(4):
            T_odom_base = np.eye(4)
            T_odom_base[:3, 3] = [0.3 * k, 0.0, 0.0]
            rgb = {c: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for c in rig}
            kf = Keyframe(k, k, {c: View(k, c, k, rgb[c], K, np.eye(4)) for c in rig}, T_odom_base)
            fs = FrameSet(k, {c: CameraImage(c, k, rgb[c], K) for c in rig}, rig, T_odom_base)
            window = [*window[-4:], kf]
            source.update(kf, window, fs)
            assert all(np.isfinite(v.T_world_cam).all() for v in kf.views.values())
    assert decoded == [3, 6, 9, 6, 6]
    assert (source.active_window, source.oom_retries, source.oom_fallbacks) == (2, 1, 0)
    assert any("ran out of memory with a window of 3 keyframes (9 views); retrying with 2 keyframes (6 views)"
               in r.getMessage() for r in caplog.records)
    # the failed call encoded keyframe 2 before the decoder failed: the retry reused its tokens
    assert pred.cache.misses == 4 * len(rig)
