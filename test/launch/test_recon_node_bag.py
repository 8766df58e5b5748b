# ruff: noqa: I001  -- ruff takes `launch` for first-party because of the repo's launch/ folder
"""launch_testing: recon_node on a small synthetic bag -> clouds, depth and TF with the right frames and stamps.

Run on a ROS 2 machine (colcon test, or `launch_test test/launch/test_recon_node_bag.py`). Without
rclpy/launch_testing (our CI container), pytest collects this file and skips it.
"""

from __future__ import annotations

import pytest

pytest.importorskip("launch_testing", reason="launch_testing is not installed: source ROS 2 to run launch tests")
pytest.importorskip("rclpy", reason="rclpy is not importable: source /opt/ros/<distro>/setup.bash to run launch tests")

import tempfile  # noqa: E402
import time  # noqa: E402
import unittest  # noqa: E402
from pathlib import Path  # noqa: E402

import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from launch.events import matches_action  # noqa: E402
from launch_ros.event_handlers import OnStateTransition  # noqa: E402
from launch_ros.events.lifecycle import ChangeState  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from recon_ros.synthetic import SyntheticConfig, SyntheticSequence  # noqa: E402
from recon_ros.synthetic.bag import write_sequence_bag  # noqa: E402

SEQ = SyntheticConfig(n_cameras=2, n_frames=12, width=160, height=120)
PARAMS = {"depth.num_planes": 24, "keyframes.min_translation_m": 0.02, "keyframes.buffer_size": 4,
          "fusion.delay_keyframes": 1, "runtime.queue_size": 4, "use_sim_time": True}


@pytest.mark.launch_test
def generate_test_description():
    seq = SyntheticSequence(SEQ)
    bag = Path(tempfile.mkdtemp(prefix="recon_launch_test_")) / "bag"
    write_sequence_bag(seq, bag, progress=False)
    node = launch_ros.actions.LifecycleNode(
        package="recon_ros", executable="recon_node", name="recon", namespace="",
        parameters=[{**PARAMS, "cameras": seq.camera_names}], output="screen")
    # Play slowly so inference (CPU, plane sweep) keeps up: the test checks outputs, not drops.
    play = launch.actions.ExecuteProcess(cmd=["ros2", "bag", "play", str(bag), "--clock", "--rate", "0.3"],
                                         output="screen")

    def change(transition: int):
        return launch.actions.EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                          transition_id=transition))

    on_inactive = launch.actions.RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[change(Transition.TRANSITION_ACTIVATE)]))
    on_active = launch.actions.RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="activating", goal_state="active", entities=[play]))
    context = {"recon": node, "stamps": {s for s, _ in seq.poses}, "cameras": seq.camera_names}
    return launch.LaunchDescription([
        on_inactive, on_active, node, change(Transition.TRANSITION_CONFIGURE),
        launch_testing.actions.ReadyToTest(),
    ]), context


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class TestOutputs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("recon_launch_test_listener")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_clouds_depth_and_tf_arrive_with_frames_and_stamps(self, stamps, cameras):
        got: dict[str, list] = {"cloud": [], "map": [], "tf": [], **{f"depth/{c}": [] for c in cameras}}
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        subs = [
            self.node.create_subscription(PointCloud2, "/recon/cloud", got["cloud"].append, reliable),
            self.node.create_subscription(PointCloud2, "/recon/map", got["map"].append, latched),
            self.node.create_subscription(TFMessage, "/tf", got["tf"].append, reliable),
        ]
        for c in cameras:
            subs.append(self.node.create_subscription(Image, f"/recon/depth/{c}/image", got[f"depth/{c}"].append,
                                                      reliable))
        recon_tf = lambda: [t for m in got["tf"] for t in m.transforms if t.header.frame_id == "map"]  # noqa: E731
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.2)
            if got["cloud"] and got["map"] and recon_tf() and all(got[f"depth/{c}"] for c in cameras):
                break
        missing = [k for k, v in got.items() if not v]
        self.assertFalse(missing, f"no messages on {missing} within 300 s")
        optical = {f"{c}_optical_frame" for c in cameras}
        for cloud in got["cloud"]:
            self.assertIn(cloud.header.frame_id, optical)
            self.assertIn(stamp_ns(cloud.header), stamps)  # source image stamps, never now()
            self.assertEqual(cloud.point_step, 16)
            self.assertEqual([f.name for f in cloud.fields], ["x", "y", "z", "rgb"])
        self.assertEqual(got["map"][-1].header.frame_id, "map")
        for c in cameras:
            depth = got[f"depth/{c}"][0]
            self.assertEqual(depth.encoding, "32FC1")
            self.assertEqual(depth.header.frame_id, f"{c}_optical_frame")
            self.assertIn(stamp_ns(depth.header), stamps)
        for t in recon_tf():
            self.assertEqual(t.child_frame_id, "odom")  # tf_mode map_odom: one transform, REP-105
            self.assertIn(stamp_ns(t.header), stamps)
        for s in subs:
            self.node.destroy_subscription(s)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_node_exits_cleanly(self, proc_info, recon):
        # SIGINT from launch at the end of the test is a clean exit for an rclpy node
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15], process=recon)
