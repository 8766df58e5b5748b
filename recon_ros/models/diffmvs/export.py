"""ONNX export of DiffMVS / CasDiffMVS through a tensor-only wrapper.

The exported graph has static shapes (number of views, image size, GRU iterations and DDIM steps are
baked in) and takes the diffusion noise as explicit inputs, so a runtime reproduces the PyTorch result
for the same noise. Homography inversion switches to a closed form during export because
``torch.linalg.inv`` has no ONNX opset-17 equivalent.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .model import DiffMVSNet

STAGES = ("stage1", "stage2", "stage3")


class DiffMVSExportWrapper(nn.Module):
    """``forward(images, proj_matrices, depth_values, *noise) -> (depth_00, ..., conf_00, ...)``.

    Args (of forward):
        images: ``[V,3,H,W]`` RGB in [0,1], view 0 = reference (batch size 1).
        proj_matrices: ``[3,V,2,4,4]`` cameras for stage1..stage3 (K scaled to 1/8, 1/4, 1/2).
        depth_values: ``[1,N]`` = linspace(1/dmax, 1/dmin, N).
        noise: ``cfg.noise_shapes(1, H, W)`` raw N(0,1) maps in call order.

    Returns every depth map of the network (the last is the full-resolution result) followed by the
    per-stage photometric confidences, all with a leading batch dimension of 1.
    """

    def __init__(self, net: DiffMVSNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor, proj_matrices: Tensor, depth_values: Tensor, *noise: Tensor) -> tuple:
        num_views = images.shape[0]
        imgs = [images[v : v + 1] for v in range(num_views)]
        proj = {name: proj_matrices[i : i + 1] for i, name in enumerate(STAGES)}
        out = self.net(imgs, proj, depth_values, noise=list(noise))
        return (*out["depth"], *out["photometric_confidence"])


def output_names(net: DiffMVSNet) -> list[str]:
    """Names of the wrapper outputs, matching the fixtures' ``outputs.npz`` keys."""
    n_depth = 2 + 2 * len(net.cfg.refine_stages)
    n_conf = 1 + len(net.cfg.refine_stages)
    return [f"depth_{i:02d}" for i in range(n_depth)] + [f"photometric_confidence_{i:02d}" for i in range(n_conf)]


def input_names(net: DiffMVSNet, height: int, width: int) -> list[str]:
    noise = [f"noise_{i:03d}" for i in range(len(net.cfg.noise_shapes(1, height, width)))]
    return ["images", "proj_matrices", "depth_values", *noise]


def example_inputs(net: DiffMVSNet, num_views: int, height: int, width: int) -> tuple[Tensor, ...]:
    """Shape-correct dummy inputs (a plausible camera rig so tracing sees finite values)."""
    images = torch.rand(num_views, 3, height, width)
    proj = torch.zeros(3, num_views, 2, 4, 4)
    for i, scale in enumerate((0.125, 0.25, 0.5)):
        for v in range(num_views):
            proj[i, v, 0] = torch.eye(4)
            proj[i, v, 0, 0, 3] = 0.1 * v
            proj[i, v, 1, :3, :3] = torch.tensor(
                [[width * scale, 0, (width - 1) / 2 * scale], [0, width * scale, (height - 1) / 2 * scale], [0, 0, 1]]
            )
    depth_values = torch.linspace(1 / 10.0, 1 / 1.0, net.cfg.numdepth)[None]
    noise = tuple(torch.randn(s) for s in net.cfg.noise_shapes(1, height, width))
    return (images, proj, depth_values, *noise)


def export_onnx(
    net: DiffMVSNet, path: str | Path, num_views: int, height: int, width: int, opset_version: int = 17
) -> Path:
    """Export ``net`` (eval mode) for a fixed number of views and image size; returns the file path."""
    if height % 32 or width % 32:
        raise ValueError(f"height and width must be multiples of 32, got {height}x{width}")
    path = Path(path)
    wrapper = DiffMVSExportWrapper(net.eval()).eval()
    args = example_inputs(net, num_views, height, width)
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=input_names(net, height, width),
            output_names=output_names(net),
            opset_version=opset_version,
            dynamo=False,
        )
    return path
