"""A small, bounded TF buffer: the one TF path of recon_ros, for the bag tool and the live node.

The bag tool fills it from the bag's /tf and /tf_static messages; the node fills it from its /tf and
/tf_static subscriptions (tf2_ros is not needed, and is not available everywhere).
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from typing import Any, Protocol

import numpy as np

from recon_ros.geometry.se3 import interpolate, invert
from recon_ros.io.messages import BadMessage, stamp_to_ns, transform_to_matrix


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

    Each frame has one parent (a tree, as in tf2). Lookups walk up from both frames to their closest
    common ancestor and evaluate only those edges. Each dynamic edge keeps at most ``max_samples``
    stamps; the number of frames is bounded by ``max_frames`` (new frames beyond it are ignored).
    """

    def __init__(self, max_samples: int = 2000, max_extrapolation_ns: int = 0, max_frames: int = 1000):
        self.max_frames = max_frames
        # The node fills the buffer from its /tf callbacks while image callbacks look up (two threads).
        self._lock = threading.RLock()
        self.static: dict[str, tuple[str, np.ndarray]] = {}
        self.dynamic: dict[str, tuple[str, deque[int], deque[np.ndarray]]] = {}
        self.max_samples = max_samples
        self.max_extrapolation_ns = max_extrapolation_ns

    def set_transform(self, parent: str, child: str, stamp_ns: int, T: np.ndarray, static: bool = False) -> None:
        with self._lock:
            self._set_transform(parent, child, stamp_ns, T, static)

    def _set_transform(self, parent: str, child: str, stamp_ns: int, T: np.ndarray, static: bool) -> None:
        if child not in self.static and child not in self.dynamic and \
                len(self.static) + len(self.dynamic) >= self.max_frames:
            return  # bounded: a TF tree this large is a misconfigured publisher, not a robot
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

    def _parent(self, child: str) -> str | None:
        """The parent frame of ``child`` (time-independent: each frame has one parent, as in tf2)."""
        if child in self.static:
            return self.static[child][0]
        entry = self.dynamic.get(child)
        return entry[0] if entry is not None and entry[1] else None

    def _ancestors(self, frame: str) -> list[str]:
        """``[frame, parent, grandparent, ...]`` up to the root (cycles cut)."""
        chain = [frame]
        while (parent := self._parent(chain[-1])) is not None and parent not in chain:
            chain.append(parent)
        return chain

    def _to_ancestor(self, chain: list[str], stamp_ns: int) -> np.ndarray:
        """``T_chain[-1]_chain[0]``: composes only the edges of ``chain`` (evaluated at ``stamp_ns``)."""
        T = np.eye(4)
        for frame in chain[:-1]:
            _, T_parent_frame = self._parent_transform(frame, stamp_ns)  # type: ignore[misc]
            T = T_parent_frame @ T
        return T

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """``T_target_source`` at ``stamp_ns``.

        Like tf2, only the edges between the two frames and their closest common ancestor are
        evaluated: a transform above that ancestor (e.g. the node's own ``map->odom``, which lags the
        images) never blocks a ``base_link <- camera`` lookup.
        """
        if target == source:
            return np.eye(4)
        with self._lock:
            return self._lookup(target, source, stamp_ns)

    def _lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        src_chain = self._ancestors(source)
        src_index = {f: i for i, f in enumerate(src_chain)}
        tgt_chain = self._ancestors(target)
        for j, frame in enumerate(tgt_chain):
            i = src_index.get(frame)
            if i is not None:
                T_anc_source = self._to_ancestor(src_chain[: i + 1], stamp_ns)
                T_anc_target = self._to_ancestor(tgt_chain[: j + 1], stamp_ns)
                return invert(T_anc_target) @ T_anc_source
        raise TransformUnavailable(
            "tf_missing", f"no transform between '{target}' and '{source}' (frames are not connected in TF)"
        )


def add_tf_message(buffer: TfBuffer, msg: Any, static: bool) -> list[str]:
    """Feed one ``tf2_msgs/TFMessage`` (rclpy or rosbags class) into ``buffer``.

    The bag tool (``/tf``, ``/tf_static`` records) and the live node (its subscriptions) both come
    through here. Returns one message per transform that was ignored (not a rotation, empty frame id).
    """
    problems = []
    for t in msg.transforms:
        parent, child = t.header.frame_id, t.child_frame_id
        if not parent or not child or parent == child:
            problems.append(f"transform '{parent}'->'{child}' ignored: frame ids must be two different names")
            continue
        try:
            T = transform_to_matrix(t.transform)
        except BadMessage as exc:
            problems.append(f"{parent}->{child} ignored: {exc}")
            continue
        buffer.set_transform(parent, child, stamp_to_ns(t.header.stamp), T, static=static)
    return problems
