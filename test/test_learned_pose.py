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
            "pose": {"source": "mvdust3r+", "checkpoint": str(folder / "weights.pt"), "window_keyframes": 3},
            "runtime": {"device": "cpu"},
        }
    )
    source = build_learned_pose_source(cfg, "cpu")
    assert source.window_keyframes == 3 and source.min_views == 4
    assert source.predictor.cache.max_entries == 4 * len(cfg.cameras)
    assert "Hugging Face" in WEIGHTS_HELP
