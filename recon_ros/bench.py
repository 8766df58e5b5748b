"""``recon-ros bench``: latency, memory and FLOPs of the networks and pipeline stages per backend.

Networks use random weights with the official shapes (timing does not depend on the values):
DiffMVS / CasDiffMVS at ``--width x --height`` with ``--views`` views, MV-DUSt3R+ at 224x224 with
``--mvd-views`` views (``--mvd-size full`` is the 2.6 GB official size, ~40 s per CPU forward;
``small`` is the reduced fixture size). Backends are measured in the same process, one after the
other, so their ratios are comparable; medians over ``--runs`` after ``--warmup`` runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

BENCH_BACKENDS = ("torch", "onnxruntime", "tensorrt")


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = parser.add_argument_group("bench")
    g.add_argument("--quick", action="store_true", help="Small sizes and 1 run each (about 2 min on 2 CPU cores).")
    g.add_argument("--backends", default="torch,onnxruntime", help="Comma list of torch,onnxruntime,tensorrt.")
    g.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:N]'.")
    g.add_argument("--views", default="5", help="Comma list of DiffMVS view counts (reference + sources).")
    g.add_argument("--width", type=int, default=640, help="DiffMVS image width (multiple of 32).")
    g.add_argument("--height", type=int, default=512, help="DiffMVS image height (multiple of 32).")
    g.add_argument("--mvd-views", default="4,8", help="Comma list of MV-DUSt3R+ view counts.")
    g.add_argument("--mvd-size", choices=("full", "small"), default="full", help="MV-DUSt3R+ size.")
    g.add_argument("--runs", type=int, default=3, help="Timed runs per measurement (median reported).")
    g.add_argument("--warmup", type=int, default=1, help="Untimed runs before timing.")
    g.add_argument("--threads", type=int, default=0, help="torch / onnxruntime CPU threads (0 = default).")
    g.add_argument("--skip", default="", help="Comma list of parts to skip: diffmvs,mvdust3r,depth,pipeline.")
    g.add_argument("--json", dest="json_path", default="bench.json", help="Where to write the results.")
    return parser


@dataclasses.dataclass
class Measurement:
    median_s: float
    runs: list[float]
    peak_rss_mb: float  # process RSS high-water mark during the runs (sampled every 5 ms)
    cuda_max_mb: float | None = None  # torch's CUDA allocator peak during the runs (torch backends only)


class _RssSampler:
    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> _RssSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def measure_interleaved(
    fns: dict[str, Callable[[], Any]], runs: int, warmup: int, device: str
) -> dict[str, Measurement]:
    """Time several variants round-robin (A B C A B C ...), so that a machine whose load drifts
    during a long benchmark slows every variant alike and their ratios stay meaningful."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    cuda = device.startswith("cuda")
    times: dict[str, list[float]] = {k: [] for k in fns}
    peaks: dict[str, float] = {k: 0.0 for k in fns}
    cuda_peaks: dict[str, float | None] = {k: None for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            gc.collect()
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            with _RssSampler() as rss:
                t0 = time.perf_counter()
                fn()
                if cuda:
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
            peaks[name] = max(peaks[name], rss.peak / 2**20)
            if cuda:
                cuda_peaks[name] = max(cuda_peaks[name] or 0.0, torch.cuda.max_memory_allocated() / 2**20)
    return {k: Measurement(statistics.median(times[k]), times[k], peaks[k], cuda_peaks[k]) for k in fns}


def count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# ---------------------------------------------------------------------------------------- DiffMVS
def _bench_diffmvs(args: argparse.Namespace, backends: list[str], device: str, tmp: Path) -> dict:
    from recon_ros.models.diffmvs import export as dx
    from recon_ros.models.diffmvs.config import get_config
    from recon_ros.models.diffmvs.model import DiffMVSNet
    from recon_ros.runtime.runners import DiffMVSRunner

    out: dict[str, Any] = {}
    view_counts = [int(x) for x in str(args.views).split(",") if x]
    for preset, v in [(p, v) for p in ("diffmvs_blend", "casdiffmvs_blend") for v in view_counts]:
        torch.manual_seed(0)
        net = DiffMVSNet(get_config(preset)).eval()
        h, w = args.height, args.width
        images, proj, dv, *noise = dx.example_inputs(net, v, h, w)
        imgs = [images[i : i + 1] for i in range(v)]
        projd = {f"stage{i + 1}": proj[i : i + 1] for i in range(3)}
        res: dict[str, Any] = {"views": v, "size": [h, w]}
        with torch.inference_mode():
            res["gflops"] = count_flops(
                lambda n=net, i=imgs, p=projd, d=dv, z=noise: n(i, p, d, noise=list(z))) / 1e9
        fns: dict[str, Callable[[], Any]] = {}
        for be in [b for b in backends if b != "torch"]:  # export from the CPU weights first
            try:
                runner = DiffMVSRunner(net.cpu(), be, device, cache_dir=tmp / preset, threads=args.threads)
                t0 = time.perf_counter()
                runner.backend_for(v, h, w)
                res[f"{be}_prepare_s"] = time.perf_counter() - t0  # export (+ engine build)
                fns[be] = lambda r=runner, i=imgs, p=projd, d=dv, z=noise: r(i, p, d, list(z))
            except Exception as exc:  # one backend failing must not hide the others
                res[be] = {"error": f"{type(exc).__name__}: {exc}"}
        if "torch" in backends:
            net.to(device)
            i2 = [t.to(device) for t in imgs]
            p2 = {k: t.to(device) for k, t in projd.items()}
            d2, n2 = dv.to(device), [t.to(device) for t in noise]

            def run(n=net, i2=i2, p2=p2, d2=d2, n2=n2) -> None:
                with torch.inference_mode():
                    n(i2, p2, d2, noise=n2)

            fns = {"torch": run, **fns}
        for name, m in measure_interleaved(fns, args.runs, args.warmup, device).items():
            res[name] = dataclasses.asdict(m)
        out[preset if len(view_counts) == 1 else f"{preset}_v{v}"] = res
    return out


# ---------------------------------------------------------------------------------------- MV-DUSt3R+
def _mvd_config(size: str):
    from recon_ros.models.mvdust3r.config import preset

    cfg = preset("mvdp")
    if size == "small":  # the reduced size of the parity fixtures
        cfg = dataclasses.replace(cfg, enc_embed_dim=96, enc_depth=2, enc_num_heads=4, dec_embed_dim=64,
                                  dec_depth=3, dec_num_heads=4)
    return cfg


def _bench_mvdust3r(args: argparse.Namespace, backends: list[str], device: str, tmp: Path) -> dict:
    """Per view count, measured round-robin: path 0 per backend, all 4 paths (torch), and a window
    whose older half is in the encoder-token cache (torch; the newest keyframe's views re-encoded)."""
    from recon_ros.models.mvdust3r.network import MVDust3R
    from recon_ros.runtime.runners import MVDust3RRunner

    torch.manual_seed(0)
    net = MVDust3R(_mvd_config(args.mvd_size)).eval()
    out: dict[str, Any] = {"size": args.mvd_size, "params_m": sum(p.numel() for p in net.parameters()) / 1e6}
    for v in [int(x) for x in args.mvd_views.split(",") if x]:
        images = torch.rand(1, v, 3, 224, 224) * 2 - 1
        res: dict[str, Any] = {}
        with torch.inference_mode():
            res["gflops_path0"] = count_flops(lambda n=net, x=images: n(x, paths=[0])) / 1e9
            res["gflops_all_paths"] = count_flops(lambda n=net, x=images: n(x, paths=None)) / 1e9
        fns: dict[str, Callable[[], Any]] = {}
        x_dev = images.to(device)
        for be in backends:
            try:
                runner = MVDust3RRunner(net, be, device, cache_dir=tmp / "mvdp", threads=args.threads)
                t0 = time.perf_counter()
                runner.backend_for(v, [0])
                res[f"{be}_prepare_s"] = time.perf_counter() - t0  # export (+ engine build)
                fns[be] = lambda r=runner, x=x_dev: r(x, [0])
            except Exception as exc:  # one backend failing must not hide the others
                res[be] = {"error": f"{type(exc).__name__}: {exc}"}
        net.to(device)
        x = images.to(device)
        new = max(1, v // 2)  # window of 2 keyframes: the newest keyframe brings half the views
        with torch.inference_mode():
            tokens = net.encode(x)
        res["torch_token_cache_new_views"] = new

        def all_paths(x=x) -> None:
            with torch.inference_mode():
                net(x, paths=None)

        def token_cache(x=x, t=tokens, k=v - new) -> None:
            with torch.inference_mode():
                net.decode(torch.cat((t[:, :k], net.encode(x[:, k:])), dim=1), x, paths=[0])

        fns["torch_all_paths"] = all_paths
        fns["torch_token_cache"] = token_cache
        for name, m in measure_interleaved(fns, args.runs, args.warmup, device).items():
            res[name] = dataclasses.asdict(m)
        if "median_s" in res.get("torch", {}):
            res["all_paths_over_path0"] = res["torch_all_paths"]["median_s"] / res["torch"]["median_s"]
            res["token_cache_over_full"] = res["torch_token_cache"]["median_s"] / res["torch"]["median_s"]
        out[f"views_{v}"] = res
    return out


# ---------------------------------------------------------------------------------------- pipeline
def _bench_pipeline(args: argparse.Namespace, device: str) -> dict:
    """Engine stages on a small synthetic rig with the planesweep depth source and TF poses."""
    from recon_ros.config import ReconConfig
    from recon_ros.io.messages import MessageKit
    from recon_ros.io.outputs import keyframe_messages, map_message
    from recon_ros.pipeline.engine import ReconstructionEngine
    from recon_ros.pipeline.frames import CameraImage, FrameSet
    from recon_ros.synthetic.sequence import SyntheticConfig, SyntheticSequence

    n_frames = 4 if args.quick else 8
    seq = SyntheticSequence(SyntheticConfig(seed=1, n_cameras=2, n_frames=n_frames, width=320, height=240))
    cfg = ReconConfig()
    cfg.cameras = list(seq.camera_names)
    cfg.runtime.device = device
    cfg.keyframes.min_translation_m = 0.0
    cfg.keyframes.max_interval_s = 1e-3
    cfg.fusion.delay_keyframes = 1
    engine = ReconstructionEngine(cfg)
    kit = MessageKit.for_rosbags()
    stages: dict[str, list[float]] = {}
    for f in seq.frames():
        images = {c: CameraImage(c, f.stamp_ns, f.images[c], seq.K.copy(), f"{c}_optical_frame") for c in f.images}
        out = engine.process(FrameSet(f.stamp_ns, images, dict(seq.T_base_cam), f.T_odom_base))
        if out is None:
            continue
        t0 = time.perf_counter()
        msgs = list(keyframe_messages(kit, cfg, out, list(engine.path)))
        pts, cols = engine.map.arrays()
        msgs.append(map_message(kit, cfg, pts, cols, out.stamp_ns))
        stages.setdefault("messages", []).append(time.perf_counter() - t0)
        for k, s in out.stage_seconds.items():
            stages.setdefault(k, []).append(s)
    return {
        "setup": "2 cameras 320x240, planesweep depth, tf poses",
        "keyframes": engine.keyframe_count,
        "median_s": {k: statistics.median(v) for k, v in stages.items()},
        "peak_rss_mb": psutil.Process().memory_info().rss / 2**20,
    }


# ---------------------------------------------------------------------------------------- driver
def _ratios(section: dict, backends: list[str]) -> None:
    """``<backend>_over_torch`` latency ratios, measured in the same run."""
    for res in section.values():
        if not isinstance(res, dict) or "median_s" not in res.get("torch", {}):
            continue
        for be in backends:
            if be != "torch" and "median_s" in res.get(be, {}):
                res[f"{be}_over_torch"] = res[be]["median_s"] / res["torch"]["median_s"]


def _table(results: dict, backends: list[str]) -> str:
    rows = [f"{'network':<28}{'backend':<13}{'median s':>10}{'peak RSS MB':>13}{'GFLOPs':>10}{'vs torch':>10}"]
    for part in ("diffmvs", "mvdust3r"):
        for key, res in results.get(part, {}).items():
            if not isinstance(res, dict):
                continue
            name = key if part == "diffmvs" else f"mvdp-{results['mvdust3r']['size']} {key}"
            flops = res.get("gflops", res.get("gflops_path0", float("nan")))
            for be in backends:
                m = res.get(be, {})
                if "median_s" in m:
                    ratio = res.get(f"{be}_over_torch", 1.0 if be == "torch" else float("nan"))
                    rows.append(f"{name:<28}{be:<13}{m['median_s']:>10.3f}{m['peak_rss_mb']:>13.0f}"
                                f"{flops:>10.1f}{ratio:>10.2f}")
                elif "error" in m:
                    rows.append(f"{name:<28}{be:<13}  {m['error'][:80]}")
            for extra in ("all_paths_over_path0", "token_cache_over_full"):
                if extra in res:
                    rows.append(f"{name:<28}{extra:<28}{res[extra]:>8.2f}")
    if "depth" in results:
        from recon_ros.bench_depth import depth_table_row

        rows.append(depth_table_row(results["depth"]))
    if "pipeline" in results:
        p = results["pipeline"]
        rows.append(f"pipeline ({p['setup']}): " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in p["median_s"].items()))
    return "\n".join(rows)


def run_bench(args: argparse.Namespace) -> dict:
    from recon_ros import __version__
    from recon_ros.pipeline.engine import resolve_device

    if args.quick:
        args.runs, args.warmup = 1, 0
        args.width, args.height, args.views = 320, 256, 3
        args.mvd_size, args.mvd_views = "small", "4"
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BENCH_BACKENDS]
    if unknown:
        raise ValueError(f"unknown backends {unknown}; choose from {BENCH_BACKENDS}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    results: dict[str, Any] = {
        "recon_ros_version": __version__, "torch": torch.__version__, "device": device,
        "cpu_threads": torch.get_num_threads(), "backends": backends, "runs": args.runs, "warmup": args.warmup,
    }
    with tempfile.TemporaryDirectory(prefix="recon_ros_bench_") as tmp:
        if "diffmvs" not in skip:
            results["diffmvs"] = _bench_diffmvs(args, backends, device, Path(tmp))
            _ratios(results["diffmvs"], backends)
        if "mvdust3r" not in skip:
            results["mvdust3r"] = _bench_mvdust3r(args, backends, device, Path(tmp))
            _ratios(results["mvdust3r"], backends)
    if "depth" not in skip:
        from recon_ros.bench_depth import bench_depth

        results["depth"] = bench_depth(args.runs, args.warmup, device, measure_interleaved)
    if "pipeline" not in skip:
        results["pipeline"] = _bench_pipeline(args, device)
    print(_table(results, backends))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2, default=lambda o: np.asarray(o).tolist()))
        print(f"wrote {args.json_path}")
    return results


def main(argv: list[str] | None = None) -> dict:  # `python -m recon_ros.bench` until the CLI wires it
    return run_bench(add_bench_arguments(argparse.ArgumentParser("recon-ros bench")).parse_args(argv))


if __name__ == "__main__":
    main()
