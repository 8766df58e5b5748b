"""ONNX export recipes for every network recon_ros runs, in one place.

Each recipe writes ``<name>.onnx`` (FP32) and, on request, ``<name>_fp16.onnx`` (mixed precision, see
:mod:`recon_ros.runtime.fp16`) and returns an :class:`ExportedModel` describing the files. Graphs have
static shapes: DiffMVS bakes the view count, image size, GRU iterations and DDIM steps in (noise is a
graph input); MV-DUSt3R bakes the view count and head paths in (image size is fixed at 224 anyway),
either as one graph or split into encoder and decoder + heads (for the encoder-token cache).
File names carry the shapes, so a cache directory can hold one export per configuration.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from recon_ros.models.diffmvs import export as diffmvs_export
from recon_ros.models.diffmvs.model import DiffMVSNet
from recon_ros.models.mvdust3r import export as mvdust3r_export
from recon_ros.models.mvdust3r.network import MVDust3R

from . import fp16 as fp16_module
from .fp16 import convert_fp16


@dataclass
class ExportedModel:
    name: str  # model tag with shapes, e.g. "casdiffmvs_blend_v5_512x640"
    onnx_path: Path
    input_names: list[str]
    output_names: list[str]
    input_shapes: dict[str, list[int]]
    weights_sha256: str  # weights + baked-in settings (config_weights_key); FP16: + its recipe (export_key)
    fp16: bool = False

    def to_json(self) -> str:
        d = asdict(self)
        d["onnx_path"] = str(self.onnx_path)
        return json.dumps(d, sort_keys=True)


def weights_sha256(module: nn.Module) -> str:
    """Hash of the state_dict (names, shapes, dtypes, values): keys caches by the weights actually loaded."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def config_weights_key(net: nn.Module, config: object) -> str:
    """Weights hash combined with the run-time settings baked into the graph (noise scale, steps...)."""
    return hashlib.sha256(f"{weights_sha256(net)}|{config!r}".encode()).hexdigest()


def export_key(sha: str, fp16: bool, keep_fp32: Sequence[str] = ()) -> str:
    """What a cached export must match: the weights and baked-in settings, and for FP16 also the layers
    kept in FP32 and the conversion code (a change to either makes an older FP16 file stale)."""
    if not fp16:
        return sha
    recipe = hashlib.sha256(Path(fp16_module.__file__).read_bytes()).hexdigest()
    return hashlib.sha256(f"{sha}|fp16|{sorted(keep_fp32)!r}|{recipe}".encode()).hexdigest()


def _finish(
    fp32_path: Path, name: str, inputs: list[str], outputs: list[str], shapes: dict[str, list[int]],
    sha: str, fp16: bool, keep_fp32: Sequence[str] = (),
) -> ExportedModel:
    path = fp32_path
    if fp16:
        path = fp32_path.with_name(fp32_path.stem + "_fp16.onnx")
        convert_fp16(fp32_path, path, keep_fp32=keep_fp32)
    exported = ExportedModel(name, path, inputs, outputs, shapes, export_key(sha, fp16, keep_fp32), fp16)
    path.with_suffix(".json").write_text(exported.to_json())
    return exported


def _cached(out_dir: Path, name: str, fp16: bool, sha: str, keep_fp32: Sequence[str] = ()) -> ExportedModel | None:
    """A previous export of the same network, shapes and weights (for FP16: and FP32 layers) in ``out_dir``."""
    meta = out_dir / f"{name}{'_fp16' if fp16 else ''}.json"
    if not meta.is_file():
        return None
    d = json.loads(meta.read_text())
    if d.get("weights_sha256") != export_key(sha, fp16, keep_fp32) or not Path(d["onnx_path"]).is_file():
        return None
    d["onnx_path"] = Path(d["onnx_path"])
    return ExportedModel(**d)


def diffmvs_name(net: DiffMVSNet, num_views: int, height: int, width: int) -> str:
    return f"{net.cfg.name or net.cfg.variant}_v{num_views}_{height}x{width}"


