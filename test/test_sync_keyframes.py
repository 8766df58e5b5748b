"""Synchronizer (slop, missing cameras, duplicates, order), keyframe gates, TF buffer."""

import numpy as np
import pytest

from recon_ros.config import KeyframeConfig
from recon_ros.geometry.se3 import make_transform
from recon_ros.pipeline.frames import CameraImage, DropCounter
from recon_ros.pipeline.keyframes import KeyframeBuffer, KeyframeSelector
from recon_ros.pipeline.synchronizer import Synchronizer
from recon_ros.pipeline.tf_buffer import TfBuffer, TransformUnavailable

MS = 1_000_000
CAMS = ["a", "b", "c"]


def image(cam, stamp):
    return CameraImage(cam, stamp, np.zeros((2, 2, 3), np.uint8), np.eye(3))


def make_sync(**kw):
    drops = DropCounter()
    args = dict(slop_ns=10 * MS, timeout_ns=300 * MS, max_pending=4, drops=drops)
    args.update(kw)
    return Synchronizer(CAMS, **args), drops


def test_sets_form_within_slop():
    sync, drops = make_sync()
    assert sync.add(image("a", 1000 * MS)) == []
    assert sync.add(image("b", 1008 * MS)) == []
    out = sync.add(image("c", 995 * MS))
    assert len(out) == 1 and list(out[0]) == CAMS
    assert drops.total() == 0


def test_image_outside_slop_starts_new_set_and_missing_camera_is_counted():
    sync, drops = make_sync()
    t = 1000 * MS
    sync.add(image("a", t))
    sync.add(image("b", t + 20 * MS))  # outside the 10 ms slop: its own set
    out = []
    for k in range(1, 6):  # camera 'b' keeps arriving late -> sets time out
        s = t + k * 100 * MS
        for cam in CAMS:
            out += sync.add(image(cam, s))
    assert len(out) == 5
    # the two partial sets at the start expired: 'a' alone and 'b' alone
    assert drops.counts["incomplete_set"] == 2
    assert "missing camera" in drops.last_message["incomplete_set"]


def test_partial_sets_accepted_with_min_cameras():
    sync, drops = make_sync(min_cameras=2)
    t = 1000 * MS
    sync.add(image("a", t))
    sync.add(image("b", t))  # 'c' dropped out
    out = sync.add(image("a", t + 400 * MS))
    assert len(out) == 1 and sorted(out[0]) == ["a", "b"]
    assert drops.total() == 0


def test_duplicate_and_out_of_order_and_future_stamps_are_dropped():
    sync, drops = make_sync(future_tolerance_ns=5_000 * MS)
    t = 1000 * MS
    sync.add(image("a", t))
    sync.add(image("a", t))
    assert drops.counts["duplicate_stamp"] == 1
    for cam in ("b", "c"):
        sync.add(image(cam, t))
    sync.add(image("a", t - 50 * MS))  # older than the emitted set
    assert drops.counts["out_of_order"] == 1
    sync.add(image("b", t + 3600_000 * MS))
    assert drops.counts["future_stamp"] == 1


def test_pending_sets_are_bounded():
    sync, drops = make_sync(max_pending=2, timeout_ns=10_000 * MS)
    for k in range(6):
        sync.add(image("a", (1000 + 50 * k) * MS))
    assert len(sync.pending) <= 2
    assert drops.counts["incomplete_set"] == 4


def test_flush_gives_up_on_pending():
    sync, drops = make_sync()
    sync.add(image("a", 1000 * MS))
    sync.add(image("b", 1000 * MS))
    assert sync.flush() == []
    assert drops.counts["incomplete_set"] == 2


def pose(x=0.0, yaw_deg=0.0):
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    return make_transform(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]), [x, 0, 0])


def test_keyframe_gates():
    sel = KeyframeSelector(KeyframeConfig(min_translation_m=0.2, min_rotation_deg=10, max_interval_s=2.0))
    s = 1_000_000_000
    assert sel.why(0, pose()) == "first"
    sel.accept(0, pose())
    assert sel.why(s // 10, pose(0.1)) is None
    assert sel.why(s // 10, pose(0.25)) == "translation"
    assert sel.why(s // 10, pose(0.0, 15)) == "rotation"
    assert sel.why(3 * s, pose(0.0)) == "time"
    assert sel.why(3 * s, None) == "time"  # no odometry: only the time gate


def test_min_interval_blocks_keyframes():
    sel = KeyframeSelector(KeyframeConfig(min_translation_m=0.1, min_interval_s=1.0))
    sel.accept(0, pose())
    assert sel.why(500_000_000, pose(5.0)) is None


def test_keyframe_buffer_evicts_oldest():
    from recon_ros.pipeline.frames import Keyframe

    buf = KeyframeBuffer(3)
    evicted = [buf.add(Keyframe(i, i, {})) for i in range(5)]
    assert [e.id for e in evicted if e is not None] == [0, 1]
    assert [k.id for k in buf] == [2, 3, 4]


def test_tf_buffer_interpolates_and_chains():
    tf = TfBuffer()
    tf.set_transform("base_link", "cam", 0, make_transform(np.eye(3), [0.1, 0, 0.5]), static=True)
    tf.set_transform("odom", "base_link", 0, pose(0.0))
    tf.set_transform("odom", "base_link", 100, pose(1.0))
    T = tf.lookup("odom", "cam", 25)
    np.testing.assert_allclose(T[:3, 3], [0.35, 0, 0.5], atol=1e-12)
    np.testing.assert_allclose(tf.lookup("cam", "odom", 25) @ T, np.eye(4), atol=1e-12)
    with pytest.raises(TransformUnavailable) as exc:
        tf.lookup("odom", "cam", 200)
    assert exc.value.reason == "tf_extrapolation" and "future" in str(exc.value)
    with pytest.raises(TransformUnavailable) as exc:
        tf.lookup("map", "cam", 50)
    assert exc.value.reason == "tf_missing"


def test_tf_buffer_is_bounded():
    tf = TfBuffer(max_samples=10)
    for k in range(100):
        tf.set_transform("odom", "base_link", k, pose(float(k)))
    assert len(tf.dynamic["base_link"][1]) == 10
