"""Overload: 4 cameras at 30 Hz into the live node's path while each keyframe takes far longer than 33 ms.

The synthetic rig's images (one lap rendered up front, then cycled; stamps advance 1/rate per frame set)
are fed at a fixed rate through ``LiveRecon`` — decode, FrontEnd, TF, ``InferenceWorker.submit`` on this
thread; engine, fusion, map and message building on the worker thread, exactly as in recon_node. Depth is
the scene's exact depth behind a sleep (:class:`SlowDepth`), so a keyframe costs ``--keyframe-seconds``
plus fusion. Image stamps map to wall clock (frame 0 is due at t0), so the latency of an output is
``publish time - (t0 + stamp offset)``.

Every ``--sample-s`` the benchmark records RSS, the worker's queue length and drop counts by reason; the
queue length is also read after every submit (the only place it can grow) for an exact maximum. At the
end: every image fed must be in a keyframe, in a non-keyframe frame set, or counted dropped by reason.

    python benchmarks/bench_overload.py                         # 120 s at 30 Hz x 4 cameras, 160x120
    python benchmarks/bench_overload.py --duration 20 --json /tmp/o.json

Figures are measurements, not assertions; see benchmarks/README.md for the numbers from our machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from recon_ros.config import ReconConfig, from_dict
from recon_ros.io.messages import MessageKit, stamp_to_ns
from recon_ros.nodes.live import LiveRecon
from recon_ros.pipeline.engine import KeyframeOutput, ReconstructionEngine
from recon_ros.pipeline.frames import FrameSet
from recon_ros.pipeline.tf_buffer import TfBuffer
from recon_ros.synthetic import SyntheticConfig
from recon_ros.synthetic.stream import GroundTruthDepth, LoopingStream, SlowDepth

MB = 1024 * 1024


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / MB


class TimedEngine(ReconstructionEngine):
    """The engine, plus the wall time of every keyframe step (non-keyframes cost microseconds)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keyframe_s: list[float] = []

    def process(self, fs: FrameSet) -> KeyframeOutput | None:
        t0 = time.perf_counter()
        out = super().process(fs)
        if out is not None:
            self.keyframe_s.append(time.perf_counter() - t0)
        return out


@dataclass
class StampClock:
    """Maps wall time onto the stream's stamps: frame 0 (stamp0) is due at perf_counter() == t0."""

    stamp0: int
    t0: float = 0.0

    def wall_of(self, stamp_ns: int) -> float:
        return self.t0 + (stamp_ns - self.stamp0) * 1e-9

    def now_ns(self) -> int:  # the worker's clock_ns: keeps its own latency stats in the same frame
        return self.stamp0 + round((time.perf_counter() - self.t0) * 1e9)


@dataclass
class Publications:
    """First publication time of each stamp on the topics whose latency we report."""

    clock: StampClock
    topics: dict[str, str]  # topic -> short name
    recording: bool = True
    latency_s: dict[str, dict[int, float]] = field(default_factory=dict)
    messages: int = 0

    def __call__(self, topic: str, msg: Any) -> None:
        self.messages += 1
        name = self.topics.get(topic)
        if name is None or not self.recording:
            return
        stamp = stamp_to_ns(msg.header.stamp)
        self.latency_s.setdefault(name, {}).setdefault(stamp, time.perf_counter() - self.clock.wall_of(stamp))


def build(args: argparse.Namespace) -> tuple[LoopingStream, ReconConfig, TimedEngine, LiveRecon, TfBuffer,
                                              Publications]:
    stream = LoopingStream(SyntheticConfig(n_cameras=4, width=args.width, height=args.height, rate_hz=args.rate))
    cfg = from_dict({"cameras": stream.camera_names, "runtime.device": "cpu", "runtime.threads": args.threads,
                     "runtime.queue_size": args.queue_size})
    depth = SlowDepth(GroundTruthDepth(stream.scene), args.keyframe_seconds / len(stream.camera_names))
    engine = TimedEngine(cfg, depth_source=depth)
    clock = StampClock(stream.stamp_ns(0))
    pubs = Publications(clock, {cfg.output_topic("cloud"): "cloud", cfg.output_topic("keyframe_depth"): "depth"})
    tf = TfBuffer()
    live = LiveRecon(cfg, MessageKit.for_rosbags(), tf, pubs, engine=engine, clock_ns=clock.now_ns)
    return stream, cfg, engine, live, tf, pubs


