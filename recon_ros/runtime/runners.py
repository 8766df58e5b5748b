"""Model runners: a loaded torch network + a backend name -> a callable with the model's own API.

Runners export on first use for each input shape (ONNX files and TensorRT engines are cached on disk,
keyed by shapes and weights) and hide the backend from the predictors.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from recon_ros.models.diffmvs import export as dx
from recon_ros.models.diffmvs.export import DiffMVSExportWrapper
from recon_ros.models.diffmvs.model import DiffMVSNet
from recon_ros.models.mvdust3r.export import (
    MVDust3RDecoderWrapper,
    MVDust3REncoderWrapper,
    MVDust3RExportWrapper,
)
from recon_ros.models.mvdust3r.export import image_hw as mvdust3r_image_hw
from recon_ros.models.mvdust3r.network import MVDust3R

from .backends import BACKEND_NAMES, Backend, OnnxRuntimeBackend, TensorRTBackend, TorchBackend, import_tensorrt
from .engine_meta import EngineCache
from .export import (
    ExportedModel,
    export_diffmvs,
    export_mvdust3r,
    export_mvdust3r_decoder,
    export_mvdust3r_encoder,
)
from .verify import check_tensorrt_version, verify_engine

LOG = logging.getLogger("recon_ros")
DIFFMVS_STAGES = ("stage1", "stage2", "stage3")


def _tmp_cache() -> Path:
    return Path(tempfile.mkdtemp(prefix="recon_ros_onnx_"))


class _ExportingRunner:
    """Shared logic: one backend per input-shape key, created by exporting on first use.

    TensorRT engines are checked before use: versions listed in ``verify.KNOWN_BAD_TENSORRT`` are
    verified several times (or refused with ``known_bad_tensorrt = "refuse"``), and every built or
    cached engine must reproduce ONNX Runtime on a stored sample input.
    """

    #: Engines under a TensorRT version listed as bad: "verify" (repeated sample runs) or "refuse"
    #: (``runtime.known_bad_tensorrt``).
    known_bad_tensorrt: str = "verify"

    def __init__(
        self, backend: str, device: str | torch.device, cache_dir: str | Path | None, fp16: bool,
        on_stale: str = "rebuild", threads: int = 0,
    ) -> None:
        if backend not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKEND_NAMES}")
        self.backend = backend
        self.device = torch.device(device)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else _tmp_cache()
        self.fp16 = fp16
        self.on_stale = on_stale
        self.threads = threads
        self._backends: dict[tuple, Backend] = {}
        if backend == "tensorrt":
            import_tensorrt()  # fail at start-up, not at the first keyframe

    def _make(self, exported: ExportedModel) -> Backend:
        if self.backend == "onnxruntime":
            return OnnxRuntimeBackend(exported.onnx_path, self.device, self.threads)
        from .engine_builder import build_serialized, engine_meta, trt_major

        trt = import_tensorrt()
        expected = engine_meta(
            exported.name, exported.onnx_path, exported.weights_sha256, self.fp16, exported.input_shapes
        )
        runs = check_tensorrt_version(expected.tensorrt_version, expected.gpu_name, policy=self.known_bad_tensorrt)
        # TRT 10 takes FP16 from the builder flag on the FP32 graph; TRT 11 from the FP16 graph itself.
        flag_fp16 = self.fp16 and trt_major(trt) < 11
        path = EngineCache(self.cache_dir / "engines", self.on_stale).get(
            expected, lambda: build_serialized(exported.onnx_path, fp16=flag_fp16)
        )
        engine = TensorRTBackend(path, self.device, cuda_graph=True)
        self.verify(engine, exported, expected.tensorrt_version, expected.gpu_name, path, runs=runs)
        return engine

    def verify(
        self, engine: Backend, exported: ExportedModel, tensorrt_version: str, gpu_name: str,
        engine_path: str | Path | None = None, runs: int = 1,
    ) -> dict[str, float]:
        """Refuse ``engine`` (built or loaded from the cache) unless it reproduces ONNX Runtime on the
        stored sample input of its graph (:func:`recon_ros.runtime.verify.verify_engine`)."""
        return verify_engine(
            engine, exported.onnx_path, exported.input_shapes, "fp16" if self.fp16 else "fp32",
            tensorrt_version=tensorrt_version, gpu_name=gpu_name, engine_path=engine_path, runs=runs,
        )

    def _onnx_fp16(self) -> bool:
        if not self.fp16:
            return False
        if self.backend == "tensorrt":
            from .engine_builder import trt_major

            return trt_major(import_tensorrt()) >= 11
        return True


class DiffMVSRunner(_ExportingRunner):
    """``runner(imgs, proj, depth_values, noise) -> {"depth": [...], "photometric_confidence": [...]}``,
    the same call and result as :class:`DiffMVSNet` with explicit noise (what ``DiffMVSPredictor`` uses)."""

    def __init__(
        self, net: DiffMVSNet, backend: str = "onnxruntime", device: str | torch.device = "cpu",
        cache_dir: str | Path | None = None, fp16: bool = False, on_stale: str = "rebuild", threads: int = 0,
    ) -> None:
        super().__init__(backend, device, cache_dir, fp16, on_stale, threads)
        self.net = net.eval()

    def backend_for(self, num_views: int, height: int, width: int) -> Backend:
        key = (num_views, height, width)
        if key not in self._backends:
            if self.backend == "torch":
                self._backends[key] = TorchBackend(
                    DiffMVSExportWrapper(self.net), dx.input_names(self.net, height, width), dx.output_names(self.net)
                )
            else:
                exported = export_diffmvs(
                    self.net.cpu(), self.cache_dir / "onnx", num_views, height, width, fp16=self._onnx_fp16()
                )
                self.net.to(self.device)
                self._backends[key] = self._make(exported)
        return self._backends[key]

    def __call__(
        self, imgs: Sequence[Tensor], proj: dict[str, Tensor], depth_values: Tensor, noise: Sequence[Tensor]
    ) -> dict[str, list[Tensor]]:
        images = torch.cat(list(imgs))
        num_views, _, h, w = images.shape
        be = self.backend_for(num_views, h, w)
        feeds = {
            "images": images,
            "proj_matrices": torch.cat([proj[s] for s in DIFFMVS_STAGES]),
            "depth_values": depth_values,
        }
        feeds.update({f"noise_{i:03d}": n for i, n in enumerate(noise)})
        out = be(feeds)
        result: dict[str, list[Tensor]] = {"depth": [], "photometric_confidence": []}
        for name in be.output_names:
            key = "depth" if name.startswith("depth_") else "photometric_confidence"
            result[key].append(out[name].to(self.device).float())
        return result


class MVDust3RRunner(_ExportingRunner):
    """MV-DUSt3R(+) through a backend, with the calls of :class:`MVDust3R`:

    * ``runner(images [1,V,3,224,224], paths) -> {"pts3d": [1,P,V,H,W,3], "conf": [1,P,V,H,W]}``: the
      whole network as one graph per (views, paths);
    * ``runner.encode(images [1,M,3,224,224]) -> tokens [1,M,N,C_enc]`` and
      ``runner.decode(tokens, images, paths) -> {"pts3d", "conf"}``: the encoder graph (one per number
      of views) and the decoder + heads graph (one per (views, paths)). ``MVDust3RPredictor`` uses
      these, so its encoder-token cache works with every backend: each keyframe is encoded once and only
      the decoder reruns per window.

    With ``onnxruntime`` / ``tensorrt`` the torch network is only needed to export, so it stays on the
    CPU (no second copy of the weights on the GPU); the ``torch`` backend moves it to ``device``.
    """

    def __init__(
        self, net: MVDust3R, backend: str = "onnxruntime", device: str | torch.device = "cpu",
        cache_dir: str | Path | None = None, fp16: bool = False, on_stale: str = "rebuild", threads: int = 0,
    ) -> None:
        super().__init__(backend, device, cache_dir, fp16, on_stale, threads)
        self.net = net.eval()
        if backend == "torch":
            self.net.to(self.device)

    def _exported(self, export: Callable[[MVDust3R, Path], ExportedModel]) -> Backend:
        exported = export(self.net.cpu(), self.cache_dir / "onnx")
        be = self._make(exported)
        if isinstance(be, TensorRTBackend) and be.context is None:
            # TensorRT allocates the activation memory when it creates the context and returns None
            # when it cannot; say so in words the pose source recognises as running out of memory.
            raise RuntimeError(
                f"TensorRT could not create an execution context for {exported.name} "
                "(most likely out of memory for its activations)"
            )
        return be

    def _backend(
        self, key: tuple, torch_module: Callable[[], torch.nn.Module], inputs: list[str], outputs: list[str],
        export: Callable[[MVDust3R, Path, bool], ExportedModel],
    ) -> Backend:
        """The backend cached under ``key``: the torch module itself, or its export (built on first use)."""
        if key not in self._backends:
            if self.backend == "torch":
                self._backends[key] = TorchBackend(torch_module(), inputs, outputs)
            else:
                fp16 = self._onnx_fp16()
                self._backends[key] = self._exported(lambda n, d: export(n, d, fp16))
        return self._backends[key]

    def backend_for(self, num_views: int, paths: Sequence[int], hw: Sequence[int] | None = None) -> Backend:
        """The whole-network backend for ``num_views`` views of size ``hw`` and head ``paths`` (built on first use)."""
        hw = mvdust3r_image_hw(self.net, hw)
        return self._backend(
            ("full", num_views, tuple(paths), hw), lambda: MVDust3RExportWrapper(self.net, paths),
            ["images"], ["pts3d", "conf"],
            lambda n, d, fp16: export_mvdust3r(n, d, num_views, paths, fp16=fp16, hw=hw),
        )

    def encoder_for(self, num_views: int, hw: Sequence[int] | None = None) -> Backend:
        """The encoder backend for ``num_views`` views of size ``hw`` (built on first use)."""
        hw = mvdust3r_image_hw(self.net, hw)
        return self._backend(
            ("encoder", num_views, hw), lambda: MVDust3REncoderWrapper(self.net),
            ["images"], ["tokens"], lambda n, d, fp16: export_mvdust3r_encoder(n, d, num_views, fp16=fp16, hw=hw),
        )

    def decoder_for(self, num_views: int, paths: Sequence[int], hw: Sequence[int] | None = None) -> Backend:
        """The decoder + heads backend for ``num_views`` views of size ``hw`` and head ``paths``."""
        hw = mvdust3r_image_hw(self.net, hw)
        return self._backend(
            ("decoder", num_views, tuple(paths), hw), lambda: MVDust3RDecoderWrapper(self.net, paths),
            ["tokens", "images"], ["pts3d", "conf"],
            lambda n, d, fp16: export_mvdust3r_decoder(n, d, num_views, paths, fp16=fp16, hw=hw),
        )

    def release(self, num_views: int) -> int:
        """Drop the backends built for ``num_views`` views (sessions / engines and their device memory,
        e.g. after running out of memory with that many views); returns how many were dropped.
        The ONNX files and engines stay cached on disk."""
        keys = [k for k in self._backends if k[1] == num_views]  # keys are (graph, views, ...)
        for k in keys:
            del self._backends[k]
        return len(keys)

    def __call__(self, images: Tensor, paths: Sequence[int] = (0,)) -> dict[str, Tensor]:
        be = self.backend_for(images.shape[1], [int(p) for p in paths], images.shape[-2:])
        out = be({"images": images})
        return {k: v.to(self.device).float() for k, v in out.items()}

    def encode(self, images: Tensor) -> Tensor:
        """Normalised images ``[1,M,3,224,224]`` -> encoder tokens ``[1,M,N,C_enc]`` (float32)."""
        if images.dim() != 5 or images.shape[0] != 1:
            raise ValueError(f"expected images [1, M, 3, H, W], got {tuple(images.shape)}")
        out = self.encoder_for(images.shape[1], images.shape[-2:])({"images": images})
        return out["tokens"].to(self.device).float()

    def decode(self, tokens: Tensor, images: Tensor, paths: Sequence[int] = (0,)) -> dict[str, Tensor]:
        """Encoder tokens ``[1,V,N,C_enc]`` + images ``[1,V,3,224,224]`` -> ``pts3d``, ``conf``."""
        if tokens.dim() != 4 or tokens.shape[:2] != images.shape[:2]:
            raise ValueError(f"tokens {tuple(tokens.shape)} do not match images {tuple(images.shape)}")
        be = self.decoder_for(images.shape[1], [int(p) for p in paths], images.shape[-2:])
        out = be({"tokens": tokens, "images": images})
        return {k: v.to(self.device).float() for k, v in out.items()}
