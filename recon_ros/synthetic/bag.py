"""Record a synthetic sequence as a rosbag2, exactly as a robot would publish it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from recon_ros.io.bag import BagWriter
from recon_ros.io.messages import (
    MessageKit,
    make_camera_info,
    make_tf_message,
    make_transform_stamped,
    numpy_to_image,
    rgb_to_compressed,
)
from recon_ros.synthetic.sequence import SyntheticSequence

STATIC_TF_REPEAT_NS = 1_000_000_000  # re-record /tf_static each second so late joiners get it


@dataclass(frozen=True)
class CameraLayout:
    """How one synthetic camera is recorded, as the drivers of real robots do it.

    ``namespace`` and ``frame_id`` may hold '{camera}'. With ``d`` set, the scene is imaged through
    that lens model (intrinsics ``K`` of the sequence) and the CameraInfo carries ``d``. ``scale``
    records a sensor ``scale`` times finer than the sequence's pinhole camera (K scaled, P the
    pinhole camera at that scale): a lens that squeezes the periphery then still resolves it as
    finely as the pinhole reference does, so a comparison measures rectification, not the lens.
    """

    namespace: str = "/{camera}"
    image: str = "image_raw"
    compressed: bool = False
    encoding: str = "rgb8"
    frame_id: str = "{camera}_optical_frame"
    distortion_model: str = "plumb_bob"
    d: tuple[float, ...] = ()
    scale: int = 1

    def topics(self, camera: str) -> tuple[str, str]:
        ns = self.namespace.format(camera=camera).rstrip("/")
        image = f"{ns}/{self.image}" + ("/compressed" if self.compressed else "")
        return image, f"{ns}/camera_info"


def scaled_K(K: np.ndarray, s: float) -> np.ndarray:
    """Intrinsics of the same camera with ``s`` times finer pixels (pixel centres stay aligned)."""
    out = np.diag([s, s, 1.0]) @ K
    out[:2, 2] = (K[:2, 2] + 0.5) * s - 0.5
    return out


def _camera_info(kit: MessageKit, K: np.ndarray, w: int, h: int, t: int, frame: str, layout: CameraLayout):
    K = scaled_K(K, layout.scale)
    msg = make_camera_info(kit, K, w * layout.scale, h * layout.scale, t, frame)
    if layout.d:
        msg.distortion_model = layout.distortion_model
        msg.d = kit.array(np.asarray(layout.d, np.float64), np.float64)
    return msg


#: a distorted image samples a pinhole render at least this many times finer than the sequence's
#: camera, so it is blurred once (by the lens resampling), like a real lens image, not twice
DISTORTION_SUPERSAMPLING = 2


def _image(kit: MessageKit, seq: SyntheticSequence, index: int, camera: str, rgb: np.ndarray, t: int, frame: str,
           layout: CameraLayout):
    if layout.d:
        from recon_ros.io.rectify import distort_image

        s = max(DISTORTION_SUPERSAMPLING, layout.scale)  # a finer sensor is its own supersampling
        w, h = seq.rig.width, seq.rig.height
        K_fine = scaled_K(seq.K, s)
        fine, _ = seq.scene.render(seq.T_world_cam(index, camera), K_fine, w * s, h * s)
        rgb = distort_image(fine, scaled_K(seq.K, layout.scale), layout.distortion_model,
                            np.asarray(layout.d, np.float64), K_fine, (w * layout.scale, h * layout.scale))
    elif layout.scale != 1:
        rgb, _ = seq.scene.render(seq.T_world_cam(index, camera), scaled_K(seq.K, layout.scale),
                                  seq.rig.width * layout.scale, seq.rig.height * layout.scale)
    if layout.compressed:
        return rgb_to_compressed(kit, rgb, t, frame)
    if layout.encoding == "rgb8":
        return numpy_to_image(kit, rgb, "rgb8", t, frame)
    from recon_ros.io.encodings import make_encoded_image

    return make_encoded_image(kit, rgb, layout.encoding, t, frame)


def write_sequence_bag(
    seq: SyntheticSequence,
    path: str | Path,
    *,
    compressed: bool = False,
    odom_frame: str = "odom",
    base_frame: str = "base_link",
    storage: str = "mcap",
    overwrite: bool = True,
    progress: bool = True,
    layouts: dict[str, CameraLayout] | None = None,
) -> dict[str, int]:
    """Write ``/<cam>/image_raw`` (rgb8, or ``/compressed`` JPEG), ``/<cam>/camera_info``, ``/tf``
    (odom->base_link at every frame) and ``/tf_static`` (base_link-><cam>_optical_frame).
    ``layouts`` records chosen cameras differently (namespace, transport, encoding, frame, lens)."""
    kit = MessageKit.for_rosbags()
    default = CameraLayout(compressed=compressed)
    lay = {c: (layouts or {}).get(c, default) for c in seq.rig.names}
    frames = {c: lay[c].frame_id.format(camera=c) for c in seq.rig.names}
    topics = {c: lay[c].topics(c) for c in seq.rig.names}
    w, h = seq.rig.width, seq.rig.height
    with BagWriter(path, kit, storage=storage, overwrite=overwrite) as bag:
        first = seq.poses[0][0]
        static = [make_transform_stamped(kit, seq.T_base_cam[c], first, base_frame, frames[c]) for c in seq.rig.names]
        bag.write("/tf_static", make_tf_message(kit, static), first)
        last_static = first
        for frame in tqdm(seq.frames(), total=len(seq.poses), desc="render", unit="frame", disable=not progress):
            t = frame.stamp_ns
            if t - last_static >= STATIC_TF_REPEAT_NS:
                bag.write("/tf_static", make_tf_message(kit, static), t)
                last_static = t
            tf = make_transform_stamped(kit, frame.T_odom_base, t, odom_frame, base_frame)
            bag.write("/tf", make_tf_message(kit, [tf]), t)
            for cam in seq.rig.names:
                image_topic, info_topic = topics[cam]
                bag.write(info_topic, _camera_info(kit, seq.K, w, h, t, frames[cam], lay[cam]), t)
                image = _image(kit, seq, frame.index, cam, frame.images[cam], t, frames[cam], lay[cam])
                bag.write(image_topic, image, t)
        return dict(bag.counts)
