"""A synthetic multi-camera sequence: scene + rig + trajectory, rendered lazily frame by frame.

Frames: the world frame of the scene IS the odom frame (T_world_odom = identity). For camera `c` at
frame i: T_world_cam = T_odom_base[i] @ T_base_cam[c], where T_base_cam[c] maps points of the optical
frame `<c>_optical_frame` into base_link.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recon_ros.synthetic.rig import RigSpec, T_base_optical, default_rig, intrinsics
from recon_ros.synthetic.scene import Scene, SceneParams
from recon_ros.synthetic.trajectory import DEFAULT_SPEED_MPS, DEFAULT_START_STAMP_NS, trajectory


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that defines a sequence; the seed drives scene layout, textures and trajectory start."""

    seed: int = 0
    n_cameras: int = 4
    n_frames: int = 20
    width: int = 640
    height: int = 480
    hfov_deg: float = 90.0
    rate_hz: float = 10.0
    start_stamp_ns: int = DEFAULT_START_STAMP_NS
    speed_mps: float = DEFAULT_SPEED_MPS

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SyntheticConfig:
        return cls(**json.loads(text))


@dataclass
class SyntheticFrame:
    """One multi-camera frame: images/depths keyed by camera name, rendered at `T_odom_base`."""

    index: int
    stamp_ns: int
    T_odom_base: np.ndarray
    images: dict[str, np.ndarray]  # RGB uint8 [H, W, 3]
    depths: dict[str, np.ndarray]  # optical-frame z, float32 [H, W], metres


class SyntheticSequence:
    """Scene, rig and trajectory for one config; `frames()` renders on demand (constant memory)."""

    def __init__(self, config: SyntheticConfig | None = None, *, scene_params: SceneParams | None = None):
        self.config = config or SyntheticConfig()
        c = self.config
        self.scene_params = scene_params or SceneParams(seed=c.seed)
        self.scene = Scene(self.scene_params)
        self.rig: RigSpec = default_rig(c.n_cameras, c.width, c.height, c.hfov_deg)
        self.K: np.ndarray = intrinsics(self.rig)
        self.T_base_cam: dict[str, np.ndarray] = {cam.name: T_base_optical(cam) for cam in self.rig.cameras}
        self.poses: list[tuple[int, np.ndarray]] = trajectory(
            c.n_frames, c.rate_hz, c.seed, speed_mps=c.speed_mps, start_stamp_ns=c.start_stamp_ns,
            room_xy=self.scene_params.room[:2])

    @property
    def camera_names(self) -> list[str]:
        return self.rig.names

    def __len__(self) -> int:
        return len(self.poses)

    def T_world_cam(self, index: int, camera: str) -> np.ndarray:
        """Pose of a camera's optical frame in world (= odom) at frame `index`."""
        return self.poses[index][1] @ self.T_base_cam[camera]

    def render_frame(self, index: int, cameras: list[str] | None = None) -> SyntheticFrame:
        """Render frame `index` (all cameras unless `cameras` is given)."""
        stamp, T_odom_base = self.poses[index]
        images, depths = {}, {}
        for name in cameras or self.camera_names:
            images[name], depths[name] = self.scene.render(
                T_odom_base @ self.T_base_cam[name], self.K, self.config.width, self.config.height)
        return SyntheticFrame(index, stamp, T_odom_base.copy(), images, depths)

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[SyntheticFrame]:
        """Yield frames start..stop-1 one at a time, rendering each only when asked for."""
        for i in range(start, len(self) if stop is None else min(stop, len(self))):
            yield self.render_frame(i)

    def save_ground_truth(self, path: str | Path, include_depth: bool = False) -> Path:
        """Write an .npz beside a bag: K, extrinsics, poses, stamps, config and scene params (enough to
        rebuild the scene), and with `include_depth` every depth map ([N, C, H, W] float32)."""
        path = Path(path)
        names = self.camera_names
        data: dict[str, np.ndarray] = {
            "K": self.K,
            "camera_names": np.array(names),
            "T_base_cam": np.stack([self.T_base_cam[n] for n in names]),
            "stamps_ns": np.array([s for s, _ in self.poses], np.int64),
            "T_odom_base": np.stack([T for _, T in self.poses]) if self.poses else np.zeros((0, 4, 4)),
            "config_json": np.array(self.config.to_json()),
            "scene_params_json": np.array(self.scene_params.to_json()),
        }
        if include_depth:
            # Filled frame by frame so only the output array, not every image, is held in memory.
            depths = np.zeros((len(self), len(names), self.config.height, self.config.width), np.float32)
            for i in range(len(self)):
                for j, n in enumerate(names):
                    _, depths[i, j] = self.scene.render(self.T_world_cam(i, n), self.K,
                                                        self.config.width, self.config.height)
            data["depths"] = depths
        np.savez_compressed(path, **data)
        # np.savez appends .npz when missing; report the file actually written.
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


@dataclass
class GroundTruth:
    """Contents of a ground-truth .npz (see `SyntheticSequence.save_ground_truth`)."""

    config: SyntheticConfig
    scene_params: SceneParams
    K: np.ndarray
    camera_names: list[str]
    T_base_cam: dict[str, np.ndarray]
    stamps_ns: np.ndarray
    T_odom_base: np.ndarray  # [N, 4, 4]
    depths: np.ndarray | None  # [N, C, H, W] or None

    def build_scene(self) -> Scene:
        """Rebuild the exact scene (layout and textures) from the saved params."""
        return Scene(self.scene_params)

    def sequence(self) -> SyntheticSequence:
        """Rebuild the whole sequence (same poses, stamps and renders)."""
        return SyntheticSequence(self.config, scene_params=self.scene_params)


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read an .npz written by `SyntheticSequence.save_ground_truth`."""
    with np.load(Path(path), allow_pickle=False) as z:
        names = [str(n) for n in z["camera_names"]]
        return GroundTruth(
            config=SyntheticConfig.from_json(str(z["config_json"])),
            scene_params=SceneParams.from_json(str(z["scene_params_json"])),
            K=z["K"].copy(),
            camera_names=names,
            T_base_cam={n: z["T_base_cam"][i].copy() for i, n in enumerate(names)},
            stamps_ns=z["stamps_ns"].copy(),
            T_odom_base=z["T_odom_base"].copy(),
            depths=z["depths"].copy() if "depths" in z.files else None,
        )
