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
