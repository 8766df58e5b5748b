"""The bag tool end to end on a small synthetic robot run, and with faulty input bags."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from recon_ros.bag_tool import run_bag
from recon_ros.config import ReconConfig, from_dict
from recon_ros.io.bag import BagReader, BagWriter
from recon_ros.io.messages import (
    MessageKit,
    make_camera_info,
    make_tf_message,
    make_transform_stamped,
    numpy_to_image,
    rgb_to_compressed,
    stamp_to_ns,
)
from recon_ros.synthetic.bag import write_sequence_bag
from recon_ros.synthetic.evaluate import evaluate, evaluate_published
from recon_ros.synthetic.sequence import SyntheticConfig, SyntheticSequence

KIT = MessageKit.for_rosbags()
# Smaller than the default demo (40 frames instead of 60). Thresholds are the targets;
# measured on this scene (seed 0): 10 keyframes, kept 71.9 %, AbsRel 0.46 %, cloud median error
# 1.12 cm = 0.40 % of the 2.81 m median depth. Kept fraction grows with the number of keyframes
# (each view gains neighbours on both sides), which is why the scene is not smaller still.
SMALL = SyntheticConfig(seed=0, n_cameras=4, n_frames=40, width=320, height=240)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    seq = SyntheticSequence(SMALL)
    write_sequence_bag(seq, tmp / "in", progress=False)
    cfg = from_dict({"cameras": seq.camera_names, "depth": {"min_depth_m": 0.4, "max_depth_m": 10.0}})
    res = run_bag(tmp / "in", tmp / "out", cfg, summary_path=tmp / "summary.json", progress=False,
                  keep_outputs=True)
    return seq, cfg, res, tmp


def test_small_scene_accuracy(small_run):
    seq, cfg, res, _ = small_run
    pts, _ = res.engine.map.arrays()
    report = evaluate(seq, res.clouds, pts, completeness_samples=3000)
    msg = json.dumps({k: v for k, v in report.items() if k != "per_view"})
    assert report["keyframes"] >= 6, msg
    assert report["kept_fraction"] >= 0.5, msg
    assert report["depth_absrel"] <= 0.03, msg
    assert report["cloud_median_error_m"] <= 0.01 * report["median_scene_depth_m"], msg


def test_small_scene_published_depth(small_run):
    """What /recon/depth/<cam>/image carries (filtered by default), pixel by pixel against exact depth."""
    seq, cfg, res, _ = small_run
    pub = evaluate_published(seq, res.depth_views())
    msg = json.dumps({c: {k: v for k, v in m.items() if k != "sparsification"} for c, m in pub["per_camera"].items()})
    print("published depth", msg, json.dumps({k: v for k, v in pub["all"].items() if k != "sparsification"}))
    allm = pub["all"]
    # Measured (seed 0, 40 frames): AbsRel 0.56 %, coverage 92.0 %, delta 99.93 %, top half by confidence
    # 0.19 %; per camera (back / front / left / right) AbsRel 0.62 / 0.84 / 0.69 / 0.14 % at coverage
    # 91.0 / 86.8 / 92.6 / 97.5 % (2026-12-03, depth sources chosen for coverage). (Depth at once
    # from earlier keyframes, depth.wait_for_next_keyframe false:
    # 0.634 % at 83.1 %, the back camera 71.8 %: what it sees next, no earlier keyframe saw.)
    # Bounds: the (AbsRel <= 1 % at coverage >= 80 % per camera, delta >= 99 %), the measured state
    # with a margin for other CPUs overall.
    assert allm["absrel"] <= 0.0075, msg
    assert allm["delta_1_25"] >= 0.99, msg
    assert allm["coverage"] >= 0.85, msg
    assert allm["absrel_top50_confidence"] <= 0.5 * allm["absrel"], msg
    for cam, m in pub["per_camera"].items():
        assert m["absrel"] <= 0.01 and m["delta_1_25"] >= 0.99, f"{cam}: {msg}"
        assert m["coverage"] >= 0.80, f"{cam}: {msg}"


def test_summary_accounts_for_every_image(small_run):
    seq, cfg, res, tmp = small_run
    s = json.loads((tmp / "summary.json").read_text())
    assert s["images_total"] == 4 * SMALL.n_frames
    assert s["images_in_keyframes"] + s["images_not_keyframe"] + sum(s["images_dropped"].values()) == s["images_total"]
    assert s["accounted"] and s["images_dropped"] == {}
    assert s["keyframes"] == res.engine.keyframe_count


def test_output_bag_topics_frames_and_stamps(small_run):
    seq, cfg, res, tmp = small_run
    input_stamps = {stamp for stamp, _ in seq.poses}
    with BagReader(tmp / "out", KIT) as r:
        counts = r.message_counts()
        # inputs are copied through
        for cam in seq.camera_names:
            assert counts[f"/{cam}/image_raw"] == SMALL.n_frames
            assert counts[f"/recon/depth/{cam}/image"] >= 1
        assert counts["/recon/map"] >= 1 and counts["/recon/path"] >= 1
        seen_cloud_frames = set()
        for m in r.messages({"/recon/cloud", "/recon/depth/front/image", "/recon/depth/front/camera_info", "/tf"}):
            msg = r.deserialize(m)
            if m.topic == "/tf":
                for t in msg.transforms:
                    if t.header.frame_id == "map":
                        assert t.child_frame_id == "odom"
                        assert stamp_to_ns(t.header.stamp) in input_stamps
                continue
            assert stamp_to_ns(msg.header.stamp) in input_stamps, m.topic  # source stamps, never now()
            if m.topic == "/recon/cloud":
                seen_cloud_frames.add(msg.header.frame_id)
            elif m.topic == "/recon/depth/front/image":
                assert msg.encoding == "32FC1" and msg.header.frame_id == "front_optical_frame"
                depth = np.frombuffer(msg.data, np.float32)
                assert np.isnan(depth).any() or np.all(depth > 0)
            else:
                assert (msg.width, msg.height) == (SMALL.width, SMALL.height)
        assert seen_cloud_frames == {f"{c}_optical_frame" for c in seq.camera_names}


# ---- faulty bags ---------------------------------------------------------------------------------
FAULT = SyntheticConfig(seed=1, n_cameras=4, n_frames=16, width=64, height=48)


def write_faulty_bag(path: Path, compressed: bool = False) -> tuple[SyntheticSequence, dict]:
    """A bag with one fault of each kind; returns the expected drops by reason."""
    seq = SyntheticSequence(FAULT)
    frames = {c: f"{c}_optical_frame" for c in seq.camera_names}
    with BagWriter(path, KIT) as bag:
        t0 = seq.poses[0][0]
        static = [make_transform_stamped(KIT, seq.T_base_cam[c], t0, "base_link", frames[c]) for c in seq.camera_names]
        bag.write("/tf_static", make_tf_message(KIT, static), t0)
        for f in seq.frames():
            t = f.stamp_ns
            odom = make_transform_stamped(KIT, f.T_odom_base, t, "odom", "base_link")
            bag.write("/tf", make_tf_message(KIT, [odom]), t)
            for cam in seq.camera_names:
                if not (cam == "left" and f.index < 2):  # left camera_info arrives late (frame 2)
                    bag.write(f"/{cam}/camera_info", make_camera_info(KIT, seq.K, 64, 48, t, frames[cam]), t)
                if cam == "back" and f.index >= 10:  # back camera disappears halfway
                    continue
                img = f.images[cam]
                if compressed:
                    msg = rgb_to_compressed(KIT, img, t, frames[cam])
                    if cam == "front" and f.index == 5:
                        msg.data = msg.data[: len(msg.data) // 3]  # corrupt JPEG
                    bag.write(f"/{cam}/image_raw/compressed", msg, t)
                    continue
                msg = numpy_to_image(KIT, img, "rgb8", t, frames[cam])
                if cam == "front" and f.index == 5:
                    msg.encoding = "nv21"  # not a supported encoding
                if cam == "right" and f.index == 6:
                    msg = numpy_to_image(KIT, img[:32, :40], "rgb8", t, frames[cam])
                bag.write(f"/{cam}/image_raw", msg, t)
    return seq


def test_faulty_bag_is_processed_and_every_image_counted(tmp_path, caplog):
    seq = write_faulty_bag(tmp_path / "faulty")
    cfg = from_dict({"cameras": seq.camera_names, "keyframes": {"min_translation_m": 0.05}})
    with caplog.at_level(logging.WARNING, logger="recon_ros"):
        res = run_bag(tmp_path / "faulty", tmp_path / "out", cfg, progress=False)
    s = res.summary
    drops = s["images_dropped"]
    log = caplog.text
    t5 = seq.poses[5][0] / 1e9
    # each fault: a message naming topic and stamp, and a count
    # left's first CameraInfo comes with frame 2: its images of frames 0-1 wait for it (within
    # sync.timeout_s) and are used, not dropped (never-arriving CameraInfo: test_faults.py)
    assert "missing_camera_info" not in drops
    assert "/left/image_raw" not in log
    assert drops["bad_encoding"] == 1
    assert f"/front/image_raw @ {t5:.3f} s dropped (bad_encoding)" in log and "nv21" in log
    assert drops["size_mismatch"] == 1
    assert "/right/image_raw" in log and "40x32" in log and "64x48" in log
    # frames 5 (front), 6 (right) and 10-15 (back gone) are incomplete sets; their other cameras'
    # images are dropped as incomplete, so every image is accounted for.
    assert drops["incomplete_set"] == 3 + 3 + 3 * 6
    assert "missing camera(s) back" in s["drop_messages"]["incomplete_set"]
    assert s["accounted"], s
    assert s["images_total"] == 4 * 16 - 6
    assert s["keyframes"] >= 2  # the run went on


def test_degraded_rig_keeps_processing_with_min_cameras(tmp_path):
    seq = write_faulty_bag(tmp_path / "faulty")
    cfg = from_dict({"cameras": seq.camera_names, "sync": {"min_cameras": 2}})
    s = run_bag(tmp_path / "faulty", None, cfg, progress=False).summary
    assert "incomplete_set" not in s["images_dropped"]
    assert s["accounted"]
    assert s["images_in_keyframes"] + s["images_not_keyframe"] == s["images_total"] - 2  # nv21, size


def test_corrupt_jpeg_is_dropped_with_topic_and_stamp(tmp_path, caplog):
    seq = write_faulty_bag(tmp_path / "jpeg", compressed=True)
    cfg = from_dict({"cameras": seq.camera_names, "topics": {"compressed": True}})
    with caplog.at_level(logging.WARNING, logger="recon_ros"):
        s = run_bag(tmp_path / "jpeg", None, cfg, progress=False).summary
    assert s["images_dropped"]["decode_error"] == 1
    assert f"/front/image_raw/compressed @ {seq.poses[5][0] / 1e9:.3f} s dropped (decode_error)" in caplog.text
    assert s["accounted"]


def test_bag_without_image_topics_is_a_clear_error(tmp_path):
    write_faulty_bag(tmp_path / "b")
    cfg = ReconConfig()
    cfg.cameras = ["stereo_left"]
    with pytest.raises(ValueError, match="none of the image topics"):
        run_bag(tmp_path / "b", None, cfg, progress=False)
