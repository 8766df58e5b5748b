"""The node's callback work without rclpy: parameters from the schema, LiveRecon on a bag.

``LiveRecon`` is what ``recon_node`` calls from its callbacks; here it gets rosbags messages from a
small synthetic bag instead of rclpy messages (same fields), and
/tf, /tf_static through the node's TF path (``add_tf_message`` into a TfBuffer).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recon_ros.config import ReconConfig, flatten, from_dict, iter_fields
from recon_ros.io.bag import BagReader
from recon_ros.io.messages import MessageKit, pointcloud2_to_numpy, stamp_to_ns
from recon_ros.io.outputs import output_topics
from recon_ros.nodes.live import LiveRecon, parameter_specs, parameter_values_to_dict
from recon_ros.pipeline.tf_buffer import TfBuffer, add_tf_message
from recon_ros.synthetic import SyntheticConfig, SyntheticSequence
from recon_ros.synthetic.bag import write_sequence_bag


# ---- parameters -----------------------------------------------------------------------------------
def test_every_schema_field_becomes_a_parameter_with_its_type() -> None:
    specs = {s.name: s for s in parameter_specs()}
    fields = {name: value for name, value, _ in iter_fields(ReconConfig())}
    assert set(specs) == set(fields)
    expected = {bool: "bool", int: "integer", float: "double", str: "string"}
    for name, value in fields.items():
        s = specs[name]
        assert s.description, f"{name} has no description"
        if isinstance(value, list):
            assert s.kind == ("string_array" if value else "dynamic_array")
            assert all(isinstance(v, str) for v in s.default)
        else:
            assert s.kind == expected[type(value)], name
            assert type(s.default) is type(value)
    assert specs["cameras"].default == []  # empty = discover the cameras
    assert specs["cameras"].kind == "dynamic_array"
    assert "One of: tf, mvdust3r, mvdust3r+" in specs["pose.source"].description


def test_parameter_values_round_trip_to_the_config() -> None:
    import array

    values: dict[str, Any] = {s.name: s.default for s in parameter_specs()}
    values["fusion.stage_confidence_thresholds"] = None  # dynamic array never set on the command line
    cfg = from_dict(parameter_values_to_dict(values))
    assert flatten(cfg) == flatten(ReconConfig())
    # rclpy hands arrays back as array.array for numeric overrides
    values["fusion.stage_confidence_thresholds"] = array.array("d", [0.1, 0.2, 0.3])
    values["cameras"] = ["a", "b"]
    cfg = from_dict(parameter_values_to_dict(values))
    assert cfg.fusion.stage_confidence_thresholds == pytest.approx([0.1, 0.2, 0.3])
    assert cfg.cameras == ["a", "b"]


# ---- LiveRecon on a small synthetic bag -------------------------------------------------------------
def replay(bag: Path, live: LiveRecon, tf: TfBuffer, kit: MessageKit, wait: bool = True) -> int:
    """Feed a bag to LiveRecon as the node's callbacks would; returns image messages fed."""
    images = 0
    with BagReader(bag, kit) as reader:
        for m in reader.messages():
            msg = reader.deserialize(m)
            if m.topic in ("/tf", "/tf_static"):
                assert not add_tf_message(tf, msg, static=m.topic == "/tf_static")  # the node's TF path
                continue
            cam = m.topic.split("/")[1]
            if m.topic.endswith("camera_info"):
                live.on_camera_info(cam, msg)
            else:
                images += 1
                live.on_image(cam, msg)
                if wait:  # replay at the pace of inference: no queue_full drops in this test
                    assert live.worker.wait_idle(120)
    return images


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    seq = SyntheticSequence(SyntheticConfig(n_cameras=2, n_frames=5, width=128, height=96))
    bag = tmp_path_factory.mktemp("live") / "bag"
    write_sequence_bag(seq, bag, progress=False)
    cfg = from_dict({"cameras": seq.camera_names, "depth.num_planes": 24, "keyframes.min_translation_m": 0.02,
                     "keyframes.buffer_size": 4, "fusion.delay_keyframes": 1})
    kit = MessageKit.for_rosbags()
    tf = TfBuffer()
    published: list[tuple[str, Any]] = []
    live = LiveRecon(cfg, kit, tf, lambda topic, msg: published.append((topic, msg)))
    images = replay(bag, live, tf, kit)
    n_before_drain = len(published)
    live.drain()
    stamps = {stamp for stamp, _ in seq.poses}
    status = live.status()
    status_msgs = live.status_messages()
    live.close()
    return {"cfg": cfg, "seq": seq, "published": published, "images": images, "stamps": stamps,
            "status": status, "status_msgs": status_msgs, "n_before_drain": n_before_drain, "live": live}


