"""Record a synthetic sequence as a rosbag2, exactly as a robot would publish it."""

from __future__ import annotations

from pathlib import Path

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
) -> dict[str, int]:
    """Write ``/<cam>/image_raw`` (rgb8, or ``/compressed`` JPEG), ``/<cam>/camera_info``, ``/tf``
    (odom->base_link at every frame) and ``/tf_static`` (base_link-><cam>_optical_frame)."""
    kit = MessageKit.for_rosbags()
    frames = {c: f"{c}_optical_frame" for c in seq.rig.names}
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
                bag.write(f"/{cam}/camera_info", make_camera_info(kit, seq.K, w, h, t, frames[cam]), t)
                if compressed:
                    msg = rgb_to_compressed(kit, frame.images[cam], t, frames[cam])
                    bag.write(f"/{cam}/image_raw/compressed", msg, t)
                else:
                    bag.write(f"/{cam}/image_raw", numpy_to_image(kit, frame.images[cam], "rgb8", t, frames[cam]), t)
        return dict(bag.counts)
