"""The MV-DUSt3R ``Linear`` (oneDNN product in eager CPU inference) equals ``F.linear``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from recon_ros.models.mvdust3r.linear import ONEDNN_LINEAR, Linear


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_f_linear_on_odd_layouts(bias: bool) -> None:
    torch.manual_seed(0)
    lin = Linear(96, 40, bias=bias).eval()
    cases = {
        "3d": torch.randn(2, 7, 96),
        "1d": torch.randn(96),
        "transposed": torch.randn(96, 5).t(),
        "broadcast": torch.randn(3, 1, 96).expand(3, 4, 96),
        "size-1 odd stride": torch.randn(96, 1).t(),
    }
    with torch.no_grad():
        for name, x in cases.items():
            ref = F.linear(x.double(), lin.weight.double(), None if lin.bias is None else lin.bias.double())
            out = lin(x)
            assert out.shape == ref.shape, name
            # float32 products of 96 terms: measured <= 3e-7 of the output scale (F.linear: same order)
            assert (out.double() - ref).abs().max() <= 2e-6 * ref.abs().max(), name


def test_linear_state_dict_and_autograd_are_those_of_nn_linear() -> None:
    lin = Linear(8, 4)
    assert set(lin.state_dict()) == {"weight", "bias"}
    x = torch.randn(3, 8, requires_grad=True)
    lin(x).sum().backward()  # with autograd recording the plain F.linear runs
    assert x.grad is not None and lin.weight.grad is not None


def test_onednn_operator_is_present_in_this_build() -> None:
    # The speed-up relies on it; a torch without it still runs (F.linear), this flags the slow build.
    assert ONEDNN_LINEAR
