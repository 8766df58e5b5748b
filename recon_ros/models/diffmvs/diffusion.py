"""Diffusion-based depth refinement: condition encoder, U-Net with a ConvGRU bottleneck, DDIM sampling.

The refinement treats the residual ``delta`` between the refined and the current normalised inverse
depth as the diffusion sample. At inference it starts from scaled Gaussian noise, and each DDIM step
runs a fixed number of GRU iterations; every iteration samples a few local hypotheses around the
current estimate (their spread set by the previous iteration's confidence), builds a small cost volume,
encodes it and lets the U-Net predict an update of ``delta`` plus a new confidence.

Module/parameter names (``encoder``, ``mask``, ``unet``, ``downs``, ``ups``, ``mid``, ``gru``, the ten
schedule buffers, ...) are fixed by the official state_dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Signature of the local-cost callback: (u [B,1,H,W], confidence [B,H,W] | None) -> (cost, samples).
CostFn = Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]]


class WeightStandardizedConv2d(nn.Conv2d):
    """3x3 conv whose filters are standardised (zero mean, unit biased variance) on every call.

    Weight standardisation pairs with GroupNorm in the U-Net. eps is 1e-5 (the reference uses 1e-3 for
    non-float32 inputs; we keep 1e-5 everywhere because the port runs in float32).
    """

    eps: float = 1e-5

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        w = (w - mean) * (var + self.eps).rsqrt()
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class NormActBlock(nn.Module):
    """WS-conv -> GroupNorm -> optional FiLM ``x(1+scale)+shift`` from the time embedding -> SiLU."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.proj = WeightStandardizedConv2d(cin, cout, 3, padding=1)
        self.norm = nn.GroupNorm(groups, cout)

    def forward(self, x: Tensor, film: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = self.norm(self.proj(x))
        if film is not None:
            scale, shift = film
            x = x * (scale + 1) + shift
        return F.silu(x)


class TimeResBlock(nn.Module):
    """Residual block of two :class:`NormActBlock`; the first is modulated by the time embedding."""

    def __init__(self, cin: int, cout: int, groups: int, time_dim: int | None = None) -> None:
        super().__init__()
        # Index 0 is the (parameter-free) SiLU so the Linear lands on the checkpoint key ``mlp.1``.
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, cout * 2)) if time_dim else None
        self.block1 = NormActBlock(cin, cout, groups)
        self.block2 = NormActBlock(cout, cout, groups)
        self.res_conv = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        film = None
        if self.mlp is not None and temb is not None:
            scale, shift = self.mlp(temb)[:, :, None, None].chunk(2, dim=1)
            film = (scale, shift)
        h = self.block2(self.block1(x, film))
        return h + self.res_conv(x)


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style timestep embedding: ``[sin(t f_k), cos(t f_k)]``, f_k = 1e4^(-k/(dim/2-1))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        half = self.dim // 2
        step = math.log(10000) / (half - 1)
        freqs = torch.exp(torch.arange(half, device=t.device) * -step)
        arg = t[:, None] * freqs[None, :]
        return torch.cat((arg.sin(), arg.cos()), dim=-1)


class SpaceToDepth(nn.Module):
    """2x2 space-to-depth: ``[B,C,2h,2w] -> [B,4C,h,w]`` with channel ``c*4 + dy*2 + dx``."""

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, c * 4, h // 2, w // 2)


