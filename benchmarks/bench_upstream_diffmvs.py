"""Side by side: our DiffMVS / CasDiffMVS against upstream cvg/diffmvs, same process, same weights and inputs.

    .venv/bin/python benchmarks/bench_upstream_diffmvs.py --upstream-diffmvs /path/to/diffmvs \
        --json benchmarks/results/upstream_diffmvs_cpu.json

``--upstream-diffmvs`` is a checkout of https://github.com/cvg/diffmvs (measured at 451349e); its
``models`` package is imported from there (it needs ``einops``), nothing of it is copied. Its
import-time ``torch.inverse(torch.ones(..., device="cuda:0"))`` is answered on the CPU when no GPU is
visible (``torch.ones`` maps that device to the CPU during the import only), so a pristine checkout works.

Both networks get identical weights, loaded into upstream with ``strict=True``: the parity fixture's
``weights.pt`` (random but non-degenerate, official keys; ``--fixtures``, default the shared fixtures when
present), an official checkpoint (``--checkpoint-diffmvs`` / ``--checkpoint-casdiffmvs``) or, without
either, torch's default initialisation (its initial depth is constant, so the output check says little);
identical inputs (5 views 640x512 by default) and the identical diffusion noise (upstream's
``torch.randn_like`` draws are replaced by ours in call order), so their outputs must agree within
the parity tolerance (1e-4 + 1e-4 |ref|, checked and stored). Runs alternate
(ours, upstream, ours, ...); the ratio of the median process CPU times (``time.process_time``, all
threads; robust on a shared machine) is the headline, the wall-clock ratio is stored beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
from argparse import Namespace
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recon_ros.models.diffmvs.checkpoint import load_diffmvs
from recon_ros.models.diffmvs.config import DiffMVSConfig, get_config
from recon_ros.models.diffmvs.model import DiffMVSNet
from recon_ros.testing import fixtures_root

PRESET_OF = {"diffmvs": "diffmvs_blend", "casdiffmvs": "casdiffmvs_blend"}
ATOL = RTOL = 1e-4  # the parity fixtures' tolerance


@contextlib.contextmanager
def _cpu_for_cuda_ones() -> Iterator[None]:
    """During upstream's import only: ``torch.ones(..., device="cuda:0")`` on the CPU when there is no GPU."""
    if torch.cuda.is_available():
        yield
        return
    real = torch.ones

    def ones(*args: Any, **kwargs: Any) -> torch.Tensor:
        if str(kwargs.get("device", "")).startswith("cuda"):
            kwargs["device"] = "cpu"
        return real(*args, **kwargs)

    torch.ones = ones  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.ones = real  # type: ignore[assignment]


def import_upstream(checkout: Path) -> Any:
    """The ``CasDiffMVS`` class of an upstream checkout."""
    if not (checkout / "models" / "diffusion.py").is_file():
        raise SystemExit(f"--upstream-diffmvs {checkout}: no models/diffusion.py (not a cvg/diffmvs checkout?)")
    sys.path.insert(0, str(checkout))
    try:
        with _cpu_for_cuda_ones():
            import models  # type: ignore[import-not-found]
    except ModuleNotFoundError as exc:
        raise SystemExit(f"upstream DiffMVS needs {exc.name!r} (pip install {exc.name})") from exc
    return models.CasDiffMVS


def upstream_args(cfg: DiffMVSConfig) -> Namespace:
    """test.py's arguments for ``cfg`` (the official scripts' flags)."""
    return Namespace(
        method=cfg.variant, numdepth_initial=cfg.numdepth_initial, numdepth=cfg.numdepth,
        ddim_eta=list(cfg.ddim_eta), scale=list(cfg.scale), timesteps=list(cfg.timesteps),
        sampling_timesteps=list(cfg.sampling_timesteps), hidden_dim=list(cfg.hidden_dim),
        context_dim=list(cfg.context_dim), interval_scale=1.06, stage_iters=list(cfg.stage_iters),
        cost_dim_stage=list(cfg.cost_dim_stage), CostNum=list(cfg.cost_num), unet_dim=list(cfg.unet_dim),
        min_radius=cfg.min_radius, max_radius=cfg.max_radius,
    )


