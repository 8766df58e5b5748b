"""Loading MV-DUSt3R(+) checkpoints: official layout, DUSt3R fallback, unsafe / broken / foreign files."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch

from recon_ros.models.checkpoint import CheckpointError
from recon_ros.models.mvdust3r import MVDust3R, MVDust3RConfig, load_mvdust3r
from recon_ros.models.mvdust3r.checkpoint import infer_preset

SIZES = dict(enc_embed_dim=32, enc_depth=1, enc_num_heads=2, dec_embed_dim=32, dec_depth=2, dec_num_heads=2)


def ctor(m_ref: bool) -> str:
    # the official 'args.model' string, with the small sizes of these tests
    extra = ", m_ref_flag=True, n_ref = 4" if m_ref else ""
    sizes = ", ".join(f"{k}={v}" for k, v in SIZES.items())
    return (
        "AsymmetricCroCo3DStereoMultiView(pos_embed='RoPE100', img_size=(224, 224), head_type='linear', "
        f"output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, 1e9), {sizes}, "
        f"GS = True, sh_degree=0, pts_head_config = {{'skip':True}}{extra})"
    )


def small_model(m_ref: bool) -> MVDust3R:
    torch.manual_seed(1)
    return MVDust3R(MVDust3RConfig(**SIZES, m_ref_flag=m_ref, n_ref=4 if m_ref else 1))


def save_official(path: Path, model: MVDust3R, m_ref: bool, drop_prefix: str | None = None) -> Path:
    state = {k: v for k, v in model.state_dict().items() if drop_prefix is None or not k.startswith(drop_prefix)}
    args = argparse.Namespace(model=ctor(m_ref), lr=1e-4, epochs=100)
    torch.save({"model": state, "args": args, "epoch": 7}, path)
    return path


@pytest.mark.parametrize("m_ref", [False, True])
def test_official_layout_with_namespace_loads(tmp_path: Path, m_ref: bool) -> None:
    model = small_model(m_ref)
    path = save_official(tmp_path / "ckpt.pth", model, m_ref)
    loaded = load_mvdust3r(path)  # preset inferred from the keys, sizes from args.model
    assert loaded.config.m_ref_flag == m_ref and loaded.config.enc_embed_dim == 32
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_missing_second_decoder_is_filled_from_first(tmp_path: Path) -> None:
    model = small_model(False)
    path = save_official(tmp_path / "dust3r_like.pth", model, False, drop_prefix="dec_blocks2.")
    loaded = load_mvdust3r(path)
    sd = loaded.state_dict()
    for key, value in sd.items():
        if key.startswith("dec_blocks2."):
            assert torch.equal(value, sd["dec_blocks." + key[len("dec_blocks2."):]]), key
    # independent copies, not aliases
    assert sd["dec_blocks2.0.norm1.weight"].data_ptr() != sd["dec_blocks.0.norm1.weight"].data_ptr()


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": small_model(False).state_dict(), "args": _Exploit(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused") as err:
        load_mvdust3r(path)
    assert str(path) in str(err.value)
    assert not marker.exists(), "loading executed pickled code"


def test_truncated_file(tmp_path: Path) -> None:
    full = save_official(tmp_path / "full.pth", small_model(False), False).read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(CheckpointError, match="truncated") as err:
        load_mvdust3r(path)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_mvdust3r(tmp_path / "MVD.pth")


def test_other_model_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"model": {"backbone.conv.weight": torch.zeros(8, 3, 3, 3)}}, path)
    with pytest.raises(CheckpointError, match=r"missing key 'mask_token'.*another model") as err:
        load_mvdust3r(path)
    assert str(path) in str(err.value)


def test_wrong_preset_is_named(tmp_path: Path) -> None:
    path = save_official(tmp_path / "MVDp.pth", small_model(True), True)
    with pytest.raises(CheckpointError, match="MV-DUSt3R\\+"):
        load_mvdust3r(path, preset="mvd")


def test_size_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    path = save_official(tmp_path / "MVD.pth", small_model(False), False)
    # an explicit preset uses the official sizes: the small file does not fit them
    with pytest.raises(CheckpointError, match=r"'mask_token' has shape \(1, 1, 32\), expected \(1, 1, 768\)"):
        load_mvdust3r(path, preset="mvd")


def test_infer_preset_from_keys() -> None:
    assert infer_preset({"dec_blocks.0.norm1.weight": torch.zeros(1)}) == "mvd"
    assert infer_preset({"dec_same_view_blocks.0.norm1.weight": torch.zeros(1)}) == "mvdp"
