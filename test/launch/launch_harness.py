"""What every launch test of this folder needs: a spinning test node and service calls with a deadline.

Imported by the launch-test files (pytest puts this folder on sys.path when it collects them); needs
rclpy, so it is only imported after their `pytest.importorskip("rclpy")`.
"""

from __future__ import annotations

import threading
import time
import unittest
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor


class RosTestCase(unittest.TestCase):
    """A test case with its own node, spun in a background thread for the whole class."""

    node_name = "recon_launch_test"

    @classmethod
    def setUpClass(cls) -> None:
        rclpy.init()
        cls.node = rclpy.create_node(cls.node_name)
        cls.executor = SingleThreadedExecutor()
        cls.executor.add_node(cls.node)
        cls.spin_thread = threading.Thread(target=cls.executor.spin, daemon=True)
        cls.spin_thread.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.executor.shutdown()
        cls.node.destroy_node()
        rclpy.shutdown()

    def wait_future(self, future: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(future.done(), f"{what} timed out after {timeout:.0f} s")
        return future.result()

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 120.0) -> Any:
        """Call service ``name`` (waiting for it to appear) and return the response."""
        client = self.node.create_client(srv_type, name)
        try:
            self.assertTrue(client.wait_for_service(timeout_sec=timeout), f"{name} never appeared")
            return self.wait_future(client.call_async(request), timeout, name)
        finally:
            self.node.destroy_client(client)

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return False
