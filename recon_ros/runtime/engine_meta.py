"""Engine files with a metadata header, and an engine cache that refuses or rebuilds stale engines.

A serialized TensorRT engine only runs on the TensorRT version and GPU model it was built for, and
silently computes the wrong thing when the weights or input shapes changed since. Every engine file
therefore starts with a small header naming what it was built from::

    b"RECONENG" | uint32 version | uint32 json_length | json (utf-8) | serialized engine

:func:`check_compatible` compares a header against what the caller is about to run and raises
:class:`StaleEngineError` naming every field that differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger("recon_ros")

MAGIC = b"RECONENG"
HEADER_VERSION = 1
_FIXED = struct.Struct("<8sII")
#: Fields that must match for an engine to be reused (``recon_ros_version`` is informative only:
#: a new package version with the same model, shapes and platform produces the same engine).
CHECKED_FIELDS = (
    "model", "checkpoint_sha256", "onnx_sha256", "tensorrt_version", "gpu_name", "compute_capability",
    "precision", "input_shapes",
)


class EngineFileError(ValueError):
    """The file is not an engine written by :func:`write_engine` (or it is truncated)."""


class StaleEngineError(RuntimeError):
    """A cached engine was built for a different model, checkpoint, platform or input shapes."""


@dataclass
class EngineMeta:
    model: str
    checkpoint_sha256: str
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" (Orin), "9.0" (H100)
    precision: str  # "fp32" | "fp16"
    input_shapes: dict[str, list[int]]
    recon_ros_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EngineMeta:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        missing = [k for k in CHECKED_FIELDS if k not in d]
        if missing:
            raise EngineFileError(f"engine header lacks fields {missing}")
        known["input_shapes"] = {k: [int(x) for x in v] for k, v in known["input_shapes"].items()}
        return cls(**known)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_engine(path: str | Path, meta: EngineMeta, blob: bytes) -> Path:
    """Write header + engine atomically (a crash never leaves a half-written engine behind)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = meta.to_json().encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_FIXED.pack(MAGIC, HEADER_VERSION, len(text)))
            f.write(text)
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_header(path: str | Path) -> tuple[EngineMeta, int]:
    """(meta, byte offset of the engine) without reading the engine itself."""
    with open(path, "rb") as f:
        head = f.read(_FIXED.size)
        if len(head) < _FIXED.size or head[:8] != MAGIC:
            raise EngineFileError(f"{path}: not a recon_ros engine file (no {MAGIC!r} header); rebuild it")
        _, version, n = _FIXED.unpack(head)
        if version != HEADER_VERSION:
            raise EngineFileError(f"{path}: engine header version {version}, this recon_ros reads {HEADER_VERSION}")
        text = f.read(n)
        if len(text) != n:
            raise EngineFileError(f"{path}: truncated engine header")
    try:
        meta = EngineMeta.from_dict(json.loads(text))
    except (json.JSONDecodeError, TypeError) as exc:
        raise EngineFileError(f"{path}: corrupt engine header: {exc}") from None
    return meta, _FIXED.size + n


def read_engine(path: str | Path) -> tuple[EngineMeta, bytes]:
    meta, offset = read_header(path)
    with open(path, "rb") as f:
        f.seek(offset)
        blob = f.read()
    if not blob:
        raise EngineFileError(f"{path}: header present but the engine is empty (truncated file)")
    return meta, blob


def check_compatible(meta: EngineMeta, expected: EngineMeta, source: str = "engine") -> None:
    """Raise :class:`StaleEngineError` listing every checked field where ``meta`` differs."""
    diffs = []
    for name in CHECKED_FIELDS:
        have, want = getattr(meta, name), getattr(expected, name)
        if have != want:
            diffs.append(f"{name}: engine has {have!r}, expected {want!r}")
    if diffs:
        raise StaleEngineError(f"{source} is stale: " + "; ".join(diffs))


def current_platform() -> dict[str, str]:
    """TensorRT version, GPU name and compute capability of this machine (needs TensorRT + CUDA)."""
    import torch

    from .backends import import_tensorrt

    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: TensorRT engines cannot be built or run here")
    major, minor = torch.cuda.get_device_capability()
    return {
        "tensorrt_version": trt.__version__,
        "gpu_name": torch.cuda.get_device_name(),
        "compute_capability": f"{major}.{minor}",
    }


STALE_POLICIES = ("rebuild", "refuse")


class EngineCache:
    """Engines under ``cache_dir``, one file per (model, precision, input shapes).

    :meth:`get` returns the path of a compatible engine, building it on first use; a stale one is
    rebuilt (``on_stale="rebuild"``, logged) or refused with :class:`StaleEngineError` (``"refuse"``,
    for deployments where an unexpected multi-minute build on the robot is worse than failing).
    """

    def __init__(self, cache_dir: str | Path, on_stale: str = "rebuild") -> None:
        if on_stale not in STALE_POLICIES:
            raise ValueError(f"on_stale must be one of {STALE_POLICIES}, got {on_stale!r}")
        self.cache_dir = Path(cache_dir).expanduser()
        self.on_stale = on_stale

    @staticmethod
    def file_name(meta: EngineMeta) -> str:
        shapes = "_".join(f"{k}-{'x'.join(map(str, v))}" for k, v in sorted(meta.input_shapes.items()))
        digest = hashlib.sha256(shapes.encode()).hexdigest()[:10]
        return f"{meta.model}_{meta.precision}_{digest}.engine"

    def path_for(self, meta: EngineMeta) -> Path:
        return self.cache_dir / self.file_name(meta)

    def get(self, expected: EngineMeta, build: Callable[[], bytes]) -> Path:
        """Path of an engine matching ``expected``; ``build()`` returns a serialized engine when needed."""
        path = self.path_for(expected)
        if path.is_file():
            try:
                meta, _ = read_header(path)
                check_compatible(meta, expected, str(path))
                return path
            except (StaleEngineError, EngineFileError) as exc:
                if self.on_stale == "refuse":
                    raise StaleEngineError(
                        f"{exc}. Delete the file or run `recon-ros build-engine` to rebuild it "
                        "(or allow automatic rebuilds)"
                    ) from None
                LOG.warning("%s; rebuilding", exc)
        LOG.info("building TensorRT engine %s (first start with these shapes; may take minutes)", path)
        write_engine(path, expected, build())
        return path