def export_diffmvs(
    net: DiffMVSNet, out_dir: str | Path, num_views: int, height: int, width: int, fp16: bool = False,
    reuse: bool = True,
) -> ExportedModel:
    """DiffMVS / CasDiffMVS for ``num_views`` views (reference first) at ``height x width`` (multiples of 32).

    Inputs: ``images [V,3,H,W]``, ``proj_matrices [3,V,2,4,4]``, ``depth_values [1,N]``, ``noise_XXX``;
    outputs: ``depth_XX`` (last = full resolution) and ``photometric_confidence_XX``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = diffmvs_name(net, num_views, height, width)
    sha = config_weights_key(net, net.cfg)
    if reuse and (hit := _cached(out_dir, name, fp16, sha)) is not None:
        return hit
    path = diffmvs_export.export_onnx(net, out_dir / f"{name}.onnx", num_views, height, width)
    inputs = diffmvs_export.input_names(net, height, width)
    example = diffmvs_export.example_inputs(net, num_views, height, width)
    shapes = {n: list(t.shape) for n, t in zip(inputs, example)}
    return _finish(path, name, inputs, diffmvs_export.output_names(net), shapes, sha, fp16)


def _export_mvdust3r_graph(
    net: MVDust3R, out_dir: str | Path, name: str, export: Callable[[Path], Path], inputs: list[str],
    outputs: list[str], shapes: dict[str, list[int]], fp16: bool, reuse: bool,
) -> ExportedModel:
    """One MV-DUSt3R graph, reusing a previous export of the same weights. For FP16 a cached FP32
    export is converted instead of traced again (tracing runs the full-resolution skip branch once:
    seconds to minutes)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sha = config_weights_key(net, net.config)
    if reuse and (hit := _cached(out_dir, name, fp16, sha, mvdust3r_export.FP32_NODE_SCOPES)) is not None:
        return hit
    if reuse and fp16 and (base := _cached(out_dir, name, False, sha)) is not None:
        return _finish(
            base.onnx_path, name, base.input_names, base.output_names, base.input_shapes, sha, True,
            mvdust3r_export.FP32_NODE_SCOPES,
        )
    path = export(out_dir / f"{name}.onnx")
    return _finish(path, name, inputs, outputs, shapes, sha, fp16, mvdust3r_export.FP32_NODE_SCOPES)


def _images_shape(net: MVDust3R, num_views: int, hw: Sequence[int] | None = None) -> list[int]:
    h, w = mvdust3r_export.image_hw(net, hw)
    return [1, num_views, 3, h, w]


def mvdust3r_name(net: MVDust3R, num_views: int, paths: Sequence[int], hw: Sequence[int] | None = None) -> str:
    return mvdust3r_export.export_name(net, num_views, paths, hw)


def export_mvdust3r(
    net: MVDust3R, out_dir: str | Path, num_views: int, paths: Sequence[int] = (0,), fp16: bool = False,
    reuse: bool = True, hw: Sequence[int] | None = None,
) -> ExportedModel:
    """MV-DUSt3R(+) for ``num_views`` views of size ``hw`` = (H, W) (default ``img_size``, 224x224):
    ``images [1,V,3,H,W]`` in [-1,1] -> ``pts3d [1,P,V,H,W,3]``, ``conf [1,P,V,H,W]`` for the head ``paths``."""
    return _export_mvdust3r_graph(
        net, out_dir, mvdust3r_name(net, num_views, paths, hw),
        lambda path: mvdust3r_export.export_onnx(net, path, num_views, paths, hw=hw),
        list(mvdust3r_export.INPUT_NAMES), list(mvdust3r_export.OUTPUT_NAMES),
        {"images": _images_shape(net, num_views, hw)}, fp16, reuse,
    )


def export_mvdust3r_encoder(
    net: MVDust3R, out_dir: str | Path, num_views: int, fp16: bool = False, reuse: bool = True,
    hw: Sequence[int] | None = None,
) -> ExportedModel:
    """MV-DUSt3R(+) encoder for ``num_views`` views: ``images [1,M,3,H,W]`` ->
    ``tokens [1,M,N,C_enc]`` (FP32 output also in the FP16 variant, so cached tokens are FP32)."""
    return _export_mvdust3r_graph(
        net, out_dir, mvdust3r_export.encoder_export_name(net, num_views, hw),
        lambda path: mvdust3r_export.export_encoder_onnx(net, path, num_views, hw=hw),
        list(mvdust3r_export.ENCODER_INPUT_NAMES), list(mvdust3r_export.ENCODER_OUTPUT_NAMES),
        {"images": _images_shape(net, num_views, hw)}, fp16, reuse,
    )


def export_mvdust3r_decoder(
    net: MVDust3R, out_dir: str | Path, num_views: int, paths: Sequence[int] = (0,), fp16: bool = False,
    reuse: bool = True, hw: Sequence[int] | None = None,
) -> ExportedModel:
    """MV-DUSt3R(+) decoder + heads for ``num_views`` views of size ``hw``: ``tokens [1,V,N,C_enc]``,
    ``images [1,V,3,H,W]`` -> ``pts3d [1,P,V,H,W,3]``, ``conf [1,P,V,H,W]``."""
    cfg = net.config
    gh, gw = cfg.grid_for(*mvdust3r_export.image_hw(net, hw))
    tokens = [1, num_views, gh * gw, cfg.enc_embed_dim]
    return _export_mvdust3r_graph(
        net, out_dir, mvdust3r_export.decoder_export_name(net, num_views, paths, hw),
        lambda path: mvdust3r_export.export_decoder_onnx(net, path, num_views, paths, hw=hw),
        list(mvdust3r_export.DECODER_INPUT_NAMES), list(mvdust3r_export.DECODER_OUTPUT_NAMES),
        {"tokens": tokens, "images": _images_shape(net, num_views, hw)}, fp16, reuse,
    )
