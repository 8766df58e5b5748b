"""Helpers shared by the test-suite and `fixture-run`: where the upstream-parity fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that points at the shared fixtures folder (holding `diffmvs/`, `mvdust3r/`).
FIXTURES_ENV = "RECON_ROS_FIXTURES"


def fixtures_root() -> Path:
    """The fixtures folder: `$RECON_ROS_FIXTURES`, else `../shared/fixtures` beside the repository."""
    env = os.environ.get(FIXTURES_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"


def fixture_dir(*parts: str) -> Path | None:
    """Path of one fixture folder, or None when the fixtures are not available."""
    path = fixtures_root().joinpath(*parts)
    return path if path.is_dir() else None


def require_fixture(*parts: str) -> Path:
    """The fixture folder, or skip the calling test saying where the fixtures were looked for."""
    import pytest

    path = fixture_dir(*parts)
    if path is None:
        pytest.skip(
            f"parity fixture {'/'.join(parts)} not found under {fixtures_root()} "
            f"(set {FIXTURES_ENV} to the shared fixtures folder)"
        )
    return path


#: Relative tolerance on a confidence threshold. The fixture manifests give rtol 1e-4 for thresholds,
#: masks and focal; the largest difference seen across machines is one float32 ulp (~1e-7 relative).
THRESHOLD_RTOL = 1e-4


def assert_threshold_close(name: str, mine: float, ref: float, rtol: float = THRESHOLD_RTOL) -> None:
    """A percentile threshold equals the reference within `rtol` (a sort of float32 values may tie
    differently on another CPU, moving the picked value by an ulp)."""
    mine, ref = float(mine), float(ref)
    assert abs(mine - ref) <= rtol * abs(ref), f"{name}: {mine} vs reference {ref} (rtol {rtol})"


def assert_mask_parity(
    name: str, mine, ref, values, threshold: float, rtol: float = THRESHOLD_RTOL
) -> None:
    """Masks `values >= threshold` agree except at threshold ties: a pixel may fall on either side only
    when its value is within `rtol * |threshold|` of the threshold (the manifest's tie rule)."""
    import numpy as np

    mine, ref, values = np.asarray(mine), np.asarray(ref), np.asarray(values, dtype=np.float64)
    assert mine.shape == ref.shape == values.shape, f"{name}: shapes {mine.shape} {ref.shape} {values.shape}"
    differ = mine != ref
    tie = np.abs(values - float(threshold)) <= rtol * abs(float(threshold))
    bad = int((differ & ~tie).sum())
    assert bad == 0, (
        f"{name}: {bad} pixels differ away from the threshold {threshold} "
        f"({int(differ.sum())} differ in all, {int(tie.sum())} within the tie band rtol {rtol})"
    )
