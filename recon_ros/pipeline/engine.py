"""ReconstructionEngine: frame sets in, keyframe depth, clouds and a fused map out. No ROS here.

Per frame set: keyframe gate -> views at processing resolution -> pose source -> depth source per
view (sources chosen by frustum overlap) -> geometric-consistency fusion against the buffered views
-> voxel map. The node, the bag tool and the demo all drive this one class.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from recon_ros.config import ReconConfig
from recon_ros.geometry.camera import PinholeCamera, backproject
from recon_ros.geometry.se3 import transform_points
from recon_ros.pipeline.depth_filter import PublishedDepthFilter
from recon_ros.pipeline.frames import DropCounter, FrameSet, Keyframe, View
from recon_ros.pipeline.fusion import fuse_view, select_depth_sources, select_sources
from recon_ros.pipeline.keyframes import KeyframeBuffer, KeyframeSelector, OdometryJumpDetector
from recon_ros.pipeline.sources import DepthSource, PoseSource, build_depth_source, build_pose_source
from recon_ros.pipeline.voxel_map import VoxelMap

LOG = logging.getLogger("recon_ros")
MAX_PATH_POSES = 10_000  # bounds the published Path (one pose per keyframe)
STAGES = ("prepare", "pose", "depth", "fusion", "map")


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"runtime.device is '{name}' but torch sees no CUDA device")
    return name


@dataclass
class ViewOutput:
    camera: str
    frame_id: str
    stamp_ns: int
    depth: np.ndarray  # [h, w] float32, NaN = invalid (REP-118)
    confidence: np.ndarray  # [h, w] float32
    K: np.ndarray  # intrinsics at the depth resolution
    T_map_cam: np.ndarray
    sources: list[tuple[int, str]] = field(default_factory=list)
    keyframe_id: int = -1  # the keyframe this view belongs to (older ones can get depth late)
    # The depth sources' cameras (K, T_map_cam, (width, height)): with the depth they give how well each pixel is
    # triangulated (geometry.camera.depth_sensitivity; the navigation cloud uses it).
    source_cameras: list[tuple[np.ndarray, np.ndarray, tuple[int, int]]] = field(default_factory=list)


@dataclass
class CloudOutput:
    """Fused points of one view, in its optical frame (published as the per-keyframe cloud)."""

    keyframe_id: int
    camera: str
    frame_id: str
    stamp_ns: int
    T_map_cam: np.ndarray
    points_cam: np.ndarray  # [N, 3] float32
    colors: np.ndarray  # [N, 3] uint8
    kept_fraction: float  # fused pixels / all pixels of the view
    organized: np.ndarray | None = None  # [h, w, 3] float32, NaN = not fused (map.organized_keyframe_cloud)
    organized_colors: np.ndarray | None = None  # [h, w, 3] uint8


@dataclass
class KeyframeOutput:
    """Depth images due at this step, plus the clouds of the keyframes fused at it.

    Depth of keyframe k is estimated when keyframe k+1 arrives (``depth.wait_for_next_keyframe``; else
    at once). Fusion of keyframe k waits for ``fusion.delay_keyframes`` newer keyframes with depth so that
    each pixel can be checked against views on both sides of it; ``ReconstructionEngine.flush`` does the rest.
    """

    keyframe_id: int
    stamp_ns: int
    reason: str
    views: list[ViewOutput]
    clouds: list[CloudOutput]
    T_map_odom: np.ndarray
    T_odom_base: np.ndarray | None
    map_points: int
    stage_seconds: dict[str, float]
    scale: float = 1.0
    scale_residual_m: float = 0.0
    # The newest keyframe whose depth is in ``views`` (the navigation cloud is built from it) and its stamp:
    # with depth.wait_for_next_keyframe that is the previous keyframe; -1 when no view got depth this step.
    depth_keyframe_id: int = -1
    depth_stamp_ns: int = 0
    # (frame_id, stamp, T_map_cam) of the new keyframe's cameras (TF in tf_mode map_camera), whether or not
    # their depth is estimated yet
    camera_poses: list[tuple[str, int, np.ndarray]] = field(default_factory=list)


@dataclass
class FlushOutput:
    """What ``ReconstructionEngine.flush`` produced: the last depth images and clouds."""

    views: list[ViewOutput]
    clouds: list[CloudOutput]
    depth_keyframe_id: int = -1
    depth_stamp_ns: int = 0


class StageTimer:
    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.total: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.last[stage] = self.last.get(stage, 0.0) + dt
            self.total[stage] = self.total.get(stage, 0.0) + dt


class ReconstructionEngine:
    def __init__(
        self,
        cfg: ReconConfig,
        pose_source: PoseSource | None = None,
        depth_source: DepthSource | None = None,
        drops: DropCounter | None = None,
    ):
        cfg.validate()
        self.cfg = cfg
        self.device = resolve_device(cfg.runtime.device)
        if cfg.runtime.threads > 0:
            torch.set_num_threads(cfg.runtime.threads)
        self.pose_source = pose_source or build_pose_source(cfg, self.device)
        self.depth_source = depth_source or build_depth_source(cfg, self.device)
        self.depth_filter = PublishedDepthFilter(cfg.depth, cfg.fusion.max_views, self.device)
        self.drops = drops or DropCounter()
        self.keyframes = KeyframeBuffer(cfg.keyframes.buffer_size)
        self.selector = KeyframeSelector(cfg.keyframes)
        self.jumps = OdometryJumpDetector(cfg.pose.max_speed_mps, cfg.pose.max_turn_rate_dps)
        self.segment = 0  # bumped at each odometry jump; views pair only within a segment
        self.map = VoxelMap(cfg.map.voxel_size_m, cfg.map.max_points)
        self.path: deque[tuple[int, np.ndarray]] = deque(maxlen=MAX_PATH_POSES)
        self.timer = StageTimer()
        self.T_map_odom = np.eye(4)
        self.frame_sets = 0
        self.keyframe_count = 0
        self.images_in_keyframes = 0
        self.images_not_keyframe = 0
        self.last_scale = (1.0, 0.0)
        self._next_id = 0
        self._unfused: list[int] = []
        # Keyframes that start a segment: with depth.wait_for_next_keyframe their depth waits for TWO newer
        # keyframes, so that it is estimated together with the second keyframe's and the two check each other
        # (estimated alone, nothing with depth could check it: the navigation cloud of a run's first keyframe
        # held 60-260 points > 10 cm off a surface, the others 0-170). Bounded: an id leaves once estimated.
        self._segment_starts: set[int] = set()

    # ---- public API --------------------------------------------------------------------------
    def process(self, fs: FrameSet) -> KeyframeOutput | None:
        """Run one frame set; returns the keyframe's outputs, or None when it is not a keyframe.

        Errors inside a stage are logged and the frame set is counted as dropped
        (``processing_error``); the engine stays usable.
        """
        self.frame_sets += 1
        jump = self.jumps.check(fs.stamp_ns, fs.T_odom_base)
        if jump is not None:
            self._start_segment(fs.stamp_ns, jump)
        reason = self.selector.why(fs.stamp_ns, fs.T_odom_base)
        if jump is not None and reason == "first":
            reason = "odometry_jump"
        if reason is None:
            self.images_not_keyframe += len(fs.images)
            return None
        try:
            out = self._process_keyframe(fs, reason)
        except Exception as exc:  # one bad frame set must not stop perception
            LOG.exception("frame set @ %.3f s failed: %s", fs.stamp_ns * 1e-9, exc)
            self.drops.add("processing_error", n=len(fs.images), message=f"{type(exc).__name__}: {exc}")
            return None
        self.selector.accept(fs.stamp_ns, fs.T_odom_base)
        self.images_in_keyframes += len(fs.images)
        return out

    @property
    def odometry_jumps(self) -> int:
        """Odometry jumps seen so far: each one started a segment."""
        return self.segment

    def reset(self) -> None:
        """Forget keyframes, map and path (the service 'reset')."""
        self.keyframes.clear()
        self.selector.reset()
        self.jumps.reset()
        self.map.clear()
        self.path.clear()
        self._unfused.clear()
        self._segment_starts.clear()
        self.T_map_odom = np.eye(4)

    def status(self) -> dict:
        return {
            "frame_sets": self.frame_sets,
            "keyframes": self.keyframe_count,
            "buffered_keyframes": len(self.keyframes),
            "dropped": self.drops.as_dict(),
            "stage_latency_ms": {k: v * 1e3 for k, v in self.timer.last.items()},
            "map_points": len(self.map),
            "map_voxel_size": self.map.voxel_size,
            "pose_source": self.cfg.pose.source,
            "depth_source": self.cfg.depth.source,
            "backend": self.cfg.runtime.backend,
            "scale": self.last_scale[0],
            "scale_residual_m": self.last_scale[1],
            "odometry_jumps": self.odometry_jumps,
            # learned depth runs smaller after an out-of-memory error (1.0 = full view size)
            "depth_scale": getattr(self.depth_source, "scale", 1.0),
            "depth_oom_fallbacks": getattr(self.depth_source, "oom_fallbacks", 0),
            # learned pose sources report their window and fallbacks (e.g. after out-of-memory)
            **(self.pose_source.status() if hasattr(self.pose_source, "status") else {}),
        }

    def _start_segment(self, stamp_ns: int, why: str) -> None:
        """After an odometry jump: the next frame set is a keyframe and starts a new segment.

        Buffered keyframes stay (those waiting for fusion are still fused, with their own segment's
        views only) and the map is kept: points before the jump were consistent among themselves.
        """
        self.segment += 1
        self.selector.reset()
        LOG.warning("frame set @ %.3f s: %s; starting keyframe segment %d (no depth or fusion across the jump)",
                    stamp_ns * 1e-9, why, self.segment)

    # ---- stages ------------------------------------------------------------------------------
    def _make_view(self, kf_id: int, fs: FrameSet, cam: str) -> View:
        im = fs.images[cam]
        rgb, K = im.rgb, im.K
        h, w = rgb.shape[:2]
        target_w = self.cfg.depth.width
        if target_w and target_w != w:
            target_h = max(8, round(h * target_w / w))
            K = PinholeCamera.from_K(K, w, h).resized(target_w, target_h).K
            rgb = cv2.resize(rgb, (target_w, target_h), interpolation=cv2.INTER_AREA)
        T = np.eye(4)
        if fs.T_odom_base is not None and cam in fs.T_base_cam:
            T = self.T_map_odom @ fs.T_odom_base @ fs.T_base_cam[cam]
        return View(kf_id, cam, im.stamp_ns, rgb, K, T, frame_id=im.frame_id, segment=self.segment)

    def _process_keyframe(self, fs: FrameSet, reason: str) -> KeyframeOutput:
        self.timer.last = {}
        kf_id = self._next_id
        self._next_id += 1  # now, so a stage failing below can never make two keyframes share an id
        with self.timer("prepare"):
            kf = Keyframe(kf_id, fs.stamp_ns, {c: self._make_view(kf_id, fs, c) for c in fs.images}, fs.T_odom_base,
                          self.segment)
        window = [*(k for k in self.keyframes.latest() if k.segment == kf.segment), kf]
        if len(window) == 1 and self.cfg.depth.wait_for_next_keyframe:
            self._segment_starts.add(kf.id)
        with self.timer("pose"):
            update = self.pose_source.update(kf, window, fs)
        if update.T_map_odom is not None:
            self.T_map_odom = update.T_map_odom
        self.last_scale = (update.scale, update.residual_m)

        with self.timer("depth"):
            views_out = self._estimate_depth(kf)

        # The fusion delay counts newer keyframes WITH depth, so waiting for the next keyframe adds one;
        # the sum is < buffer_size (validated), so an evicted keyframe is always fused already.
        self.keyframes.add(kf)
        self._unfused.append(kf.id)
        ready = [i for i in self._unfused[: max(len(self._unfused) - self._fusion_delay, 0)]
                 if i not in self._segment_starts]  # (fusion.delay_keyframes 0: fused once it has depth)
        clouds = self._fuse(ready)

        self.keyframe_count += 1
        T_odom_base = fs.T_odom_base
        if T_odom_base is not None:
            self.path.append((fs.stamp_ns, self.T_map_odom @ T_odom_base))
        return KeyframeOutput(
            kf_id, fs.stamp_ns, reason, views_out, clouds, self.T_map_odom.copy(), T_odom_base, len(self.map),
            dict(self.timer.last), update.scale, update.residual_m, *self._newest_depth(views_out),
            [(v.frame_id, v.stamp_ns, v.T_world_cam.copy()) for v in kf.views.values()],
        )

    @property
    def _fusion_delay(self) -> int:
        return self.cfg.fusion.delay_keyframes + int(self.cfg.depth.wait_for_next_keyframe)

    def _estimate_depth(self, kf: Keyframe | None) -> list[ViewOutput]:
        """Depth (and the published depth images) of the views due at this step.

        With ``depth.wait_for_next_keyframe`` a view is estimated once a newer keyframe exists, so its
        sources lie on both sides of it: the parts of the view that no earlier keyframe saw (the far side
        of a backward-facing camera, the edge a turn brings in) can be matched too. Views that had no usable
        source yet (the very first keyframe) wait as well, and a segment's first keyframe waits for a second
        newer one (``_segment_starts``); each view is estimated at most once. ``kf`` is the new keyframe (its
        views are sources, and due themselves unless waiting); None at flush, where every waiting view is
        estimated with what exists.
        """
        cfg = self.cfg
        new_views = list(kf.views.values()) if kf is not None else []
        candidates = self.keyframes.views() + new_views

        def waiting(k: Keyframe) -> bool:  # a segment start with fewer than two newer keyframes (the new one
            # counts); one whose segment ended (odometry jump) is estimated with what its segment has
            if kf is None or k.id not in self._segment_starts or kf.segment != k.segment:
                return False
            return not any(o.segment == k.segment and o.id > k.id for o in self.keyframes)

        due = [v for k in self.keyframes if k.id in self._unfused and not waiting(k)
               for v in k.views.values() if v.depth is None]
        self._segment_starts -= {v.keyframe_id for v in due}
        if kf is not None and not cfg.depth.wait_for_next_keyframe:
            due += new_views
        estimated = []
        for view in due:
            rng = self._depth_range(view)
            same = [c for c in candidates if c.segment == view.segment]
            srcs = select_depth_sources(view, same, rng, cfg.depth.num_sources, cfg.depth.min_overlap,
                                        cfg.depth.min_baseline_m)
            if not srcs:
                continue
            est = self.depth_source.estimate(view, srcs, rng)
            view.depth, view.confidence, view.valid = est.depth, est.confidence, est.valid
            view.consistent_with, view.distinctiveness = est.consistent_with, est.distinctiveness
            estimated.append((view, srcs, same, rng))
        # The published-depth filter runs once every view of this step has depth, so views estimated
        # together (a rectified stereo partner, the keyframe's other cameras) check each other both ways.
        return [self._view_output(*e) for e in estimated]

    @staticmethod
    def _newest_depth(views: list[ViewOutput]) -> tuple[int, int]:
        """(keyframe id, stamp) of the newest keyframe with depth among ``views``; (-1, 0) when none."""
        if not views:
            return -1, 0
        newest = max(v.keyframe_id for v in views)
        return newest, max(v.stamp_ns for v in views if v.keyframe_id == newest)

    def flush(self) -> FlushOutput:
        """Depth of views still waiting for a newer keyframe (estimated with the sources that exist), then
        fusion of every keyframe still waiting for newer neighbours (end of a bag, deactivate, before saving
        a map)."""
        self.timer.last = {}
        with self.timer("depth"):
            views = self._estimate_depth(None)
        return FlushOutput(views, self._fuse(list(self._unfused)), *self._newest_depth(views))

    def _depth_range(self, view: View) -> tuple[float, float]:
        return view.depth_range or (self.cfg.depth.min_depth_m, self.cfg.depth.max_depth_m)

    def _fuse(self, keyframe_ids: list[int]) -> list[CloudOutput]:
        cfg = self.cfg
        clouds = []
        with self.timer("fusion"):
            with_depth = [v for v in self.keyframes.views() if v.depth is not None]
            for kf_id in keyframe_ids:
                self._unfused.remove(kf_id)
                kf = self.keyframes.get(kf_id)
                if kf is None:
                    continue
                for view in kf.views.values():
                    if view.depth is None:
                        clouds.append(self._cloud_output(view, np.zeros(view.rgb.shape[:2], bool)))
                        continue
                    same = [v for v in with_depth if v.segment == view.segment]
                    others = select_sources(view, same, self._depth_range(view), cfg.fusion.max_views, 0.05)
                    keep = fuse_view(view, others, cfg.fusion, self.device) & (view.depth <= cfg.map.max_range_m)
                    clouds.append(self._cloud_output(view, keep))
        with self.timer("map"):  # one insert per step: each insert re-downsamples the whole map
            kept = [c for c in clouds if len(c.points_cam)]
            if kept:
                self.map.insert(
                    np.concatenate([transform_points(c.T_map_cam, c.points_cam.astype(np.float64)) for c in kept]),
                    np.concatenate([c.colors for c in kept]),
                )
        return clouds

    def _view_output(self, view: View, sources: list[View], neighbours: list[View],
                     depth_range: tuple[float, float]) -> ViewOutput:
        assert view.depth is not None and view.valid is not None and view.confidence is not None
        # Published depth is filtered (depth.publish); fusion keeps using the raw estimate and its own checks.
        published, confidence = self.depth_filter.apply(view, neighbours, depth_range)
        depth_msg = np.where(published, view.depth, np.nan).astype(np.float32)
        return ViewOutput(
            view.camera, view.frame_id, view.stamp_ns, depth_msg, confidence,
            view.K.copy(), view.T_world_cam.copy(), [s.key for s in sources], view.keyframe_id,
            [(s.K.copy(), s.T_world_cam.copy(), s.size) for s in sources],
        )

    def _cloud_output(self, view: View, keep: np.ndarray) -> CloudOutput:
        depth = view.depth if view.depth is not None else np.zeros(keep.shape, np.float32)
        grid = backproject(np.where(keep, depth, 0.0), view.K)
        pts = grid[keep].astype(np.float32)
        cols = view.rgb[keep]
        organized = None
        if self.cfg.map.organized_keyframe_cloud:
            organized = np.where(keep[..., None], grid, np.nan).astype(np.float32)
        limit = self.cfg.map.max_keyframe_points
        if len(pts) > limit:
            idx = np.linspace(0, len(pts) - 1, limit).astype(np.int64)
            pts, cols = pts[idx], cols[idx]
        return CloudOutput(
            view.keyframe_id, view.camera, view.frame_id, view.stamp_ns, view.T_world_cam.copy(), pts, cols,
            float(keep.mean()), organized, view.rgb if organized is not None else None,
        )