def test_live_publishes_what_the_bag_tool_does(live_run: dict[str, Any]) -> None:
    cfg: ReconConfig = live_run["cfg"]
    published = live_run["published"]
    topics = Counter(t for t, _ in published)
    allowed = set(output_topics(cfg)) | {"/tf"}
    assert set(topics) <= allowed, set(topics) - allowed
    for cam in cfg.cameras:
        assert topics[cfg.output_topic("depth", cam, "image")] >= 2
    assert topics[cfg.output_topic("cloud")] >= 2
    assert topics[cfg.output_topic("map")] >= 2
    assert topics["/tf"] >= 2
    assert len(published) > live_run["n_before_drain"], "drain() published nothing (final fusion)"


def test_live_outputs_carry_source_stamps_and_frames(live_run: dict[str, Any]) -> None:
    cfg: ReconConfig = live_run["cfg"]
    stamps = live_run["stamps"]
    optical = {cfg.optical_frame(c) for c in cfg.cameras}
    for topic, msg in live_run["published"]:
        if topic == "/tf":
            for t in msg.transforms:
                assert stamp_to_ns(t.header.stamp) in stamps
                assert (t.header.frame_id, t.child_frame_id) == (cfg.frames.map, cfg.frames.odom)
            continue
        assert stamp_to_ns(msg.header.stamp) in stamps, topic
        if topic == cfg.output_topic("cloud") or "/depth/" in topic:
            assert msg.header.frame_id in optical, topic
        if topic in (cfg.output_topic("map"), cfg.output_topic("path")):
            assert msg.header.frame_id == cfg.frames.map
    depth = next(m for t, m in live_run["published"] if t.endswith("/image") and "/depth/" in t)
    assert depth.encoding == "32FC1" and (depth.width, depth.height) == (128, 96)
    cloud = next(m for t, m in live_run["published"] if t == cfg.output_topic("cloud") and m.width > 0)
    pts, _ = pointcloud2_to_numpy(cloud)
    assert np.all(pts[:, 2] > 0), "per-keyframe cloud is not in the optical frame (z forward)"


def test_live_status_accounts_for_every_image(live_run: dict[str, Any]) -> None:
    s = live_run["status"]
    assert s["images_received"] == live_run["images"] == 10
    assert s["frame_sets"] == 5
    assert s["worker"]["processed"] == 5 and s["worker"]["failed"] == 0
    assert s["dropped"] == {}
    assert "stamp_to_output" in s["stage_latency_ms"]
    (t1, status), (t2, diag) = live_run["status_msgs"]
    assert (t1, t2) == ("~/status", "/diagnostics")
    assert status.images_received == 10 and status.keyframes == s["keyframes"] >= 2
    assert stamp_to_ns(status.header.stamp) == max(live_run["stamps"])
    assert diag.status[0].level == 0, diag.status[0].message


