"""An endless synthetic camera stream for overload and endurance runs, and two test depth sources.

:class:`LoopingStream` renders ONE lap of the looping trajectory (lazily, cached) and replays it with
stamps that keep increasing, so a run of any length costs one lap of rendering and one lap of memory.
It feeds either the live node's callback path (:meth:`LoopingStream.feed_live`: TF + Image messages into
``LiveRecon``) or the engine directly (:meth:`LoopingStream.frameset`).

:class:`GroundTruthDepth` returns the scene's exact depth (cheap at small sizes, so fusion and the map see
realistic, dense input) and :class:`SlowDepth` wraps any depth source with a fixed delay, which makes
"inference far slower than the frame period" a controlled quantity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from recon_ros.io.messages import MessageKit, make_camera_info, numpy_to_image
from recon_ros.pipeline.frames import CameraImage, FrameSet, View
from recon_ros.pipeline.sources import DepthEstimate, DepthSource
from recon_ros.pipeline.tf_buffer import TfBuffer
from recon_ros.synthetic.rig import optical_frame_id
from recon_ros.synthetic.scene import Scene, SceneParams
from recon_ros.synthetic.sequence import SyntheticConfig, SyntheticSequence
from recon_ros.synthetic.trajectory import lap_frames


class LiveInput(Protocol):
    """The callbacks of ``recon_ros.nodes.live.LiveRecon`` the stream drives."""

    def on_camera_info(self, camera: str, msg: Any) -> None: ...

    def on_image(self, camera: str, msg: Any) -> int: ...


@dataclass
class StreamFrame:
    index: int  # position in the endless stream (not in the lap)
    stamp_ns: int
    T_odom_base: np.ndarray
    images: dict[str, np.ndarray]  # RGB uint8 per camera, shared with the cache: do not modify


class LoopingStream:
    """Frame ``i`` shows lap pose ``i % lap`` at stamp ``start + i / rate``; renders are cached per lap pose."""

    def __init__(self, config: SyntheticConfig):
        params = SceneParams(seed=config.seed)
        self.lap = lap_frames(config.rate_hz, config.speed_mps, params.room[:2])
        self.seq = SyntheticSequence(replace(config, n_frames=self.lap), scene_params=params)
        self.config = self.seq.config
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    @property
    def camera_names(self) -> list[str]:
        return self.seq.camera_names

    @property
    def scene(self) -> Scene:
        return self.seq.scene

    def stamp_ns(self, index: int) -> int:
        return self.config.start_stamp_ns + round(index * 1e9 / self.config.rate_hz)

    def prerender(self) -> None:
        """Render the whole lap now, so that a paced run is not limited by rendering."""
        for i in range(self.lap):
            self._images(i)

    def frame(self, index: int) -> StreamFrame:
        k = index % self.lap
        return StreamFrame(index, self.stamp_ns(index), self.seq.poses[k][1], self._images(k))

    def frameset(self, index: int) -> FrameSet:
        """Frame ``index`` as the FrontEnd would emit it (for driving the engine without messages)."""
        f = self.frame(index)
        images = {c: CameraImage(c, f.stamp_ns, rgb, self.seq.K, optical_frame_id(c)) for c, rgb in f.images.items()}
        return FrameSet(f.stamp_ns, images, dict(self.seq.T_base_cam), f.T_odom_base)

    # ---- the live node's inputs -----------------------------------------------------------------
    def prime_live(self, live: LiveInput, tf: TfBuffer, kit: MessageKit) -> None:
        """Static TF (base_link -> optical frames) and one CameraInfo per camera, as a robot publishes first."""
        w, h, t0 = self.config.width, self.config.height, self.stamp_ns(0)
        for cam in self.camera_names:
            tf.set_transform("base_link", optical_frame_id(cam), t0, self.seq.T_base_cam[cam], static=True)
            live.on_camera_info(cam, make_camera_info(kit, self.seq.K, w, h, t0, optical_frame_id(cam)))

    def feed_live(self, live: LiveInput, tf: TfBuffer, kit: MessageKit, index: int) -> int:
        """Odometry, then every camera's Image message for frame ``index``; returns frame sets queued."""
        f = self.frame(index)
        # Odometry first: the FrontEnd looks up odom->base_link at the image stamp when the set completes.
        tf.set_transform("odom", "base_link", f.stamp_ns, f.T_odom_base)
        queued = 0
        for cam, rgb in f.images.items():
            queued += live.on_image(cam, numpy_to_image(kit, rgb, "rgb8", f.stamp_ns, optical_frame_id(cam)))
        return queued

    def _images(self, k: int) -> dict[str, np.ndarray]:
        if k not in self._cache:
            self._cache[k] = self.seq.render_frame(k).images
        return self._cache[k]


class GroundTruthDepth:
    """Exact depth of the synthetic scene at each view's pose (a stand-in for a perfect network).

    Rendered on demand rather than cached: the views' pose is whatever the pose source decided,
    and memory stays flat however long the run.
    """

    name = "ground_truth"

    def __init__(self, scene: Scene):
        self.scene = scene

    def estimate(self, ref: View, sources: list[View], depth_range: tuple[float, float]) -> DepthEstimate:
        w, h = ref.size
        _, depth = self.scene.render(ref.T_world_cam, ref.K, w, h, supersample=1)
        valid = (depth >= depth_range[0]) & (depth <= depth_range[1])
        depth = np.where(valid, depth, 0.0).astype(np.float32)
        return DepthEstimate(depth, valid.astype(np.float32), valid)


class SlowDepth:
    """Any depth source plus a fixed sleep per view: controlled "inference takes too long"."""

    def __init__(self, inner: DepthSource, seconds_per_view: float):
        self.inner = inner
        self.seconds_per_view = seconds_per_view
        self.name = f"slow_{inner.name}"
        self.calls = 0

    def estimate(self, ref: View, sources: list[View], depth_range: tuple[float, float]) -> DepthEstimate:
        self.calls += 1
        time.sleep(self.seconds_per_view)  # sleeps release the GIL, like real inference in torch/TensorRT
        return self.inner.estimate(ref, sources, depth_range)

