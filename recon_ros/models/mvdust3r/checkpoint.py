"""Loading the official MV-DUSt3R(+) checkpoints (``MVD.pth``, ``MVDp_s1.pth``, ``MVDp_s2.pth``).

The official files are pickled dicts with ``'model'`` (the state_dict, no prefix) and ``'args'`` (an
``argparse.Namespace``). They are read with ``weights_only=True`` and only ``argparse.Namespace``
allow-listed, so a file carrying code is refused, never executed. Training checkpoints may also hold
optimizer state; only ``'model'`` is used.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CheckpointError, check_state_dict, extract_state_dict, read_checkpoint
from .config import MVDust3RConfig, preset
from .network import MVDust3R

_XREF_PREFIX = "dec_same_view_blocks."


def infer_preset(state: Mapping[str, torch.Tensor]) -> str:
    """``"mvdp"`` when the cross-reference blocks are present, else ``"mvd"``."""
    return "mvdp" if any(k.startswith(_XREF_PREFIX) for k in state) else "mvd"


def fill_second_decoder(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy ``dec_blocks.*`` to ``dec_blocks2.*`` when the file has no second decoder stack.

    DUSt3R-initialisation files carry one decoder stack only; the network starts both from it.
    """
    out = dict(state)
    if any(k.startswith("dec_blocks2.") for k in state):
        return out
    for key, value in state.items():
        if key.startswith("dec_blocks."):
            # a copy, so the two stacks stay independent parameters
            out["dec_blocks2." + key[len("dec_blocks."):]] = value.clone()
    return out


_CTOR_INT_FIELDS = (
    "enc_embed_dim",
    "enc_depth",
    "enc_num_heads",
    "dec_embed_dim",
    "dec_depth",
    "dec_num_heads",
    "n_ref",
)


def _ctor_ints(ctor: str) -> dict[str, int]:
    found = {}
    for name in _CTOR_INT_FIELDS:
        match = re.search(rf"\b{name}\s*=\s*(\d+)", ctor)
        if match:
            found[name] = int(match.group(1))
    return found


def config_from_checkpoint(
    state: Mapping[str, torch.Tensor], args: Any = None, preset_name: str | None = None
) -> MVDust3RConfig:
    """Config for a checkpoint.

    With ``preset_name`` the preset's official sizes are used as they are. Without it the model kind is
    inferred from the keys and sizes stated in the file's constructor string (``args.model``) override
    the official ones, so files of other sizes load too.
    """
    if preset_name is not None:
        return preset(preset_name)
    cfg = preset(infer_preset(state))
    ctor = getattr(args, "model", None)
    if isinstance(ctor, str):
        updates: dict[str, Any] = _ctor_ints(ctor)
        if not cfg.m_ref_flag:
            updates.pop("n_ref", None)
        if updates:
            cfg = replace(cfg, **updates)
    return cfg


def load_mvdust3r(
    path: str | Path,
    preset: str | None = None,
    config: MVDust3RConfig | None = None,
    device: str | torch.device = "cpu",
) -> MVDust3R:
    """Build the network and load ``path`` strictly; returns the model in eval mode.

    ``preset``: ``"mvd"`` or ``"mvdp"``; None infers it from the keys. ``config`` overrides both (e.g.
    the reduced fixture sizes). Raises :class:`CheckpointError` naming the file and the first
    missing / unexpected / mis-shaped key.
    """
    path = Path(path)
    obj = read_checkpoint(path, allowed_globals=[argparse.Namespace])
    state = fill_second_decoder(extract_state_dict(obj, path))
    found = infer_preset(state)
    if config is None:
        if preset is not None and preset.lower() != found:
            kind = "MV-DUSt3R+ (has dec_same_view_blocks)" if found == "mvdp" else "MV-DUSt3R (no dec_same_view_blocks)"
            raise CheckpointError(f"{path}: preset {preset!r} requested but the file is a {kind} checkpoint")
        args = obj.get("args") if isinstance(obj, Mapping) else None
        config = config_from_checkpoint(state, args, preset)
    with torch.device("meta"):
        model = MVDust3R(config)
    check_state_dict(model.state_dict(), state, str(path))
    # Checkpoints may store half precision; the network runs in float32.
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    # assign=True adopts the loaded tensors instead of allocating a second copy of a 2+ GB model.
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()
