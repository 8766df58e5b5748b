"""Two plane-sweep implementations on the bench's view, alternating in one process (A B A B ...).

``recon-ros bench`` times one version; this compares two, e.g. the committed one with an older one, so that
load drifting on a shared machine slows both alike and the ratio stays meaningful::

    git show <old-commit>:recon_ros/pipeline/planesweep.py > /tmp/planesweep_old.py
    python benchmarks/bench_planesweep_ab.py /tmp/planesweep_old.py recon_ros/pipeline/planesweep.py --threads 1

Prints per version the median wall and process CPU seconds per view, the median of the per-round ratios
(second / first) and how far the second's depth moves from the first's on pixels both call valid.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", type=Path, help="planesweep.py of the baseline")
    ap.add_argument("second", type=Path, help="planesweep.py to compare with it")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--rounds", type=int, default=10, help="timed rounds (each runs both once)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from recon_ros.bench_depth import _demo_views

    ref, sources, _, cfg = _demo_views("cpu")
    depth_range = (cfg.min_depth_m, cfg.max_depth_m)
    sweeps = {f"{tag}: {p}": _load(p, f"_planesweep_{tag}").PlaneSweepDepth(cfg, "cpu", 0.3)
              for tag, p in (("first", args.first), ("second", args.second))}
    names = list(sweeps)
    est = {k: s.estimate(ref, sources, depth_range) for k, s in sweeps.items()}  # also the warm-up
    a, b = est[names[0]], est[names[1]]
    both = a.valid & b.valid
    rel = np.abs(b.depth[both] - a.depth[both]) / a.depth[both]
    print(f"{torch.get_num_threads()} torch threads; valid {a.valid.mean():.4f} vs {b.valid.mean():.4f}; depth "
          f"moved: median {np.median(rel):.2e}, p99 {np.percentile(rel, 99):.2e}, >1 %: {np.mean(rel > 0.01):.2e}")
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(args.rounds):
        for k in names:
            t, c = time.perf_counter(), time.process_time()
            sweeps[k].estimate(ref, sources, depth_range)
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    for k in names:
        print(f"{k}: wall {statistics.median(wall[k]):.4f} s (min {min(wall[k]):.4f}), "
              f"cpu {statistics.median(cpu[k]):.4f} s per view")
    ratio = [y / x for x, y in zip(wall[names[0]], wall[names[1]])]
    cpu_ratio = [y / x for x, y in zip(cpu[names[0]], cpu[names[1]])]
    print(f"second / first: wall {statistics.median(ratio):.3f}, cpu {statistics.median(cpu_ratio):.3f} "
          f"(median of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
