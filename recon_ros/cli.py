"""`recon-ros` command line: demo | bag | fixture-run | export | build-engine | bench | render | params."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from recon_ros.config import ConfigError, ReconConfig, describe, load_yaml, set_value
from recon_ros.nodes.player import add_arguments as add_play_arguments
from recon_ros.nodes.player import play

LOG = logging.getLogger("recon_ros")


# ---- configuration flags shared by demo and bag -------------------------------------------------
def add_config_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("configuration (see `recon-ros params` for every parameter)")
    g.add_argument("--config", type=Path, help="YAML parameter file (plain or ROS 'ros__parameters' style)")
    g.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="set any parameter, e.g. --set sync.slop_s=0.03 (repeatable)")
    g.add_argument("--camera-names", help="comma-separated camera names (parameter 'cameras')")
    g.add_argument("--pose", choices=["tf", "mvdust3r", "mvdust3r+"], help="pose source (pose.source)")
    g.add_argument("--depth", choices=["planesweep", "diffmvs", "casdiffmvs"], help="depth source (depth.source)")
    g.add_argument("--checkpoint", "--depth-checkpoint", dest="depth_checkpoint",
                   help="DiffMVS/CasDiffMVS checkpoint (depth.checkpoint)")
    g.add_argument("--pose-checkpoint", help="MV-DUSt3R(+) checkpoint (pose.checkpoint)")
    g.add_argument("--backend", choices=["torch", "onnxruntime", "tensorrt"], help="runtime.backend")
    g.add_argument("--device", help="runtime.device: auto, cpu, cuda, cuda:N")
    g.add_argument("--compressed", action="store_true", default=None, help="use <image>/compressed topics")


def config_from_args(args: argparse.Namespace, base: ReconConfig | None = None) -> ReconConfig:
    cfg = load_yaml(args.config, base) if getattr(args, "config", None) else (base or ReconConfig())
    flags = {
        "cameras": args.camera_names,
        "pose.source": args.pose,
        "depth.source": args.depth,
        "depth.checkpoint": args.depth_checkpoint,
        "pose.checkpoint": args.pose_checkpoint,
        "runtime.backend": args.backend,
        "runtime.device": args.device,
        "topics.compressed": args.compressed,
    }
    for name, value in flags.items():
        if value is not None:
            set_value(cfg, name, value)
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set expects NAME=VALUE, got '{item}'")
        name, value = item.split("=", 1)
        set_value(cfg, name.strip(), value.strip())
    cfg.validate()
    return cfg


# ---- commands -----------------------------------------------------------------------------------
def cmd_bag(args: argparse.Namespace) -> int:
    from recon_ros.bag_tool import run_bag

    cfg = config_from_args(args)
    result = run_bag(args.input, args.output, cfg, summary_path=args.summary, progress=not args.quiet,
                     overwrite=args.overwrite)
    s = result.summary
    dropped = ", ".join(f"{k}: {v}" for k, v in s["images_dropped"].items()) or "none"
    print(f"{s['images_total']} images -> {s['frame_sets']} frame sets -> {s['keyframes']} keyframes; "
          f"{s['images_in_keyframes']} in keyframes, {s['images_not_keyframe']} not keyframes, dropped: {dropped}")
    print(f"map: {s['map_points']} points; output: {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from recon_ros.demo import run_demo

    base = ReconConfig()
    set_value(base, "depth.min_depth_m", 0.4)
    set_value(base, "depth.max_depth_m", 10.0)
    cfg = config_from_args(args, base)
    report = run_demo(args.out, cfg, cameras=args.cameras, frames=args.frames, width=args.width,
                      height=args.height, seed=args.seed, progress=not args.quiet)
    return 0 if report.get("keyframes", 0) > 0 else 1


def cmd_fixture_run(args: argparse.Namespace) -> int:
    if args.model in ("diffmvs", "casdiffmvs"):
        from recon_ros.models.diffmvs.fixture_run import run_fixture
    else:
        from recon_ros.models.mvdust3r.fixture_run import run_fixture
    outputs = run_fixture(args.model, Path(args.fixture), backend=args.backend)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **{k: np.asarray(v) for k, v in outputs.items()})
    print(f"wrote {len(outputs)} arrays to {args.out}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from recon_ros.io.render import render_ply

    n = render_ply(args.ply, args.png)
    print(f"rendered {n} points to {args.png}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    print(describe())
    return 0


def _delegate(module: str, add: str, run: str, help_text: str):
    """Sub-commands implemented by the runtime and bench modules."""

    def register(sub: argparse._SubParsersAction) -> None:
        import importlib

        try:
            mod = importlib.import_module(module)
        except ImportError as exc:  # optional parts keep the rest of the CLI usable
            LOG.debug("%s unavailable: %s", module, exc)
            return
        p = sub.add_parser(help_text.split(":")[0], help=help_text.split(":", 1)[1].strip())
        getattr(mod, add)(p)
        # Commands return an exit code, or a result dict (bench) meaning success.
        p.set_defaults(func=lambda a: r if isinstance(r := getattr(mod, run)(a), int) else 0)

    return register


DELEGATED = [
    _delegate("recon_ros.runtime.cli", "add_export_arguments", "run_export",
              "export: export a network to ONNX"),
    _delegate("recon_ros.runtime.cli", "add_build_engine_arguments", "run_build_engine",
              "build-engine: build a TensorRT engine (with metadata header) from an ONNX file"),
    _delegate("recon_ros.bench", "add_bench_arguments", "run_bench",
              "bench: per-stage latency, memory and FLOPs for each available backend"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recon-ros", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="render a synthetic robot run, reconstruct it and report accuracy")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="work folder (default: demo_out)")
    p.add_argument("--cameras", type=int, default=4, help="cameras on the rig (default 4: front/left/right/back)")
    p.add_argument("--frames", type=int, default=60, help="frames at 10 Hz (default 60)")
    p.add_argument("--width", type=int, default=320, help="image width (default 320)")
    p.add_argument("--height", type=int, default=240, help="image height (default 240)")
    p.add_argument("--seed", type=int, default=0, help="scene and trajectory seed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_arguments(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bag", help="run the reconstruction over a rosbag2 and write an output bag")
    p.add_argument("input", type=Path, help="input bag (folder, .mcap or .db3)")
    p.add_argument("output", type=Path, help="output bag folder (mcap, rosbag2 version 8)")
    p.add_argument("--summary", type=Path, help="write the run's accounting as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(p)
    p.set_defaults(func=cmd_bag)

    p = sub.add_parser("fixture-run", help="run an upstream-parity fixture through our implementation")
    p.add_argument("--model", required=True,
                   choices=["diffmvs", "casdiffmvs", "mvd", "mvdp", "pose_recovery", "preprocess"])
    p.add_argument("--fixture", required=True, type=Path, help="fixture folder (e.g. shared/fixtures/diffmvs)")
    p.add_argument("--out", required=True, type=Path, help="output .npz")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    p.set_defaults(func=cmd_fixture_run)

    p = sub.add_parser("render", help="render a PLY point cloud to PNG")
    p.add_argument("ply", type=Path)
    p.add_argument("png", type=Path)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("params", help="list every parameter with its default and meaning")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("play", help="publish a rosbag2 on live topics at its recorded rate (needs rclpy)")
    add_play_arguments(p)
    p.set_defaults(func=lambda a: 2 if play(a) < 0 else 0)

    for register in DELEGATED:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="[%(levelname)s] %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        LOG.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # CheckpointError, BagError ... : one line for users, trace with -v
        if args.verbose:
            raise
        LOG.error("%s: %s", type(exc).__name__, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
