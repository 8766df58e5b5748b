# ruff: noqa: I001  -- ruff takes `launch` for first-party because of this launch/ folder
"""Replay a rosbag2 through recon_node with simulated time, and watch it in RViz.

    ros2 launch recon_ros bag_replay.launch.py bag:=/path/to/bag [config:=...] [rate:=0.5] [rviz:=false]

`ros2 bag play --clock` publishes /clock from the bag's timestamps; the node runs with
use_sim_time so TF lookups and output stamps follow the recording. Playback starts after
`play_delay` seconds so the node is active (models loaded) before the first image arrives.
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, TimerAction
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

SHARE = FindPackageShare("recon_ros")


def generate_launch_description() -> LaunchDescription:
    cfg = LaunchConfiguration
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 folder or .mcap file to play."),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([SHARE, "config", "default.yaml"]),
                              description="Parameter file."),
        DeclareLaunchArgument("cameras", default_value="", description="Comma-separated camera names."),
        DeclareLaunchArgument("backend", default_value="", description="Inference backend override."),
        DeclareLaunchArgument("rate", default_value="1.0", description="Playback rate (lower it on slow machines)."),
        DeclareLaunchArgument("play_delay", default_value="5.0", description="Seconds to wait before playing."),
        DeclareLaunchArgument("rviz", default_value="true", description="Start RViz with rviz/recon.rviz."),
    ]
    recon = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([SHARE, "launch", "recon.launch.py"])),
        launch_arguments={"config": cfg("config"), "cameras": cfg("cameras"), "backend": cfg("backend"),
                          "use_sim_time": "true"}.items(),
    )
    play = ExecuteProcess(cmd=["ros2", "bag", "play", cfg("bag"), "--clock", "--rate", cfg("rate")], output="screen")
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", condition=IfCondition(cfg("rviz")),
        arguments=["-d", PathJoinSubstitution([SHARE, "rviz", "recon.rviz"])],
        parameters=[{"use_sim_time": True}], output="screen",
    )
    return LaunchDescription([*args, recon, rviz, TimerAction(period=cfg("play_delay"), actions=[play])])
