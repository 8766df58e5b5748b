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