def take_sample(live: LiveRecon, t0: float) -> dict[str, Any]:
    w = live.worker.stats()
    return {"t_s": time.perf_counter() - t0, "rss_mb": rss_mb(), "pending": w["pending"], "busy": w["busy"],
            "processed": w["processed"], "keyframes": live.engine.keyframe_count, "drops": live.drops.as_dict(),
            "map_points": len(live.engine.map), "buffered_keyframes": len(live.engine.keyframes)}


def feed(stream: LoopingStream, live: LiveRecon, tf: TfBuffer, clock: StampClock, n_frames: int, rate: float,
         sample_s: float) -> dict[str, Any]:
    """Paced feed on this thread; returns samples, the exact queue maximum and how late the feeder ran."""
    kit = live.kit
    samples: list[dict[str, Any]] = []
    max_pending, lateness = 0, []
    clock.t0 = time.perf_counter() + 0.05
    next_sample = clock.t0
    for i in range(n_frames):
        due = clock.t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        lateness.append(max(-delay, 0.0))
        if stream.feed_live(live, tf, kit, i):
            max_pending = max(max_pending, live.worker.pending)  # the queue only grows in submit()
        if time.perf_counter() >= next_sample:
            samples.append(take_sample(live, clock.t0))
            next_sample += sample_s
    samples.append(take_sample(live, clock.t0))
    late = np.array(lateness)
    return {"samples": samples, "max_pending": max_pending, "feed_s": time.perf_counter() - clock.t0,
            "late_ms_p95": float(np.percentile(late, 95) * 1e3), "late_ms_max": float(late.max() * 1e3),
            "late_frames_over_one_period": int((late > 1.0 / rate).sum())}


def slope_mb_per_min(rows: list[dict[str, Any]]) -> float:
    if len(rows) < 2:
        return float("nan")
    return float(np.polyfit([r["t_s"] / 60 for r in rows], [r["rss_mb"] for r in rows], 1)[0])


def latency_summary(values: dict[int, float]) -> dict[str, Any]:
    v = sorted(values.values())
    if not v:
        return {"count": 0}
    return {"count": len(v), "median_s": statistics.median(v), "p95_s": float(np.percentile(v, 95)), "max_s": v[-1]}


def accounting(live: LiveRecon, images_fed: int) -> dict[str, Any]:
    """Every image fed: in a keyframe, in a non-keyframe frame set, or dropped with a reason."""
    e, drops = live.engine, live.drops.as_dict()
    in_kf, not_kf = e.images_in_keyframes, e.images_not_keyframe
    return {"images_fed": images_fed, "images_received": sum(live.frontend.images_received.values()),
            "images_in_keyframes": in_kf, "images_not_keyframe": not_kf, "images_dropped": sum(drops.values()),
            "drops_by_reason": drops, "adds_up": in_kf + not_kf + sum(drops.values()) == images_fed}


def run(args: argparse.Namespace) -> dict[str, Any]:
    stream, cfg, engine, live, tf, pubs = build(args)
    t = time.perf_counter()
    stream.prerender()
    render_s = time.perf_counter() - t
    stream.prime_live(live, tf, live.kit)
    rss_start = rss_mb()
    n_frames = round(args.duration * args.rate)
    fed = feed(stream, live, tf, pubs.clock, n_frames, args.rate, args.sample_s)
    live.worker.wait_idle(60)
    pubs.recording = False  # the flush below fuses the last keyframes on demand: not a live latency
    live.drain(60)
    worker = live.worker.stats()
    live.close()
    samples = fed.pop("samples")
    # Default warm-up: one lap, during which the map fills; afterwards the robot sees the same surfaces.
    warmup = args.warmup if args.warmup is not None else stream.lap / args.rate
    warm = [s for s in samples if s["t_s"] >= warmup]
    n_cams = len(stream.camera_names)
    return {
        "machine": platform.platform(), "python": platform.python_version(), "cpus": psutil.cpu_count(),
        "setup": {"cameras": n_cams, "image": f"{args.width}x{args.height}", "rate_hz": args.rate,
                  "duration_s": args.duration, "frame_sets": n_frames, "keyframe_seconds_slept": args.keyframe_seconds,
                  "queue_size": cfg.runtime.queue_size, "depth_source": "ground_truth + sleep",
                  "torch_threads": args.threads, "fusion.delay_keyframes": cfg.fusion.delay_keyframes,
                  "render_s": render_s},
        "feed": fed,
        "memory": {"rss_mb_start": rss_start, "rss_mb_after_warmup": warm[0]["rss_mb"] if warm else float("nan"),
                   "rss_mb_end": samples[-1]["rss_mb"], "rss_mb_max": max(s["rss_mb"] for s in samples),
                   "warmup_s": warmup, "rss_slope_after_warmup_mb_per_min": slope_mb_per_min(warm)},
        "engine": {"map_points_max": max(s["map_points"] for s in samples), "map.max_points": cfg.map.max_points,
                   "buffered_keyframes_max": max(s["buffered_keyframes"] for s in samples),
                   "keyframes.buffer_size": cfg.keyframes.buffer_size},
        "queue": {"max_pending": fed["max_pending"], "bound": cfg.runtime.queue_size,
                  "max_pending_sampled": max(s["pending"] for s in samples)},
        "accounting": accounting(live, n_frames * n_cams),
        "keyframes": {"processed": engine.keyframe_count,
                      "step_s_median": statistics.median(engine.keyframe_s) if engine.keyframe_s else float("nan"),
                      "step_s_max": max(engine.keyframe_s, default=float("nan"))},
        "latency": {name: latency_summary(v) for name, v in pubs.latency_s.items()},
        "worker": worker,
        "messages_published": pubs.messages,
        "samples": samples,
    }


