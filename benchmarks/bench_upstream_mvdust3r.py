"""Side by side on this CPU: our MV-DUSt3R / MV-DUSt3R+ against upstream's, identical weights and inputs.

    .venv/bin/python benchmarks/bench_upstream_mvdust3r.py --upstream-mvdust3r /path/to/mvdust3r \\
        --models mvd,mvdp --runs 3 --json benchmarks/results/mvdust3r_vs_upstream_cpu.json

Upstream is imported from the user's checkout of facebookresearch/mvdust3r (see
``upstream_mvdust3r.py``; nothing of it is copied here). Both networks are built with the official
constructor (``--size full``: ViT-L encoder, the sizes of MVD.pth / MVDp_s*.pth) or the reduced fixture
sizes (``--size small``), with upstream's random initialisation; our network then takes the *same*
parameter tensors (``load_state_dict(assign=True)``: strict key match, no second copy of the weights in
memory). Every run feeds the same random views. Runs alternate (ours, upstream, ours, upstream, ...) so
load drift on a shared machine hits both alike; the file reports the per-run times, medians and the
ratio ours / upstream of the medians.

What is timed is what each side computes for a pose estimate: upstream's whole forward (it always runs
the point and Gaussian heads of every reference path), ours with the point heads of path 0 (what
``MVDust3RPredictor`` runs by default). ``ours_gaussians`` additionally times ours with the Gaussian
heads, like upstream, for MV-DUSt3R (one path) when ``--with-gaussians`` is given. Before timing, one
forward of each is compared (path 0 ``pts3d`` / ``conf``) with the parity fixtures' tolerance rule.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upstream_mvdust3r import build_upstream, import_upstream, upstream_forward  # noqa: E402

from recon_ros.models.mvdust3r.config import MVDust3RConfig  # noqa: E402
from recon_ros.models.mvdust3r.network import MVDust3R  # noqa: E402

SMALL = dict(enc_embed_dim=96, enc_depth=2, enc_num_heads=4, dec_embed_dim=64, dec_depth=3, dec_num_heads=4)


def our_config(m_ref_flag: bool, small: bool, img_size: tuple[int, int]) -> MVDust3RConfig:
    kw: dict[str, Any] = dict(SMALL) if small else {}
    if m_ref_flag:
        kw.update(m_ref_flag=True, n_ref=4)
    return MVDust3RConfig(img_size=img_size, **kw)


def upstream_path0(res1: dict, res2s: list[dict], n_ref: int) -> tuple[np.ndarray, np.ndarray]:
    """Path-0 ``pts3d [V,H,W,3]``, ``conf [V,H,W]`` from upstream's output (batch index b*n_ref + p)."""
    pts = [res1["pts3d"][0]] + [r["pts3d_in_other_view"][0] for r in res2s]
    conf = [res1["conf"][0]] + [r["conf"][0] for r in res2s]
    return torch.stack(pts).numpy(), torch.stack(conf).numpy()


def compare(ours: dict[str, torch.Tensor], ref: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Worst |ours - upstream| / (atol + rtol |upstream|) with the fixtures' tolerances (<= 1 passes)."""
    pts, conf = ours["pts3d"][0, 0].numpy(), ours["conf"][0, 0].numpy()
    ratio_pts = np.abs(pts - ref[0]) / (1e-3 + 1e-4 * np.abs(ref[0]))
    ratio_conf = np.abs(conf - ref[1]) / (1e-4 + 1e-4 * np.abs(ref[1]))
    return {"pts3d_worst_over_tol": float(ratio_pts.max()), "conf_worst_over_tol": float(ratio_conf.max())}


def bench_model(up: Any, name: str, args: argparse.Namespace) -> dict[str, Any]:
    m_ref = name == "mvdp"
    small = args.size == "small"
    h, w = args.height, args.width
    torch.manual_seed(0)
    upstream = build_upstream(up, m_ref, SMALL if small else None)
    ours = MVDust3R(our_config(m_ref, small, (224, 224))).eval()
    ours.load_state_dict(upstream.state_dict(), strict=True, assign=True)
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(args.views, 3, h, w, generator=gen) * 2 - 1
    batch = images.unsqueeze(0)
    variants: dict[str, Any] = {
        "ours": lambda: ours(batch, paths=[0]),
        "upstream": lambda: upstream_forward(upstream, images),
    }
    if args.with_gaussians and not m_ref:
        variants["ours_gaussians"] = lambda: ours(batch, paths=[0], gaussians=True)
    result: dict[str, Any] = {"views": args.views, "height": h, "width": w}
    with torch.no_grad():
        if not args.skip_parity:
            ref = upstream_path0(*upstream_forward(upstream, images), 4 if m_ref else 1)
            result["parity"] = compare(ours(batch, paths=[0]), ref)
        times: dict[str, list[float]] = {k: [] for k in variants}
        # Process CPU time beside the wall time: on a shared machine a run that waits for a core
        # stretches its wall time but not its CPU time (both sides' threads alike).
        cpu: dict[str, list[float]] = {k: [] for k in variants}
        for i in range(args.runs):
            for key, fn in variants.items():
                gc.collect()
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                times[key].append(time.perf_counter() - t0)
                cpu[key].append(time.process_time() - c0)
                print(f"{name} run {i} {key}: {times[key][-1]:.2f} s (cpu {cpu[key][-1]:.2f} s)", flush=True)
    for key, ts in times.items():
        result[key] = {"median_s": statistics.median(ts), "runs": ts, "cpu_median_s": statistics.median(cpu[key]),
                       "cpu_runs": cpu[key]}
    result["ours_over_upstream"] = result["ours"]["median_s"] / result["upstream"]["median_s"]
    result["ours_over_upstream_cpu"] = result["ours"]["cpu_median_s"] / result["upstream"]["cpu_median_s"]
    if "ours_gaussians" in result:
        result["ours_gaussians_over_upstream"] = result["ours_gaussians"]["median_s"] / result["upstream"]["median_s"]
    variants.clear()  # drops the closures holding both networks
    gc.collect()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream-mvdust3r", required=True, help="Checkout of facebookresearch/mvdust3r.")
    p.add_argument("--models", default="mvd,mvdp", help="Comma list of mvd,mvdp.")
    p.add_argument("--size", choices=("full", "small"), default="full")
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--height", type=int, default=224)
    p.add_argument("--width", type=int, default=224)
    p.add_argument("--runs", type=int, default=3, help="Alternating timed runs per side (median reported).")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default).")
    p.add_argument("--with-gaussians", action="store_true", help="Also time ours with Gaussian heads (MVD).")
    p.add_argument("--skip-parity", action="store_true", help="No untimed comparison run (saves two forwards).")
    p.add_argument("--json", dest="json_path", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    up = import_upstream(args.upstream_mvdust3r)
    out: dict[str, Any] = {
        "what": "ours / upstream CPU time, identical weights and inputs, alternating runs",
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "machine": platform.processor(),
        "size": args.size, "runs": args.runs,
    }
    for name in args.models.split(","):
        out[name] = bench_model(up, name.strip(), args)
        print(json.dumps({name: out[name]}, indent=1), flush=True)
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
