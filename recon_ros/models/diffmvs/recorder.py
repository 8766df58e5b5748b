"""Forward-hook recorder of per-module debug tensors, named like the parity fixtures' intermediates.

Hooks keep the network code free of debugging branches (and traceable); attach only when needed::

    with DebugRecorder(net) as rec:
        net(imgs, proj, depth_values, noise)
    rec.tensors  # {"debug_feature_view0_stage1": ..., "debug_unet00_out_delta": ..., ...}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .model import DiffMVSNet


class DebugRecorder:
    """Collects ``debug_*`` tensors from a :class:`DiffMVSNet` forward pass (detached copies)."""

    def __init__(self, net: DiffMVSNet) -> None:
        self.net = net
        self.tensors: dict[str, Tensor] = {}
        self._handles: list[Any] = []
        self._counters = {"feature": 0, "getcost": 0, "encoder": 0, "unet": 0}

    def _put(self, name: str, value: Tensor) -> None:
        self.tensors[name] = value.detach().clone()

    def _next(self, counter: str) -> int:
        n = self._counters[counter]
        self._counters[counter] += 1
        return n

    def attach(self) -> DebugRecorder:
        net = self.net

        def on_feature(_m: nn.Module, _args: Any, out: dict[str, Tensor]) -> None:
            v = self._next("feature")
            for key, val in out.items():
                self._put(f"debug_feature_view{v}_{key}", val)

        def on_context(_m: nn.Module, _args: Any, out: dict[str, Tensor]) -> None:
            for key, val in out.items():
                self._put(f"debug_context_{key}", val)

        def on_init(_m: nn.Module, _args: Any, out: tuple[Tensor, ...]) -> None:
            names = ("upmask", "norm_invdepth", "depth", "view_weights", "photometric_conf")
            for name, val in zip(names, out):
                self._put(f"debug_init_{name}", val)

        def on_cost(_m: nn.Module, _args: Any, out: tuple[Tensor, Tensor]) -> None:
            n = self._next("getcost")
            self._put(f"debug_getcost{n:02d}_cost", out[0])
            self._put(f"debug_getcost{n:02d}_invdepth_samples", out[1])

        def on_encoder(_m: nn.Module, _args: Any, out: Tensor) -> None:
            self._put(f"debug_encoder{self._next('encoder'):02d}_out", out)

        def on_unet(_m: nn.Module, args: tuple[Tensor, ...], out: tuple[Tensor, Tensor, Tensor]) -> None:
            n = self._next("unet")
            self._put(f"debug_unet{n:02d}_in_hidden", args[1])
            self._put(f"debug_unet{n:02d}_in_time", args[2])
            for name, val in zip(("hidden", "delta", "conf"), out):
                self._put(f"debug_unet{n:02d}_out_{name}", val)

        self._handles += [
            net.feature.register_forward_hook(on_feature),
            net.context.register_forward_hook(on_context),
            net.depthnet.register_forward_hook(on_init),
            net.local_cost.register_forward_hook(on_cost),
        ]
        for s, block in zip(net.cfg.refine_stages, net.update_block):
            stage = s + 1

            def on_stage_in(_m: nn.Module, args: tuple[Any, ...], stage: int = stage) -> None:
                self._put(f"debug_stage{stage}_in_norm_invdepth", args[0])
                self._put(f"debug_stage{stage}_in_hidden", args[1])
                self._put(f"debug_stage{stage}_in_context", args[2])

            def on_stage_out(_m: nn.Module, _args: Any, out: tuple[Any, ...], stage: int = stage) -> None:
                upmask, _, us, confs = out
                self._put(f"debug_stage{stage}_upmask", upmask)
                for i, (u, c) in enumerate(zip(us, confs)):
                    self._put(f"debug_stage{stage}_iter{i}_norm_invdepth", u)
                    self._put(f"debug_stage{stage}_iter{i}_conf", c)

            self._handles += [
                block.register_forward_pre_hook(on_stage_in),
                block.register_forward_hook(on_stage_out),
                block.encoder.register_forward_hook(on_encoder),
                block.unet.register_forward_hook(on_unet),
            ]
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> DebugRecorder:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()


def to_numpy(tensors: dict[str, Tensor]) -> dict[str, Any]:
    """Detached CPU numpy copies."""
    with torch.no_grad():
        return {k: v.detach().cpu().numpy() for k, v in tensors.items()}
