"""Ground-truth figures of the navigation cloud (/recon/obstacles) on two synthetic scenes.

Per keyframe step: floor pixels removed, obstacle voxels kept, largest and p99 distance of a cloud point
to a true surface (definitions: ``recon_ros/synthetic/nav_eval.py``). Depth is either the noisy exact
depth the tests use (``--depth noisy``: 0.5 % relative noise, 0.5 % wrong pixels) or the real
plane sweep (``--depth planesweep``: the depth recon_ros publishes with ``depth.source: planesweep``).

    python benchmarks/nav_figures.py --depth planesweep --diagnose \
        --json benchmarks/results/nav_figures_published_planesweep_cpu.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from recon_ros.config import from_dict
from recon_ros.pipeline.navigation import NavigationCloudBuilder
from recon_ros.pipeline.sources import build_depth_source
from recon_ros.synthetic import SyntheticConfig, SyntheticSequence
from recon_ros.synthetic.nav_eval import (
    NoisyGroundTruthDepth,
    diagnose_navigation,
    drive_navigation,
    navigation_figures,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", choices=("noisy", "planesweep"), default="planesweep")
    ap.add_argument("--width", type=int, default=192)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--diagnose", action="store_true",
                    help="also give each missed obstacle voxel's cause and where the far pixels come from")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides, e.g. navigation.min_pixels_per_voxel=2 (YAML values)")
    args = ap.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        seq = SyntheticSequence(SyntheticConfig(seed=seed, n_frames=args.frames, width=args.width,
                                                height=args.width * 3 // 4, rate_hz=2.0))
        cfg = from_dict({"runtime.device": "cpu", **overrides})
        depth = (NoisyGroundTruthDepth(seq.scene, 0.005, 0.005, seed=seed) if args.depth == "noisy"
                 else build_depth_source(cfg, "cpu"))
        for out, nav, tf in drive_navigation(seq, cfg, depth):
            if nav.labels:
                row = {"seed": seed, "keyframe": out.depth_keyframe_id,
                       **navigation_figures(seq.scene, out, nav, tf.lookup, cfg.navigation,
                                          confidence_threshold=cfg.fusion.confidence_threshold)}
                if args.diagnose:
                    builder = NavigationCloudBuilder(cfg.navigation, cfg.fusion.confidence_threshold)
                    row.update(diagnose_navigation(seq.scene, out, nav, tf.lookup, builder))
                rows.append(row)
                print({k: round(v, 4) for k, v in row.items()}, flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"depth": args.depth, "width": args.width, "overrides": overrides,
                                         "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