class SepConvGRU(nn.Module):
    """Convolutional GRU with separable (1x5 then 5x1) gates, as in RAFT.

    It carries the refinement state across iterations at the U-Net's coarsest level, which is what
    makes a single cheap U-Net pass per iteration sufficient.
    """

    def __init__(self, hidden_dim: int, input_dim: int) -> None:
        super().__init__()
        cin = hidden_dim + input_dim
        self.convz1 = nn.Conv2d(cin, hidden_dim, (1, 5), padding=(0, 2))
        self.convr1 = nn.Conv2d(cin, hidden_dim, (1, 5), padding=(0, 2))
        self.convq1 = nn.Conv2d(cin, hidden_dim, (1, 5), padding=(0, 2))
        self.convz2 = nn.Conv2d(cin, hidden_dim, (5, 1), padding=(2, 0))
        self.convr2 = nn.Conv2d(cin, hidden_dim, (5, 1), padding=(2, 0))
        self.convq2 = nn.Conv2d(cin, hidden_dim, (5, 1), padding=(2, 0))

    @staticmethod
    def _step(h: Tensor, x: Tensor, conv_z: nn.Module, conv_r: nn.Module, conv_q: nn.Module) -> Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(conv_z(hx))
        r = torch.sigmoid(conv_r(hx))
        q = torch.tanh(conv_q(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        h = self._step(h, x, self.convz1, self.convr1, self.convq1)
        return self._step(h, x, self.convz2, self.convr2, self.convq2)


class DiffusionUNet(nn.Module):
    """Lightweight 2-D U-Net whose bottleneck is a ConvGRU; predicts (hidden, delta update, confidence)."""

    def __init__(self, dim: int, hidden_dim: int, input_dim: int, dim_mults: Sequence[int], groups: int = 4) -> None:
        super().__init__()
        self.init_conv = nn.Conv2d(input_dim, dim, 7, padding=3)
        dims = [dim, *(dim * m for m in dim_mults)]
        levels = list(zip(dims[:-1], dims[1:]))
        time_dim = dim * 4
        self.time_mlp = nn.Sequential(
            SinusoidalTimeEmbedding(dim), nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim)
        )
        self.downs = nn.ModuleList()
        for k, (cin, cout) in enumerate(levels):
            last = k == len(levels) - 1
            # The last level changes width without changing resolution.
            down: nn.Module = (
                nn.Conv2d(cin, cout, 3, padding=1)
                if last
                else nn.Sequential(SpaceToDepth(), nn.Conv2d(cin * 4, cout, 1))
            )
            self.downs.append(nn.ModuleList([TimeResBlock(cin, cin, groups, time_dim), down]))
        self.ups = nn.ModuleList()
        for k, (cin, cout) in enumerate(reversed(levels)):
            last = k == len(levels) - 1
            up: nn.Module = (
                nn.Conv2d(cout, cin, 3, padding=1)
                if last
                else nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cout, cin, 3, padding=1))
            )
            self.ups.append(nn.ModuleList([TimeResBlock(cout + cin, cout, groups, time_dim), up]))
        # Registered after the decoder so the state_dict order matches the official checkpoints.
        mid_dim = dims[-1]
        self.gru = SepConvGRU(hidden_dim, mid_dim)
        self.mid = TimeResBlock(hidden_dim, mid_dim, groups)  # no time conditioning here
        self.final_res_block = TimeResBlock(dim * 2, dim, groups, time_dim)
        self.final_conv = nn.Conv2d(dim, 1, 1)
        self.conf = nn.Conv2d(dim, 1, 1)

    def forward(self, x: Tensor, hidden: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.init_conv(x)
        stem = x
        temb = self.time_mlp(t)
        skips = []
        for block, down in self.downs:
            x = block(x, temb)
            skips.append(x)
            x = down(x)
        hidden = self.gru(hidden, x)
        x = self.mid(hidden, temb)
        for block, up in self.ups:
            x = block(torch.cat((x, skips.pop()), dim=1), temb)
            x = up(x)
        x = self.final_res_block(torch.cat((x, stem), dim=1), temb)
        return hidden, self.final_conv(x), torch.sigmoid(self.conf(x))


class ConditionEncoder(nn.Module):
    """Encodes the local cost volume and its hypotheses into the diffusion condition.

    Output: ``out_chs - 1`` feature channels followed by the current normalised inverse depth itself.
    """

    def __init__(self, num_sample: int, cost_dim: int, hidden_dim: int, out_chs: int) -> None:
        super().__init__()
        self.out_chs = out_chs
        self.convc1 = nn.Conv2d(cost_dim, hidden_dim, 3, padding=1)
        self.convc2 = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1)
        self.convd1 = nn.Conv2d(num_sample, hidden_dim, 3, padding=1)
        self.convd2 = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1)
        self.output = nn.Conv2d(2 * hidden_dim, out_chs - 1, 3, padding=1)

    def forward(self, u: Tensor, samples: Tensor, cost: Tensor) -> Tensor:
        c = F.relu(self.convc2(F.relu(self.convc1(cost))))
        d = F.relu(self.convd2(F.relu(self.convd1(samples))))
        out = F.relu(self.output(torch.cat([c, d], dim=1)))
        return torch.cat([out, u], dim=1)


def cosine_betas(timesteps: int, s: float = 0.008) -> Tensor:
    """Cosine noise schedule (Nichol & Dhariwal), computed in float64, betas clipped at 0.999."""
    x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    abar = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    abar = abar / abar[0]
    return torch.clip(1 - (abar[1:] / abar[:-1]), 0, 0.999)


def ddim_time_pairs(timesteps: int, sampling_steps: int) -> list[tuple[int, int]]:
    """(t, t_next) pairs from T-1 down to -1, spaced like the reference (float32 linspace, truncation)."""
    times = torch.linspace(-1, timesteps - 1, steps=sampling_steps + 1).int().tolist()
    times = list(reversed(times))
    return list(zip(times[:-1], times[1:]))


