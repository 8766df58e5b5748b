"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from recon_ros.testing import FIXTURES_ENV, fixture_dir


def require_fixture(*parts: str) -> Path:
    """Return the fixture folder or skip the test, saying where the fixtures were looked for."""
    path = fixture_dir(*parts)
    if path is None:
        pytest.skip(
            f"parity fixture {'/'.join(parts)} not found (set {FIXTURES_ENV} or place ../shared/fixtures)"
        )
    return path


@pytest.fixture
def diffmvs_fixture() -> Path:
    return require_fixture("diffmvs")


@pytest.fixture
def mvdust3r_fixture() -> Path:
    return require_fixture("mvdust3r")
