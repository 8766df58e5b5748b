"""Run the upstream-parity fixtures' inputs through our implementation.

:func:`run_fixture` reads only a fixture's inputs (``weights.pt``, ``inputs.npz``, ``preprocess.npz``'s
raw images) and the configuration part of ``manifest.json``; it never opens the expected outputs. The
returned arrays carry the names of the fixture's ``outputs.npz`` / ``poses.npz`` / ``preprocess.npz``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...geometry.pointmap_poses import DEFAULT_MIN_CONF_PERCENT, recover_poses
from .checkpoint import load_mvdust3r
from .config import from_manifest
from .network import slot_to_view
from .preprocess import crop_image

MODELS = ("mvd", "mvdp", "pose_recovery", "preprocess")
BACKENDS = ("torch", "onnxruntime")
_FIXTURE_MODEL_NAMES = {"mvd": "MVD", "mvdp": "MVDp"}
#: Gaussian outputs are stored at every 5th pixel.
_SUB = 5


def pose_arrays(pts3d: np.ndarray, conf: np.ndarray) -> dict[str, np.ndarray]:
    rec = recover_poses(pts3d, conf, K=None, min_conf_percent=DEFAULT_MIN_CONF_PERCENT, refine=False)
    assert rec.focal is not None and rec.conf_thres_focal is not None and rec.mask_focal is not None
    return {
        "c2w": rec.c2w.astype(np.float32),
        "focal": np.array(rec.focal, dtype=np.float64),
        "K": rec.K[0].astype(np.float32),
        "conf_thres_all": np.array(rec.conf_thres_all, dtype=np.float32),
        "conf_thres_focal": np.array(rec.conf_thres_focal, dtype=np.float32),
        "mask_pnp": rec.mask_pnp,
        "mask_focal": rec.mask_focal,
        "min_conf_thr_percent": np.array(DEFAULT_MIN_CONF_PERCENT, dtype=np.float32),
    }


def _intermediates(store: dict[str, list[torch.Tensor]]) -> dict[str, np.ndarray]:
    """Recorded tensors in the fixture's intermediates layout (full token/slot/pixel sets).

    Encoder arrays ``[view, token, C]``; decoder arrays ``[path, view, token, C]``; head arrays
    ``[path, slot, ...]`` (slot 0 from the reference head, the rest from the other head).
    """
    out: dict[str, np.ndarray] = {}
    for name, values in store.items():
        if name.startswith("head_"):
            # one entry per head call: [B, P, slots, ...] for slot 0, then for slots 1..V-1
            joined = torch.cat(values, dim=2)[0]
            if name == "head_pts_skip_out":
                out["head_pts_skip_out_sub5"] = joined[..., ::_SUB, ::_SUB].numpy()
            else:
                out[name] = joined.numpy()
        elif name.startswith("dec_") or name == "decoder_embed_out":  # drop the batch axis
            out[name] = values[0][0].numpy()
        else:
            out[name] = values[0].numpy()
    return out


def run_network_fixture(
    model: str, fixture_dir: Path, record: bool = False, backend: str = "torch"
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Network outputs (+ path-0 poses) for the ``"mvd"`` / ``"mvdp"`` fixture, and, with ``record``,
    the intermediate tensors named as in the fixture's ``intermediates.npz``.

    ``backend="onnxruntime"``: the network is exported to ONNX (all paths) in a temporary folder and
    run on the ONNX Runtime CPU provider; only ``pts3d``/``conf`` (+ tables and poses) are returned,
    the Gaussian heads are not part of the exported graph.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unsupported backend {backend!r} for mvdust3r fixtures; choose one of {BACKENDS}")
    manifest = json.loads((fixture_dir / "manifest.json").read_text())
    expected = _FIXTURE_MODEL_NAMES[model]
    if manifest.get("model_name") != expected:
        raise ValueError(f"{fixture_dir} holds the {manifest.get('model_name')!r} fixture, not {expected!r}")
    config = from_manifest(manifest)
    net = load_mvdust3r(fixture_dir / "weights.pt", config=config)
    images = torch.from_numpy(np.load(fixture_dir / "inputs.npz")["img"]).float()
    if backend == "onnxruntime":
        return _run_onnxruntime(net, images), {}
    store: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        if record:
            with net.recording() as store:
                out = net(images.unsqueeze(0), gaussians=True)
        else:
            out = net(images.unsqueeze(0), gaussians=True)
    v = images.shape[0]
    result: dict[str, np.ndarray] = {
        "pts3d": out["pts3d"][0].numpy(),
        "conf": out["conf"][0].numpy(),
    }
    for name in ("rgb", "opacity", "scale", "rotation"):
        result[f"gs_{name}_sub5"] = np.ascontiguousarray(out[f"gs_{name}"][0, :, :, ::_SUB, ::_SUB].numpy())
    table = slot_to_view(v, config.num_paths)
    result["slot_to_view"] = np.array(table, dtype=np.int64)
    result["ref_view_of_path"] = np.array([row[0] for row in table], dtype=np.int64)
    result.update(pose_arrays(result["pts3d"][0], result["conf"][0]))
    return result, _intermediates(store)


def _run_onnxruntime(
    net: torch.nn.Module, images: torch.Tensor, paths: list[int] | None = None
) -> dict[str, np.ndarray]:
    import tempfile

    from ...runtime.runners import MVDust3RRunner  # runtime imports the models, not the other way round

    config = net.config
    v = images.shape[0]
    paths = list(range(config.num_paths)) if paths is None else paths
    with tempfile.TemporaryDirectory(prefix="mvdust3r_fixture_") as tmp:
        out = MVDust3RRunner(net, "onnxruntime", "cpu", cache_dir=tmp, threads=1)(images.unsqueeze(0), paths)
    result: dict[str, np.ndarray] = {"pts3d": out["pts3d"][0].numpy(), "conf": out["conf"][0].numpy()}
    table = slot_to_view(v, config.num_paths)
    result["slot_to_view"] = np.array(table, dtype=np.int64)
    result["ref_view_of_path"] = np.array([row[0] for row in table], dtype=np.int64)
    result.update(pose_arrays(result["pts3d"][0], result["conf"][0]))
    return result


def _run_pose_recovery(fixture_dir: Path) -> dict[str, np.ndarray]:
    inputs = np.load(fixture_dir / "inputs.npz")
    return pose_arrays(inputs["pts3d"], inputs["conf"])


def _run_preprocess(fixture_dir: Path) -> dict[str, np.ndarray]:
    data = np.load(fixture_dir / "preprocess.npz")
    result: dict[str, np.ndarray] = {}
    raw_names = sorted((k for k in data.files if k.startswith("raw_")), key=lambda k: int(k[4:]))
    for name in raw_names:
        i = name[4:]
        crop, _ = crop_image(data[name])
        result[f"crop_uint8_{i}"] = crop
        result[f"true_shape_{i}"] = np.array([crop.shape[:2]], dtype=np.int32)
    return result


def run_fixture(model: str, fixture_dir: Path, backend: str = "torch") -> dict[str, np.ndarray]:
    """Outputs of our implementation on the fixture in ``fixture_dir``, under the fixture's names.

    ``model``: ``"mvd"``, ``"mvdp"`` (network outputs + poses of path 0), ``"pose_recovery"`` or
    ``"preprocess"``. ``backend``: ``"torch"`` or ``"onnxruntime"`` (network fixtures only; see
    :func:`run_network_fixture`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unsupported backend {backend!r} for mvdust3r fixtures; choose one of {BACKENDS}")
    if backend != "torch" and model not in _FIXTURE_MODEL_NAMES:
        raise ValueError(f"backend {backend!r} applies to the network fixtures {sorted(_FIXTURE_MODEL_NAMES)} only")
    fixture_dir = Path(fixture_dir)
    if not fixture_dir.is_dir():
        raise FileNotFoundError(f"fixture folder not found: {fixture_dir}")
    if model in _FIXTURE_MODEL_NAMES:
        return run_network_fixture(model, fixture_dir, backend=backend)[0]
    if model == "pose_recovery":
        return _run_pose_recovery(fixture_dir)
    if model == "preprocess":
        return _run_preprocess(fixture_dir)
    raise ValueError(f"unknown fixture model {model!r}; choose one of {MODELS}")
