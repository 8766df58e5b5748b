"""Groups the images of N cameras into frame sets by stamp (approximate time policy)."""

from __future__ import annotations

from dataclasses import dataclass, field

from recon_ros.pipeline.frames import CameraImage, DropCounter


@dataclass
class _Pending:
    anchor_ns: int
    images: dict[str, CameraImage] = field(default_factory=dict)


@dataclass
class SyncEvent:
    """An incomplete set that was given up on (for logging); its images are already counted."""

    stamp_ns: int
    missing: list[str]
    accepted: bool


class Synchronizer:
    """Approximate-time synchroniser with a bounded number of sets under construction.

    An image joins the pending set whose anchor stamp is within ``slop_ns`` and that lacks its
    camera; otherwise it starts a new set. A set is emitted when every camera is present. Sets
    whose anchor is more than ``timeout_ns`` older than the newest stamp seen are emitted partially
    if they have at least ``min_cameras`` images (when ``min_cameras`` > 0), else dropped and
    counted as ``incomplete_set``. Sets never go backwards: images older than the last emitted set
    are dropped as ``out_of_order``.
    """

    def __init__(
        self,
        cameras: list[str],
        slop_ns: int,
        timeout_ns: int,
        max_pending: int,
        drops: DropCounter,
        min_cameras: int = 0,
        future_tolerance_ns: int | None = None,
    ):
        self.cameras = list(cameras)
        self.slop_ns = slop_ns
        self.timeout_ns = timeout_ns
        self.max_pending = max_pending
        self.min_cameras = min_cameras
        self.future_tolerance_ns = future_tolerance_ns
        self.drops = drops
        self.pending: list[_Pending] = []
        self.newest_ns: int | None = None
        self.last_emitted_ns: int | None = None
        self.events: list[SyncEvent] = []

    def add(self, image: CameraImage) -> list[dict[str, CameraImage]]:
        """Add one image; return the sets completed (or accepted partially) by it, oldest first."""
        stamp = image.stamp_ns
        if image.camera not in self.cameras:
            self.drops.add("unknown_camera", message=f"camera '{image.camera}' is not in the 'cameras' list")
            return []
        if self.future_tolerance_ns is not None and self.newest_ns is not None and (
            stamp - self.newest_ns > self.future_tolerance_ns
        ):
            self.drops.add(
                "future_stamp",
                message=f"{image.camera}: stamp {stamp * 1e-9:.3f} s is {(stamp - self.newest_ns) * 1e-9:.1f} s "
                f"ahead of the newest image; ignored",
            )
            return []
        if self.last_emitted_ns is not None and stamp <= self.last_emitted_ns + self.slop_ns and not any(
            abs(p.anchor_ns - stamp) <= self.slop_ns for p in self.pending
        ):
            self.drops.add(
                "out_of_order",
                message=f"{image.camera}: stamp {stamp * 1e-9:.3f} s is not newer than the last frame set "
                f"({self.last_emitted_ns * 1e-9:.3f} s)",
            )
            return []
        target = None
        for p in self.pending:
            if abs(p.anchor_ns - stamp) <= self.slop_ns:
                if image.camera in p.images:
                    if p.images[image.camera].stamp_ns == stamp:
                        self.drops.add("duplicate_stamp",
                                       message=f"{image.camera}: stamp {stamp * 1e-9:.3f} s repeated")
                        return []
                    continue
                target = p
                break
        if target is None:
            target = _Pending(stamp)
            self.pending.append(target)
        target.images[image.camera] = image
        self.newest_ns = stamp if self.newest_ns is None else max(self.newest_ns, stamp)

        out: list[dict[str, CameraImage]] = []
        if len(target.images) == len(self.cameras):
            self.pending.remove(target)
            # Cameras publish in order, so a complete newer set means older sets can no longer be
            # completed: settle them first, which keeps the emitted sets in stamp order.
            for p in sorted(self.pending, key=lambda p: p.anchor_ns):
                if p.anchor_ns < target.anchor_ns:
                    self.pending.remove(p)
                    if (s := self._give_up(p, "a newer frame set completed")) is not None:
                        out.append(s)
            out.append(self._emit(target))
        out.extend(self._expire())
        return sorted(out, key=lambda s: min(i.stamp_ns for i in s.values()))

    def _emit(self, p: _Pending) -> dict[str, CameraImage]:
        stamp = min(i.stamp_ns for i in p.images.values())
        self.last_emitted_ns = stamp if self.last_emitted_ns is None else max(self.last_emitted_ns, stamp)
        return {c: p.images[c] for c in self.cameras if c in p.images}

    def _give_up(self, p: _Pending, why: str) -> dict[str, CameraImage] | None:
        missing = [c for c in self.cameras if c not in p.images]
        accept = self.min_cameras > 0 and len(p.images) >= self.min_cameras
        self.events.append(SyncEvent(p.anchor_ns, missing, accept))
        del self.events[:-100]
        if accept:
            return self._emit(p)
        self.drops.add(
            "incomplete_set",
            n=len(p.images),
            message=f"frame set at {p.anchor_ns * 1e-9:.3f} s missing camera(s) {', '.join(missing)} ({why})",
        )
        return None

    def _expire(self) -> list[dict[str, CameraImage]]:
        out = []
        assert self.newest_ns is not None
        for p in sorted(self.pending, key=lambda p: p.anchor_ns):
            too_old = self.newest_ns - p.anchor_ns > self.timeout_ns
            too_many = len(self.pending) > self.max_pending
            if too_old or too_many:
                self.pending.remove(p)
                s = self._give_up(p, "timed out" if too_old else "too many pending sets")
                if s is not None:
                    out.append(s)
        return out

    def flush(self) -> list[dict[str, CameraImage]]:
        """End of input: give up on every pending set."""
        out = []
        for p in sorted(self.pending, key=lambda p: p.anchor_ns):
            s = self._give_up(p, "end of input")
            if s is not None:
                out.append(s)
        self.pending.clear()
        return out
