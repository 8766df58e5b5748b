"""Safe checkpoint loading shared by every network.

Checkpoints are read with ``torch.load(weights_only=True)``: pickled code is never executed. Only the
globals listed by the caller (e.g. ``argparse.Namespace`` for MV-DUSt3R's ``'args'``) are allowed
besides tensors and plain containers. State dicts are matched key-for-key and shape-for-shape before
``load_state_dict(strict=True)`` so a wrong file fails with the first offending key named.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, unsafe, or does not fit the network."""


def read_checkpoint(path: str | Path, allowed_globals: Iterable[Any] = ()) -> Any:
    """Unpickle ``path`` without executing code; raise :class:`CheckpointError` with the file named."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            try:
                # mmap: a training checkpoint (weights + optimizer, ~8 GB for MVDp_s1) is not read
                # into RAM just to take its 'model' entry.
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        # weights_only refuses any global that is not allow-listed: the file may carry code.
        raise CheckpointError(
            f"refused to load {path}: it contains pickled objects that are not plain tensors or "
            f"allow-listed types, so it was not unpickled (no code was executed). Detail: {exc}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint ({exc})"
        ) from None


def extract_state_dict(
    obj: Any, path: str | Path, keys: tuple[str, ...] = ("model", "state_dict")
) -> dict[str, torch.Tensor]:
    """The state_dict inside a training checkpoint (``{'model': ...}``) or a plain state_dict.

    A ``module.`` prefix left by ``DataParallel`` is stripped.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    state = obj
    for key in keys:
        if key in obj and isinstance(obj[key], Mapping):
            state = obj[key]
            break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: no tensors found (top-level keys: {sorted(map(str, obj))[:8]})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def check_state_dict(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise :class:`CheckpointError` naming the first key that is missing, unexpected or mis-shaped."""
    for key, ref in expected.items():
        if key not in found:
            raise CheckpointError(
                f"{source}: missing key '{key}' (expected shape {tuple(ref.shape)}); "
                f"is this a checkpoint of another model?"
            )
        if tuple(found[key].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{source}: key '{key}' has shape {tuple(found[key].shape)}, expected {tuple(ref.shape)}"
            )
    extra = [k for k in found if k not in expected]
    if extra:
        raise CheckpointError(
            f"{source}: unexpected key '{extra[0]}' with shape {tuple(found[extra[0]].shape)} "
            f"({len(extra)} unexpected in all); is this a checkpoint of another model?"
        )


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Check keys and shapes with a readable error, then ``load_state_dict(strict=True)``."""
    check_state_dict(module.state_dict(), state, source)
    module.load_state_dict(dict(state), strict=True)
