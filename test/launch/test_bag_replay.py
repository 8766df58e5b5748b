# ruff: noqa: I001, E402  -- ruff takes `launch` for first-party because of the repo's launch/ folder
"""launch_testing: bag_replay.launch.py plays a bag once the node is active, and Python logs reach /rosout.

A tiny synthetic recording (2 cameras) is replayed with bag_replay.launch.py (rviz:=false,
player:=recon, rate, config, cameras, backend, namespace, log_level). The node is configured with a
third camera `ghost` that never publishes and sync.min_cameras 2: the FrontEnd warns through Python
`logging` that the rig is degraded; that warning must arrive on /rosout under the node's name.
Playback must start only after the node reached `active` (the player's first log line comes after
the node's "active:" line: the node's from /rosout, the player's from its process output, since the player
exits right after playback and a /rosout reader that matches it late can miss its lines for good). Run by
test/test_ros_node.py in its own process.
"""

from __future__ import annotations

import re
import tempfile
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing", reason="launch_testing is not installed: source ROS 2 to run launch tests")
pytest.importorskip("rclpy", reason="rclpy is not importable: source ROS 2 to run launch tests")

import launch
import launch_testing.actions
import launch_testing.asserts
import yaml
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_ros.substitutions import FindPackageShare
from rcl_interfaces.msg import Log
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2

from launch_harness import RosTestCase
from recon_ros.synthetic import SyntheticConfig, SyntheticSequence
from recon_ros.synthetic.bag import write_sequence_bag

# The player's "playing" line as its process writes it: [INFO] [<ROS time>] [recon_player]: playing ...
PLAYING = re.compile(rb"\[(\d+\.\d+)\] \[recon_player\]: playing")
SEQ = SyntheticConfig(seed=0, n_cameras=2, n_frames=8, width=128, height=96)
PARAMS = {"sync": {"min_cameras": 2}, "keyframes": {"min_translation_m": 0.02}, "depth": {"num_planes": 24},
          "runtime": {"queue_size": 8}}


@pytest.mark.launch_test
def generate_test_description():
    tmp = Path(tempfile.mkdtemp(prefix="recon_replay_"))
    seq = SyntheticSequence(SEQ)
    write_sequence_bag(seq, tmp / "bag", progress=False)
    (tmp / "params.yaml").write_text(yaml.safe_dump({"/**": {"ros__parameters": PARAMS}}))
    replay = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource([FindPackageShare("recon_ros"), "/launch/bag_replay.launch.py"]),
        launch_arguments={"bag": str(tmp / "bag"), "config": str(tmp / "params.yaml"), "rviz": "false",
                          "cameras": ",".join([*seq.camera_names, "ghost"]), "backend": "torch",
                          "namespace": "replay", "log_level": "info", "rate": "1.0", "player": "recon"}.items())
    return launch.LaunchDescription([replay, launch_testing.actions.ReadyToTest()]), {}


class TestReplay(RosTestCase):
    node_name = "recon_replay_test"

    def test_plays_after_active_and_python_warnings_reach_rosout(self, proc_output):
        logs: list = []
        clouds: list = []
        rosout_qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(Log, "/rosout", logs.append, rosout_qos)
        self.node.create_subscription(PointCloud2, "/replay/recon/cloud", clouds.append,
                                      QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))

        def find(name_part: str, text: str):
            return [m for m in list(logs) if name_part in m.name and text in m.msg]

        def playing() -> list[float]:  # ROS times of the player's "playing" lines
            return [float(m.group(1)) for out in list(proc_output) for m in [PLAYING.search(out.text)] if m]

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (clouds and find("recon", "no image in the frame set")
                                                   and find("recon", "active: subscribed") and playing()):
            time.sleep(0.2)
        self.assertTrue(clouds, "no cloud on /replay/recon/cloud: playback never reached the node")
        warn = find("replay.recon", "no image in the frame set")
        self.assertTrue(warn, f"the FrontEnd's Python warning is not on /rosout: {[m.msg for m in logs][-20:]}")
        self.assertEqual(warn[0].level, Log.WARN)
        self.assertIn("/ghost/image_raw", warn[0].msg)
        active, started = find("recon", "active: subscribed"), playing()
        self.assertTrue(active, "the node's 'active:' line is not on /rosout")
        self.assertTrue(started, "the player's 'playing' line is not in its output")
        t_active = active[0].stamp.sec + active[0].stamp.nanosec * 1e-9
        self.assertLessEqual(t_active, started[0], "playback started before the node was active")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
