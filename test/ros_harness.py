"""Running ROS 2 test processes: environment, a private ROS_DOMAIN_ID, and no process left behind.

The ROS tests never run rclpy inside the main pytest process. Each one starts its own process tree
(launch_testing through pytest, or a node) with:
  * the environment of ``<venv>/ros/env.sh`` (written by ``make ros`` / scripts/ros_workspace.sh:
    ROS 2 from /opt/ros or the wheels, plus the colcon-built recon_ros), or the current environment
    when it already holds an installed recon_ros (``colcon test``);
  * a ROS_DOMAIN_ID in 1..101 held under an exclusive file lock for the process's lifetime, so
    parallel test runs on one machine (several checkouts, CI jobs) never see each other's topics;
  * a marker variable; afterwards every process carrying it is killed and reported.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "RECON_ROS_TEST_RUN"
IN_ROS_PROCESS = "RECON_ROS_IN_ROS_TEST"  # set in the child: test/launch/ files are collected only there
FASTDDS_PROFILE = ROOT / "config" / "fastdds_udp_buffers.xml"  # UDPv4 only, 4 MB socket buffers


def ros_environment() -> tuple[dict[str, str] | None, str]:
    """(environment for ROS test processes, '') or (None, why the ROS tests skip)."""
    explicit = os.environ.get("RECON_ROS_ROS_ENV")
    env_file = Path(explicit) if explicit else Path(sys.prefix) / "ros" / "env.sh"
    if env_file.is_file():
        out = subprocess.run(["bash", "-c", f'. "{env_file}" >/dev/null && env -0'], capture_output=True,
                             timeout=60, check=False)
        if out.returncode != 0:
            return None, f"sourcing {env_file} failed: {out.stderr.decode(errors='replace')[-500:]}"
        env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
        return env, ""
    if any(Path(p, "share", "recon_ros", "package.xml").is_file()
           for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p):
        return dict(os.environ), ""  # colcon test: the installed package is already sourced
    why = env_file.with_name("unavailable")
    if why.is_file():
        return None, why.read_text().strip()
    return None, (f"no ROS 2 test environment: {env_file} is missing. Run `make ros` (or `make test`): it builds "
                  "recon_ros with colcon from a sourced /opt/ros/<distro> or the ROS 2 wheels (../shared/ros2 or "
                  "$RECON_ROS_ROS2_WHEELS)")


@contextmanager
def domain_id() -> Iterator[int]:
    """An exclusive ROS_DOMAIN_ID in 1..101 (above that, DDS ports can collide with ephemeral ports)."""
    ids = list(range(1, 102))
    random.shuffle(ids)
    lock_dir = Path(tempfile.gettempdir()) / "recon_ros_domains"
    lock_dir.mkdir(exist_ok=True)
    for i in ids:
        f = open(lock_dir / f"{i}.lock", "w")  # noqa: SIM115 -- held open for the lease
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        try:
            yield i
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
        return
    raise RuntimeError("all ROS domain ids 1..101 are in use by other test runs")


def processes_with(marker_value: str) -> list[int]:
    """PIDs whose environment carries ``MARKER=marker_value`` (our process tree, wherever it went)."""
    needle = f"{MARKER}={marker_value}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


class RosRun:
    """Result of :func:`run_ros`: exit code, combined output, and processes that outlived the run."""

    def __init__(self, returncode: int, output: str, leftovers: list[int], seconds: float, domain: int):
        self.returncode, self.output, self.leftovers, self.seconds, self.domain = \
            returncode, output, leftovers, seconds, domain


def run_ros(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None,
            extra_env: dict[str, str] | None = None) -> RosRun:
    """Run ``cmd`` in its own session with a private domain; kill whatever of it is left afterwards.

    The default working directory is a fresh temporary one, not the checkout: from the checkout,
    ``python -m`` would import the source tree's recon_ros, which lacks the colcon-generated
    recon_ros.msg / recon_ros.srv of the installed package.
    """
    marker = uuid.uuid4().hex
    with domain_id() as dom, tempfile.TemporaryDirectory(prefix="recon_ros_test_") as tmp:
        cwd = cwd or Path(tmp)
        child_env = {**env, **(extra_env or {}), MARKER: marker, IN_ROS_PROCESS: "1", "ROS_DOMAIN_ID": str(dom),
                     "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "PYTHONUNBUFFERED": "1",
                     # Fast DDS shared-memory ports are machine-wide, not per domain: beside other
                     # ROS runs on one machine (CI jobs, several checkouts) their locks collide and
                     # samples were lost; loopback UDP keeps test runs independent, with socket
                     # buffers large enough for camera images (see the profile's comment).
                     "FASTRTPS_DEFAULT_PROFILES_FILE": env.get("FASTRTPS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE)),
                     "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1")}
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            rc = -9
            out += f"\n[ros_harness] timed out after {timeout:.0f} s".encode()
        seconds = time.monotonic() - t0
        # Anything still alive with our marker was left behind by the run: report it, then end it.
        time.sleep(0.2)
        leftovers = processes_with(marker)
        _kill(leftovers, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and processes_with(marker):
            time.sleep(0.1)
        _kill(processes_with(marker), signal.SIGKILL)
        return RosRun(rc, out.decode(errors="replace"), leftovers, seconds, dom)
