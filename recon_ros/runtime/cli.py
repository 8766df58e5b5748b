"""`recon-ros export` and `recon-ros build-engine`: thin argument handling over runtime/."""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recon_ros.runtime.export import ExportedModel

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
    p.add_argument("--graph", choices=("whole", "split"), default="whole",
                   help="MV-DUSt3R: one graph, or encoder + decoder graphs (<out>_encoder.onnx, "
                        "<out>_decoder.onnx) as the node runs them so keyframe tokens are cached")
    p.add_argument("--fp16", action="store_true", help="write the FP16 graph (FP32 softmax/norms/depth)")
    p.add_argument("--out", required=True, type=Path, help="output .onnx file")


def _move_export(exported: ExportedModel, out: Path) -> None:
    """Move an export (the .onnx plus any external-data files beside it) to ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    src = Path(exported.onnx_path)
    for f in src.parent.iterdir():
        if f == src:
            shutil.move(str(f), out)
        elif f.suffix not in (".onnx", ".json"):  # external weights, referenced by file name
            shutil.move(str(f), out.parent / f.name)
    print(f"wrote {out} ({exported.name}; inputs {exported.input_shapes})")


def run_export(args: argparse.Namespace) -> int:
    from recon_ros.runtime import export as ex

    if args.model in DIFFMVS_MODELS:
        from recon_ros.models.diffmvs.checkpoint import load_diffmvs

        if args.height % 32 or args.width % 32:
            raise ValueError(f"--height/--width must be multiples of 32, got {args.height}x{args.width}")
        net = load_diffmvs(args.checkpoint, args.model)
        with tempfile.TemporaryDirectory() as tmp:
            _move_export(ex.export_diffmvs(net, tmp, args.views, args.height, args.width, fp16=args.fp16,
                                           reuse=False), args.out)
        return 0
    from recon_ros.pipeline.learned_pose import load_pose_model

    net = load_pose_model(args.checkpoint, args.model)
    paths = [int(p) for p in args.paths.split(",")]
    if args.graph == "whole":
        with tempfile.TemporaryDirectory() as tmp:
            _move_export(ex.export_mvdust3r(net, tmp, args.views, paths, fp16=args.fp16, reuse=False), args.out)
        return 0
    stem = args.out.with_suffix("")
    with tempfile.TemporaryDirectory() as tmp:  # one folder each: external-data names must not collide
        _move_export(ex.export_mvdust3r_encoder(net, Path(tmp) / "enc", args.views, fp16=args.fp16, reuse=False),
                     stem.with_name(stem.name + "_encoder.onnx"))
        _move_export(ex.export_mvdust3r_decoder(net, Path(tmp) / "dec", args.views, paths, fp16=args.fp16,
                                                reuse=False), stem.with_name(stem.name + "_decoder.onnx"))
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
