"""The one TF buffer of bag tool and node: lookups need only the path between the two frames.

The live node's own map->odom arrives on /tf (it subscribes to what it publishes) and lags the
images by the inference time; tf2 never needs it for a base_link <- camera lookup, neither may we.
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import pytest

from recon_ros.geometry.se3 import invert
from recon_ros.pipeline.tf_buffer import TfBuffer, TransformUnavailable, add_tf_message


def translation(x: float, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = [x, y, z]
    return T


def robot_tree() -> TfBuffer:
    """map->odom (dynamic, only at t=0), odom->base_link (dynamic, 0..100), base_link->cam (static)."""
    tf = TfBuffer()
    tf.set_transform("base_link", "cam", 0, translation(0.1, 0, 0.5), static=True)
    tf.set_transform("base_link", "cam2", 0, translation(-0.1, 0, 0.5), static=True)
    tf.set_transform("odom", "base_link", 0, translation(0.0))
    tf.set_transform("odom", "base_link", 100, translation(1.0))
    tf.set_transform("map", "odom", 0, translation(0, 2.0))
    return tf


def test_lookup_below_the_common_ancestor_ignores_a_stale_map_to_odom() -> None:
    tf = robot_tree()
    # map->odom is only known at 0: a lookup at 50 that needs it extrapolates ...
    with pytest.raises(TransformUnavailable) as exc:
        tf.lookup("map", "cam", 50)
    assert exc.value.reason == "tf_extrapolation" and "map->odom" in str(exc.value)
    # ... but base_link <- cam and odom <- cam never touch that edge (tf2's rule)
    np.testing.assert_allclose(tf.lookup("base_link", "cam", 50), translation(0.1, 0, 0.5), atol=1e-12)
    np.testing.assert_allclose(tf.lookup("odom", "cam", 50), translation(0.6, 0, 0.5), atol=1e-12)
    # siblings: the common ancestor is base_link, odom->base_link is not evaluated (200 is past its range)
    np.testing.assert_allclose(tf.lookup("cam2", "cam", 200), translation(0.2), atol=1e-12)
    with pytest.raises(TransformUnavailable) as exc:
        tf.lookup("odom", "cam", 200)
    assert exc.value.reason == "tf_extrapolation" and "odom->base_link" in str(exc.value)


def test_lookup_through_the_root_matches_composed_edges() -> None:
    tf = robot_tree()
    T_map_cam = tf.lookup("map", "cam", 0)
    np.testing.assert_allclose(T_map_cam, translation(0.1, 2.0, 0.5), atol=1e-12)
    # inverse direction and a lookup between two branches agree with the composition (1e-12: float64 sums)
    np.testing.assert_allclose(tf.lookup("cam", "map", 0), invert(T_map_cam), atol=1e-12)
    np.testing.assert_allclose(tf.lookup("cam", "odom", 0) @ tf.lookup("odom", "cam", 0), np.eye(4), atol=1e-12)


def test_disconnected_frames_and_cycles_are_reported_not_looped() -> None:
    tf = robot_tree()
    tf.set_transform("world", "other", 0, np.eye(4), static=True)
    with pytest.raises(TransformUnavailable) as exc:
        tf.lookup("other", "cam", 0)
    assert exc.value.reason == "tf_missing" and "'other'" in str(exc.value)
    tf.set_transform("b", "a", 0, np.eye(4), static=True)
    tf.set_transform("a", "b", 0, np.eye(4), static=True)  # a cycle: must terminate
    with pytest.raises(TransformUnavailable):
        tf.lookup("a", "cam", 0)


def test_frame_count_is_bounded() -> None:
    tf = TfBuffer(max_frames=3)
    for k in range(10):
        tf.set_transform("root", f"f{k}", 0, np.eye(4), static=True)
    assert len(tf.static) == 3
    tf.set_transform("root", "f0", 0, translation(1.0), static=True)  # known frames still update
    np.testing.assert_allclose(tf.lookup("root", "f0", 0), translation(1.0), atol=1e-12)


def tf_message(parent: str, child: str, stamp_ns: int, x: float, qw: float = 1.0) -> NS:
    stamp = NS(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    transform = NS(translation=NS(x=x, y=0.0, z=0.0), rotation=NS(x=0.0, y=0.0, z=0.0, w=qw))
    return NS(header=NS(stamp=stamp, frame_id=parent), child_frame_id=child, transform=transform)


def test_add_tf_message_feeds_valid_transforms_and_names_bad_ones() -> None:
    tf = TfBuffer()
    msg = NS(transforms=[tf_message("odom", "base_link", 1_000_000_000, 1.0),
                         tf_message("odom", "bad", 1_000_000_000, 1.0, qw=0.0),
                         tf_message("", "nameless", 1_000_000_000, 1.0)])
    problems = add_tf_message(tf, msg, static=False)
    assert len(problems) == 2
    assert "odom->bad" in problems[0] and "not a rotation" in problems[0]
    assert "'nameless'" in problems[1]
    np.testing.assert_allclose(tf.lookup("odom", "base_link", 1_000_000_000), translation(1.0), atol=1e-12)
    assert not add_tf_message(tf, NS(transforms=[tf_message("base_link", "cam", 0, 0.5)]), static=True)
    # static: valid at any stamp
    np.testing.assert_allclose(tf.lookup("odom", "cam", 1_000_000_000), translation(1.5), atol=1e-12)