class DiffusionRefiner(nn.Module):
    """One refinement stage: condition encoder + U-Net/ConvGRU, run as a DDIM sampler.

    Also owns the convex-upsampling head (``mask``) for the stage's output.
    """

    def __init__(
        self,
        *,
        dim: int,
        dim_mults: Sequence[int],
        hidden_dim: int,
        num_sample: int,
        groups_cost: int,
        context_dim: int,
        iters: int,
        up_ratio: int,
        timesteps: int,
        sampling_timesteps: int,
        ddim_eta: float,
        noise_scale: float,
        norm_groups: int = 4,
    ) -> None:
        super().__init__()
        self.iters = iters
        self.num_sample = num_sample
        self.sampling_timesteps = sampling_timesteps
        self.ddim_eta = ddim_eta
        self.noise_scale = noise_scale
        self.time_pairs = ddim_time_pairs(timesteps, sampling_timesteps)
        self.encoder = ConditionEncoder(num_sample, groups_cost * num_sample, context_dim, context_dim)
        self.mask = nn.Sequential(
            nn.Conv2d(context_dim, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, up_ratio * up_ratio * 9, 1)
        )
        self.unet = DiffusionUNet(dim, hidden_dim, 2 * context_dim, dim_mults, norm_groups)
        self._register_schedule(timesteps)

    def _register_schedule(self, timesteps: int) -> None:
        # Stored in the checkpoints, so the names and the float32 arithmetic follow the reference.
        betas = cosine_betas(timesteps).float()
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, dim=0)
        abar_prev = F.pad(abar[:-1], (1, 0), value=1.0)
        buffers = {
            "betas": betas,
            "alphas_cumprod": abar,
            "alphas_cumprod_prev": abar_prev,
            "sqrt_alphas_cumprod": torch.sqrt(abar),
            "sqrt_one_minus_alphas_cumprod": torch.sqrt(1.0 - abar),
            "log_one_minus_alphas_cumprod": torch.log(1.0 - abar),
            "sqrt_recip_alphas": torch.sqrt(1.0 / alphas),
            "sqrt_recip_alphas_cumprod": torch.sqrt(1.0 / abar),
            "sqrt_recipm1_alphas_cumprod": torch.sqrt(1.0 / abar - 1),
            "posterior_variance": betas * (1.0 - abar_prev) / (1.0 - abar),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value)

    def forward(
        self, u0: Tensor, hidden0: Tensor, context: Tensor, cost_fn: CostFn, noise: Sequence[Tensor]
    ) -> tuple[Tensor, Tensor, list[Tensor], list[Tensor]]:
        """Refine ``u0 [B,1,H,W]``.

        Args:
            hidden0: initial GRU state at the U-Net bottleneck resolution.
            context: ``[B,context_dim,H,W]`` (after ReLU).
            cost_fn: local cost volume around a given estimate (see :data:`CostFn`).
            noise: ``sampling_timesteps`` raw N(0,1) maps shaped like ``u0``; scaled here.

        Returns:
            ``(upmask, hidden, us, confs)``: 0.25-scaled upsampling logits, final GRU state, and the
            estimate ``[B,1,H,W]`` / confidence ``[B,H,W]`` after each GRU iteration of the last DDIM step.
        """
        if len(noise) != self.sampling_timesteps:
            raise ValueError(f"expected {self.sampling_timesteps} noise maps, got {len(noise)}")
        batch = u0.shape[0]
        upmask = 0.25 * self.mask(context)
        x = self.noise_scale * noise[0]
        hidden = hidden0
        us: list[Tensor] = []
        confs: list[Tensor] = []
        for step, (time, time_next) in enumerate(self.time_pairs):
            t = torch.full((batch,), time, dtype=torch.long, device=u0.device)
            u = torch.clamp(u0 + x, min=0, max=1)
            delta = u - u0
            x = delta  # the clamped perturbation is the actual x_t
            hidden = hidden0  # every DDIM step restarts the GRU from the same state
            confidence: Tensor | None = None
            us, confs = [], []
            for _ in range(self.iters):
                cost, samples = cost_fn(u, confidence)
                cond = self.encoder(u, samples, cost)
                hidden, update, conf = self.unet(torch.cat([context, cond], dim=1), hidden, t)
                confidence = conf.squeeze(1)
                confs.append(confidence)
                u = torch.clamp(u0 + (delta + update), min=0, max=1)
                delta = u - u0
                us.append(u)
            if time_next < 0:
                break
            # DDIM update towards the next (smaller) timestep; delta is the predicted x_0.
            pred_noise = (self.sqrt_recip_alphas_cumprod[time] * x - delta) / self.sqrt_recipm1_alphas_cumprod[time]
            alpha = self.alphas_cumprod[time]
            alpha_next = self.alphas_cumprod[time_next]
            sigma = self.ddim_eta * ((1 - alpha / alpha_next) * (1 - alpha_next) / (1 - alpha)).sqrt()
            c = (1 - alpha_next - sigma**2).sqrt()
            x = delta * alpha_next.sqrt() + c * pred_noise + sigma * (self.noise_scale * noise[step + 1])
        return upmask, hidden, us, confs
