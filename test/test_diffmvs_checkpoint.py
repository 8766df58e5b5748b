"""Checkpoint loading for DiffMVS / CasDiffMVS (self-contained: uses freshly initialised weights)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from recon_ros.models.checkpoint import CheckpointError
from recon_ros.models.diffmvs import PRESETS, DiffMVSNet, load_diffmvs


def _random_state(preset: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with non-default values everywhere, so a successful load is observable."""
    torch.manual_seed(seed)
    net = DiffMVSNet(PRESETS[preset])
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return net.state_dict()


@pytest.fixture(scope="module")
def diffmvs_state() -> dict[str, torch.Tensor]:
    return _random_state("diffmvs_blend")


def _assert_loaded(net: DiffMVSNet, state: dict[str, torch.Tensor]) -> None:
    assert not net.training
    got = net.state_dict()
    for key, value in state.items():
        assert torch.equal(got[key], value), key


def test_official_wrapper_with_module_prefix(tmp_path: Path, diffmvs_state: dict) -> None:
    path = tmp_path / "diffmvs_blend.ckpt"
    wrapped = {
        "epoch": 15,
        "model": {f"module.{k}": v for k, v in diffmvs_state.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1, 2]}]},
    }
    torch.save(wrapped, path)
    net = load_diffmvs(path, "diffmvs_blend")
    _assert_loaded(net, diffmvs_state)
    # The list alias and the attribute are the same module object, as in the reference model.
    assert net.update_block[0] is net.update_block_depth2


def test_plain_state_dict(tmp_path: Path) -> None:
    state = _random_state("casdiffmvs_blend", seed=1)
    path = tmp_path / "plain.pt"
    torch.save(state, path)
    net = load_diffmvs(path, "casdiffmvs_dtu")  # same architecture, other run-time settings
    _assert_loaded(net, state)
    assert net.cfg.scale == (0.0, 0.5, 0.1)


@pytest.mark.parametrize("drop", ["update_block.", "update_block_depth"])
def test_missing_alias_keys_are_completed(tmp_path: Path, diffmvs_state: dict, drop: str) -> None:
    state = {k: v for k, v in diffmvs_state.items() if not k.startswith(drop)}
    assert len(state) < len(diffmvs_state)
    path = tmp_path / "no_alias.pt"
    torch.save({"model": state}, path)
    net = load_diffmvs(path, "diffmvs_blend")
    _assert_loaded(net, diffmvs_state)


def test_inconsistent_aliases_are_refused(tmp_path: Path, diffmvs_state: dict) -> None:
    state = dict(diffmvs_state)
    key = "update_block.0.unet.final_conv.bias"
    state[key] = state[key] + 1.0
    path = tmp_path / "bad_alias.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="final_conv.bias"):
        load_diffmvs(path, "diffmvs_blend")


def test_truncated_file(tmp_path: Path, diffmvs_state: dict) -> None:
    full = tmp_path / "full.pt"
    torch.save({"model": diffmvs_state}, full)
    data = full.read_bytes()
    path = tmp_path / "truncated.ckpt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.ckpt"):
        load_diffmvs(path, "diffmvs_blend")


def test_other_models_weights_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "casdiffmvs_blend.ckpt"
    torch.save({"epoch": 1, "model": _random_state("casdiffmvs_blend")}, path)
    with pytest.raises(CheckpointError) as info:
        load_diffmvs(path, "diffmvs_blend")
    msg = str(info.value)
    assert "casdiffmvs_blend.ckpt" in msg
    # The first mismatch is a refiner tensor whose shape differs between the variants.
    assert "update_block_depth2." in msg and "shape" in msg, msg


def test_diffmvs_weights_refused_by_casdiffmvs(tmp_path: Path, diffmvs_state: dict) -> None:
    path = tmp_path / "diffmvs.ckpt"
    torch.save(diffmvs_state, path)
    with pytest.raises(CheckpointError, match=r"diffmvs\.ckpt.*(missing key|shape)"):
        load_diffmvs(path, "casdiffmvs_blend")


class _RunsCommandWhenUnpickled:
    """Unpickling this would call os.system: a stand-in for a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_pickled_callable_is_refused_not_executed(tmp_path: Path, diffmvs_state: dict) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"epoch": 1, "model": diffmvs_state, "hook": _RunsCommandWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match="evil.ckpt") as info:
        load_diffmvs(path, "diffmvs_blend")
    assert "refused" in str(info.value)
    assert not marker.exists(), "the pickled command was executed"


def test_missing_file_and_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_diffmvs(tmp_path / "nope.ckpt", "diffmvs_blend")
    path = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, path)
    with pytest.raises(KeyError, match="unknown DiffMVS preset"):
        load_diffmvs(path, "mvsnet")
