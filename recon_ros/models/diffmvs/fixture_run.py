"""Run the port on an upstream-parity fixture and return every output and intermediate as numpy.

Only the fixture's *inputs* are read (manifest.json, weights.pt, inputs.npz, noise.npz); the expected
outputs.npz / intermediates.npz are never opened here, so comparing against them is a real check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import CheckpointError, read_checkpoint
from .checkpoint import load_state_into
from .config import DiffMVSConfig
from .model import DiffMVSNet
from .recorder import DebugRecorder

MODELS = ("diffmvs", "casdiffmvs")
BACKENDS = ("torch", "onnxruntime")


def resolve_fixture_dir(model: str, fixture_dir: str | Path) -> Path:
    """Accept either the model's own folder (holding manifest.json) or its parent."""
    root = Path(fixture_dir)
    for cand in (root / model, root):
        if (cand / "manifest.json").is_file():
            return cand
    raise FileNotFoundError(f"no manifest.json for {model!r} in {root} or {root / model}")


def load_fixture_inputs(
    fixture: Path,
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor], torch.Tensor, list[torch.Tensor]]:
    """(imgs list, proj_matrices dict, depth_values, noise list in call order) from a fixture folder."""
    with np.load(fixture / "inputs.npz") as inp:
        imgs = [torch.from_numpy(np.ascontiguousarray(v)) for v in inp["imgs"]]
        proj = {
            k[len("proj_matrices_") :]: torch.from_numpy(inp[k]) for k in inp.files if k.startswith("proj_matrices_")
        }
        depth_values = torch.from_numpy(inp["depth_values"])
    with np.load(fixture / "noise.npz") as nz:
        noise = [torch.from_numpy(nz[k]) for k in sorted(nz.files)]
    return imgs, proj, depth_values, noise


def build_fixture_model(fixture: Path) -> tuple[DiffMVSNet, dict[str, Any]]:
    """Network from the manifest's hyper-parameters with weights.pt loaded strictly (eval mode)."""
    manifest = json.loads((fixture / "manifest.json").read_text())
    cfg = DiffMVSConfig.from_manifest(manifest)
    net = DiffMVSNet(cfg)
    weights = fixture / "weights.pt"
    state = read_checkpoint(weights)
    if not isinstance(state, dict):
        raise CheckpointError(f"{weights}: expected a dict of tensors")
    load_state_into(net, state, str(weights))
    return net, manifest


def flatten_outputs(out: dict[str, list[torch.Tensor]]) -> dict[str, np.ndarray]:
    """``depth_XX`` / ``photometric_confidence_XX`` arrays, as stored in the fixtures."""
    flat: dict[str, np.ndarray] = {}
    for key in ("depth", "photometric_confidence"):
        for i, t in enumerate(out[key]):
            flat[f"{key}_{i:02d}"] = t.detach().cpu().numpy()
    return flat


def run_fixture(model: str, fixture_dir: Path, backend: str = "torch") -> dict[str, np.ndarray]:
    """Run ``model`` ("diffmvs" | "casdiffmvs") on its fixture; outputs and ``debug_*`` intermediates.

    ``fixture_dir`` may be the model folder itself or the folder holding ``diffmvs/`` and
    ``casdiffmvs/``. ``backend="onnxruntime"`` exports the network to ONNX in a temporary folder and
    runs it on the ONNX Runtime CPU provider; it returns the outputs only (no ``debug_*`` intermediates).
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not supported for DiffMVS fixtures; available: {BACKENDS}")
    fixture = resolve_fixture_dir(model, fixture_dir)
    net, manifest = build_fixture_model(fixture)
    if manifest.get("model", model) != model:
        raise ValueError(f"{fixture}/manifest.json describes {manifest.get('model')!r}, not {model!r}")
    imgs, proj, depth_values, noise = load_fixture_inputs(fixture)
    if backend == "onnxruntime":
        return _run_onnxruntime(net, imgs, proj, depth_values, noise)
    with torch.inference_mode(), DebugRecorder(net) as rec:
        out = net(imgs, proj, depth_values, noise=noise)
    result = flatten_outputs(out)
    result.update({k: v.cpu().numpy() for k, v in rec.tensors.items()})
    return result


def _run_onnxruntime(
    net: DiffMVSNet, imgs: list[torch.Tensor], proj: dict[str, torch.Tensor], depth_values: torch.Tensor,
    noise: list[torch.Tensor],
) -> dict[str, np.ndarray]:
    import tempfile

    from ...runtime.runners import DiffMVSRunner  # runtime imports the models, not the other way round

    with tempfile.TemporaryDirectory(prefix="diffmvs_fixture_") as tmp:
        runner = DiffMVSRunner(net, "onnxruntime", "cpu", cache_dir=tmp, threads=1)
        out = runner(imgs, proj, depth_values, noise)
    return flatten_outputs(out)
