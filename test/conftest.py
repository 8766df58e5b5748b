"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recon_ros.testing import require_fixture

# test/launch/ holds launch_testing files: they run in their own ROS processes (private
# ROS_DOMAIN_ID, see ros_harness.py), started by test/test_ros_node.py, never in this process.
collect_ignore = [] if os.environ.get("RECON_ROS_IN_ROS_TEST") else ["launch"]


@pytest.fixture
def diffmvs_fixture() -> Path:
    return require_fixture("diffmvs")


@pytest.fixture
def mvdust3r_fixture() -> Path:
    return require_fixture("mvdust3r")


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """Environment for ROS test processes; skips (saying why) where no ROS 2 is set up."""
    from ros_harness import ros_environment

    env, why = ros_environment()
    if env is None:
        pytest.skip(f"ROS 2 tests skipped: {why}")
    return env
