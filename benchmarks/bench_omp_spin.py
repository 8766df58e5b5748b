"""OpenMP spin-wait setting vs CPU contention: wall time per plane-sweep view, 2 torch threads.

Each setting runs in its own process (libgomp reads its environment when torch loads it), on an idle
machine and beside one busy-looping process (another node sharing the cores), alternating settings:

    python benchmarks/bench_omp_spin.py --rounds 2 --json benchmarks/results/omp_spin_cpu.json

Settings: GNU OpenMP's default (spin 300 000 iterations), GOMP_SPINCOUNT=1000 (recon_ros's default,
set in recon_ros/__init__.py unless the user set one) and OMP_WAIT_POLICY=PASSIVE (no spinning).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

VIEW = r"""
import sys, time, torch
torch.set_num_threads(2)
from recon_ros.bench_depth import _demo_views
from recon_ros.pipeline.planesweep import PlaneSweepDepth
ref, sources, _, cfg = _demo_views("cpu")
est = PlaneSweepDepth(cfg, "cpu", 0.3)
est.estimate(ref, sources, (cfg.min_depth_m, cfg.max_depth_m))
for _ in range(int(sys.argv[1])):
    t = time.perf_counter(); est.estimate(ref, sources, (cfg.min_depth_m, cfg.max_depth_m))
    print(time.perf_counter() - t, flush=True)
"""
SETTINGS = {"gomp_default": {"GOMP_SPINCOUNT": "300000"}, "spin_1000": {"GOMP_SPINCOUNT": "1000"},
            "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}


def run(setting: dict[str, str], views: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", VIEW, str(views)], env={**env, **setting}, capture_output=True,
                         text=True, check=True)
    return [float(x) for x in out.stdout.split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results: dict[str, dict[str, list[float]]] = {"idle": {}, "one_busy_process": {}}
    for load in results:
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "idle" else None
        try:
            for _ in range(args.rounds):
                for name, setting in SETTINGS.items():
                    results[load].setdefault(name, []).extend(run(setting, args.views))
        finally:
            if hog is not None:
                hog.kill()
    summary = {load: {name: round(statistics.median(v), 3) for name, v in r.items()} for load, r in results.items()}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"what": "seconds per 320x240 plane-sweep view, 2 torch threads, median",
                                         "cpu_count": os.cpu_count(), "median_s": summary, "runs_s": results},
                                        indent=1))


if __name__ == "__main__":
    main()
