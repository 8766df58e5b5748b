"""ONNX export of MV-DUSt3R / MV-DUSt3R+ through a tensor-only wrapper.

The decoder indexes views and paths with tables built from Python integers, so the number of views
and the selected head paths are baked into the graph: one export per (views, paths, image size); the
image size (any multiple of 16 up to ``img_size``, e.g. 224x160 for a full-FOV 4:3 camera) is baked in
as well, so engines see only static shapes. RoPE cos/sin tables are per-grid constants (see
``rope.py``), so the graph has no data-dependent shapes (TensorRT rejects those).

Besides the whole network there are two split graphs, so the encoder-token cache also works with
ONNX Runtime / TensorRT: the encoder (``images [1,M,3,224,224] -> tokens [1,M,N,C_enc]``, one export
per number of views M; views never interact in the encoder) and decoder + heads
(``tokens [1,V,N,C_enc], images [1,V,3,224,224] -> pts3d, conf``, one export per (views, paths)).
A keyframe's tokens are then computed once by the encoder graph and the decoder graph reruns per window.

The legacy exporter (opset 17) has no symbolic for ``aten::expm1`` (used by the 'exp' depth mode);
we register one that emits ``2 * exp(x/2) * sinh(x/2)``. That identity is exact, and unlike
``exp(x) - 1`` it keeps full relative precision for small ``x`` (ONNX ``Sinh`` is evaluated directly).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .network import MVDust3R

INPUT_NAMES = ["images"]
OUTPUT_NAMES = ["pts3d", "conf"]
ENCODER_INPUT_NAMES = ["images"]
ENCODER_OUTPUT_NAMES = ["tokens"]
DECODER_INPUT_NAMES = ["tokens", "images"]
DECODER_OUTPUT_NAMES = ["pts3d", "conf"]
_OPSET = 17
#: Scopes kept in FP32 in the FP16 variant: the pts3d heads' token projection. Its output goes
#: through the 'exp' depth mode (``expm1(|xyz|)``), which turns FP16's absolute rounding of ``|xyz|``
#: into relative point error. Measured on the MVD fixture (2 views, ONNX Runtime CPU): worst per-point
#: error 6.2e-3 -> 3.3e-3 (median 9.4e-4 -> 5.3e-4); also keeping the skip branch's last convolution
#: or the whole heads changed nothing, the last decoder blocks only to 2.9e-3 at many more FP32 weights.
FP32_NODE_SCOPES = ("/downstream_head1/proj/", "/downstream_head2/proj/")


def _expm1_symbolic(g, x):  # noqa: ANN001 - torch.onnx graph-context API
    half = g.op("Div", x, g.op("Constant", value_t=torch.tensor(2.0)))
    two = g.op("Constant", value_t=torch.tensor(2.0))
    return g.op("Mul", g.op("Mul", two, g.op("Exp", half)), g.op("Sinh", half))


_registered = False


def register_expm1(opset: int = _OPSET) -> None:
    global _registered
    if not _registered:
        torch.onnx.register_custom_op_symbolic("aten::expm1", _expm1_symbolic, opset)
        _registered = True


class MVDust3RExportWrapper(nn.Module):
    """``forward(images [1,V,3,224,224] in [-1,1]) -> (pts3d [1,P,V,224,224,3], conf [1,P,V,224,224])``."""

    def __init__(self, net: MVDust3R, paths: Sequence[int] = (0,)) -> None:
        super().__init__()
        self.net = net
        self.paths = [int(p) for p in paths]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(images, paths=self.paths)
        return out["pts3d"], out["conf"]


class MVDust3REncoderWrapper(nn.Module):
    """``forward(images [1,M,3,224,224]) -> tokens [1,M,N,C_enc]`` (what :meth:`MVDust3R.encode` returns)."""

    def __init__(self, net: MVDust3R) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        return self.net.encode(images)


class MVDust3RDecoderWrapper(nn.Module):
    """``forward(tokens [1,V,N,C_enc], images [1,V,3,224,224]) -> (pts3d, conf)`` like
    :class:`MVDust3RExportWrapper`; the images only feed the heads' skip branch."""

    def __init__(self, net: MVDust3R, paths: Sequence[int] = (0,)) -> None:
        super().__init__()
        self.net = net
        self.paths = [int(p) for p in paths]

    def forward(self, tokens: Tensor, images: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net.decode(tokens, images, paths=self.paths)
        return out["pts3d"], out["conf"]


def image_hw(net: MVDust3R, hw: Sequence[int] | None) -> tuple[int, int]:
    """The export's input size: ``hw`` (checked against the network) or the configured ``img_size``."""
    h, w = (int(x) for x in (net.config.img_size if hw is None else hw))
    net.config.grid_for(h, w)  # raises for sizes the network cannot run
    return h, w


def _size_suffix(net: MVDust3R, hw: Sequence[int] | None) -> str:
    h, w = image_hw(net, hw)
    return "" if (h, w) == tuple(net.config.img_size) else f"_{h}x{w}"


def export_name(net: MVDust3R, num_views: int, paths: Sequence[int], hw: Sequence[int] | None = None) -> str:
    return f"{net.config.name}_v{num_views}_p{''.join(map(str, paths))}{_size_suffix(net, hw)}"


def encoder_export_name(net: MVDust3R, num_views: int, hw: Sequence[int] | None = None) -> str:
    return f"{net.config.name}_enc_v{num_views}{_size_suffix(net, hw)}"


def decoder_export_name(net: MVDust3R, num_views: int, paths: Sequence[int], hw: Sequence[int] | None = None) -> str:
    return f"{net.config.name}_dec_v{num_views}_p{''.join(map(str, paths))}{_size_suffix(net, hw)}"


def _example_images(net: MVDust3R, num_views: int, hw: Sequence[int] | None = None) -> Tensor:
    h, w = image_hw(net, hw)
    return torch.rand(1, num_views, 3, h, w) * 2 - 1


def _export(
    module: nn.Module, example: tuple[Tensor, ...], path: str | Path, inputs: list[str], outputs: list[str],
    opset_version: int,
) -> Path:
    path = Path(path)
    register_expm1(opset_version)
    with torch.no_grad():
        torch.onnx.export(
            module.eval(),
            example,
            str(path),
            input_names=inputs,
            output_names=outputs,
            opset_version=opset_version,
            dynamo=False,
        )
    return path


def _check_views(net: MVDust3R, num_views: int) -> None:
    cfg = net.config
    if num_views < cfg.min_views:
        raise ValueError(f"{cfg.name} needs at least {cfg.min_views} views, got {num_views}")


def export_onnx(
    net: MVDust3R, path: str | Path, num_views: int, paths: Sequence[int] = (0,), opset_version: int = _OPSET,
    hw: Sequence[int] | None = None,
) -> Path:
    """Export ``net`` for ``num_views`` views of size ``hw`` (default ``img_size``) and the given head
    ``paths``; returns the file path."""
    _check_views(net, num_views)
    wrapper = MVDust3RExportWrapper(net.eval(), paths)
    return _export(wrapper, (_example_images(net, num_views, hw),), path, INPUT_NAMES, OUTPUT_NAMES, opset_version)


def export_encoder_onnx(
    net: MVDust3R, path: str | Path, num_views: int, opset_version: int = _OPSET, hw: Sequence[int] | None = None
) -> Path:
    """Export the encoder for ``num_views`` views (any count >= 1: the cache encodes only new views)."""
    if num_views < 1:
        raise ValueError(f"the encoder needs at least one view, got {num_views}")
    wrapper = MVDust3REncoderWrapper(net.eval())
    example = (_example_images(net, num_views, hw),)
    return _export(wrapper, example, path, ENCODER_INPUT_NAMES, ENCODER_OUTPUT_NAMES, opset_version)


def export_decoder_onnx(
    net: MVDust3R, path: str | Path, num_views: int, paths: Sequence[int] = (0,), opset_version: int = _OPSET,
    hw: Sequence[int] | None = None,
) -> Path:
    """Export decoder + heads for ``num_views`` views of size ``hw`` and the given head ``paths``."""
    _check_views(net, num_views)
    images = _example_images(net, num_views, hw)
    with torch.no_grad():
        tokens = net.eval().encode(images)  # real token statistics: the trace only needs the shape
    wrapper = MVDust3RDecoderWrapper(net, paths)
    return _export(wrapper, (tokens, images), path, DECODER_INPUT_NAMES, DECODER_OUTPUT_NAMES, opset_version)
