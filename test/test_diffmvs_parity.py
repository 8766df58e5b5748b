"""Upstream parity of the DiffMVS / CasDiffMVS port on the shared fixtures (skipped without them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from recon_ros.models.diffmvs import PRESETS, DiffMVSConfig, DiffMVSNet, run_fixture
from recon_ros.testing import require_fixture

MODELS = ("diffmvs", "casdiffmvs")
PRESET_OF = {"diffmvs": "diffmvs_blend", "casdiffmvs": "casdiffmvs_blend"}
ATOL = RTOL = 1e-4


def _manifest(fixture: Path) -> dict:
    return json.loads((fixture / "manifest.json").read_text())


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, np.ndarray]]:
    """One run per model, shared by the tests of this module (keeps the file fast)."""
    out = {}
    for model in MODELS:
        fixture = require_fixture("diffmvs", model)
        out[model] = run_fixture(model, fixture)
    return out


def _compare(ours: dict[str, np.ndarray], ref_file: Path) -> tuple[list[str], dict[str, float]]:
    failures, deltas = [], {}
    with np.load(ref_file) as ref:
        for key in ref.files:
            if key not in ours:
                failures.append(f"{key}: missing from our results")
                continue
            r, o = ref[key], ours[key]
            if r.shape != o.shape:
                failures.append(f"{key}: shape {o.shape} != reference {r.shape}")
                continue
            diff = np.abs(r.astype(np.float64) - o.astype(np.float64))
            deltas[key] = float(diff.max()) if diff.size else 0.0
            bad = diff > ATOL + RTOL * np.abs(r.astype(np.float64))
            if bad.any():
                failures.append(f"{key}: max|d|={deltas[key]:.3g}, {int(bad.sum())}/{bad.size} out of tolerance")
    return failures, deltas


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("which", ["outputs", "intermediates"])
def test_fixture_parity(results: dict, model: str, which: str) -> None:
    fixture = require_fixture("diffmvs", model)
    failures, deltas = _compare(results[model], fixture / f"{which}.npz")
    summary = ", ".join(f"{k}={v:.2g}" for k, v in deltas.items())
    print(f"{model} {which} max|d|: {summary}")
    assert not failures, f"{model} {which}: " + "; ".join(failures) + f" | all max|d|: {summary}"
    assert deltas, "reference file was empty"


@pytest.mark.parametrize("model", MODELS)
def test_run_fixture_does_not_need_expected_files(model: str, tmp_path: Path) -> None:
    """run_fixture must work from the inputs alone (outputs/intermediates absent)."""
    fixture = require_fixture("diffmvs", model)
    for name in ("manifest.json", "weights.pt", "inputs.npz", "noise.npz"):
        shutil.copy(fixture / name, tmp_path / name)
    res = run_fixture(model, tmp_path)
    with np.load(fixture / "outputs.npz") as ref:
        final = sorted(k for k in ref.files if k.startswith("depth_"))[-1]
        assert np.allclose(res[final], ref[final], atol=ATOL, rtol=RTOL)


def test_run_fixture_rejects_unknown_backend_and_model() -> None:
    fixture = require_fixture("diffmvs", "diffmvs")
    with pytest.raises(ValueError, match="backend"):
        run_fixture("diffmvs", fixture, backend="tensorrt")
    with pytest.raises(ValueError, match="unknown model"):
        run_fixture("mvsnet", fixture)


@pytest.mark.parametrize("model", MODELS)
def test_fresh_state_dict_matches_manifest_keys(model: str) -> None:
    """Keys, shapes and dtypes of a freshly built model equal the official list (manifest and preset)."""
    fixture = require_fixture("diffmvs", model)
    manifest = _manifest(fixture)
    expected = {name: (tuple(shape), dtype) for name, shape, dtype in manifest["weights"]["keys"]}
    assert len(expected) == manifest["weights"]["num_entries"]
    for cfg in (DiffMVSConfig.from_manifest(manifest), PRESETS[PRESET_OF[model]]):
        net = DiffMVSNet(cfg)
        got = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in net.state_dict().items()}
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        assert not missing and not extra, f"{cfg.name}: missing {missing[:5]}, unexpected {extra[:5]}"
        wrong = [(k, got[k], expected[k]) for k in expected if got[k] != expected[k]]
        assert not wrong, f"{cfg.name}: shape/dtype mismatches {wrong[:5]}"
        assert list(got) == list(expected), "state_dict order differs from the official one"
        n_params = sum(p.numel() for p in net.parameters())
        assert n_params == manifest["weights"]["num_parameters"]


@pytest.mark.parametrize("model", MODELS)
def test_manifest_config_equals_preset(model: str) -> None:
    cfg = DiffMVSConfig.from_manifest(_manifest(require_fixture("diffmvs", model)))
    assert cfg == PRESETS[PRESET_OF[model]]


@pytest.mark.parametrize("model", MODELS)
def test_schedule_buffers_match_checkpoint(model: str) -> None:
    """Freshly computed cosine-schedule buffers equal the stored ones (they are never trained)."""
    fixture = require_fixture("diffmvs", model)
    stored = torch.load(fixture / "weights.pt", weights_only=True)
    fresh = DiffMVSNet(PRESETS[PRESET_OF[model]]).state_dict()
    keys = [k for k in fresh if k.split(".")[-1] in {"betas", "alphas_cumprod", "posterior_variance"}]
    assert keys
    for key in keys:
        torch.testing.assert_close(fresh[key], stored[key], rtol=1e-6, atol=1e-7, msg=key)
