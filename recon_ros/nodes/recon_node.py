#!/usr/bin/env python3
"""recon_node: the live front end of recon_ros, a ROS 2 lifecycle node. Thin glue only.

  unconfigured --configure--> inactive: parameters -> ReconConfig, engine + worker built (models
                              loaded), publishers, services, /tf + /tf_static subscriptions, status timer
  inactive --activate--> active:        camera subscriptions created; frames flow
  active --deactivate--> inactive:      subscriptions removed, pending work drained and published
  inactive --cleanup--> unconfigured:   everything above released (change parameters, configure again)

All work between "message in" and "messages out" lives in ``recon_ros.nodes.live.LiveRecon``
(ROS-free, shared with the benchmark); outputs are the bag tool's (``recon_ros.io.outputs``).
Importing this module never needs rclpy; building the node or calling ``main()`` without it raises
an ImportError that says to source ROS 2.

TF without tf2_ros (not available from PyPI's ROS wheels, and not needed): the node subscribes to
/tf and /tf_static (tf2_ros's QoS: reliable; /tf_static transient local) into the same
``TfBuffer`` the bag tool uses, and publishes its own transform as tf2_msgs/TFMessage on /tf.
"""

from __future__ import annotations

import os
import traceback
from typing import Any

from recon_ros.config import ConfigError, ReconConfig, from_dict
from recon_ros.io.cameras import NoCameras, camera_topics, wait_for_cameras
from recon_ros.io.outputs import output_topics
from recon_ros.nodes.live import LiveRecon, parameter_specs, parameter_values_to_dict
from recon_ros.nodes.ros_logging import route_python_logging
from recon_ros.pipeline.tf_buffer import TfBuffer, add_tf_message

RCLPY_HINT = (
    "rclpy is required to run the recon_ros node, but it cannot be imported ({error}). Source ROS 2 "
    "first: `source /opt/ros/<distro>/setup.bash` (humble or jazzy) and then your workspace's "
    "`install/setup.bash`; rclpy is not on PyPI. Without ROS, use `recon-ros bag IN OUT` on recorded bags."
)

try:
    import rclpy
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.clock import Clock, ClockType
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.lifecycle import Node as LifecycleNode
    from rclpy.lifecycle import State, TransitionCallbackReturn
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    from recon_ros.io.messages import MessageKit

    _IMPORT_ERROR: ImportError | None = None
except ImportError as _exc:  # no ROS sourced: the module stays importable (docs, tests, entry points)
    _IMPORT_ERROR = _exc
    LifecycleNode = object  # type: ignore[assignment,misc]


def require_rclpy() -> None:
    if _IMPORT_ERROR is not None:
        raise ImportError(RCLPY_HINT.format(error=_IMPORT_ERROR)) from _IMPORT_ERROR


