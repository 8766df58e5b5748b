"""The ROS 2 suite: the colcon-built recon_ros on real DDS, each launch test in its own process.

Each test runs one launch_testing file of test/launch/ with pytest in a fresh process tree that
sources the ROS environment (``make ros``: /opt/ros/<distro> or the Jazzy wheels, plus recon_ros built
with colcon outside the source tree), holds a private ROS_DOMAIN_ID, and must leave no process behind.
Without ROS 2 these tests skip, saying why (never faked).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from ros_harness import ROOT, run_ros

LAUNCH = ROOT / "test" / "launch"


def run_launch_test(ros_env: dict[str, str], name: str, timeout: float, tmp_path: Path,
                    extra_env: dict[str, str] | None = None) -> str:
    junit = tmp_path / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
           "-p", "launch_testing.pytest.hooks", "-p", "launch_testing_ros_pytest_entrypoint",  # off in setup.cfg
           "-o", "junit_family=xunit2", str(LAUNCH / name)]
    run = run_ros(cmd, ros_env, timeout, extra_env=extra_env)
    (tmp_path / "output.log").write_text(run.output)
    print(f"{name}: {run.seconds:.1f} s in ROS_DOMAIN_ID {run.domain}; output in {tmp_path / 'output.log'}")
    assert run.returncode == 0, f"{name} failed (exit {run.returncode}):\n{run.output[-12000:]}"
    assert "skipped" not in run.output.splitlines()[-1], f"{name} was skipped:\n{run.output[-3000:]}"
    assert not run.leftovers, f"{name} left processes behind: {run.leftovers}"
    return run.output


@pytest.mark.slow
def test_end_to_end_recon_launch_with_player(ros_env: dict[str, str], tmp_path: Path) -> None:
    summary = tmp_path / "e2e.json"
    run_launch_test(ros_env, "test_recon_launch.py", 900, tmp_path, {"RECON_ROS_E2E_SUMMARY": str(summary)})
    result = json.loads(summary.read_text())
    print("end-to-end:", json.dumps(result))
    out = os.environ.get("RECON_ROS_E2E_RESULTS")  # benchmarks/README: stamp->cloud latency of this test
    if out:
        Path(out).write_text(json.dumps(result, indent=1))


def test_lifecycle_over_dds(ros_env: dict[str, str], tmp_path: Path) -> None:
    run_launch_test(ros_env, "test_lifecycle.py", 600, tmp_path)


def test_launch_files_invalid_parameters_and_ros2_run(ros_env: dict[str, str], tmp_path: Path) -> None:
    run_launch_test(ros_env, "test_launch_files.py", 600, tmp_path)


def test_bag_replay_plays_on_active_and_logs_reach_rosout(ros_env: dict[str, str], tmp_path: Path) -> None:
    run_launch_test(ros_env, "test_bag_replay.py", 600, tmp_path)


@pytest.mark.parametrize("name", ["test_recon_launch.py", "test_lifecycle.py", "test_launch_files.py",
                                  "test_bag_replay.py"])
def test_every_launch_test_file_is_driven_here(name: str) -> None:
    assert (LAUNCH / name).is_file()
    assert {p.name for p in LAUNCH.glob("test_*.py")} == {"test_recon_launch.py", "test_lifecycle.py",
                                                          "test_launch_files.py", "test_bag_replay.py"}


def test_colcon_test_passes_on_the_built_package(ros_env: dict[str, str]) -> None:
    """`colcon test` + `colcon test-result` on the colcon-built package (ament_add_pytest_test in CMakeLists.txt).

    The package's ctest list also holds test_ros_node (this file), which drives the launch tests; those
    already run here through pytest, so colcon runs the other three (ROS-free and package checks)."""
    if os.environ.get("RECON_ROS_UNDER_COLCON_TEST"):
        pytest.skip("this is already a `colcon test` run")
    ws = Path(sys.prefix) / "ros"
    if not (ws / "build" / "recon_ros" / "CTestTestfile.cmake").is_file():
        pytest.skip(f"no colcon build with tests in {ws} (this ROS environment was not built by `make ros`)")
    colcon = ["colcon", "test", "--paths", str(ws / "src" / "recon_ros"), "--build-base", str(ws / "build"),
              "--install-base", str(ws / "install"), "--ctest-args", "-R", "^(test_ros_package|test_ros_live|"
              "test_tf_buffer)$"]
    run = run_ros(colcon, ros_env, 900)
    assert run.returncode == 0, run.output[-5000:]
    result = run_ros(["colcon", "test-result", "--test-result-base", str(ws / "build" / "recon_ros"), "--all"],
                     ros_env, 120)
    summary = [line for line in result.output.splitlines() if line.startswith("Summary:")]
    assert result.returncode == 0 and summary, result.output[-3000:]
    tests, errors, failures = (int(summary[0].split()[i]) for i in (1, 3, 5))
    assert tests >= 20 and errors == 0 and failures == 0, summary[0]
    assert {"test_ros_package.xunit.xml", "test_ros_live.xunit.xml", "test_tf_buffer.xunit.xml"} <= {
        p.name for p in (ws / "build" / "recon_ros" / "test_results" / "recon_ros").glob("*.xml")}
