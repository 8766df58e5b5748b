"""Stamp-to-publish latency of the navigation cloud (/recon/obstacles) per stage, on CPU, and how it
scales with the number of cameras and the image resolution.

Each configuration runs the live node's path (``LiveRecon``: decode, FrontEnd, worker, engine with TF
poses and PLANE-SWEEP depth, navigation cloud, message building) on the synthetic robot. Images
"arrive" at their stamp (``--transport-ms`` later) on a virtual clock that then runs with real time;
each frame set is processed before the next arrives (no queueing), and every frame set is a keyframe.
Configurations are run round-robin, one keyframe each per round, so machine noise hits them alike.
Figures are medians over the rounds whose cloud had points, i.e. depth (the first two keyframes have no
source views 5 cm away yet).

    python benchmarks/bench_nav_latency.py                                  # 1/2/4 cameras x 160x120/320x240
    python benchmarks/bench_nav_latency.py --rounds 4 --json benchmarks/results/nav_latency_cpu.json
    python benchmarks/bench_nav_latency.py --set depth.wait_for_next_keyframe=false   # depth at once
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import yaml

from recon_ros.config import from_dict
from recon_ros.io.messages import MessageKit
from recon_ros.nodes.live import LiveRecon
from recon_ros.pipeline.latency import NAV_STAGES
from recon_ros.pipeline.tf_buffer import TfBuffer
from recon_ros.synthetic import SyntheticConfig
from recon_ros.synthetic.stream import LoopingStream


class VirtualClock:
    """Stamp of the frame being fed + transport, then real time."""

    def __init__(self, transport_ms: float) -> None:
        self.transport_ns = int(transport_ms * 1e6)
        self.base_ns, self.t0 = 0, time.perf_counter()

    def arrive(self, stamp_ns: int) -> None:
        self.base_ns, self.t0 = stamp_ns + self.transport_ns, time.perf_counter()

    def __call__(self) -> int:
        return self.base_ns + int((time.perf_counter() - self.t0) * 1e9)


class Setup:
    def __init__(self, n_cameras: int, width: int, transport_ms: float, overrides: dict | None = None) -> None:
        height = width * 3 // 4
        self.name = f"{n_cameras}cam_{width}x{height}"
        self.stream = LoopingStream(SyntheticConfig(n_cameras=n_cameras, width=width, height=height, rate_hz=10.0))
        cfg = from_dict({"cameras": self.stream.camera_names, "runtime.device": "cpu",
                         "keyframes.min_translation_m": 0.03, **(overrides or {})})
        self.kit, self.tf, self.clock = MessageKit.for_rosbags(), TfBuffer(), VirtualClock(transport_ms)
        self.live = LiveRecon(cfg, self.kit, self.tf, lambda t, m: None, clock_ns=self.clock)
        self.stream.prime_live(self.live, self.tf, self.kit)
        self.samples: list[dict[str, float]] = []
        self._last_total = float("nan")

    def step(self, i: int) -> None:
        self.stream.frame(i)  # rendering is not part of the latency
        self.clock.arrive(self.stream.stamp_ns(i))
        self.stream.feed_live(self.live, self.tf, self.kit, i)
        if not self.live.worker.wait_idle(600):
            raise RuntimeError(f"{self.name}: worker still busy after 600 s")
        s = self.live.status()
        total = s.get("nav_stamp_to_publish_ms", float("nan"))
        if total == total and total != self._last_total and s["nav_points"] > 0:  # a cloud with depth
            self.samples.append({**s["nav_latency_ms"], "total": total, "points": s["nav_points"]})
        self._last_total = total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="1,2,4")
    ap.add_argument("--widths", default="160,320")
    ap.add_argument("--rounds", type=int, default=6, help="keyframes per configuration (the first 2 have no depth)")
    ap.add_argument("--transport-ms", type=float, default=0.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides, e.g. depth.wait_for_next_keyframe=false (YAML values)")
    args = ap.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    setups = [Setup(int(c), int(w), args.transport_ms, overrides)
              for w in args.widths.split(",") for c in args.cameras.split(",")]
    for i in range(args.rounds):
        for s in setups:  # round-robin
            s.step(i)
            print(f"round {i} {s.name}: {s.samples[-1]['total'] if s.samples else float('nan'):.0f} ms", flush=True)
    results = {}
    for s in setups:
        s.live.close()
        if not s.samples:
            continue
        med = {k: statistics.median(x[k] for x in s.samples) for k in (*NAV_STAGES, "total", "points")}
        results[s.name] = {"median_ms": med, "keyframes": len(s.samples)}
    base = next(iter(results.values()))["median_ms"]["total"] if results else float("nan")
    for r in results.values():
        r["total_ratio_vs_first"] = r["median_ms"]["total"] / base
    report = {
        "what": "stamp-to-publish latency of /recon/obstacles per stage (ms, medians), plane-sweep depth, TF poses",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "")},
        "rounds": args.rounds, "transport_ms": args.transport_ms, "overrides": overrides, "results": results,
    }
    print(f"{'config':>16} " + " ".join(f"{k:>8}" for k in (*NAV_STAGES, "total")) + "   ratio")
    for name, r in results.items():
        m = r["median_ms"]
        print(f"{name:>16} " + " ".join(f"{m[k]:8.1f}" for k in (*NAV_STAGES, "total"))
              + f"   {r['total_ratio_vs_first']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