def print_report(r: dict[str, Any]) -> None:
    s, m, q, a, f = r["setup"], r["memory"], r["queue"], r["accounting"], r["feed"]
    print(f"\noverload: {s['cameras']} cameras x {s['rate_hz']:g} Hz, {s['image']}, {s['duration_s']:g} s, "
          f"keyframe sleep {s['keyframe_seconds_slept']} s, queue_size {s['queue_size']} ({r['machine']})")
    print(f"feeder: {s['frame_sets']} frame sets in {f['feed_s']:.1f} s, late p95 {f['late_ms_p95']:.1f} ms, "
          f"max {f['late_ms_max']:.1f} ms, {f['late_frames_over_one_period']} frames late by > 1 period")
    print(f"RSS MB: start {m['rss_mb_start']:.1f}, after {m['warmup_s']:.0f} s {m['rss_mb_after_warmup']:.1f}, "
          f"end {m['rss_mb_end']:.1f}, max {m['rss_mb_max']:.1f}; slope {m['rss_slope_after_warmup_mb_per_min']:+.2f} "
          "MB/min")
    e = r["engine"]
    print(f"queue: max {q['max_pending']} (bound {q['bound']}); map points max {e['map_points_max']} "
          f"(bound {e['map.max_points']}); keyframe buffer max {e['buffered_keyframes_max']} "
          f"(bound {e['keyframes.buffer_size']})")
    print(f"images: fed {a['images_fed']} = in keyframes {a['images_in_keyframes']} + not keyframe "
          f"{a['images_not_keyframe']} + dropped {a['images_dropped']} {a['drops_by_reason']} -> "
          f"{'adds up' if a['adds_up'] else 'DOES NOT ADD UP'}")
    k = r["keyframes"]
    print(f"keyframes processed {k['processed']}, step median {k['step_s_median']:.2f} s, max {k['step_s_max']:.2f} s")
    print(f"{'latency (s)':<26} {'count':>6} {'median':>7} {'p95':>7} {'max':>7}")
    for name, label in (("depth", "stamp -> keyframe depth"), ("cloud", "stamp -> fused cloud")):
        lat = r["latency"].get(name, {"count": 0})
        if lat["count"]:
            print(f"{label:<26} {lat['count']:>6} {lat['median_s']:>7.2f} {lat['p95_s']:>7.2f} {lat['max_s']:>7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of paced input")
    ap.add_argument("--rate", type=float, default=30.0, help="frame sets per second (x4 images)")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--keyframe-seconds", type=float, default=0.8, help="sleep per keyframe (split over its views)")
    ap.add_argument("--queue-size", type=int, default=2, help="runtime.queue_size")
    ap.add_argument("--threads", type=int, default=1, help="runtime.threads (torch intra-op threads)")
    ap.add_argument("--sample-s", type=float, default=0.5, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds excluded from the RSS slope (default: one lap of the loop)")
    ap.add_argument("--json", default="benchmarks/results/overload_cpu.json")
    args = ap.parse_args()
    result = run(args)
    print_report(result)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
