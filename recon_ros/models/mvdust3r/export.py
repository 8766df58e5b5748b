"""ONNX export of MV-DUSt3R / MV-DUSt3R+ through a tensor-only wrapper.

The decoder indexes views and paths with tables built from Python integers, so the number of views
and the selected head paths are baked into the graph: one export per (views, paths). The image size
is fixed to the network's 224x224 anyway. RoPE cos/sin tables are per-grid constants (see
``rope.py``), so the graph has no data-dependent shapes (TensorRT rejects those).

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
_OPSET = 17


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


def export_name(net: MVDust3R, num_views: int, paths: Sequence[int]) -> str:
    return f"{net.config.name}_v{num_views}_p{''.join(map(str, paths))}"


def export_onnx(
    net: MVDust3R, path: str | Path, num_views: int, paths: Sequence[int] = (0,), opset_version: int = _OPSET
) -> Path:
    """Export ``net`` for ``num_views`` views and the given head ``paths``; returns the file path."""
    cfg = net.config
    if num_views < cfg.min_views:
        raise ValueError(f"{cfg.name} needs at least {cfg.min_views} views, got {num_views}")
    path = Path(path)
    register_expm1(opset_version)
    wrapper = MVDust3RExportWrapper(net.eval(), paths).eval()
    h, w = cfg.img_size
    example = torch.rand(1, num_views, 3, h, w) * 2 - 1
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            opset_version=opset_version,
            dynamo=False,
        )
    return path
