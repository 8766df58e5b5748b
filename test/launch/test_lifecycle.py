# ruff: noqa: I001, E402  -- ruff takes `launch` for first-party because of the repo's launch/ folder
"""launch_testing: recon.launch.py with autostart:=false, driven through its lifecycle from this process.

Launch arguments used here: autostart:=false (the node must stay unconfigured), namespace:=robot1
(outputs move to /robot1/recon/...), cameras, backend, use_sim_time, log_level, config (the installed
default.yaml through the default value). Transitions over DDS (`change_state`/`get_state`):
configure -> activate -> deactivate -> cleanup -> configure with changed parameters -> activate ->
shutdown; lifecycle publishers are silent while inactive. Run by test/test_ros_node.py in its own
process and ROS domain.
"""

from __future__ import annotations

import time
import unittest

import pytest

pytest.importorskip("launch_testing", reason="launch_testing is not installed: source ROS 2 to run launch tests")
pytest.importorskip("rclpy", reason="rclpy is not importable: source ROS 2 to run launch tests")

import launch
import launch_testing.actions
import launch_testing.asserts
from diagnostic_msgs.msg import DiagnosticArray
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters

from launch_harness import RosTestCase
from recon_ros.msg import ReconStatus

NODE = "/robot1/recon"
CAMERAS = ["cam0", "cam1"]
CHANGED_CAMERAS = ["cam2"]


@pytest.mark.launch_test
def generate_test_description():
    recon = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource([FindPackageShare("recon_ros"), "/launch/recon.launch.py"]),
        launch_arguments={"autostart": "false", "namespace": "robot1", "cameras": ",".join(CAMERAS),
                          "backend": "torch", "use_sim_time": "false", "log_level": "debug"}.items())
    return launch.LaunchDescription([recon, launch_testing.actions.ReadyToTest()]), {}


class TestLifecycle(RosTestCase):
    """Tests run in name order; each one starts from the state the previous one reached."""

    node_name = "recon_lifecycle_test"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.change = cls.node.create_client(ChangeState, f"{NODE}/change_state")
        cls.get = cls.node.create_client(GetState, f"{NODE}/get_state")
        cls.set_params = cls.node.create_client(SetParameters, f"{NODE}/set_parameters")
        assert cls.change.wait_for_service(timeout_sec=120), "recon_node's lifecycle services never appeared"
        cls.received: list = []
        cls.node.create_subscription(ReconStatus, f"{NODE}/status", cls.received.append, 10)
        cls.node.create_subscription(DiagnosticArray, "/diagnostics", cls.received.append, 10)

    def call_client(self, client, request, timeout: float = 120.0):
        return self.wait_future(client.call_async(request), timeout, client.srv_name)

    def state(self) -> int:
        return self.call_client(self.get, GetState.Request()).current_state.id

    def transition(self, transition_id: int, expected_state: int) -> None:
        req = ChangeState.Request()
        req.transition.id = transition_id
        self.assertTrue(self.call_client(self.change, req).success)
        self.assertEqual(self.state(), expected_state)

    def services(self) -> set[str]:
        return {name for name, _ in self.node.get_service_names_and_types()}

    def assert_silent(self, seconds: float = 2.5) -> None:
        """The status timer runs at 1 Hz; inactive lifecycle publishers must send nothing."""
        self.received.clear()
        time.sleep(seconds)
        self.assertEqual(self.received, [], "publishers sent while inactive")

    def test_1_autostart_false_leaves_the_node_unconfigured(self):
        time.sleep(2.0)  # autostart would have configured by now
        self.assertEqual(self.state(), State.PRIMARY_STATE_UNCONFIGURED)
        self.assertEqual(self.node.count_publishers(f"{NODE}/map"), 0)

    def test_2_configure_creates_outputs_in_the_namespace(self):
        self.transition(Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE)
        self.assertTrue(self.wait_for(lambda: self.node.count_publishers(f"{NODE}/map") == 1))
        self.assertTrue(self.wait_for(lambda: self.node.count_publishers(f"{NODE}/depth/cam0/image") == 1))
        self.assertEqual(self.node.count_publishers("/recon/map"), 0)  # relative prefix: namespaced
        self.assertTrue(self.wait_for(lambda: {f"{NODE}/reset", f"{NODE}/save_map"} <= self.services()))
        self.assertEqual(self.node.count_subscribers("/cam0/image_raw"), 0)  # inputs only when active
        self.assertTrue(self.wait_for(lambda: self.node.count_subscribers("/tf_static") >= 1))
        self.assert_silent()

    def test_3_activate_subscribes_and_publishes_status(self):
        self.transition(Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)
        for cam in CAMERAS:
            self.assertTrue(self.wait_for(lambda c=cam: self.node.count_subscribers(f"/{c}/image_raw") == 1))
            self.assertTrue(self.wait_for(lambda c=cam: self.node.count_subscribers(f"/{c}/camera_info") == 1))
        self.received.clear()
        self.assertTrue(self.wait_for(lambda: any(isinstance(m, ReconStatus) for m in self.received), 10))
        self.assertTrue(any(isinstance(m, DiagnosticArray) for m in self.received))

    def test_4_deactivate_unsubscribes_and_silences(self):
        self.transition(Transition.TRANSITION_DEACTIVATE, State.PRIMARY_STATE_INACTIVE)
        self.assertTrue(self.wait_for(lambda: self.node.count_subscribers("/cam0/image_raw") == 0))
        self.assertEqual(self.node.count_publishers(f"{NODE}/map"), 1)
        self.assert_silent()

    def test_5_cleanup_releases_outputs(self):
        self.transition(Transition.TRANSITION_CLEANUP, State.PRIMARY_STATE_UNCONFIGURED)
        self.assertTrue(self.wait_for(lambda: self.node.count_publishers(f"{NODE}/map") == 0))
        self.assertTrue(self.wait_for(lambda: f"{NODE}/save_map" not in self.services()))

    def test_6_configure_with_changed_parameters(self):
        req = SetParameters.Request()
        req.parameters = [Parameter(name="cameras", value=ParameterValue(
            type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=CHANGED_CAMERAS))]
        self.assertTrue(all(r.successful for r in self.call_client(self.set_params, req).results))
        self.transition(Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE)
        self.assertTrue(self.wait_for(lambda: self.node.count_publishers(f"{NODE}/depth/cam2/image") == 1))
        self.assertEqual(self.node.count_publishers(f"{NODE}/depth/cam0/image"), 0)
        self.transition(Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)
        self.assertTrue(self.wait_for(lambda: self.node.count_subscribers("/cam2/image_raw") == 1))
        self.assertEqual(self.node.count_subscribers("/cam0/image_raw"), 0)

    def test_7_shutdown_finalizes(self):
        self.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN, State.PRIMARY_STATE_FINALIZED)
        self.assertTrue(self.wait_for(lambda: self.node.count_subscribers("/cam2/image_raw") == 0))


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_node_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
