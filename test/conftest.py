"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from recon_ros.testing import require_fixture


@pytest.fixture
def diffmvs_fixture() -> Path:
    return require_fixture("diffmvs")


@pytest.fixture
def mvdust3r_fixture() -> Path:
    return require_fixture("mvdust3r")
