"""Overload through the live node's path (LiveRecon): bounded queue, exact drop accounting, bounded engine state.

The synthetic 4-camera stream is fed through ``LiveRecon`` as the node's callbacks would. Depth is the scene's
exact depth behind a gate: the first keyframe blocks until the test has fed a burst, so the worker is
overloaded deterministically — no sleeps and no timing assertions. ``benchmarks/bench_overload.py`` runs the
same path at a controlled 30 Hz for the measured figures.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from recon_ros.config import ReconConfig, from_dict
from recon_ros.io.messages import MessageKit
from recon_ros.nodes.live import LiveRecon
from recon_ros.pipeline.engine import ReconstructionEngine
from recon_ros.pipeline.frames import View
from recon_ros.pipeline.sources import DepthEstimate
from recon_ros.pipeline.tf_buffer import TfBuffer
from recon_ros.synthetic import SyntheticConfig
from recon_ros.synthetic.stream import GroundTruthDepth, LoopingStream

QUEUE = 2
BUFFER = 4
MAP_POINTS = 1500
BURST = 40  # frame sets fed while the first keyframe is blocked


class GatedDepth(GroundTruthDepth):
    """Exact depth; the first call blocks until ``release`` (a stand-in for very slow inference)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.started = threading.Event()
        self.release = threading.Event()

    def estimate(self, ref: View, sources: list[View], depth_range: tuple[float, float]) -> DepthEstimate:
        self.started.set()
        assert self.release.wait(30), "test never released the depth gate"
        return super().estimate(ref, sources, depth_range)


class Watch:
    """Publish callback (runs on the worker thread right after each keyframe step): engine sizes at that moment."""

    def __init__(self) -> None:
        self.engine: ReconstructionEngine | None = None
        self.max_buffered = self.max_map = self.messages = 0

    def __call__(self, topic: str, msg: Any) -> None:
        assert self.engine is not None
        self.messages += 1
        self.max_buffered = max(self.max_buffered, len(self.engine.keyframes))
        self.max_map = max(self.max_map, len(self.engine.map))


@pytest.fixture(scope="module")
def overload_run() -> dict[str, Any]:
    # 1 m/s at 30 Hz: a keyframe (0.15 m) every ~5 frame sets, so a short run passes the buffer bound.
    stream = LoopingStream(SyntheticConfig(width=32, height=24, rate_hz=30.0, speed_mps=1.0))
    cfg: ReconConfig = from_dict({
        "cameras": stream.camera_names, "runtime.device": "cpu", "runtime.queue_size": QUEUE,
        "keyframes.buffer_size": BUFFER, "map.max_points": MAP_POINTS, "map.voxel_size_m": 0.02,
    })
    depth = GatedDepth(stream.scene)
    engine = ReconstructionEngine(cfg, depth_source=depth)
    watch = Watch()
    watch.engine = engine
    tf, kit = TfBuffer(), MessageKit.for_rosbags()
    live = LiveRecon(cfg, kit, tf, watch, engine=engine)
    stream.prime_live(live, tf, kit)
    pending: list[int] = []
    fed = 0
    try:
        # The first keyframe has no source views yet (depth waits for the next): feed until depth is running.
        while not depth.started.is_set():
            assert fed < 100, "no frame set ever reached the depth source"
            stream.feed_live(live, tf, kit, fed)
            fed += 1
            while not (depth.started.is_set() or live.worker.wait_idle(0.05)):
                pass
        # Overload: the worker is stuck in a keyframe while a burst arrives.
        start = fed
        for i in range(start, start + BURST):
            stream.feed_live(live, tf, kit, i)
            pending.append(live.worker.pending)
            fed += 1
        drops_after_burst = live.drops.as_dict()
        depth.release.set()
        assert live.worker.wait_idle(30)  # the queued frame sets go through before the paced part
        # Then a looping run at the pace of inference: many keyframes, the map hits its bound.
        for i in range(start + BURST, start + BURST + 60):
            stream.feed_live(live, tf, kit, i)
            pending.append(live.worker.pending)
            fed += 1
            assert live.worker.wait_idle(30)
        assert live.drain(30)
    finally:
        live.close()
    return {"live": live, "engine": engine, "watch": watch, "pending": pending, "images_fed": fed * 4,
            "drops_after_burst": drops_after_burst, "worker": live.worker.stats()}


def test_queue_never_exceeds_its_bound_and_overload_drops_oldest(overload_run: dict[str, Any]) -> None:
    assert max(overload_run["pending"]) == QUEUE  # reached, never exceeded
    # BURST frame sets arrived while a keyframe was blocked: QUEUE of them wait, the rest were dropped.
    assert overload_run["drops_after_burst"] == {"queue_full": (BURST - QUEUE) * 4}
    w = overload_run["worker"]
    assert w["dropped"] == BURST - QUEUE
    assert w["submitted"] == w["processed"] + w["failed"] + w["dropped"] + w["discarded"] + w["pending"]
    assert w["pending"] == 0 and w["failed"] == 0


def test_every_image_is_processed_or_dropped_with_a_reason(overload_run: dict[str, Any]) -> None:
    live, engine = overload_run["live"], overload_run["engine"]
    fed = overload_run["images_fed"]
    drops = live.drops.as_dict()
    assert sum(live.frontend.images_received.values()) == fed
    assert drops == overload_run["drops_after_burst"]  # only the burst overloaded; nothing else went wrong
    assert engine.images_in_keyframes + engine.images_not_keyframe + sum(drops.values()) == fed
    assert engine.images_in_keyframes == 4 * engine.keyframe_count


def test_engine_state_stays_within_its_bounds(overload_run: dict[str, Any]) -> None:
    engine, watch = overload_run["engine"], overload_run["watch"]
    assert engine.keyframe_count > 2 * BUFFER  # the buffer had to evict
    assert watch.messages > 0
    assert watch.max_buffered == BUFFER
    assert 0 < watch.max_map <= MAP_POINTS
    assert engine.map.voxel_size > 0.02  # the map reached its bound and coarsened instead of growing
    assert len(engine.map) <= MAP_POINTS