def test_live_counts_bad_images_and_camera_info(live_run: dict[str, Any]) -> None:
    from types import SimpleNamespace as NS

    kit = MessageKit.for_rosbags()
    cfg = from_dict({"cameras": ["a"]})
    live = LiveRecon(cfg, kit, TfBuffer(), lambda t, m: None, engine=live_run["live"].engine)
    try:
        stamp = NS(sec=1, nanosec=5)
        bad = NS(header=NS(stamp=stamp), encoding="nv21", height=2, width=2, step=4, is_bigendian=0,
                 data=np.zeros(8, np.uint8))
        assert live.on_image("a", bad) == 0
        info = NS(k=np.zeros(9), width=640, height=480, distortion_model="plumb_bob", d=np.zeros(5))
        live.on_camera_info("a", info)
        ok = NS(header=NS(stamp=stamp), encoding="rgb8", height=2, width=2, step=6, is_bigendian=0,
                data=np.zeros(12, np.uint8))
        live.on_image("a", ok)  # no valid CameraInfo yet
        assert live.drops.as_dict() == {"bad_encoding": 1, "missing_camera_info": 1}
        assert live.info_errors["a"] == 1
        assert live.latest_stamp_ns == 1_000_000_005
        (_, _), (_, diag) = live.status_messages()
        assert diag.status[0].level == 1 and "bad_encoding +1" in diag.status[0].message
    finally:
        live.close()


def test_live_reset_and_save_map(live_run: dict[str, Any], tmp_path: Path) -> None:
    live: LiveRecon = live_run["live"]
    n, path = live.save_map(str(tmp_path / "map.ply"))
    assert path.exists() and n == live_run["status"]["map_points"]
    assert path.read_bytes().startswith(b"ply")
    live.reset()
    assert len(live.engine.map) == 0 and len(live.engine.path) == 0


def test_stopped_input_settles_half_assembled_frame_sets(live_run: dict[str, Any], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A rig with a dead camera (sync.min_cameras 1) whose recording ends: the last frame set waits for
    newer images that never come; after sync.timeout_s of wall-clock silence the node settles it."""
    seq: SyntheticSequence = live_run["seq"]
    cam = seq.camera_names[0]
    cfg = from_dict({"cameras": [cam, "ghost"], "sync.min_cameras": 1, "sync.timeout_s": 0.5,
                     "depth.num_planes": 24})
    kit = MessageKit.for_rosbags()
    tf = TfBuffer()
    bag = tmp_path / "bag"
    write_sequence_bag(SyntheticSequence(SyntheticConfig(n_cameras=2, n_frames=2, width=128, height=96)), bag,
                       progress=False)
    live = LiveRecon(cfg, kit, tf, lambda t, m: None, engine=live_run["live"].engine)
    now = [1000.0]
    monkeypatch.setattr("recon_ros.nodes.live.time.monotonic", lambda: now[0])
    try:
        with BagReader(bag, kit) as reader:
            for m in reader.messages():
                msg = reader.deserialize(m)
                if m.topic in ("/tf", "/tf_static"):
                    add_tf_message(tf, msg, static=m.topic == "/tf_static")
                elif m.topic == f"/{cam}/camera_info":
                    live.on_camera_info(cam, msg)
                elif m.topic == f"/{cam}/image_raw":
                    live.on_image(cam, msg)
        assert live.frontend.frame_sets == 0  # both sets wait for 'ghost' (0.1 s apart < timeout)
        now[0] += 0.4
        assert live.on_idle_check() == 0  # not idle long enough
        now[0] += 0.2
        assert live.on_idle_check() == 2  # 0.6 s without images: both settled with 1 camera
        assert live.on_idle_check() == 0  # nothing left
        assert "incomplete_set" not in live.drops.as_dict()
    finally:
        live.close()


def test_unquoted_yaml_boolean_camera_name_is_a_named_parameter_error() -> None:
    """`cameras: [n]` in a ROS parameter file arrives as [False] (YAML 1.1 booleans; found when a launch
    test named its camera 'n' and configure died with a TypeError deep in the output topics)."""
    import yaml

    from recon_ros.config import ConfigError

    params = yaml.safe_load("cameras: [front, off]")  # PyYAML reads off as False, rcl's parser n as well
    with pytest.raises(ConfigError, match=r"parameter 'cameras' = \['front', False\]: \[False\] are not camera "
                                          r"names; expected strings \(YAML reads unquoted"):
        from_dict(parameter_values_to_dict(params))
