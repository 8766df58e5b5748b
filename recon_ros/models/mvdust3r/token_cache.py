"""Bounded cache of encoder tokens per keyframe.

The encoder sees each view alone, so a keyframe's tokens do not depend on the other views of the
window. A sliding window over keyframes therefore only needs to encode the keyframes it has not seen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Protocol

import torch


class TokenEncoder(Protocol):
    """``encode(images [1, M, 3, H, W]) -> tokens [1, M, N, C]``: :class:`MVDust3R` or
    :class:`recon_ros.runtime.runners.MVDust3RRunner`."""

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...


class EncoderTokenCache:
    """LRU map ``keyframe id -> encoder tokens [N, C]`` holding at most ``max_entries`` keyframes.

    Entries are only valid for one model and one preprocessing; use one cache per predictor and call
    :meth:`clear` when either changes.
    """

    def __init__(self, max_entries: int = 32) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = int(max_entries)
        self._store: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._sizes: tuple[int, ...] | None = None  # image size the stored tokens belong to
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._store

    def get(self, key: Hashable) -> torch.Tensor | None:
        value = self._store.get(key)
        if value is not None:
            self._store.move_to_end(key)
        return value

    def put(self, key: Hashable, tokens: torch.Tensor) -> None:
        self._store[key] = tokens
        self._store.move_to_end(key)
        while len(self._store) > self.max_entries:
            self._store.popitem(last=False)

    def clear(self) -> None:
        self._store.clear()

    def encode(self, model: TokenEncoder, images: torch.Tensor, keys: Sequence[Hashable]) -> torch.Tensor:
        """Tokens ``[1, V, N, C]`` of images ``[V, 3, H, W]``, encoding only views missing from the cache."""
        if len(keys) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(keys)} keys")
        if len(set(keys)) != len(keys):
            raise ValueError("keyframe keys must be unique within one call")
        # Tokens depend on the input size (a window's common full-FOV crop may change): a new size
        # empties the cache.
        if self._sizes is not None and self._sizes != tuple(images.shape[-2:]):
            self._store.clear()
        self._sizes = tuple(images.shape[-2:])
        found = {k: self.get(k) for k in keys}
        missing = [i for i, k in enumerate(keys) if found[k] is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = model.encode(images[missing].unsqueeze(0))[0]
            for j, i in enumerate(missing):
                found[keys[i]] = fresh[j]
                self.put(keys[i], fresh[j])
        return torch.stack([found[k] for k in keys]).unsqueeze(0)