def _qos(reliability: str, depth: int, latched: bool = False) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class ReconNode(LifecycleNode):
    def __init__(self, node_name: str = "recon", **kwargs: Any):
        require_rclpy()
        super().__init__(node_name, **kwargs)
        # Declared once from the schema, read on every configure (change them while unconfigured).
        self._specs = parameter_specs()
        for spec in self._specs:
            desc = ParameterDescriptor(description=spec.description, dynamic_typing=spec.kind == "dynamic_array")
            self.declare_parameter(spec.name, None if desc.dynamic_typing else spec.default, desc)
        # Images, camera info, services and the input tick share one exclusive group: the FrontEnd is
        # single-threaded. /tf and /tf_static have their own group and only fill the (locked) TfBuffer:
        # in one group with the images, the executor served 4 busy image topics first and transforms
        # fell 0.5 s behind (frame sets dropped as tf_extrapolation over DDS). Frame sets that wait for
        # TF are retried on every image and on the input tick (LiveRecon.on_tf).
        # (Not named _timers/_services: those are rclpy.Node's own lists.)
        self._inputs = MutuallyExclusiveCallbackGroup()
        self._tf_group = MutuallyExclusiveCallbackGroup()
        self._status_group = MutuallyExclusiveCallbackGroup()
        self._live: LiveRecon | None = None
        self._active = False
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._service_handles: list[Any] = []
        self._tf_subs: list[Any] = []
        self._tf_buffer: TfBuffer | None = None
        self._status_timer: Any = None
        self._idle_timer: Any = None
        # Timers run on the steady clock: with use_sim_time a ROS-time timer stops with /clock (a paused
        # or finished bag), and status and the input tick must keep running then.
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._log_handler = route_python_logging(self.get_logger(), level=int(self.get_logger().get_effective_level()))

    # ---- lifecycle ------------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            cfg = from_dict(parameter_values_to_dict({s.name: self.get_parameter(s.name).value for s in self._specs}))
            # no camera names: find them on the graph (image topics with a camera_info beside them)
            cfg = wait_for_cameras(cfg, self.get_topic_names_and_types, self.get_name(), self.get_logger().info)
        except (ConfigError, NoCameras) as exc:
            self.get_logger().error(f"{'invalid parameters' if isinstance(exc, ConfigError) else 'no cameras'}: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.cfg = cfg
        try:
            self._create_entities(cfg)
        except Exception as exc:  # missing checkpoint, bad device, messages not built...: stay unconfigured
            self.get_logger().error(f"configure failed: {type(exc).__name__}: {exc}")
            self.get_logger().debug("configure failed at:\n" + traceback.format_exc())
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._status_timer = self.create_timer(1.0, self._on_status_timer, callback_group=self._status_group,
                                               clock=self._steady)
        self.get_logger().info(
            f"configured: {len(cfg.cameras)} cameras {cfg.cameras}, pose={cfg.pose.source}, depth={cfg.depth.source}, "
            f"backend={cfg.runtime.backend}, outputs under {cfg.relative_output_topic(cfg.output_topic(''))}")
        return super().on_configure(state)

    def _create_entities(self, cfg: ReconConfig) -> None:
        from std_srvs.srv import Trigger

        from recon_ros.srv import SaveMap  # generated by colcon (rosidl); absent in a pip-only install

        kit = MessageKit.for_rclpy()
        out_qos = _qos(cfg.qos.clouds, cfg.qos.depth_queue)
        latched = _qos("reliable", 1, latched=True)  # the map and path: late joiners (RViz) get the latest
        for topic, type_name in output_topics(cfg).items():
            qos = latched if topic in (cfg.output_topic("map"), cfg.output_topic("path")) else out_qos
            # relative prefix (default): the node's namespace moves the outputs
            self._pubs[topic] = self.create_lifecycle_publisher(kit.cls(type_name), cfg.relative_output_topic(topic),
                                                                qos)
        self._pubs["~/status"] = self.create_lifecycle_publisher(kit.cls("recon_ros/msg/ReconStatus"), "~/status", 10)
        self._pubs["/diagnostics"] = self.create_lifecycle_publisher(
            kit.cls("diagnostic_msgs/msg/DiagnosticArray"), "/diagnostics", 10)
        # Exactly one publisher per transform (REP-105): recon_ros publishes only what tf_mode names,
        # with tf2_ros's broadcaster QoS (reliable, volatile, depth 100).
        if cfg.frames.tf_mode != "none":
            self._pubs["/tf"] = self.create_lifecycle_publisher(TFMessage, "/tf", _qos("reliable", 100))
        self._tf_buffer = tf_buffer = TfBuffer()
        self._tf_subs = [
            self.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), _qos("reliable", 100),
                                     callback_group=self._tf_group),
            self.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True),
                                     _qos("reliable", 100, latched=True), callback_group=self._tf_group),
        ]
        self._live = LiveRecon(cfg, kit, tf_buffer, self._publish, warn=self.get_logger().warning,
                               clock_ns=lambda: self.get_clock().now().nanoseconds)
        self._service_handles = [
            self.create_service(Trigger, "~/reset", self._on_reset, callback_group=self._inputs),
            self.create_service(SaveMap, "~/save_map", self._on_save_map, callback_group=self._inputs),
        ]

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        cfg, live = self.cfg, self._live
        qos = _qos(cfg.qos.images, cfg.qos.image_queue)  # sensor-data QoS by default (best effort)
        for src in camera_topics(cfg):  # raw or compressed per camera
            cam = src.name
            self._subs.append(self.create_subscription(
                CompressedImage if src.compressed else Image, src.image_topic,
                lambda msg, c=cam: live.on_image(c, msg), qos, callback_group=self._inputs))
            # CameraInfo: sensor-data QoS whatever qos.images says (drivers publish it so; with a
            # reliable reader here, one camera's CameraInfo never arrived in the 4-camera DDS test).
            self._subs.append(self.create_subscription(
                CameraInfo, cfg.camera_info_topic(cam), lambda msg, c=cam: live.on_camera_info(c, msg),
                _qos("best_effort", cfg.qos.image_queue), callback_group=self._inputs))
        # The input tick (same group as the images: FrontEnd): frame sets waiting for TF go on once it
        # arrived, and when input stopped (end of a recording, cameras gone) half-assembled frame sets
        # are settled after sync.timeout_s instead of waiting for an image that may never come.
        self._idle_timer = self.create_timer(0.1, live.on_input_tick, callback_group=self._inputs, clock=self._steady)
        self._active = True
        self.get_logger().info(f"active: subscribed to {', '.join(cfg.image_topic(c) for c in cfg.cameras)}")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        self._drop_subscriptions()
        if self._live is not None and not self._live.drain(timeout=10.0):
            self.get_logger().warning("deactivate: inference still busy after 10 s; pending output may be lost")
        return super().on_deactivate(state)  # publishers go inactive after the drained output is out

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in state {state.label}; releasing resources")
        self._active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    # ---- glue -----------------------------------------------------------------------------------
    def _publish(self, topic: str, msg: Any) -> None:
        """Called by LiveRecon (worker thread for keyframes); rclpy publishers are thread-safe."""
        pub = self._pubs.get(topic)
        if pub is None:  # /tf with tf_mode none, or released during cleanup: nothing to send
            return
        try:
            pub.publish(msg)
        except RCLError:
            if self.context.ok():
                raise
            # SIGINT shut the context down while the worker was finishing a keyframe: nowhere to send it

    def _on_tf(self, msg: Any, static: bool) -> None:
        if self._tf_buffer is None:
            return
        for problem in add_tf_message(self._tf_buffer, msg, static):
            self.get_logger().warning(f"{'/tf_static' if static else '/tf'}: {problem}", throttle_duration_sec=5.0)

    def _on_status_timer(self) -> None:
        if self._active and self._live is not None:
            for topic, msg in self._live.status_messages():
                if topic == "/diagnostics":
                    self._add_subscriber_counts(msg)
                self._publish(topic, msg)

    def _add_subscriber_counts(self, diagnostics: Any) -> None:
        """``subscribers.<topic>``: subscriptions each output publisher has matched. Whether anyone listens
        (a costmap on /recon/obstacles, RViz on the map) is the first question when an output "is empty"."""
        from diagnostic_msgs.msg import KeyValue

        values = diagnostics.status[0].values
        for topic, pub in self._pubs.items():
            if topic.startswith("/") and topic not in ("/diagnostics", "/tf"):
                values.append(KeyValue(key=f"subscribers.{topic}", value=str(pub.get_subscription_count())))

    def _on_reset(self, request: Any, response: Any) -> Any:
        if self._live is None:
            response.success, response.message = False, "node is not configured"
            return response
        response.success, response.message = True, self._live.reset()
        return response

    def _on_save_map(self, request: Any, response: Any) -> Any:
        if self._live is None:
            response.success, response.message = False, "node is not configured"
            return response
        try:
            n, path = self._live.save_map(request.path)
        except (OSError, ValueError) as exc:
            response.success, response.message = False, f"cannot save map: {exc}"
            return response
        response.success, response.points, response.path = True, n, str(path)
        response.message = f"saved {n} points to {path}"
        return response

    def _drop_subscriptions(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._idle_timer is not None:
            self.destroy_timer(self._idle_timer)
            self._idle_timer = None

    def _release(self) -> None:
        """Undo on_configure (and on_activate); safe to call in any state."""
        self._drop_subscriptions()
        if self._live is not None:
            self._live.close()
            self._live = None
        for srv in self._service_handles:
            self.destroy_service(srv)
        self._service_handles = []
        if self._status_timer is not None:
            self.destroy_timer(self._status_timer)
            self._status_timer = None
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        for sub in self._tf_subs:
            self.destroy_subscription(sub)
        self._tf_subs = []
        self._tf_buffer = None


def main(args: list[str] | None = None) -> None:
    require_rclpy()
    rclpy.init(args=args)
    node = ReconNode()
    # One thread per callback group (inputs, /tf, status timer, lifecycle services): with the default
    # (one per core) a 2-core robot computer left /tf waiting behind images and timers.
    executor = MultiThreadedExecutor(num_threads=max(4, os.cpu_count() or 1))
    executor.add_node(node)
    try:
        while rclpy.ok():
            try:
                executor.spin_once()
            except RCLError as exc:
                # rclpy's lifecycle service raises out of spin when asked for a transition the current
                # state lacks (e.g. a second 'activate'); a bad request must not kill the node.
                node.get_logger().error(f"request failed: {exc}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._release()
        node.destroy_node()
        rclpy.try_shutdown()


__all__ = ["RCLPY_HINT", "ReconNode", "main", "require_rclpy"]


if __name__ == "__main__":  # installed as lib/recon_ros/recon_node by CMakeLists.txt
    main()
