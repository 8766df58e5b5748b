"""`recon-ros export` and `recon-ros build-engine`: thin argument handling over runtime/."""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
from pathlib import Path

DIFFMVS_MODELS = ("diffmvs_blend", "diffmvs_dtu", "casdiffmvs_blend", "casdiffmvs_dtu")
MVD_MODELS = ("mvdust3r", "mvdust3r+")


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, choices=[*DIFFMVS_MODELS, *MVD_MODELS],
                   help="network and preset (DiffMVS presets, or MV-DUSt3R / MV-DUSt3R+)")
    p.add_argument("--checkpoint", required=True, type=Path, help="official checkpoint file")
    p.add_argument("--views", type=int, default=5, help="number of views (fixed in the graph)")
    p.add_argument("--height", type=int, default=512, help="DiffMVS input height (multiple of 32)")
    p.add_argument("--width", type=int, default=640, help="DiffMVS input width (multiple of 32)")
    p.add_argument("--paths", default="0", help="MV-DUSt3R+ head paths to export, e.g. 0 or 0,1,2,3")
    p.add_argument("--fp16", action="store_true", help="also write the FP16 graph (FP32 softmax/norms/depth)")
    p.add_argument("--out", required=True, type=Path, help="output .onnx file")


def run_export(args: argparse.Namespace) -> int:
    from recon_ros.runtime.export import export_diffmvs, export_mvdust3r

    with tempfile.TemporaryDirectory() as tmp:
        if args.model in DIFFMVS_MODELS:
            from recon_ros.models.diffmvs.checkpoint import load_diffmvs

            if args.height % 32 or args.width % 32:
                raise ValueError(f"--height/--width must be multiples of 32, got {args.height}x{args.width}")
            net = load_diffmvs(args.checkpoint, args.model)
            exported = export_diffmvs(net, tmp, args.views, args.height, args.width, fp16=args.fp16, reuse=False)
        else:
            from recon_ros.pipeline.learned_pose import load_pose_model

            net = load_pose_model(args.checkpoint, args.model)
            paths = [int(p) for p in args.paths.split(",")]
            exported = export_mvdust3r(net, tmp, args.views, paths, fp16=args.fp16, reuse=False)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        src = Path(exported.onnx_path)
        for f in src.parent.iterdir():  # the .onnx plus any external-data files beside it
            target = args.out if f == src else args.out.parent / f.name
            shutil.move(str(f), target)
    print(f"wrote {args.out} ({exported.name}; inputs {exported.input_shapes})")
    return 0


def add_build_engine_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("onnx", type=Path, help="ONNX file from `recon-ros export`")
    p.add_argument("--out", required=True, type=Path, help="engine file (written with a metadata header)")
    p.add_argument("--fp16", action="store_true", help="FP16 (TensorRT 10 builder flag; TensorRT 11: FP16 ONNX)")
    p.add_argument("--workspace-gb", type=float, default=2.0, help="builder workspace limit")
    p.add_argument("--dla-core", type=int, default=None, help="DLA core on Jetson (GPU fallback on)")
    p.add_argument("--timing-cache", type=Path, default=None, help="timing cache file (read and updated)")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint, hashed into the header")


def run_build_engine(args: argparse.Namespace) -> int:
    from recon_ros.runtime.engine_builder import build_engine

    sha = hashlib.sha256(args.checkpoint.read_bytes()).hexdigest() if args.checkpoint else ""
    meta = build_engine(args.onnx, args.out, fp16=args.fp16, workspace_gb=args.workspace_gb,
                        dla_core=args.dla_core, timing_cache=args.timing_cache, checkpoint_sha256=sha)
    print(f"wrote {args.out}: {meta}")
    return 0
