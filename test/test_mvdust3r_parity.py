"""Upstream parity of MV-DUSt3R / MV-DUSt3R+ on the reduced-size fixtures (outputs, intermediates, poses).

The MVDp forward is the slowest test of the suite (~50 s on one core); it runs once per session
through a module-scoped fixture and its outputs are reused by the path-selection test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recon_ros.models.mvdust3r.checkpoint import load_mvdust3r
from recon_ros.models.mvdust3r.config import from_manifest
from recon_ros.models.mvdust3r.fixture_run import pose_arrays, run_network_fixture
from recon_ros.testing import assert_mask_parity, assert_threshold_close, require_fixture

OUTPUT_ARRAYS = ("pts3d", "conf", "gs_rgb_sub5", "gs_opacity_sub5", "gs_scale_sub5", "gs_rotation_sub5")


def assert_close(name: str, mine: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> float:
    """numpy-allclose rule with a message giving max |Δ| and the worst ratio to the tolerance."""
    assert mine.shape == ref.shape, f"{name}: shape {mine.shape} != reference {ref.shape}"
    diff = np.abs(mine.astype(np.float64) - ref.astype(np.float64))
    ratio = float((diff / (atol + rtol * np.abs(ref.astype(np.float64)))).max())
    assert ratio <= 1.0, (
        f"{name}: max |Δ| = {diff.max():.3g}, worst |Δ|/(atol + rtol|ref|) = {ratio:.3g} "
        f"(rtol {rtol}, atol {atol})"
    )
    return float(diff.max())


def _run(name: str) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    folder = require_fixture("mvdust3r", name)
    result, inter = run_network_fixture(name.lower(), folder, record=True)
    return folder, result, inter


@pytest.fixture(scope="module")
def mvd_run() -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    return _run("MVD")


@pytest.fixture(scope="module")
def mvdp_run() -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    return _run("MVDp")


def check_outputs(folder: Path, result: dict[str, np.ndarray]) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    tol = manifest["tolerances"]["recommended"]
    ref = np.load(folder / "outputs.npz")
    missing = [k for k in ref.files if k not in result]
    assert not missing, f"outputs missing from run_network_fixture: {missing}"
    for key in OUTPUT_ARRAYS:
        assert_close(key, result[key], ref[key], tol[key]["rtol"], tol[key]["atol"])
    np.testing.assert_array_equal(result["slot_to_view"], ref["slot_to_view"])
    np.testing.assert_array_equal(result["ref_view_of_path"], ref["ref_view_of_path"])


def check_intermediates(folder: Path, inter: dict[str, np.ndarray]) -> None:
    ref = np.load(folder / "intermediates.npz")
    tokens = ref["head_token_index"]
    slots = ref["head_slot_index"]
    for name in (str(n) for n in ref["call_order"]):
        if name in ("head_token_index", "head_slot_index"):
            continue
        assert name in inter, f"intermediate {name} was not recorded"
        mine = inter[name]
        if name == "patch_embed_pos":
            np.testing.assert_array_equal(mine, ref[name])
            continue
        atol = 1e-4
        if name.startswith("head_"):
            mine = mine[:, slots]
            if name == "head_pts_skip_out_sub5":
                atol = 5e-2
            else:
                mine = mine[:, :, tokens]
        assert_close(name, mine, ref[name], 1e-4, atol)


def check_poses(folder: Path, result: dict[str, np.ndarray]) -> None:
    """Pose recovery parity, twice: on upstream's stored path-0 outputs (the algorithm alone, the
    manifest's rtol 1e-4 for thresholds, masks with the tie rule, focal) and on our own network outputs
    (end to end; their pts3d differ from upstream's within the output tolerance)."""
    ref = np.load(folder / "poses.npz")
    outputs = np.load(folder / "outputs.npz")
    conf = outputs["conf"][0]  # path 0, the run the demo recovers poses from
    on_stored = pose_arrays(outputs["pts3d"][0], conf)
    # The fixture's focal is degenerate (< 1 px: random weights are no pinhole camera), so the pts3d
    # rounding our outputs carry moves it by up to 1.3e-4 relative (measured, MVDp); 1e-3 end to end.
    for mine, focal_rtol in ((on_stored, 1e-4), (result, 1e-3)):
        for key in ("conf_thres_all", "conf_thres_focal", "min_conf_thr_percent"):
            assert_threshold_close(key, mine[key], ref[key])
        assert_mask_parity("mask_pnp", mine["mask_pnp"], ref["mask_pnp"], conf, ref["conf_thres_all"])
        assert_mask_parity("mask_focal", mine["mask_focal"], ref["mask_focal"], conf[0], ref["conf_thres_focal"])
        focal, focal_ref = float(mine["focal"]), float(ref["focal"])
        assert abs(focal - focal_ref) <= focal_rtol * abs(focal_ref), f"focal {focal} vs {focal_ref}"
        assert_close("K", mine["K"], ref["K"], focal_rtol, 1e-6)
        # c2w is informational only here (random weights: not a pinhole projection)
        assert mine["c2w"].shape == ref["c2w"].shape


def test_mvd_outputs(mvd_run) -> None:
    check_outputs(mvd_run[0], mvd_run[1])


def test_mvd_intermediates(mvd_run) -> None:
    check_intermediates(mvd_run[0], mvd_run[2])


def test_mvd_poses(mvd_run) -> None:
    check_poses(mvd_run[0], mvd_run[1])


def test_mvdp_outputs(mvdp_run) -> None:
    check_outputs(mvdp_run[0], mvdp_run[1])


def test_mvdp_intermediates(mvdp_run) -> None:
    check_intermediates(mvdp_run[0], mvdp_run[2])


def test_mvdp_poses(mvdp_run) -> None:
    check_poses(mvdp_run[0], mvdp_run[1])


def test_mvdp_path0_only_equals_all_paths(mvdp_run) -> None:
    """Heads for path 0 only: same pointmaps/Gaussians as the all-paths run, for a quarter of the cost."""
    folder, result, _ = mvdp_run
    manifest = json.loads((folder / "manifest.json").read_text())
    model = load_mvdust3r(folder / "weights.pt", config=from_manifest(manifest))
    images = torch.from_numpy(np.load(folder / "inputs.npz")["img"])[None]
    with torch.no_grad():
        out = model(images, paths=[0], gaussians=True)
    assert out["pts3d"].shape[1] == 1
    diff = np.abs(out["pts3d"][0, 0].numpy() - result["pts3d"][0]).max()
    assert diff <= 1e-6, f"pts3d path 0: max |Δ| {diff}"
    diff = np.abs(out["conf"][0, 0].numpy() - result["conf"][0]).max()
    assert diff <= 1e-6, f"conf path 0: max |Δ| {diff}"
    rot = out["gs_rotation"][0, 0, :, ::5, ::5].numpy()
    diff = np.abs(rot - result["gs_rotation_sub5"][0]).max()
    assert diff <= 1e-6, f"gs_rotation path 0: max |Δ| {diff}"
