"""Endurance: one simulated hour (or more) of keyframes through the engine; does resident memory stay flat?

A 4-camera rig drives the synthetic room's loop over and over (:class:`LoopingStream`: one lap is rendered
once, stamps keep increasing). Frame sets go straight into ``ReconstructionEngine.process`` — the call the
live node's worker makes — as fast as the CPU allows (no pacing: simulated time is the image stamps).
Depth is the scene's exact depth, so fusion and the voxel map get dense, consistent input every lap.
Every ``--sample-every`` keyframes the benchmark records process RSS, voxel-map points and voxel size,
keyframe-buffer length and path length, and builds the messages the node would publish for that step
(``engine_step_messages``) so their transient memory shows up too.

Defaults are chosen to finish in about 10 minutes on a shared 2-core VM: 64x48 images, 5 Hz, the robot at
0.2 m/s (~4,500 keyframes an hour with the default keyframe gates) and ``map.max_points`` = 50,000,
below the ~200,000 points this room fills at 3 cm voxels, so the map's bound (voxel growth) is exercised.

    python benchmarks/bench_endurance.py                       # 60 simulated minutes
    python benchmarks/bench_endurance.py --minutes 5 --json /tmp/e.json

Figures are measurements, not assertions; see benchmarks/README.md for the numbers from our machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from recon_ros.config import ReconConfig, from_dict
from recon_ros.io.messages import MessageKit
from recon_ros.io.outputs import engine_step_messages
from recon_ros.pipeline.engine import MAX_PATH_POSES, KeyframeOutput, ReconstructionEngine
from recon_ros.synthetic import SyntheticConfig
from recon_ros.synthetic.stream import GroundTruthDepth, LoopingStream

MB = 1024 * 1024


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / MB


def build(args: argparse.Namespace) -> tuple[LoopingStream, ReconConfig, ReconstructionEngine]:
    stream = LoopingStream(SyntheticConfig(n_cameras=4, width=args.width, height=args.height, rate_hz=args.rate,
                                           speed_mps=args.speed))
    cfg = from_dict({"cameras": stream.camera_names, "runtime.device": "cpu", "runtime.threads": args.threads,
                     "map.max_points": args.map_max_points})
    return stream, cfg, ReconstructionEngine(cfg, depth_source=GroundTruthDepth(stream.scene))


def sample(engine: ReconstructionEngine, stream: LoopingStream, index: int, wall0: float,
           kit: MessageKit, out: KeyframeOutput) -> dict[str, Any]:
    """One point of the memory curve, taken right after the messages of this keyframe were built."""
    t0 = time.perf_counter()
    msgs = engine_step_messages(kit, engine.cfg, engine, out)
    msgs_ms = (time.perf_counter() - t0) * 1e3
    row = {
        "sim_min": (stream.stamp_ns(index) - stream.stamp_ns(0)) / 60e9,
        "wall_s": time.perf_counter() - wall0,
        "keyframes": engine.keyframe_count,
        "rss_mb": rss_mb(),  # while this step's messages are alive: the publisher's peak, not its trough
        "map_points": len(engine.map),
        "voxel_size_m": engine.map.voxel_size,
        "buffered_keyframes": len(engine.keyframes),
        "path_poses": len(engine.path),
        "messages": len(msgs),
        "messages_ms": msgs_ms,
    }
    del msgs
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    stream, cfg, engine = build(args)
    t0 = time.perf_counter()
    stream.prerender()
    render_s = time.perf_counter() - t0
    kit = MessageKit.for_rosbags()
    n_frames = round(args.minutes * 60 * args.rate)
    rss_before = rss_mb()
    samples: list[dict[str, Any]] = []
    wall0 = time.perf_counter()
    for i in range(n_frames):
        out = engine.process(stream.frameset(i))
        if out is not None and engine.keyframe_count % args.sample_every == 0:
            samples.append(sample(engine, stream, i, wall0, kit, out))
            if args.progress and len(samples) % 10 == 0:
                s = samples[-1]
                print(f"  sim {s['sim_min']:5.1f} min  kf {s['keyframes']:5d}  rss {s['rss_mb']:7.1f} MB  "
                      f"map {s['map_points']:6d}  wall {s['wall_s']:6.0f} s", flush=True)
    wall = time.perf_counter() - wall0
    return {
        "machine": platform.platform(), "python": platform.python_version(), "cpus": psutil.cpu_count(),
        "setup": {"cameras": 4, "image": f"{args.width}x{args.height}", "rate_hz": args.rate,
                  "speed_mps": args.speed, "lap_frames": stream.lap, "simulated_minutes": args.minutes,
                  "frame_sets": n_frames, "depth_source": "ground_truth", "pose_source": cfg.pose.source,
                  "torch_threads": args.threads},
        "bounds": {"map.max_points": cfg.map.max_points, "map.voxel_size_m": cfg.map.voxel_size_m,
                   "keyframes.buffer_size": cfg.keyframes.buffer_size, "path_max_poses": MAX_PATH_POSES},
        "wall_s": wall, "render_s": render_s, "keyframes": engine.keyframe_count,
        "ms_per_keyframe": wall / max(engine.keyframe_count, 1) * 1e3,
        "stage_seconds_total": engine.timer.total, "drops": engine.drops.as_dict(),
        "rss_mb_before_first_frame": rss_before,
        "summary": summarize(samples, args.minutes),
        "samples": samples,
    }


def slope_mb_per_hour(rows: list[dict[str, Any]]) -> float:
    if len(rows) < 2:
        return float("nan")
    x = np.array([r["sim_min"] for r in rows]) / 60.0
    y = np.array([r["rss_mb"] for r in rows])
    return float(np.polyfit(x, y, 1)[0])


def summarize(samples: list[dict[str, Any]], minutes: float) -> dict[str, Any]:
    """RSS at every 10 simulated minutes, its max, and its trend over the second half of the run."""
    if not samples:
        return {}
    marks: dict[str, float] = {}
    step = 10 if minutes >= 20 else max(minutes / 6, 0.5)
    m = step
    while m <= minutes + 1e-9:
        at = next((s for s in samples if s["sim_min"] >= m - 1e-9), samples[-1])
        marks[f"{m:g}"] = round(at["rss_mb"], 1)
        m += step
    second_half = [s for s in samples if s["sim_min"] >= minutes / 2]
    return {
        "rss_mb_at_sim_min": marks,
        "rss_mb_first_sample": samples[0]["rss_mb"],
        "rss_mb_max": max(s["rss_mb"] for s in samples),
        "rss_mb_last": samples[-1]["rss_mb"],
        "rss_slope_second_half_mb_per_hour": slope_mb_per_hour(second_half),
        "map_points_max": max(s["map_points"] for s in samples),
        "voxel_size_m_last": samples[-1]["voxel_size_m"],
        "buffered_keyframes_max": max(s["buffered_keyframes"] for s in samples),
        "path_poses_last": samples[-1]["path_poses"],
        "messages_ms_first": samples[0]["messages_ms"],
        "messages_ms_last": samples[-1]["messages_ms"],
    }


def print_report(r: dict[str, Any]) -> None:
    s, b = r["summary"], r["bounds"]
    print(f"\nendurance: {r['setup']['simulated_minutes']:g} simulated min, {r['keyframes']} keyframes, "
          f"{r['wall_s']:.0f} s wall ({r['ms_per_keyframe']:.0f} ms/keyframe), {r['machine']}")
    print("RSS (MB) at simulated minute: " + "  ".join(f"{k}: {v}" for k, v in s["rss_mb_at_sim_min"].items()))
    print(f"RSS first sample {s['rss_mb_first_sample']:.1f} MB, max {s['rss_mb_max']:.1f} MB, last "
          f"{s['rss_mb_last']:.1f} MB; slope over the second half {s['rss_slope_second_half_mb_per_hour']:+.1f} MB/h")
    print(f"map points max {s['map_points_max']} (bound {b['map.max_points']}), voxel {b['map.voxel_size_m']} -> "
          f"{s['voxel_size_m_last']:.4f} m; keyframe buffer max {s['buffered_keyframes_max']} "
          f"(bound {b['keyframes.buffer_size']}); path {s['path_poses_last']} poses (bound {b['path_max_poses']})")
    print(f"building one step's messages: {s['messages_ms_first']:.1f} ms at the start, "
          f"{s['messages_ms_last']:.1f} ms at the end")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="simulated minutes (image stamps)")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=48)
    ap.add_argument("--rate", type=float, default=5.0, help="frame sets per simulated second")
    ap.add_argument("--speed", type=float, default=0.2, help="robot speed along the loop, m/s")
    ap.add_argument("--map-max-points", type=int, default=50_000, help="map.max_points")
    ap.add_argument("--threads", type=int, default=1, help="runtime.threads (torch intra-op threads)")
    ap.add_argument("--sample-every", type=int, default=25, help="keyframes between memory samples")
    ap.add_argument("--json", default="benchmarks/results/endurance_cpu.json")
    ap.add_argument("--quiet", dest="progress", action="store_false")
    args = ap.parse_args()
    result = run(args)
    print_report(result)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
