"""Camera recovery from pointmaps: upstream parity (pose_recovery fixture) and known-intrinsics PnP."""

from __future__ import annotations

import numpy as np
import pytest

from recon_ros.geometry.pointmap_poses import (
    estimate_focal,
    percentile_threshold,
    pixel_grid,
    recover_poses,
    rotation_angle_deg,
)
from recon_ros.models.mvdust3r.fixture_run import run_fixture
from recon_ros.testing import assert_mask_parity, assert_threshold_close, require_fixture


@pytest.fixture(scope="module")
def pose_fixture():
    folder = require_fixture("mvdust3r", "pose_recovery")
    return folder, np.load(folder / "inputs.npz"), np.load(folder / "outputs.npz")


def test_pose_recovery_matches_upstream(pose_fixture) -> None:
    folder, inputs, ref = pose_fixture
    out = run_fixture("pose_recovery", folder)
    for key in ("conf_thres_all", "conf_thres_focal"):
        assert_threshold_close(key, out[key], ref[key])
    assert_mask_parity("mask_pnp", out["mask_pnp"], ref["mask_pnp"], inputs["conf"], ref["conf_thres_all"])
    assert_mask_parity("mask_focal", out["mask_focal"], ref["mask_focal"], inputs["conf"][0], ref["conf_thres_focal"])
    rel = abs(float(out["focal"]) / float(ref["focal"]) - 1)
    assert rel <= 1e-4, f"focal {float(out['focal'])} vs {float(ref['focal'])} (rel {rel:.2e})"
    np.testing.assert_allclose(out["K"], ref["K"], rtol=1e-4)
    for v in range(ref["c2w"].shape[0]):
        ang = rotation_angle_deg(out["c2w"][v, :3, :3], ref["c2w"][v, :3, :3])
        dt = float(np.abs(out["c2w"][v, :3, 3] - ref["c2w"][v, :3, 3]).max())
        assert ang <= 0.05 and dt <= 1e-3, f"view {v}: rotation off by {ang:.4f} deg, translation by {dt:.2e}"
    assert set(ref.files) - set(out) == {"c2w_true", "focal_true"}


def test_known_intrinsics_recover_ground_truth(pose_fixture) -> None:
    """With the true K (no focal estimate) and LM refinement the rig comes back within upstream's accuracy."""
    _, inputs, ref = pose_fixture
    f = float(ref["focal_true"])
    K = np.array([[f, 0, 112.0], [0, f, 112.0], [0, 0, 1]])
    rec = recover_poses(inputs["pts3d"], inputs["conf"], K=K, refine=True)
    assert rec.focal is None and rec.mask_focal is None
    assert rec.pnp_ok.all()
    for v in range(4):
        ang = rotation_angle_deg(rec.c2w[v, :3, :3], ref["c2w_true"][v, :3, :3])
        dt = float(np.abs(rec.c2w[v, :3, 3] - ref["c2w_true"][v, :3, 3]).max())
        assert ang <= 0.05 and dt <= 1e-3, f"view {v}: {ang:.4f} deg, {dt:.2e}"


def test_threshold_rule_and_focal_on_exact_pinhole() -> None:
    conf = np.arange(100, dtype=np.float32)[::-1].reshape(10, 10)
    assert percentile_threshold(conf, 3.0) == 3.0
    h = w = 32
    f = 40.0
    px = pixel_grid(h, w) - np.array([w / 2, h / 2], dtype=np.float32)
    z = np.linspace(1.0, 3.0, h * w, dtype=np.float32).reshape(h, w)
    pts = np.concatenate([px * z[..., None] / f, z[..., None]], axis=-1)
    assert abs(estimate_focal(pts) - f) < 1e-3


def test_pnp_failure_is_flagged() -> None:
    pts = np.zeros((1, 8, 8, 3), dtype=np.float32)
    conf = np.ones((1, 8, 8), dtype=np.float32)
    conf[0, :, :] = 1.0
    rec = recover_poses(pts, conf, K=np.eye(3))
    assert not rec.pnp_ok[0]
    np.testing.assert_array_equal(rec.c2w[0, :3, 3], [-1, -1, -1])
