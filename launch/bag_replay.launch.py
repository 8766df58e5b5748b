# ruff: noqa: I001  -- ruff takes `launch` for first-party because of this launch/ folder
"""Replay a rosbag2 through recon_node with simulated time, and watch it in RViz.

    ros2 launch recon_ros bag_replay.launch.py bag:=/path/to/bag [config:=...] [rate:=0.5] [rviz:=false]

Playback starts when the node reaches `active` (a lifecycle event, not a timer: building TensorRT
engines on the first configure can take minutes). The player publishes /clock from the bag's
timestamps and the node runs with use_sim_time, so TF lookups and output stamps follow the
recording. player:=recon (default) uses recon_ros's own player (`recon-ros play`, rosbags + rclpy:
works without rosbag2); player:=ros2bag uses `ros2 bag play`.
"""

from __future__ import annotations

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, OpaqueFunction
from launch.actions import RegisterEventHandler
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.substitutions import FindPackageShare

SHARE = FindPackageShare("recon_ros")


def _player(context: LaunchContext) -> list:
    bag, rate = LaunchConfiguration("bag").perform(context), LaunchConfiguration("rate").perform(context)
    if LaunchConfiguration("player").perform(context) == "ros2bag":
        return [ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock", "--rate", rate], output="screen")]
    # `active` means the node created its subscriptions, not that DDS matched them to a new player:
    # the player also waits until the cameras' image topics have a matched subscriber (a short bag
    # played right away was lost whole before discovery completed).
    cameras = [c for c in LaunchConfiguration("cameras").perform(context).split(",") if c]
    return [Node(package="recon_ros", executable="play", name="recon_player", output="screen",
                 arguments=[bag, "--clock", "--rate", rate, "--wait-for-cameras", *cameras])]


def generate_launch_description() -> LaunchDescription:
    cfg = LaunchConfiguration
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 folder or .mcap file to play."),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([SHARE, "config", "default.yaml"]),
                              description="Parameter file."),
        DeclareLaunchArgument("cameras", default_value="", description="Comma-separated camera names."),
        DeclareLaunchArgument("backend", default_value="", description="Inference backend override."),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its outputs."),
        DeclareLaunchArgument("log_level", default_value="info", description="Logger level of the node."),
        DeclareLaunchArgument("rate", default_value="1.0", description="Playback rate (lower it on slow machines)."),
        DeclareLaunchArgument("player", default_value="recon", choices=["recon", "ros2bag"],
                              description="recon: recon_ros's player (no rosbag2 needed); ros2bag: ros2 bag play."),
        DeclareLaunchArgument("rviz", default_value="true", description="Start RViz with rviz/recon.rviz."),
    ]
    recon = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([SHARE, "launch", "recon.launch.py"])),
        launch_arguments={"config": cfg("config"), "cameras": cfg("cameras"), "backend": cfg("backend"),
                          "namespace": cfg("namespace"), "log_level": cfg("log_level"),
                          "use_sim_time": "true"}.items(),
    )
    # The included recon.launch.py configures and activates the node; play once it is active.
    play_when_active = RegisterEventHandler(OnStateTransition(
        goal_state="active", entities=[OpaqueFunction(function=_player)], handle_once=True))
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", condition=IfCondition(cfg("rviz")),
        arguments=["-d", PathJoinSubstitution([SHARE, "rviz", "recon.rviz"])],
        parameters=[{"use_sim_time": True}], output="screen",
    )
    return LaunchDescription([*args, play_when_active, recon, rviz])
