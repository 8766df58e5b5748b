# ruff: noqa: I001  -- ruff takes `launch` for first-party because of this launch/ folder
"""Start recon_node (a lifecycle node) and, by default, configure and activate it.

    ros2 launch recon_ros recon.launch.py config:=/path/params.yaml cameras:=front,left backend:=torch
    ros2 launch recon_ros recon.launch.py autostart:=false   # then: ros2 lifecycle set /recon configure ...

Launch arguments override the config file: cameras (comma-separated), backend, use_sim_time.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

ARGS = {
    "config": (PathJoinSubstitution([FindPackageShare("recon_ros"), "config", "default.yaml"]),
               "Parameter file (/**: ros__parameters: style)."),
    "namespace": ("", "Namespace of the node (and of relative output topics)."),
    "node_name": ("recon", "Name of the node."),
    "cameras": ("", "Comma-separated camera names; empty = from the config file."),
    "backend": ("", "Inference backend (torch | onnxruntime | tensorrt); empty = from the config file."),
    "use_sim_time": ("false", "Use /clock (true when replaying a bag with --clock)."),
    "autostart": ("true", "Configure and activate the node right away."),
    "log_level": ("info", "Logger level of the node."),
}


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _launch_node(context: LaunchContext) -> list:
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    overrides: dict = {"use_sim_time": _truthy(arg("use_sim_time"))}
    if arg("cameras").strip():
        overrides["cameras"] = [c.strip() for c in arg("cameras").split(",") if c.strip()]
    if arg("backend").strip():
        overrides["runtime.backend"] = arg("backend").strip()
    node = LifecycleNode(
        package="recon_ros",
        executable="recon_node",
        name=arg("node_name"),
        namespace=arg("namespace"),
        parameters=[arg("config"), overrides],  # later entries win: launch arguments beat the file
        arguments=["--ros-args", "--log-level", arg("log_level")],
        output="screen",
        emulate_tty=True,
    )
    if not _truthy(arg("autostart")):
        return [node]

    def change(transition: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition))

    # configure once the process is up; activate when configuring has reached 'inactive'
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[change(Transition.TRANSITION_ACTIVATE)]))
    return [activate, node, change(Transition.TRANSITION_CONFIGURE)]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=d, description=desc) for name, (d, desc) in ARGS.items()),
        OpaqueFunction(function=_launch_node),
    ])
