# ruff: noqa: I001  -- ruff takes `launch` for first-party because of the repo's launch/ folder
"""launch_testing: one test per lifecycle transition of recon_node, checking what each creates or releases.

configure -> publishers and services exist; activate -> camera subscriptions exist; deactivate ->
they are gone; cleanup -> publishers are gone; shutdown -> finalized. Skipped without ROS.
"""

from __future__ import annotations

import pytest

pytest.importorskip("launch_testing", reason="launch_testing is not installed: source ROS 2 to run launch tests")
pytest.importorskip("rclpy", reason="rclpy is not importable: source /opt/ros/<distro>/setup.bash to run launch tests")

import time  # noqa: E402
import unittest  # noqa: E402

import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import rclpy  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402

CAMERAS = ["cam0", "cam1"]


@pytest.mark.launch_test
def generate_test_description():
    node = launch_ros.actions.LifecycleNode(
        package="recon_ros", executable="recon_node", name="recon", namespace="",
        parameters=[{"cameras": CAMERAS}], output="screen")
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()]), {"recon": node}


class TestLifecycle(unittest.TestCase):
    """Tests run in name order; each transition starts from the state the previous one reached."""

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("recon_lifecycle_test")
        cls.change = cls.node.create_client(ChangeState, "/recon/change_state")
        cls.get = cls.node.create_client(GetState, "/recon/get_state")
        assert cls.change.wait_for_service(timeout_sec=60), "recon_node's lifecycle services never appeared"

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def call(self, client, request, timeout: float = 120.0):
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=timeout)
        self.assertTrue(future.done(), "service call timed out")
        return future.result()

    def transition(self, transition_id: int, expected_state: int) -> None:
        req = ChangeState.Request()
        req.transition.id = transition_id
        self.assertTrue(self.call(self.change, req).success)
        self.assertEqual(self.call(self.get, GetState.Request()).current_state.id, expected_state)

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return False

    def services(self) -> set[str]:
        return {name for name, _ in self.node.get_service_names_and_types()}

    def test_1_configure(self):
        self.assertEqual(self.call(self.get, GetState.Request()).current_state.id, State.PRIMARY_STATE_UNCONFIGURED)
        self.transition(Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE)
        self.assertTrue(self.wait_for(lambda: self.node.count_publishers("/recon/map") == 1))
        self.assertTrue(self.wait_for(lambda: {"/recon/reset", "/recon/save_map"} <= self.services()))
        self.assertEqual(self.node.count_subscribers("/cam0/image_raw"), 0)  # inputs only when active

    def test_2_activate(self):
        self.transition(Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)
        for cam in CAMERAS:
            self.assertTrue(self.wait_for(lambda c=cam: self.node.count_subscribers(f"/{c}/image_raw") == 1))
            self.assertTrue(self.wait_for(lambda c=cam: self.node.count_subscribers(f"/{c}/camera_info") == 1))

    def test_3_deactivate(self):
        self.transition(Transition.TRANSITION_DEACTIVATE, State.PRIMARY_STATE_INACTIVE)
        self.assertTrue(self.wait_for(lambda: self.node.count_subscribers("/cam0/image_raw") == 0))
        self.assertEqual(self.node.count_publishers("/recon/map"), 1)

    def test_4_cleanup(self):
        self.transition(Transition.TRANSITION_CLEANUP, State.PRIMARY_STATE_UNCONFIGURED)
        self.assertTrue(self.wait_for(lambda: self.node.count_publishers("/recon/map") == 0))
        self.assertTrue(self.wait_for(lambda: "/recon/save_map" not in self.services()))

    def test_5_shutdown(self):
        self.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN, State.PRIMARY_STATE_FINALIZED)
