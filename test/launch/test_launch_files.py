# ruff: noqa: I001, E402  -- ruff takes `launch` for first-party because of the repo's launch/ folder
"""launch_testing: recon_jetson.launch.py, nav2.launch.py, an invalid parameter file (recon.launch.py with
node_name), and `ros2 run recon_ros recon_node`.

* recon_jetson.launch.py with every argument (config, namespace, cameras, backend, use_sim_time):
  the node comes up active under /jet with use_sim_time set.
* recon.launch.py with a parameter file holding an invalid value: configure fails, the log names
  the parameter, the node stays unconfigured and keeps running.
* `ros2 run recon_ros recon_node` (the installed executable) starts and answers get_state.
Run by test/test_ros_node.py in its own process and ROS domain.
"""

from __future__ import annotations

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
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from launch_harness import RosTestCase
from rcl_interfaces.srv import GetParameters

SHARE = FindPackageShare("recon_ros")


@pytest.mark.launch_test
def generate_test_description():
    tmp = Path(tempfile.mkdtemp(prefix="recon_launch_files_"))
    # jetson_orin.yaml names TensorRT and learned models (weights are not here): same launch file,
    # a plane-sweep config.
    (tmp / "jetson.yaml").write_text(yaml.safe_dump({"/**": {"ros__parameters": {"depth": {"source": "planesweep"},
                                                                                     "pose": {"source": "tf"}}}}))
    (tmp / "invalid.yaml").write_text(yaml.safe_dump({"/**": {"ros__parameters": {"pose": {"source": "bogus"}}}}))
    jetson = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource([SHARE, "/launch/recon_jetson.launch.py"]),
        launch_arguments={"config": str(tmp / "jetson.yaml"), "namespace": "jet", "cameras": "a,b",
                          "backend": "torch", "use_sim_time": "true"}.items())
    invalid = launch.actions.GroupAction([launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource([SHARE, "/launch/recon.launch.py"]),
        launch_arguments={"config": str(tmp / "invalid.yaml"), "namespace": "bad", "cameras": "a",
                          "node_name": "recon_bad"}.items())])
    # nav2.launch.py without the costmap (nav2_costmap_2d is not in the ROS wheels): the node comes up
    # with navigation on, in the frame given.
    (tmp / "nav2.yaml").write_text(yaml.safe_dump({"/**": {"ros__parameters": {"cameras": ["cam_nav"],
                                                                                  "runtime": {"backend": "torch"}}}}))
    nav2 = launch.actions.GroupAction([launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource([SHARE, "/launch/nav2.launch.py"]),
        launch_arguments={"config": str(tmp / "nav2.yaml"), "costmap": "false", "navigation_frame": "base_footprint",
                          "use_sim_time": "false", "costmap_params": "/nonexistent/unused.yaml"}.items())])
    run = launch.actions.ExecuteProcess(
        cmd=["ros2", "run", "recon_ros", "recon_node", "--ros-args", "-r", "__ns:=/run", "-p", "cameras:=[a]"],
        output="screen")
    return launch.LaunchDescription([jetson, invalid, nav2, run, launch_testing.actions.ReadyToTest()]), {"run": run}


class TestLaunchFiles(RosTestCase):
    node_name = "recon_launch_files_test"

    def state_eventually(self, node: str, wanted: int, timeout: float = 180.0) -> int:
        deadline = time.monotonic() + timeout
        state = -1
        while time.monotonic() < deadline:
            state = self.call(GetState, f"{node}/get_state", GetState.Request()).current_state.id
            if state == wanted:
                break
            time.sleep(0.5)
        return state

    def test_jetson_launch_comes_up_active_in_its_namespace(self):
        self.assertEqual(self.state_eventually("/jet/recon", State.PRIMARY_STATE_ACTIVE), State.PRIMARY_STATE_ACTIVE)
        params = self.call(GetParameters, "/jet/recon/get_parameters",
                           GetParameters.Request(names=["use_sim_time", "cameras", "runtime.backend"])).values
        self.assertTrue(params[0].bool_value)
        self.assertEqual(list(params[1].string_array_value), ["a", "b"])
        self.assertEqual(params[2].string_value, "torch")
        self.assertGreaterEqual(self.node.count_subscribers("/a/image_raw"), 1)
        self.assertEqual(self.node.count_publishers("/jet/recon/cloud"), 1)

    def test_invalid_parameter_file_fails_configure_naming_the_parameter(self, proc_output):
        proc_output.assertWaitFor("parameter 'pose.source'", timeout=180, stream="stderr")
        self.assertEqual(self.state_eventually("/bad/recon_bad", State.PRIMARY_STATE_UNCONFIGURED, 30),
                         State.PRIMARY_STATE_UNCONFIGURED)

    def test_nav2_launch_comes_up_with_navigation_in_the_given_frame(self):
        self.assertEqual(self.state_eventually("/recon", State.PRIMARY_STATE_ACTIVE), State.PRIMARY_STATE_ACTIVE)
        params = self.call(GetParameters, "/recon/get_parameters",
                           GetParameters.Request(names=["navigation.enabled", "navigation.frame"])).values
        self.assertTrue(params[0].bool_value)
        self.assertEqual(params[1].string_value, "base_footprint")
        self.assertEqual(self.node.count_publishers("/recon/obstacles"), 1)
        self.assertGreaterEqual(self.node.count_subscribers("/cam_nav/image_raw"), 1)

    def test_ros2_run_starts_the_installed_node(self, proc_info, run):
        self.assertEqual(self.state_eventually("/run/recon", State.PRIMARY_STATE_UNCONFIGURED),
                         State.PRIMARY_STATE_UNCONFIGURED)
        # `ros2 run` forwards no signal to its child (it expects a terminal's Ctrl-C to reach both): stop
        # the node itself with SIGINT, as a user's Ctrl-C would, and expect both to exit cleanly.
        import signal

        import psutil

        for child in psutil.Process(run.process_details["pid"]).children(recursive=True):
            child.send_signal(signal.SIGINT)
        proc_info.assertWaitForShutdown(process=run, timeout=60)
        launch_testing.asserts.assertExitCodes(proc_info, process=run)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
