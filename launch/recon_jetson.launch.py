# ruff: noqa: I001  -- ruff takes `launch` for first-party because of this launch/ folder
"""recon_node tuned for a Jetson Orin (JetPack 6, ROS 2 Humble): config/jetson_orin.yaml + TensorRT.

    ros2 launch recon_ros recon_jetson.launch.py cameras:=front,left,right,back

TensorRT engines are built on the first configure (minutes on an Orin) and cached in
runtime.engine_cache_dir; build them ahead with `recon-ros build-engine` to make start-up fast.
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

SHARE = FindPackageShare("recon_ros")


def generate_launch_description() -> LaunchDescription:
    args = {
        "config": (PathJoinSubstitution([SHARE, "config", "jetson_orin.yaml"]), "Parameter file."),
        "namespace": ("", "Namespace of the node."),
        "cameras": ("", "Comma-separated camera names; empty = from the config file."),
        "backend": ("tensorrt", "Inference backend; tensorrt is the fast path on Jetson."),
        "use_sim_time": ("false", "Use /clock."),
    }
    return LaunchDescription([
        *(DeclareLaunchArgument(n, default_value=d, description=h) for n, (d, h) in args.items()),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([SHARE, "launch", "recon.launch.py"])),
            launch_arguments={n: LaunchConfiguration(n) for n in args}.items(),
        ),
    ])
