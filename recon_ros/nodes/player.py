#!/usr/bin/env python3
"""recon-ros play BAG: publish a rosbag2 (mcap or sqlite3) on live topics at its recorded rate.

A small stand-in for `ros2 bag play` where rosbag2 is not installed (e.g. ROS 2 from PyPI wheels):
rosbags reads the bag, rclpy publishes each record's CDR bytes unchanged (no decode/encode), with
the recording's timing scaled by ``--rate``. ``--clock`` also publishes /clock from the bag's log
times (for nodes with use_sim_time). ``--wait-for-subscribers`` holds playback until every listed
topic has a subscriber (e.g. a lifecycle node that subscribes only once active).

QoS: /tf_static reliable + transient local (as tf2 expects); everything else reliable, keep last
``--queue`` (a reliable publisher also serves best-effort subscribers such as sensor-data QoS).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from recon_ros.io.bag import BagReader
from recon_ros.io.messages import MessageKit

LOG = logging.getLogger("recon_ros.play")

RCLPY_HINT = (
    "recon-ros play needs rclpy ({error}). Source ROS 2 first (`source /opt/ros/<distro>/setup.bash`) or "
    "install the ROS 2 wheels (see docs/ROS.md)."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line without ROS arguments (`ros2 run`/launch append ``--ros-args ...``)."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--ros-args" in argv:
        argv = argv[: argv.index("--ros-args")]
    p = argparse.ArgumentParser(prog="recon-ros play", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p.parse_args(argv)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", type=Path, help="rosbag2 folder or a single .mcap/.db3 file")
    p.add_argument("--rate", type=float, default=1.0, help="playback rate (0.5 = half speed)")
    p.add_argument("--clock", action="store_true", help="publish /clock from the bag's log times")
    p.add_argument("--topics", nargs="+", default=None, help="only these topics (default: all)")
    p.add_argument("--queue", type=int, default=100, help="publisher queue depth (keep last)")
    p.add_argument("--start-delay", type=float, default=0.0, help="seconds to wait before the first message")
    p.add_argument("--wait-for-subscribers", nargs="+", default=None, metavar="TOPIC[=N]",
                   help="start once each of these topics has at least one subscriber (N: at least N; for a "
                        "topic this player publishes, matched by its publisher)")
    p.add_argument("--wait-for-cameras", nargs="*", default=None, metavar="CAMERA",
                   help="start once the image topic of each camera found in the bag (recon-ros camera discovery) "
                        "has a subscriber; names restrict it to those cameras (e.g. the node's 'cameras')")
    p.add_argument("--ack-timeout", type=float, default=10.0,
                   help="at the end, wait up to this long for reliable subscribers to acknowledge every message")
    p.add_argument("--wait-timeout", type=float, default=600.0,
                   help="give up waiting for subscribers after this many seconds (exit code 2)")


def play(args: argparse.Namespace) -> int:
    """Publish the bag; returns the number of messages published. Raises ImportError without rclpy."""
    try:
        import rclpy
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    except ImportError as exc:
        raise ImportError(RCLPY_HINT.format(error=exc)) from exc
    if args.rate <= 0:
        raise ValueError(f"--rate must be > 0, got {args.rate}")

    kit = MessageKit.for_rclpy()
    rclpy.init()
    node = rclpy.create_node("recon_player")
    published = 0
    try:
        with BagReader(args.bag, MessageKit.for_rosbags()) as reader:
            wanted = set(args.topics) if args.topics else set(reader.topics)
            pubs: dict[str, Any] = {}
            for topic, type_name in reader.topics.items():
                if topic not in wanted:
                    continue
                try:
                    cls = kit.cls(type_name)
                except (ImportError, AttributeError) as exc:
                    node.get_logger().warning(f"{topic}: type {type_name} is not available here ({exc}); skipped")
                    continue
                latched = topic == "/tf_static"
                qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=args.queue,
                                 reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
                pubs[topic] = node.create_publisher(cls, topic, qos)
            clock_pub = None
            if args.clock:
                from rosgraph_msgs.msg import Clock

                clock_pub = node.create_publisher(Clock, "/clock", 10)
            wait_for = list(args.wait_for_subscribers or [])
            if args.wait_for_cameras is not None:
                wait_for += camera_image_topics(reader.topics, args.wait_for_cameras)
            if wait_for and not _wait_for_subscribers(node, pubs, wait_for, args.wait_timeout):
                return -1
            if args.start_delay > 0:
                time.sleep(args.start_delay)
            node.get_logger().info(f"playing {args.bag} ({len(pubs)} topics) at rate {args.rate}")
            t0_bag: int | None = None
            t0_wall = time.monotonic()
            for m in reader.messages(set(pubs)):
                if t0_bag is None:
                    t0_bag = m.log_time_ns
                due = t0_wall + (m.log_time_ns - t0_bag) * 1e-9 / args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if clock_pub is not None:
                    clock_pub.publish(_clock(m.log_time_ns))
                pubs[m.topic].publish(bytes(m.raw))  # CDR as recorded: rclpy publishes serialized bytes
                published += 1
        # Reliable subscribers get the tail (repairs of samples their socket dropped) before the
        # participant goes away: a fixed short sleep here lost the last frames over UDP.
        unacked = _wait_for_acks(pubs, args.ack_timeout)
        if unacked:
            node.get_logger().warning(f"not acknowledged by every reliable subscriber within {args.ack_timeout:.0f} s: "
                                      f"{', '.join(unacked)}")
        node.get_logger().info(f"played {published} messages")
        return published
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def camera_image_topics(topics: dict[str, str], names: list[str]) -> list[str]:
    """Image topics of the cameras in a bag (``names`` empty: all of them), as the node discovers them."""
    from recon_ros.io.discovery import discover_cameras

    wanted = {n for name in names for n in name.split(",") if n}
    return [c.image_topic for c in discover_cameras(topics.items()).cameras if not wanted or c.name in wanted]


def _wait_for_acks(pubs: dict[str, Any], timeout_s: float) -> list[str]:
    """Wait (shared deadline) until reliable subscribers acknowledged everything; returns the topics that did not."""
    from rclpy.duration import Duration

    deadline = time.monotonic() + timeout_s
    late = []
    for topic, pub in pubs.items():
        left = max(deadline - time.monotonic(), 0.0)
        if not pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))):
            late.append(topic)
    return late


def _clock(stamp_ns: int) -> Any:
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    return Clock(clock=Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000))


def _wait_for_subscribers(node: Any, pubs: dict[str, Any], topics: list[str], timeout: float) -> bool:
    """For topics this player publishes, wait until its publisher has MATCHED the subscriptions (the graph
    can list a subscriber before DDS matched it; messages sent in between are lost to a volatile reader).
    ``TOPIC=N`` waits for N of them (e.g. a recording node AND a test's own reader)."""
    wanted = {}
    for item in topics:
        topic, _, n = item.partition("=")
        try:
            wanted[topic] = max(1, int(n)) if n else 1
        except ValueError:
            raise ValueError(f"--wait-for-subscribers: expected TOPIC or TOPIC=N, got {item!r}") from None

    def count(topic: str) -> int:
        return pubs[topic].get_subscription_count() if topic in pubs else node.count_subscribers(topic)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        missing = [f"{t} ({count(t)} of {n})" for t, n in wanted.items() if count(t) < n]
        if not missing:
            return True
        time.sleep(0.1)
    node.get_logger().error(f"too few subscribers on {missing} after {timeout:.0f} s; nothing played")
    return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        n = play(args)
    except KeyboardInterrupt:  # Ctrl-C / launch's SIGINT: a normal way to stop playback
        return 0
    return 2 if n < 0 else 0


if __name__ == "__main__":  # installed as lib/recon_ros/play by CMakeLists.txt
    raise SystemExit(main())
