"""map.organized_keyframe_cloud: the per-keyframe cloud as height x width of its depth image, NaN = not fused."""

from __future__ import annotations

import numpy as np

from recon_ros.config import from_dict
from recon_ros.geometry.camera import project
from recon_ros.io.messages import MessageKit
from recon_ros.io.outputs import cloud_messages
from recon_ros.pipeline.engine import ReconstructionEngine
from recon_ros.pipeline.frames import CameraImage, FrameSet
from recon_ros.synthetic import SyntheticConfig, SyntheticSequence, optical_frame_id
from recon_ros.synthetic.stream import GroundTruthDepth


def fused_clouds(organized: bool):
    seq = SyntheticSequence(SyntheticConfig(n_cameras=2, n_frames=4, width=64, height=48, rate_hz=2.0))
    cfg = from_dict({"cameras": seq.camera_names, "runtime.device": "cpu", "fusion.delay_keyframes": 1,
                     "map.organized_keyframe_cloud": organized})
    engine = ReconstructionEngine(cfg, depth_source=GroundTruthDepth(seq.scene))
    clouds = []
    for f in seq.frames():
        images = {c: CameraImage(c, f.stamp_ns, f.images[c], seq.K, optical_frame_id(c)) for c in f.images}
        out = engine.process(FrameSet(f.stamp_ns, images, dict(seq.T_base_cam), f.T_odom_base))
        clouds += out.clouds if out else []
    return cfg, [c for c in clouds if len(c.points_cam)], seq.K


def test_organized_cloud_has_the_depth_grid_with_nan_for_unfused_pixels() -> None:
    cfg, clouds, K = fused_clouds(organized=True)
    kit = MessageKit.for_rosbags()
    assert clouds
    for c, (topic, msg) in zip(clouds, cloud_messages(kit, cfg, clouds)):
        assert topic == "/recon/cloud" and (msg.height, msg.width) == (48, 64)
        assert msg.row_step == 16 * 64 and not msg.is_dense
        buf = np.frombuffer(msg.data, np.float32).reshape(48, 64, 4)
        finite = np.isfinite(buf[..., 0])
        assert finite.sum() == len(c.points_cam)  # exactly the fused pixels (no cap at this size)
        assert np.isnan(buf[~finite][:, :3]).all()
        # A point sits at its own pixel: it projects back to (u, v) of its cell.
        v, u = np.nonzero(finite)
        uv, _ = project(buf[v, u, :3].astype(np.float64), K)
        assert np.abs(uv - np.stack([u, v], axis=1)).max() < 1e-3


def test_unorganized_stays_the_default() -> None:
    cfg, clouds, _ = fused_clouds(organized=False)
    msg = cloud_messages(MessageKit.for_rosbags(), cfg, clouds[:1])[0][1]
    assert msg.height == 1 and msg.width == len(clouds[0].points_cam) and msg.is_dense
    assert clouds[0].organized is None
