"""Synthetic world with exact ground truth: procedural textured room, camera rig, robot trajectory and a
lazily rendered multi-camera sequence (used by the demo, the bag writer and the tests)."""

from recon_ros.synthetic.rig import (
    CameraSpec,
    RigSpec,
    T_base_optical,
    default_rig,
    intrinsics,
    optical_frame_id,
)
from recon_ros.synthetic.scene import Box, Scene, SceneParams
from recon_ros.synthetic.sequence import (
    GroundTruth,
    SyntheticConfig,
    SyntheticFrame,
    SyntheticSequence,
    load_ground_truth,
)
from recon_ros.synthetic.trajectory import lap_frames, loop_path, trajectory

__all__ = [
    "Box",
    "CameraSpec",
    "GroundTruth",
    "RigSpec",
    "Scene",
    "SceneParams",
    "SyntheticConfig",
    "SyntheticFrame",
    "SyntheticSequence",
    "T_base_optical",
    "default_rig",
    "intrinsics",
    "lap_frames",
    "load_ground_truth",
    "loop_path",
    "optical_frame_id",
    "trajectory",
]