def make_inputs(cfg: DiffMVSConfig, views: int, height: int, width: int, seed: int = 0) -> dict[str, Any]:
    """Smooth textures, a rig of cameras 10 cm apart, depth 0.5-10 m, the noise one forward draws."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(views, 3, height // 8, width // 8, generator=g)
    images = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    proj = {}
    for s, scale in enumerate((0.125, 0.25, 0.5, 1.0)):
        m = torch.zeros(1, views, 2, 4, 4)
        for v in range(views):
            m[0, v, 0] = torch.eye(4)
            m[0, v, 0, 0, 3] = -0.1 * v
            m[0, v, 1, :3, :3] = torch.tensor(
                [[0.9 * width * scale, 0, width / 2 * scale], [0, 0.9 * width * scale, height / 2 * scale], [0, 0, 1]]
            )
        proj[f"stage{s + 1}"] = m
    depth_values = torch.linspace(1 / 10.0, 1 / 0.5, cfg.numdepth, dtype=torch.float64).float()[None]
    noise = [torch.randn(sh, generator=g) for sh in cfg.noise_shapes(1, height, width)]
    return {"imgs": [images[v : v + 1] for v in range(views)], "proj": proj, "depth_values": depth_values,
            "noise": noise}


@contextlib.contextmanager
def _replayed_noise(noise: list[torch.Tensor]) -> Iterator[None]:
    """Upstream draws ``torch.randn_like(x)``; hand it our draws instead, in call order."""
    real = torch.randn_like
    queue = list(noise)

    def randn_like(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        n = queue.pop(0)
        if n.shape != x.shape:
            raise RuntimeError(f"upstream drew noise of shape {tuple(x.shape)}, ours is {tuple(n.shape)}")
        return n.to(x.device, x.dtype)

    torch.randn_like = randn_like  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.randn_like = real  # type: ignore[assignment]
    if queue:
        raise RuntimeError(f"upstream drew {len(noise) - len(queue)} noise maps, ours {len(noise)}")


def _compare(ours: dict, theirs: dict) -> dict[str, float]:
    """max |ours - upstream| per output, and the count beyond the parity tolerance."""
    out: dict[str, float] = {}
    bad = 0
    for key in ("depth", "photometric_confidence"):
        for i, (a, b) in enumerate(zip(ours[key], theirs[key])):
            a, b = a.double(), b.double()
            out[f"{key}_{i}"] = float((a - b).abs().max())
            bad += int(((a - b).abs() > ATOL + RTOL * b.abs()).sum())
    out["elements_beyond_tolerance"] = float(bad)
    return out


def bench_model(model: str, upstream_cls: Any, args: argparse.Namespace) -> dict[str, Any]:
    cfg = get_config(PRESET_OF[model])
    ckpt = getattr(args, f"checkpoint_{model}")
    fixture_weights = args.fixtures / model / "weights.pt" if args.fixtures else None
    if ckpt:
        ours, weights = load_diffmvs(ckpt, cfg).eval(), str(ckpt)
    elif fixture_weights is not None and fixture_weights.is_file():
        ours, weights = load_diffmvs(fixture_weights, cfg).eval(), str(fixture_weights)
    else:
        torch.manual_seed(0)
        ours, weights = DiffMVSNet(cfg).eval(), "torch default init (seed 0)"
    theirs = upstream_cls(upstream_args(cfg), test=True).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = make_inputs(cfg, args.views, args.height, args.width)

    def run_ours() -> dict:
        with torch.inference_mode():
            return ours(x["imgs"], x["proj"], x["depth_values"], noise=list(x["noise"]))

    def run_upstream() -> dict:
        with torch.inference_mode(), _replayed_noise(x["noise"]):
            return theirs(x["imgs"], x["proj"], x["depth_values"])

    fns: dict[str, Callable[[], dict]] = {"ours": run_ours, "upstream": run_upstream}
    outs = {k: fn() for k, fn in fns.items()}  # warm-up 1, also the output check
    for _ in range(args.warmup - 1):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.runs):
        for name, fn in fns.items():
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    wmed = {k: statistics.median(v) for k, v in wall.items()}
    res = {
        "preset": cfg.name, "weights": weights, "views": args.views, "size": [args.height, args.width],
        "ours_cpu_s": cpu["ours"], "upstream_cpu_s": cpu["upstream"],
        "ours_wall_s": wall["ours"], "upstream_wall_s": wall["upstream"],
        "ours_median_cpu_s": med["ours"], "upstream_median_cpu_s": med["upstream"],
        "ours_over_upstream": med["ours"] / med["upstream"],
        "ours_over_upstream_wall": wmed["ours"] / wmed["upstream"],
        "max_abs_diff": _compare(outs["ours"], outs["upstream"]),
    }
    print(f"{model:11s} CPU time ours {med['ours']:.3f} s  upstream {med['upstream']:.3f} s  "
          f"ratio {res['ours_over_upstream']:.3f} (wall {res['ours_over_upstream_wall']:.3f})  "
          f"outputs beyond tolerance: "
          f"{int(res['max_abs_diff']['elements_beyond_tolerance'])}", flush=True)
    return res


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream-diffmvs", required=True, type=Path, help="cvg/diffmvs checkout")
    p.add_argument("--models", default="diffmvs,casdiffmvs")
    default_fixtures = fixtures_root() / "diffmvs"
    p.add_argument("--fixtures", type=Path, default=default_fixtures if default_fixtures.is_dir() else None,
                   help="parity fixtures folder holding diffmvs/ and casdiffmvs/ weights.pt")
    p.add_argument("--checkpoint-diffmvs", type=Path, default=None, help="official DiffMVS checkpoint")
    p.add_argument("--checkpoint-casdiffmvs", type=Path, default=None, help="official CasDiffMVS checkpoint")
    p.add_argument("--views", type=int, default=5)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--runs", type=int, default=5, help="timed runs of each (alternating)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    upstream_cls = import_upstream(args.upstream_diffmvs.resolve())
    results: dict[str, Any] = {
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "runs": args.runs, "warmup": args.warmup, "date": time.strftime("%Y-%m-%d"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "load_average_start": os.getloadavg(),
    }
    for model in [m for m in args.models.split(",") if m]:
        results[model] = bench_model(model, upstream_cls, args)
    results["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
