"""The two seams of the engine: where poses come from and where depth comes from.

Pose sources: ``tf`` (odometry + rig extrinsics), ``mvdust3r`` / ``mvdust3r+`` (learned, scaled to
metres with the rig). Depth sources: ``planesweep`` (classical, no weights), ``diffmvs`` /
``casdiffmvs`` (learned). New sources implement the protocols below and register in the factories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from recon_ros.config import ReconConfig
from recon_ros.pipeline.frames import FrameSet, Keyframe, View


@dataclass
class PoseUpdate:
    """What a pose source reports for one keyframe (poses themselves are written into the views)."""

    T_map_odom: np.ndarray | None = None  # correction published as map->odom, when odometry exists
    scale: float = 1.0  # metric scale applied to learned poses
    residual_m: float = 0.0  # RMS residual of the metric alignment
    info: dict = field(default_factory=dict)


class PoseSource(Protocol):
    name: str

    def update(self, keyframe: Keyframe, window: list[Keyframe], frameset: FrameSet) -> PoseUpdate:
        """Set ``T_world_cam`` (and optionally ``depth_range``) of the views of ``keyframe``.

        ``window`` is the buffer's newest keyframes, ``keyframe`` last. May refine older views too.
        """
        ...


@dataclass
class DepthEstimate:
    depth: np.ndarray  # [h, w] float32 metres at the view's resolution, 0 = no estimate
    confidence: np.ndarray  # [h, w] float32 in [0, 1]
    valid: np.ndarray  # [h, w] bool photometric mask (confidence and source coverage)
    stage_confidences: list[np.ndarray] = field(default_factory=list)
    # Views this estimate is already left-right consistent with (SGBM's own check against its rectified
    # partner): the published-depth filter does not check it against them again.
    consistent_with: tuple[tuple[int, str], ...] = ()
    # [h, w] float32 in [0, 1] or None: how distinct the match is from the next-best one (a cost-curve measure;
    # SGBM's rectified pairs have it). The published confidence ranks by it; it masks nothing.
    distinctiveness: np.ndarray | None = None


class DepthSource(Protocol):
    name: str

    def estimate(self, ref: View, sources: list[View], depth_range: tuple[float, float]) -> DepthEstimate:
        ...


class TfPoseSource:
    """Poses straight from TF: ``T_odom_cam = T_odom_base @ T_base_cam``; map and odom coincide."""

    name = "tf"

    def update(self, keyframe: Keyframe, window: list[Keyframe], frameset: FrameSet) -> PoseUpdate:
        if frameset.T_odom_base is None:
            raise ValueError("pose source 'tf' needs odometry (odom->base_link) for every frame set")
        for cam, view in keyframe.views.items():
            view.T_world_cam = frameset.T_odom_base @ frameset.T_base_cam[cam]
        return PoseUpdate(T_map_odom=np.eye(4))


def build_pose_source(cfg: ReconConfig, device: str = "cpu") -> PoseSource:
    if cfg.pose.source == "tf":
        return TfPoseSource()
    from recon_ros.pipeline.learned_pose import build_learned_pose_source

    return build_learned_pose_source(cfg, device)


def build_depth_source(cfg: ReconConfig, device: str = "cpu") -> DepthSource:
    if cfg.depth.source == "planesweep":
        from recon_ros.pipeline.planesweep import PlaneSweepDepth

        return PlaneSweepDepth(cfg.depth, device, cfg.fusion.confidence_threshold)
    from recon_ros.pipeline.learned_depth import build_learned_depth_source

    return build_learned_depth_source(cfg, device)
