"""Stamp-to-publish latency of the navigation cloud, per stage, in ~/status and /diagnostics.

LiveRecon (the node's callback work) is fed by the synthetic stream on a virtual clock: each frame's
images "arrive" TRANSPORT_MS after their stamp, and the clock runs with real time from there, so the
stage breakdown can be checked against known delays (transport, a depth source that sleeps).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from recon_ros.config import from_dict
from recon_ros.io.messages import MessageKit, pointcloud2_to_numpy
from recon_ros.nodes.live import LiveRecon
from recon_ros.pipeline.engine import ReconstructionEngine
from recon_ros.pipeline.latency import NAV_STAGES
from recon_ros.pipeline.tf_buffer import TfBuffer
from recon_ros.synthetic import SyntheticConfig
from recon_ros.synthetic.stream import GroundTruthDepth, LoopingStream, SlowDepth

TRANSPORT_MS = 40.0  # images arrive this long after their stamp
DEPTH_SLEEP_S = 0.03  # per view
FRAME_MS = 100.0  # the stream's frame interval (10 Hz)


class VirtualClock:
    def __init__(self) -> None:
        self.base_ns = 0
        self.t0 = time.perf_counter()

    def arrive(self, stamp_ns: int) -> None:
        self.base_ns, self.t0 = stamp_ns + int(TRANSPORT_MS * 1e6), time.perf_counter()

    def __call__(self) -> int:
        return self.base_ns + int((time.perf_counter() - self.t0) * 1e9)


def run_live(frames: int, **overrides: Any) -> dict[str, Any]:
    stream = LoopingStream(SyntheticConfig(n_cameras=2, width=96, height=72, rate_hz=10.0))
    cfg = from_dict({"cameras": stream.camera_names, "runtime.device": "cpu", "keyframes.min_translation_m": 0.03,
                     "depth.min_baseline_m": 0.02, "fusion.delay_keyframes": 1, "keyframes.buffer_size": 4,
                     **overrides})
    engine = ReconstructionEngine(cfg, depth_source=SlowDepth(GroundTruthDepth(stream.scene), DEPTH_SLEEP_S))
    kit, tf, clock = MessageKit.for_rosbags(), TfBuffer(), VirtualClock()
    published: list[tuple[str, Any]] = []
    live = LiveRecon(cfg, kit, tf, lambda t, m: published.append((t, m)), engine=engine, clock_ns=clock)
    stream.prime_live(live, tf, kit)
    try:
        for i in range(frames):
            stream.frame(i)  # render (cached) before the images "arrive"
            clock.arrive(stream.stamp_ns(i))
            stream.feed_live(live, tf, kit, i)
            assert live.worker.wait_idle(60)
        return {"cfg": cfg, "status": live.status(), "msgs": live.status_messages(), "published": published}
    finally:
        live.close()


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return run_live(8)


def test_stages_are_reported_and_add_up(run: dict[str, Any]) -> None:
    s = run["status"]
    stages = s["nav_latency_ms"]
    assert list(stages) == list(NAV_STAGES)
    total = s["nav_stamp_to_publish_ms"]
    assert sum(stages.values()) == pytest.approx(total, abs=1e-3)
    # Known delays land in their stage: transport in sync, the sleeping depth source in depth
    # (2 cameras x 30 ms; small margins for clock granularity; upper bounds are generous because the
    # shared CPU is noisy).
    assert TRANSPORT_MS - 1.0 <= stages["sync"] + stages["decode"] <= TRANSPORT_MS + 50.0
    assert stages["depth"] >= 2 * DEPTH_SLEEP_S * 1e3 - 1.0
    assert stages["queue"] >= 0.0 and stages["cloud"] > 0.0 and stages["publish"] > 0.0
    assert total >= TRANSPORT_MS + stages["depth"]
    assert s["nav_points"] > 0 and s["nav_frame"] == "base_link"
    # depth.wait_for_next_keyframe (default): the cloud is the previous keyframe's, published when the next
    # one is processed. Keyframes here are at least one frame (100 ms of the virtual clock) apart and the next
    # one's processing starts after it arrives, so stamp -> its start is at least a frame plus transport.
    waited = stages["decode"] + stages["sync"] + stages["queue"] + stages["next_keyframe"]
    assert stages["next_keyframe"] > 0.0 and waited >= FRAME_MS + TRANSPORT_MS - 1.0


def test_without_waiting_for_the_next_keyframe_that_stage_is_zero() -> None:
    s = run_live(6, **{"depth.wait_for_next_keyframe": False})["status"]
    stages = s["nav_latency_ms"]
    assert stages["next_keyframe"] == pytest.approx(0.0, abs=1e-6)
    assert sum(stages.values()) == pytest.approx(s["nav_stamp_to_publish_ms"], abs=1e-3)


def test_status_and_diagnostics_carry_the_stages(run: dict[str, Any]) -> None:
    (_, status), (_, diag) = run["msgs"]
    stages = run["status"]["nav_latency_ms"]
    assert list(status.nav_stage_names) == list(NAV_STAGES)
    assert np.allclose(status.nav_stage_ms, [stages[k] for k in NAV_STAGES], atol=1e-3)
    assert status.nav_stamp_to_publish_ms == pytest.approx(run["status"]["nav_stamp_to_publish_ms"], abs=1e-3)
    assert status.nav_frame == "base_link" and status.nav_points == run["status"]["nav_points"]
    values = {kv.key: kv.value for kv in diag.status[0].values}
    for k in NAV_STAGES:
        assert f"nav.latency_ms.{k}" in values
    assert float(values["nav.stamp_to_publish_ms"]) == pytest.approx(run["status"]["nav_stamp_to_publish_ms"], abs=0.1)


def test_navigation_cloud_is_published_first_in_base_link(run: dict[str, Any]) -> None:
    cfg, published = run["cfg"], run["published"]
    topics = [t for t, _ in published]
    obstacles = [i for i, t in enumerate(topics) if t == cfg.output_topic("obstacles")]
    maps = [i for i, t in enumerate(topics) if t == cfg.output_topic("map")]
    assert len(obstacles) >= 3 and len(maps) >= len(obstacles)
    # Each step starts with obstacles (then clearing), before the step's other outputs; the map ends it.
    for i in obstacles:
        assert i == 0 or topics[i - 1] == cfg.output_topic("map")
        nxt = next(j for j in maps if j > i)
        assert cfg.output_topic("obstacles") not in topics[i + 1:nxt]
    msg = published[obstacles[-1]][1]
    pts, _ = pointcloud2_to_numpy(msg)
    assert msg.header.frame_id == "base_link" and len(pts) > 0
    assert np.all(pts[:, 2] >= 0.0)  # ground removed: nothing at or below the floor (z = 0 in base_link)


def test_cameras_without_tf_to_the_navigation_frame_are_counted_and_warned() -> None:
    r = run_live(4, **{"navigation.frame": "base_footprint"})  # no such frame in this robot's TF
    assert r["status"]["nav_views_without_tf"] >= 2  # both cameras of each keyframe with depth
    (_, _), (_, diag) = r["msgs"]
    assert diag.status[0].level == 1 and "base_footprint" in diag.status[0].message
    obstacles = [m for t, m in r["published"] if t == r["cfg"].output_topic("obstacles")]
    assert obstacles and all(m.width == 0 for m in obstacles)  # still published (empty), never wrong


def test_tracker_memory_is_bounded_and_stages_follow_the_milestones() -> None:
    from types import SimpleNamespace as NS

    from recon_ros.pipeline.latency import MAX_TRACKED, NavLatencyTracker

    now = [0]
    tracker = NavLatencyTracker(lambda: now[0])
    for i in range(3 * MAX_TRACKED):  # images of frame sets that never complete, frame sets never processed
        tracker.on_decoded("a", i, 0.001)
        tracker.on_frameset_ready(10_000 + i, {})
    assert len(tracker._decode_s) <= MAX_TRACKED and len(tracker._ready) <= MAX_TRACKED
    stamp = 10**12
    tracker.on_decoded("a", stamp, 0.002)
    now[0] = stamp + 30_000_000  # complete 30 ms after the stamp
    tracker.on_frameset_ready(stamp, {"a": NS(stamp_ns=stamp)})
    now[0] += 5_000_000  # worker starts 5 ms later
    tracker.on_processing_start(stamp)
    now[0] += 100_000_000  # published 100 ms later
    stages = tracker.on_published(stamp, {"pose": 0.01, "depth": 0.05, "fusion": 0.02}, 0.01, 0.001, 7)
    assert stages["decode"] == pytest.approx(2.0) and stages["sync"] == pytest.approx(28.0)
    assert stages["queue"] == pytest.approx(5.0) and stages["depth"] == pytest.approx(50.0)
    assert stages["other"] == pytest.approx(100.0 - 10 - 50 - 20 - 10 - 1)
    assert tracker.status()["nav_stamp_to_publish_ms"] == pytest.approx(135.0)
