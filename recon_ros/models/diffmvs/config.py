"""Hyper-parameters of DiffMVS / CasDiffMVS and presets for the official checkpoints.

Only some fields change weight shapes (stage_iters, cost_num, cost_dim_stage, hidden_dim, context_dim,
unet_dim, feat_dim_stage, unet_dim_mults, base_channels, timesteps). The others (noise scale, DDIM eta,
sampling steps, radii, numdepth_initial) are run-time knobs: the same checkpoint can be run with
different values, which is why presets exist per dataset even when the architecture is shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

Triple = tuple[int, int, int]
FTriple = tuple[float, float, float]


@dataclass(frozen=True)
class DiffMVSConfig:
    """All settings of one DiffMVS / CasDiffMVS network.

    Per-stage tuples are indexed by stage: 0 = 1/8-resolution initialisation, 1 = 1/4-resolution
    refinement, 2 = 1/2-resolution refinement (CasDiffMVS only; all zeros for DiffMVS).
    """

    #: GRU iterations per stage; a 0 in the last slot selects DiffMVS (single refinement stage).
    stage_iters: Triple = (1, 4, 0)
    #: Inverse-depth samples per local cost volume ("CostNum" upstream).
    cost_num: Triple = (0, 6, 0)
    #: Number of correlation groups in the group-wise correlation.
    cost_dim_stage: Triple = (4, 4, 0)
    #: Channels of the ConvGRU hidden state per stage.
    hidden_dim: Triple = (0, 32, 0)
    #: Channels of the context feature per stage.
    context_dim: Triple = (32, 32, 0)
    #: Base width of the diffusion U-Net per stage (slot 0 unused).
    unet_dim: Triple = (0, 16, 8)
    #: Width multipliers of the U-Net levels per stage.
    unet_dim_mults: tuple[tuple[int, ...], ...] = ((1,), (1, 2), (1, 2, 4))
    #: Output channels of the feature pyramid at 1/8, 1/4, 1/2 resolution (0 = level absent).
    feat_dim_stage: Triple = (48, 32, 0)
    #: Width of the first feature-pyramid level; deeper levels use 2x, 4x, 8x.
    base_channels: int = 8
    #: GroupNorm groups in the U-Net residual blocks.
    resnet_block_groups: int = 4
    #: Confidence-aware sampling: radius factor at confidence 1 and at confidence 0.
    min_radius: float = 0.25
    max_radius: float = 4.0
    #: Diffusion schedule length per stage (sets the length of the schedule buffers).
    timesteps: Triple = (1000, 1000, 1000)
    #: DDIM sampling steps per stage at inference (each step draws one noise map).
    sampling_timesteps: Triple = (0, 1, 1)
    #: DDIM eta per stage (only matters with more than one sampling step).
    ddim_eta: FTriple = (0.0, 1.0, 0.0)
    #: Noise scale per stage, multiplied into every standard-normal draw.
    scale: FTriple = (0.0, 0.125, 0.0)
    #: Number of inverse-depth hypotheses of the 1/8 cost volume (96 on Tanks & Temples upstream).
    numdepth_initial: int = 48
    #: Length of ``depth_values``; 1/numdepth is the base inverse-depth sampling interval.
    numdepth: int = 384
    #: Multiplier of the base interval per stage.
    depth_interval_ratio: Triple = (4, 2, 1)
    #: Free-form label, e.g. the preset name.
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if self.numdepth_initial % 4 != 0:
            raise ValueError(
                f"numdepth_initial={self.numdepth_initial} must be a multiple of 4: the 3-D U-Net "
                "halves the hypothesis axis twice and adds skips"
            )
        if self.stage_iters[0] < 1 or self.stage_iters[1] < 1:
            raise ValueError(f"stage_iters={self.stage_iters}: stages 0 and 1 must be enabled")
        for s in self.refine_stages:
            if self.sampling_timesteps[s] < 1 or self.sampling_timesteps[s] > self.timesteps[s]:
                raise ValueError(f"sampling_timesteps[{s}]={self.sampling_timesteps[s]} must be in [1, timesteps]")
            if self.cost_num[s] < 2:
                raise ValueError(f"cost_num[{s}]={self.cost_num[s]} must be at least 2")
        if self.is_cascade and self.feat_dim_stage[2] <= 0:
            raise ValueError("CasDiffMVS needs a 1/2-resolution feature level (feat_dim_stage[2] > 0)")

    @property
    def is_cascade(self) -> bool:
        """CasDiffMVS refines at 1/4 and 1/2 resolution; DiffMVS only at 1/4."""
        return self.stage_iters[2] > 0

    @property
    def variant(self) -> str:
        return "casdiffmvs" if self.is_cascade else "diffmvs"

    @property
    def refine_stages(self) -> tuple[int, ...]:
        """Indices of the diffusion-refinement stages."""
        return (1, 2) if self.is_cascade else (1,)

    @property
    def up_ratio(self) -> int:
        """Convex-upsampling factor after each refinement stage (to the next level / full res)."""
        return 2 if self.is_cascade else 4

    def noise_shapes(self, batch: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """Shapes of the standard-normal draws of one forward pass, in call order.

        Each refinement stage draws ``sampling_timesteps`` maps of its inverse-depth resolution: one
        initial perturbation plus one per DDIM update.
        """
        shapes = []
        for s in self.refine_stages:
            div = 2 ** (3 - s)
            shapes += [(batch, 1, height // div, width // div)] * self.sampling_timesteps[s]
        return shapes

    def with_runtime(self, **kwargs: Any) -> DiffMVSConfig:
        """A copy with run-time knobs changed (scale, ddim_eta, sampling_timesteps, radii, ...)."""
        return replace(self, **kwargs)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> DiffMVSConfig:
        """Build from a fixture ``manifest.json`` dict (or its ``hyperparameters`` sub-dict)."""
        hp = manifest.get("hyperparameters", manifest)

        def tri(key: str, cast: type = int) -> tuple:
            return tuple(cast(v) for v in hp[key])

        kwargs: dict[str, Any] = dict(
            stage_iters=tri("stage_iters"),
            cost_num=tri("CostNum"),
            cost_dim_stage=tri("cost_dim_stage"),
            hidden_dim=tri("hidden_dim"),
            context_dim=tri("context_dim"),
            unet_dim=tri("unet_dim"),
            min_radius=float(hp["min_radius"]),
            max_radius=float(hp["max_radius"]),
            timesteps=tri("timesteps"),
            sampling_timesteps=tri("sampling_timesteps"),
            ddim_eta=tri("ddim_eta", float),
            scale=tri("scale", float),
            numdepth_initial=int(hp["numdepth_initial"]),
            numdepth=int(hp["numdepth"]),
            name=str(manifest.get("model", hp.get("method", "manifest"))),
        )
        if "feat_dim_stage" in hp:
            kwargs["feat_dim_stage"] = tri("feat_dim_stage")
        else:
            kwargs["feat_dim_stage"] = (48, 32, 16) if int(hp["stage_iters"][2]) > 0 else (48, 32, 0)
        if "unet_dim_mults" in hp:
            kwargs["unet_dim_mults"] = tuple(tuple(int(m) for m in ms) for ms in hp["unet_dim_mults"])
        if "resnet_block_groups" in hp:
            kwargs["resnet_block_groups"] = int(hp["resnet_block_groups"])
        if "depth_interals_ratio" in hp:
            kwargs["depth_interval_ratio"] = tri("depth_interals_ratio")
        return cls(**kwargs)


_DIFFMVS_ARCH: dict[str, Any] = dict(
    stage_iters=(1, 4, 0),
    cost_num=(0, 6, 0),
    cost_dim_stage=(4, 4, 0),
    hidden_dim=(0, 32, 0),
    context_dim=(32, 32, 0),
    unet_dim=(0, 16, 8),
    feat_dim_stage=(48, 32, 0),
    min_radius=0.25,
    max_radius=4.0,
    sampling_timesteps=(0, 1, 1),
    ddim_eta=(0.0, 1.0, 0.0),
)
_CASDIFFMVS_ARCH: dict[str, Any] = dict(
    stage_iters=(1, 3, 3),
    cost_num=(0, 4, 4),
    cost_dim_stage=(4, 4, 4),
    hidden_dim=(0, 32, 20),
    context_dim=(32, 32, 16),
    unet_dim=(0, 16, 8),
    feat_dim_stage=(48, 32, 16),
    min_radius=0.125,
    max_radius=8.0,
    sampling_timesteps=(0, 1, 1),
    ddim_eta=(0.0, 1.0, 1.0),
)

#: Settings of the official test scripts (scripts/test/*.sh upstream). The *_blend presets are the
#: BlendedMVS checkpoints (used for Tanks & Temples / ETH3D, where T&T additionally uses
#: numdepth_initial=96: ``PRESETS[...].with_runtime(numdepth_initial=96)``). The CasDiffMVS checkpoint
#: fine-tuned on BlendedMVG (released 11.09.2025) has the casdiffmvs_blend architecture and settings.
PRESETS: dict[str, DiffMVSConfig] = {
    "diffmvs_blend": DiffMVSConfig(**_DIFFMVS_ARCH, scale=(0.0, 0.125, 0.0), name="diffmvs_blend"),
    "diffmvs_dtu": DiffMVSConfig(**_DIFFMVS_ARCH, scale=(0.0, 0.5, 0.0), name="diffmvs_dtu"),
    "casdiffmvs_blend": DiffMVSConfig(**_CASDIFFMVS_ARCH, scale=(0.0, 0.125, 0.025), name="casdiffmvs_blend"),
    "casdiffmvs_dtu": DiffMVSConfig(**_CASDIFFMVS_ARCH, scale=(0.0, 0.5, 0.1), name="casdiffmvs_dtu"),
}

#: Other names accepted by :func:`get_config` for the same settings.
PRESET_ALIASES: dict[str, str] = {
    "casdiffmvs_blendedmvg": "casdiffmvs_blend",
    "diffmvs": "diffmvs_blend",
    "casdiffmvs": "casdiffmvs_blend",
}


def get_config(preset_or_config: str | DiffMVSConfig) -> DiffMVSConfig:
    """Resolve a preset name (or alias) to its config; configs pass through unchanged."""
    if isinstance(preset_or_config, DiffMVSConfig):
        return preset_or_config
    name = PRESET_ALIASES.get(preset_or_config, preset_or_config)
    if name not in PRESETS:
        known = sorted([*PRESETS, *PRESET_ALIASES])
        raise KeyError(f"unknown DiffMVS preset {preset_or_config!r}; known: {known}")
    return PRESETS[name]
