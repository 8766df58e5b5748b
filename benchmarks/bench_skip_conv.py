"""One 256 -> 256 5x5 skip-branch layer (and the whole skip branch) on this CPU: the convolution paths
side by side, alternating runs in one process.

    .venv/bin/python benchmarks/bench_skip_conv.py --threads 2 --runs 7 --json out.json

Layer variants: oneDNN's direct convolution on an NCHW input (what upstream runs) and on a channels-last
input, the tiled FFT path (``fft_conv.py``) and the Winograd F(4x4, 5x5) path (``winograd.py``, channels-last
in and out, one reused workspace). Branch variants (4 images, the full skip branch of one pts3d head with
BatchNorm folded): the plain layers image by image on NCHW tensors (the path before the Winograd one) and
``PointHead._skip`` as it runs now. Reported: per-run wall times, medians, each variant's median over the
NCHW baseline's median, and each variant's largest deviation from the float64 convolution relative to the
output's scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from recon_ros.models.mvdust3r.fft_conv import fft_conv2d, kernel_spectrum  # noqa: E402
from recon_ros.models.mvdust3r.heads import ConvBNBlock, PointHead  # noqa: E402
from recon_ros.models.mvdust3r.winograd import Workspace, winograd_conv2d, winograd_kernel  # noqa: E402


def alternate(variants: dict[str, Callable[[], Any]], runs: int, baseline: str) -> dict[str, Any]:
    for fn in variants.values():  # warm-up: caches, oneDNN primitives, workspace pages
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(runs):
        for key, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    base = statistics.median(times[baseline])
    return {
        k: {"median_s": statistics.median(v), "runs": v, f"over_{baseline}": statistics.median(v) / base}
        for k, v in times.items()
    }


def bench_layer(args: argparse.Namespace) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    c = 256
    x = torch.randn(1, c, args.height, args.width, generator=g)
    w = torch.randn(c, c, 5, 5, generator=g) / (5 * c**0.5)
    b = torch.randn(c, generator=g)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    spectrum, wk, ws = kernel_spectrum(w), winograd_kernel(w), Workspace()
    variants = {
        "direct_nchw": lambda: F.conv2d(x, w, b, padding=2),
        "direct_channels_last": lambda: F.conv2d(x_cl, w, b, padding=2),
        "fft": lambda: fft_conv2d(x, spectrum, b, 5),
        "winograd": lambda: winograd_conv2d(x_cl, wk, b, ws),
    }
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=2)
    err = {k: float((fn().double() - ref).abs().max() / ref.abs().max()) for k, fn in variants.items()}
    out = alternate(variants, args.runs, "direct_nchw")
    for k in out:
        out[k]["max_error_over_output_scale"] = err[k]
    return out


def bench_branch(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    head = PointHead(1024, 16, True, 256, 1e-4, (1.0, 1e9), 1e-6).eval()
    x = torch.randn(4, 6, args.height, args.width)

    def plain() -> torch.Tensor:  # image by image, NCHW, direct convolutions (BatchNorm folded)
        ConvBNBlock.use_winograd = False
        try:
            return torch.cat([head.skip_proj(x[i : i + 1]) for i in range(x.shape[0])])
        finally:
            ConvBNBlock.use_winograd = True

    variants = {"plain_nchw": plain, "skip_now": lambda: head._skip(x)}
    return alternate(variants, args.runs, "plain_nchw")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default).")
    p.add_argument("--runs", type=int, default=7, help="Alternating timed runs per variant (median reported).")
    p.add_argument("--height", type=int, default=224)
    p.add_argument("--width", type=int, default=224)
    p.add_argument("--no-branch", action="store_true", help="Only the single layer.")
    p.add_argument("--json", dest="json_path", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                           "height": args.height, "width": args.width, "runs": args.runs}
    with torch.no_grad():
        out["layer_256_256_5x5"] = bench_layer(args)
        print(json.dumps({"layer_256_256_5x5": {k: round(v["over_direct_nchw"], 3)
                                                for k, v in out["layer_256_256_5x5"].items()}}), flush=True)
        if not args.no_branch:
            out["skip_branch_4_images"] = bench_branch(args)
            print(json.dumps({"skip_branch_4_images": {k: round(v["over_plain_nchw"], 3)
                                                       for k, v in out["skip_branch_4_images"].items()}}),
                  flush=True)
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
