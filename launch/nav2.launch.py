# ruff: noqa: I001  -- ruff takes `launch` for first-party because of this launch/ folder
"""recon_ros wired into a Nav2 costmap: recon_node (configured + activated) and, by default, a
standalone Nav2 costmap (nav2_costmap_2d) loaded with config/nav2_costmap.yaml, managed by a Nav2
lifecycle manager.

    ros2 launch recon_ros nav2.launch.py                      # recon_ros + standalone local costmap
    ros2 launch recon_ros nav2.launch.py costmap:=false       # recon_ros only; your Nav2 bringup
                                                              # loads config/nav2_costmap.yaml itself

The costmap needs Nav2 (`apt install ros-<distro>-navigation2`); recon_ros does not depend on it.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

SHARE = FindPackageShare("recon_ros")
ARGS = {
    "config": (PathJoinSubstitution([SHARE, "config", "default.yaml"]), "recon_ros parameter file."),
    "costmap_params": (PathJoinSubstitution([SHARE, "config", "nav2_costmap.yaml"]),
                       "Nav2 costmap parameters (local_costmap/local_costmap)."),
    "costmap": ("true", "Start a standalone Nav2 costmap on recon_ros's navigation cloud."),
    "navigation_frame": ("base_link", "Frame of /recon/obstacles (navigation.frame) = the costmap's robot_base_frame."),
    "use_sim_time": ("false", "Use /clock (true when replaying a bag with --clock)."),
}


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _launch(context: LaunchContext) -> list:
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    sim_time = _truthy(arg("use_sim_time"))
    recon = LifecycleNode(
        package="recon_ros", executable="recon_node", name="recon", namespace="",
        parameters=[arg("config"), {"use_sim_time": sim_time, "navigation.enabled": True,
                                    "navigation.frame": arg("navigation_frame")}],
        output="screen", emulate_tty=True,
    )

    def change(transition: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(recon), transition_id=transition))

    actions = [
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=recon, start_state="configuring", goal_state="inactive",
            entities=[change(Transition.TRANSITION_ACTIVATE)])),
        recon,
        change(Transition.TRANSITION_CONFIGURE),
    ]
    if _truthy(arg("costmap")):
        # nav2_costmap_2d's standalone executable hosts one Costmap2DROS; renamed to the usual
        # local_costmap/local_costmap so the parameter file is the one a Nav2 bringup uses.
        actions += [
            Node(package="nav2_costmap_2d", executable="nav2_costmap_2d", name="local_costmap",
                 namespace="local_costmap", parameters=[arg("costmap_params"), {"use_sim_time": sim_time}],
                 output="screen"),
            Node(package="nav2_lifecycle_manager", executable="lifecycle_manager", name="lifecycle_manager_costmap",
                 parameters=[{"use_sim_time": sim_time, "autostart": True,
                              "node_names": ["local_costmap/local_costmap"]}],
                 output="screen"),
        ]
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=d, description=desc) for name, (d, desc) in ARGS.items()),
        OpaqueFunction(function=_launch),
    ])
