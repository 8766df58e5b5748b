"""recon_ros: multi-camera 3D reconstruction for ROS 2 (MV-DUSt3R+ poses, DiffMVS depth)."""

__version__ = "0.1.0"
