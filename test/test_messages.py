"""Messages round-trip and are decoded identically by Foxglove's independent mcap_ros2 decoder."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from recon_ros.geometry.se3 import make_transform
from recon_ros.io.bag import BagReader, BagWriter
from recon_ros.io.messages import (
    BadMessage,
    MessageKit,
    camera_info_to_K,
    compressed_to_rgb,
    image_to_numpy,
    image_to_rgb,
    make_camera_info,
    make_keyframe_depth,
    make_path,
    make_pointcloud2,
    make_recon_status,
    make_tf_message,
    make_transform_stamped,
    numpy_to_image,
    pointcloud2_to_numpy,
    rgb_to_compressed,
    transform_to_matrix,
)

KIT = MessageKit.for_rosbags()
RNG = np.random.default_rng(1)
STAMP = 1_700_000_123_456_789_012
K = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])
T = make_transform(np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]]), [1.0, 2.0, 0.5])


def sample_messages():
    pts = RNG.normal(size=(500, 3)).astype(np.float32)
    cols = RNG.integers(0, 256, size=(500, 3)).astype(np.uint8)
    depth = RNG.uniform(0.5, 5, size=(24, 32)).astype(np.float32)
    depth[0, 0] = np.nan
    rgb = RNG.integers(0, 256, size=(24, 32, 3)).astype(np.uint8)
    return [
        ("/recon/cloud", make_pointcloud2(KIT, pts, cols, STAMP, "front_optical_frame")),
        ("/recon/depth/front/image", numpy_to_image(KIT, depth, "32FC1", STAMP, "front_optical_frame")),
        ("/front/image_raw", numpy_to_image(KIT, rgb, "rgb8", STAMP, "front_optical_frame")),
        ("/recon/depth/front/camera_info", make_camera_info(KIT, K, 32, 24, STAMP, "front_optical_frame")),
        ("/tf", make_tf_message(KIT, [make_transform_stamped(KIT, T, STAMP, "map", "odom")])),
        ("/recon/path", make_path(KIT, [(STAMP, T), (STAMP + 1, T)], STAMP, "map")),
        ("/recon/keyframe_depth", make_keyframe_depth(KIT, keyframe_id=3, camera="front", depth=depth,
                                                       confidence=depth / 5, K=K, T_map_cam=T, stamp_ns=STAMP,
                                                       frame_id="front_optical_frame")),
        ("/recon/status", make_recon_status(KIT, {"dropped": {"queue_full": 4}, "stage_latency_ms": {"depth": 9.5},
                                                  "keyframes": 7}, STAMP, "map")),
    ]


def same(a, b, path="msg"):
    """Recursive field comparison of a rosbags message and an mcap_ros2 decoded message."""
    if hasattr(a, "__dataclass_fields__"):
        for name in (f.name for f in dataclasses.fields(a) if not f.name.startswith("__") and not f.name.isupper()):
            same(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, np.ndarray):
        bb = np.frombuffer(b, dtype=a.dtype) if isinstance(b, (bytes, bytearray)) else np.asarray(b, dtype=a.dtype)
        np.testing.assert_array_equal(a.reshape(-1), bb.reshape(-1), err_msg=path)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, nan_ok=True), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_mcap_ros2_decodes_every_message_identically(tmp_path: Path):
    from mcap_ros2.reader import read_ros2_messages

    msgs = sample_messages()
    with BagWriter(tmp_path / "bag", KIT) as w:
        for topic, m in msgs:
            w.write(topic, m, STAMP)
    (mcap_file,) = (tmp_path / "bag").glob("*.mcap")
    decoded = list(read_ros2_messages(str(mcap_file)))
    assert len(decoded) == len(msgs)
    for (topic, ours), theirs in zip(msgs, decoded):
        assert theirs.channel.topic == topic
        assert theirs.schema.name == ours.__msgtype__.replace("/msg/", "/msg/")
        same(ours, theirs.ros_msg, topic)
    # and our own reader gets the same messages back
    with BagReader(tmp_path / "bag", KIT) as r:
        back = [r.deserialize(m) for m in r.messages()]
    for (topic, ours), theirs in zip(msgs, back):
        same(ours, theirs, topic)


def test_pointcloud2_layout_and_round_trip():
    pts = RNG.normal(size=(10, 3)).astype(np.float32)
    cols = RNG.integers(0, 256, size=(10, 3)).astype(np.uint8)
    msg = make_pointcloud2(KIT, pts, cols, STAMP, "f")
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 12, 7, 1)]
    assert msg.point_step == 16 and msg.row_step == 160 and not msg.is_bigendian
    assert msg.header.stamp.sec == STAMP // 10**9 and msg.header.stamp.nanosec == STAMP % 10**9
    p2, c2 = pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(p2, pts)
    np.testing.assert_array_equal(c2, cols)
    # packed rgb as RViz reads it: 0x00RRGGBB in the float's bits
    raw = np.frombuffer(msg.data, np.uint32).reshape(10, 4)[:, 3]
    assert raw[0] == (int(cols[0, 0]) << 16 | int(cols[0, 1]) << 8 | int(cols[0, 2]))


def test_image_encodings_and_errors():
    rgb = RNG.integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    bgr = numpy_to_image(KIT, rgb[..., ::-1], "bgr8", STAMP, "f")
    np.testing.assert_array_equal(image_to_rgb(bgr), rgb)
    mono = numpy_to_image(KIT, rgb[..., 0], "mono8", STAMP, "f")
    assert image_to_rgb(mono).shape == (5, 7, 3)
    bad = numpy_to_image(KIT, rgb, "rgb8", STAMP, "f")
    bad.encoding = "nv21"
    with pytest.raises(BadMessage) as exc:
        image_to_rgb(bad)
    assert exc.value.reason == "bad_encoding" and "nv21" in str(exc.value)
    short = numpy_to_image(KIT, rgb, "rgb8", STAMP, "f")
    short.data = short.data[:-10]
    with pytest.raises(BadMessage, match="does not hold"):
        image_to_numpy(short)


def test_compressed_round_trip_and_corrupt_jpeg():
    rgb = np.full((16, 16, 3), (200, 30, 60), np.uint8)
    msg = rgb_to_compressed(KIT, rgb, STAMP, "f", quality=100)
    assert np.abs(compressed_to_rgb(msg).astype(int) - rgb).max() <= 3
    msg.data = msg.data[:20]
    with pytest.raises(BadMessage) as exc:
        compressed_to_rgb(msg)
    assert exc.value.reason == "decode_error"


def test_camera_info_validation():
    ok = make_camera_info(KIT, K, 320, 240, STAMP, "f")
    K2, w, h = camera_info_to_K(ok)
    np.testing.assert_array_equal(K2, K)
    assert (w, h) == (320, 240)
    zero = make_camera_info(KIT, np.zeros((3, 3)), 320, 240, STAMP, "f")
    with pytest.raises(BadMessage, match="all zero"):
        camera_info_to_K(zero)
    neg = make_camera_info(KIT, K * np.array([[-1], [1], [1]]), 320, 240, STAMP, "f")
    with pytest.raises(BadMessage, match="focal"):
        camera_info_to_K(neg)
    fisheye = make_camera_info(KIT, K, 320, 240, STAMP, "f")
    fisheye.distortion_model = "kannala_brandt_custom"
    with pytest.raises(BadMessage, match="not supported"):
        camera_info_to_K(fisheye)


def test_transform_round_trip():
    msg = make_transform_stamped(KIT, T, STAMP, "map", "odom")
    np.testing.assert_allclose(transform_to_matrix(msg.transform), T, atol=1e-12)
