"""A TensorRT engine proves itself before it is used.

Engines can build, load and run and still compute something else: users of other TensorRT depth
nodes report point-cloud scale jumping between frames on one JetPack / TensorRT release, right on a
desktop GPU and wrong on Orin. So after an engine is built or loaded from the cache, it runs once on a
stored sample input and its outputs are compared with ONNX Runtime's on the same ONNX graph; beyond
the tolerance of its precision the engine is refused with an error naming the TensorRT version, the
GPU and the deviation.

The sample input and ONNX Runtime's outputs are stored next to the ONNX file (``<onnx>.verify.npz``,
keyed by the graph's hash), so the reference is computed once per graph and every later start only
runs the engine.

TensorRT versions known to compute wrong results are listed in :data:`KNOWN_BAD_TENSORRT`, the one
place to add a version to. Engines under a listed version log a warning and must pass the sample
:data:`KNOWN_BAD_RUNS` times in a row (the reported fault is drift between frames, which one agreeing
run cannot rule out); with ``runtime.known_bad_tensorrt: refuse`` they are refused before they are built.
Listed versions are not refused by default because TensorRT 10.3 is what JetPack 6 ships.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .backends import Backend

LOG = logging.getLogger("recon_ros")

#: TensorRT version prefix -> why engines built with it are refused. A prefix matches whole version
#: components ("10.3" matches 10.3.0.30, not 10.30).
KNOWN_BAD_TENSORRT: dict[str, str] = {
    "10.3": (
        "engines run but drift on this release (reports from other TensorRT depth nodes: point-cloud "
        "scale jumping between frames on JetPack 6.1/6.2, correct on desktop GPUs)"
    ),
}

#: Largest accepted deviation (see :func:`deviation`) of an engine from ONNX Runtime, per precision.
#: fp16, measured on the stored sample (parity-fixture weights, 2 views 64x96): ONNX Runtime on our FP16
#: graph vs the FP32 graph, worst output 2.4e-3 (DiffMVS) and 9.8e-3 (CasDiffMVS, conf2); MV-DUSt3R+
#: FP16 pointmaps stay within 1.15 % per point, which bounds this metric. 2e-2 is 2x the worst and
#: still refuses a 3 % scale jump. fp32: torch vs ONNX Runtime measured 7.8e-6; TensorRT runs FP32
#: convolutions and matmuls as TF32 on Ampere and newer (10-bit mantissa, unit roundoff 4.9e-4),
#: hence 2e-3.
TOLERANCE: dict[str, float] = {"fp32": 2e-3, "fp16": 2e-2}

#: Share of elements whose error the deviation may ignore: the upsampled depth of DiffMVS can flip a
#: few pixels on discrete decisions (argmax of a cost volume) without anything being wrong.
IGNORED_FRACTION = 0.01

SAMPLE_SUFFIX = ".verify.npz"

#: Sample runs an engine under a listed TensorRT version must pass, each within the tolerance.
KNOWN_BAD_RUNS = 3

#: What to do with an engine under a listed TensorRT version (``runtime.known_bad_tensorrt``).
KNOWN_BAD_POLICIES = ("verify", "refuse")


class EngineVerificationError(RuntimeError):
    """An engine's outputs differ from ONNX Runtime's beyond the tolerance, or its TensorRT is known bad."""


def _version_tuple(version: str) -> tuple[str, ...]:
    return tuple(version.strip().split("."))


def known_bad_reason(version: str) -> str | None:
    """Why TensorRT ``version`` is listed in :data:`KNOWN_BAD_TENSORRT`, or None when it is not."""
    have = _version_tuple(version)
    for prefix, reason in KNOWN_BAD_TENSORRT.items():
        want = _version_tuple(prefix)
        if have[: len(want)] == want:
            return reason
    return None


def check_tensorrt_version(version: str, gpu: str = "", policy: str = "verify") -> int:
    """How many sample runs an engine under TensorRT ``version`` must pass: 1, or
    :data:`KNOWN_BAD_RUNS` (with a warning) for a listed version; under ``policy`` ``"refuse"`` a
    listed version raises :class:`EngineVerificationError` instead."""
    if policy not in KNOWN_BAD_POLICIES:
        raise ValueError(f"policy must be one of {KNOWN_BAD_POLICIES}, got {policy!r}")
    reason = known_bad_reason(version)
    if reason is None:
        return 1
    where = f" on {gpu}" if gpu else ""
    if policy == "verify":
        LOG.warning(
            "TensorRT %s%s is listed as bad: %s; its engines must pass the verification sample %d times",
            version, where, reason, KNOWN_BAD_RUNS,
        )
        return KNOWN_BAD_RUNS
    raise EngineVerificationError(
        f"TensorRT {version}{where} is listed as bad in recon_ros.runtime.verify.KNOWN_BAD_TENSORRT: {reason}. "
        "Use another TensorRT version, runtime.backend 'onnxruntime', or runtime.known_bad_tensorrt 'verify'"
    )


def deviation(candidate: Mapping[str, Tensor], reference: Mapping[str, Tensor]) -> dict[str, float]:
    """Per output: the (1 - IGNORED_FRACTION) quantile of ``|candidate - reference|`` divided by the
    largest ``|reference|`` (the error relative to the output's range). A missing output, a shape
    mismatch or a non-finite value where the reference is finite counts as ``inf``."""
    out = {}
    for name, ref in reference.items():
        got = candidate.get(name)
        if got is None or tuple(got.shape) != tuple(ref.shape):
            out[name] = float("inf")
            continue
        r = ref.detach().double().cpu().reshape(-1)
        g = got.detach().double().cpu().reshape(-1)
        if bool((torch.isfinite(r) & ~torch.isfinite(g)).any()):
            out[name] = float("inf")
            continue
        both = torch.isfinite(r)
        err = (g[both] - r[both]).abs()
        scale = float(r[both].abs().max()) if err.numel() else 0.0
        if err.numel() == 0:
            out[name] = 0.0
            continue
        q = float(torch.quantile(err, 1.0 - IGNORED_FRACTION)) if err.numel() < 16_000_000 else float(err.max())
        out[name] = q / max(scale, 1e-12)
    return out


def _smooth_texture(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Values in [0, 1] varying over ~8 pixels (textured enough for matching, not white noise)."""
    *lead, h, w = shape
    coarse = rng.random((int(np.prod(lead)) if lead else 1, 1, max(h // 8, 1) + 1, max(w // 8, 1) + 1))
    t = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(h, w), mode="bicubic", align_corners=False)
    return t.clamp(0, 1).reshape(*lead, h, w).numpy()


def _diffmvs_proj(shape: Sequence[int]) -> np.ndarray:
    """``[stages, V, 2, 4, 4]`` projections of a small rig: stage s has intrinsics scaled by 2^s / 8 of a
    640x512 camera (focal 560 px), sources 10 cm apart to the right of the reference."""
    stages, views = int(shape[0]), int(shape[1])
    out = np.zeros(tuple(int(s) for s in shape), np.float32)
    for s in range(stages):
        scale = 0.125 * 2**s
        for v in range(views):
            out[s, v, 0] = np.eye(4, dtype=np.float32)
            out[s, v, 0, :3, 3] = (-0.1 * v, 0.02 * v, 0.0)
            out[s, v, 1, :3, :3] = [[560 * scale, 0, 320 * scale], [0, 560 * scale, 256 * scale], [0, 0, 1]]
    return out


def sample_feeds(input_shapes: Mapping[str, Sequence[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """A deterministic, valid sample input for the graphs recon_ros exports (DiffMVS: images in [0, 1],
    a rig of projection matrices, inverse depths 1/10..1/0.5 m, N(0,1) noise; MV-DUSt3R: images in
    [-1, 1], tokens N(0,1)). Unknown names get N(0,1)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    has_depth = "depth_values" in input_shapes
    for name, shape in input_shapes.items():
        shape = [int(s) for s in shape]
        if name == "images":
            tex = _smooth_texture(rng, shape)
            feeds[name] = (tex if has_depth else tex * 2 - 1).astype(np.float32)
        elif name == "proj_matrices":
            feeds[name] = _diffmvs_proj(shape)
        elif name == "depth_values":
            n = shape[-1]
            feeds[name] = np.broadcast_to(np.linspace(1 / 10, 1 / 0.5, n, dtype=np.float32), shape).copy()
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def sample_path_for(onnx_path: str | Path) -> Path:
    return Path(str(onnx_path) + SAMPLE_SUFFIX)


def stored_sample(
    onnx_path: str | Path, input_shapes: Mapping[str, Sequence[int]], onnx_sha256: str
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(inputs, ONNX Runtime outputs) of the sample stored next to ``onnx_path``; computed with ONNX
    Runtime on the CPU and stored when missing or made for another graph."""
    path = sample_path_for(onnx_path)
    if path.is_file():
        try:
            with np.load(path) as z:
                if str(z["onnx_sha256"]) == onnx_sha256:
                    ins = {k[3:]: torch.from_numpy(z[k]) for k in z.files if k.startswith("in/")}
                    outs = {k[4:]: torch.from_numpy(z[k]) for k in z.files if k.startswith("out/")}
                    return ins, outs
        except (OSError, ValueError, KeyError) as exc:
            LOG.warning("%s unreadable (%s); recomputing the verification sample", path, exc)
    from .backends import OnnxRuntimeBackend

    feeds = sample_feeds(input_shapes)
    ort = OnnxRuntimeBackend(onnx_path, "cpu")
    ins = {k: torch.from_numpy(v) for k, v in feeds.items() if k in ort.input_names}
    outs = {k: v.float() for k, v in ort(ins).items()}
    arrays = {f"in/{k}": v.numpy() for k, v in ins.items()}
    arrays.update({f"out/{k}": v.numpy() for k, v in outs.items()})
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, onnx_sha256=np.array(onnx_sha256), **arrays)
    tmp.replace(path)
    return ins, outs


def verify_engine(
    engine: Backend,
    onnx_path: str | Path,
    input_shapes: Mapping[str, Sequence[int]],
    precision: str,
    *,
    tensorrt_version: str,
    gpu_name: str,
    onnx_sha256: str | None = None,
    engine_path: str | Path | None = None,
    tolerance: float | None = None,
    runs: int = 1,
) -> dict[str, float]:
    """Run ``engine`` on the stored sample of ``onnx_path`` and compare with ONNX Runtime.

    ``runs`` > 1 runs the sample that many times, each within the tolerance (drift between runs).
    Returns the worst per-output deviations over the runs; raises :class:`EngineVerificationError` naming the TensorRT
    version, the GPU and the deviation when the worst exceeds ``tolerance`` (default
    ``TOLERANCE[precision]``).
    """
    if precision not in TOLERANCE and tolerance is None:
        raise ValueError(f"precision must be one of {sorted(TOLERANCE)}, got {precision!r}")
    tol = TOLERANCE[precision] if tolerance is None else float(tolerance)
    if onnx_sha256 is None:
        from .engine_meta import sha256_file

        onnx_sha256 = sha256_file(onnx_path)
    ins, ref = stored_sample(onnx_path, input_shapes, onnx_sha256)
    what = f"engine {engine_path}" if engine_path else f"{getattr(engine, 'name', 'engine')} engine"
    devs: dict[str, float] = {}
    for run in range(max(1, int(runs))):
        with torch.inference_mode():
            got = engine({k: v for k, v in ins.items() if k in engine.input_names})
        run_devs = deviation(got, ref)
        worst_name = max(run_devs, key=lambda k: run_devs[k])
        worst = run_devs[worst_name]
        if not worst <= tol:  # also catches NaN
            detail = ", ".join(f"{k}={v:.3g}" for k, v in run_devs.items())
            at_run = f" at run {run + 1} of {runs}" if runs > 1 else ""
            raise EngineVerificationError(
                f"{what} refused: on TensorRT {tensorrt_version} with {gpu_name} its outputs deviate from ONNX "
                f"Runtime by {worst:.3g}{at_run} ({worst_name}; {precision} tolerance {tol:g}; all outputs: "
                f"{detail}) on the stored sample {sample_path_for(onnx_path)}. Try precision fp32, another "
                "TensorRT version, or runtime.backend 'onnxruntime'"
            )
        devs = {k: max(v, devs.get(k, 0.0)) for k, v in run_devs.items()}
    worst_name = max(devs, key=lambda k: devs[k])
    worst = devs[worst_name]
    LOG.info("%s verified against ONNX Runtime: worst deviation %.3g (%s tolerance %g)", what, worst, precision, tol)
    return devs
