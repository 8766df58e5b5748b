"""A small, bounded TF buffer for the ROS-free front ends (bag tool, tests).

The live node uses tf2_ros instead; both satisfy :class:`TransformLookup`.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Protocol

import numpy as np

from recon_ros.geometry.se3 import interpolate, invert


class TransformUnavailable(LookupError):
    """A transform cannot be computed (yet). ``reason`` is a drop-accounting code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class TransformLookup(Protocol):
    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """``T_target_source`` at ``stamp_ns``; raises TransformUnavailable."""
        ...


class TfBuffer:
    """Parent->child transforms, static or time-stamped, with linear/slerp interpolation.

    Only direct edges and chains through a shared parent are needed here
    (``odom->base_link`` dynamic, ``base_link->camera`` static), so lookups walk up from both frames
    to a common ancestor. Each dynamic edge keeps at most ``max_samples`` stamps.
    """

    def __init__(self, max_samples: int = 2000, max_extrapolation_ns: int = 0):
        self.static: dict[str, tuple[str, np.ndarray]] = {}
        self.dynamic: dict[str, tuple[str, deque[int], deque[np.ndarray]]] = {}
        self.max_samples = max_samples
        self.max_extrapolation_ns = max_extrapolation_ns

    def set_transform(self, parent: str, child: str, stamp_ns: int, T: np.ndarray, static: bool = False) -> None:
        if static:
            self.static[child] = (parent, T)
            return
        entry = self.dynamic.get(child)
        if entry is None or entry[0] != parent:
            entry = (parent, deque(maxlen=self.max_samples), deque(maxlen=self.max_samples))
            self.dynamic[child] = entry
        _, stamps, poses = entry
        if stamps and stamp_ns <= stamps[-1]:
            if stamp_ns == stamps[-1]:
                poses[-1] = T
            # Out-of-order samples are rare (bag merge); rebuild in order rather than refuse them.
            else:
                items = sorted([*zip(stamps, poses), (stamp_ns, T)], key=lambda x: x[0])
                stamps.clear()
                poses.clear()
                for s, p in items[-self.max_samples:]:
                    stamps.append(s)
                    poses.append(p)
            return
        stamps.append(stamp_ns)
        poses.append(T)

    def latest_stamp(self, child: str) -> int | None:
        entry = self.dynamic.get(child)
        return entry[1][-1] if entry and entry[1] else None

    def _parent_transform(self, child: str, stamp_ns: int) -> tuple[str, np.ndarray] | None:
        if child in self.static:
            return self.static[child]
        entry = self.dynamic.get(child)
        if entry is None:
            return None
        parent, stamps, poses = entry
        if not stamps:
            return None
        i = bisect.bisect_left(stamps, stamp_ns)
        if i < len(stamps) and stamps[i] == stamp_ns:
            return parent, poses[i]
        if i == 0 or i == len(stamps):
            edge = stamps[0] if i == 0 else stamps[-1]
            if abs(stamp_ns - edge) <= self.max_extrapolation_ns:
                return parent, poses[0 if i == 0 else -1]
            kind = "past" if i == 0 else "future"
            raise TransformUnavailable(
                "tf_extrapolation",
                f"transform {parent}->{child} needed at {stamp_ns * 1e-9:.3f} s, which is in the {kind} of "
                f"the buffered range [{stamps[0] * 1e-9:.3f}, {stamps[-1] * 1e-9:.3f}] s",
            )
        s0, s1 = stamps[i - 1], stamps[i]
        return parent, interpolate(poses[i - 1], poses[i], (stamp_ns - s0) / (s1 - s0))

    def _chain_to_root(self, frame: str, stamp_ns: int) -> list[tuple[str, np.ndarray]]:
        """[(frame, T_frame_root...)] walking parents; T is accumulated ``T_ancestor_frame``."""
        chain = [(frame, np.eye(4))]
        T = np.eye(4)
        seen = {frame}
        while True:
            step = self._parent_transform(frame, stamp_ns)
            if step is None:
                return chain
            parent, T_parent_frame = step
            if parent in seen:
                return chain
            T = T_parent_frame @ T
            chain.append((parent, T))
            seen.add(parent)
            frame = parent

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        if target == source:
            return np.eye(4)
        src_chain = dict(self._chain_to_root(source, stamp_ns))  # ancestor -> T_ancestor_source
        for frame, T_frame_target in self._chain_to_root(target, stamp_ns):
            if frame in src_chain:
                return invert(T_frame_target) @ src_chain[frame]
        raise TransformUnavailable(
            "tf_missing", f"no transform between '{target}' and '{source}' (frames are not connected in TF)"
        )
