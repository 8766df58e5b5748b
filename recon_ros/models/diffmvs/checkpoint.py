"""Loading official DiffMVS / CasDiffMVS checkpoints into :class:`DiffMVSNet`, strictly and safely.

Accepted inputs: the training wrapper ``{'epoch', 'model', 'optimizer'}``, a plain state_dict, either of
them with a ``module.`` (DataParallel) prefix. The reference model registers each refinement block
twice (``update_block_depth2.*`` and ``update_block.0.*``, plus ``..3`` / ``update_block.1`` for
CasDiffMVS), so checkpoints normally hold every refiner tensor twice; a file holding only one of the
two spellings is completed from the other. Files are read with ``weights_only=True``: pickled code is
refused, never executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, extract_state_dict, load_strict, read_checkpoint
from .config import DiffMVSConfig, get_config
from .model import DiffMVSNet


def alias_prefixes(num_refiners: int) -> list[tuple[str, str]]:
    """(list-alias prefix, attribute prefix) for each refinement block."""
    return [(f"update_block.{i}.", f"update_block_depth{i + 2}.") for i in range(num_refiners)]


def complete_aliases(state: Mapping[str, torch.Tensor], num_refiners: int, source: str) -> dict[str, torch.Tensor]:
    """Fill in whichever spelling of the aliased refiner keys is missing; check present pairs agree."""
    out = dict(state)
    for alias, attr in alias_prefixes(num_refiners):
        for key in list(out):
            for have, want in ((alias, attr), (attr, alias)):
                if not key.startswith(have):
                    continue
                twin = want + key[len(have) :]
                if twin not in out:
                    out[twin] = out[key]
                elif have == attr and (out[twin].shape != out[key].shape or not torch.equal(out[twin], out[key])):
                    raise CheckpointError(
                        f"{source}: aliased keys '{key}' and '{twin}' hold different values; the "
                        "reference model shares these tensors, so the file is inconsistent"
                    )
    return out


def load_state_into(model: DiffMVSNet, state: Mapping[str, torch.Tensor], source: str) -> DiffMVSNet:
    """Strictly load an already-read state_dict (aliases completed) and switch to eval mode."""
    state = complete_aliases(state, len(model.update_block), source)
    load_strict(model, state, source)
    return model.eval()


def load_diffmvs(
    path: str | Path, preset_or_config: str | DiffMVSConfig, device: str | torch.device = "cpu"
) -> DiffMVSNet:
    """Build the network for ``preset_or_config`` and load ``path`` strictly; returns it in eval mode.

    Raises:
        CheckpointError: file missing/truncated/unsafe, or the first missing, unexpected or mis-shaped
            key (e.g. a CasDiffMVS file given a DiffMVS preset), always naming the file.
    """
    cfg = get_config(preset_or_config)
    source = str(path)
    obj = read_checkpoint(path)
    state = extract_state_dict(obj, path)
    model = DiffMVSNet(cfg)
    try:
        load_state_into(model, state, source)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} [network: {cfg.variant} ({cfg.name})]") from None
    except RuntimeError as exc:  # anything load_state_dict still objects to (e.g. dtype casts)
        raise CheckpointError(f"{source}: cannot load into {cfg.variant}: {exc}") from None
    return model.to(device)
