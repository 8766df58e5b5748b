"""recon_node over real DDS (ROS 2 needed: `make ros && . .venv/ros/env.sh`, run from outside the checkout).

1. Callback cost per frame set in the live node: a player process publishes a synthetic 4-camera
   640x480 rgb8 recording at 10 Hz; recon_node (in this process, MultiThreadedExecutor as in
   ``recon_node.main``) times its image and CameraInfo callbacks (decode, FrontEnd, TF, submit),
   summed per frame set. Inference is stubbed (it runs on the worker thread; benchmarked elsewhere).
   Goal: <= 5 ms per frame set.
2. Publish -> receive latency of PointCloud2 between two processes: a publisher process stamps each
   cloud with the wall clock at publish; this process subtracts it at receive. 100k points (the
   question) and 1k points (baseline, same run, alternating).

    cd /tmp && python /path/to/benchmarks/bench_dds.py --json /path/to/benchmarks/results/dds_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2

from recon_ros.nodes.recon_node import ReconNode
from recon_ros.synthetic import SyntheticConfig, SyntheticSequence
from recon_ros.synthetic.bag import write_sequence_bag

CLOUD_PUBLISHER = r"""
import sys, time
import numpy as np, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from recon_ros.io.messages import MessageKit, make_pointcloud2
sizes, rounds = [int(s) for s in sys.argv[1].split(",")], int(sys.argv[2])
rclpy.init(); node = rclpy.create_node("cloud_bench_pub")
pub = node.create_publisher(PointCloud2, "/bench/cloud", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
kit = MessageKit.for_rclpy(); rng = np.random.default_rng(0)
msgs = {n: make_pointcloud2(kit, rng.normal(size=(n, 3)).astype(np.float32),
                            rng.integers(0, 255, (n, 3), dtype=np.uint8), 0, "map") for n in sizes}
while pub.get_subscription_count() == 0:
    time.sleep(0.05)
time.sleep(1.0)
for _ in range(rounds):
    for n in sizes:  # round-robin: load drift hits both sizes alike
        m = msgs[n]; t = time.time_ns()
        m.header.stamp.sec, m.header.stamp.nanosec = t // 10**9, t % 10**9
        pub.publish(m); time.sleep(0.1)
time.sleep(1.0)
"""


def cloud_latency(sizes: list[int], rounds: int) -> dict:
    node = rclpy.create_node("cloud_bench_sub")
    lat: dict[int, list[float]] = {n: [] for n in sizes}

    def on_cloud(m: PointCloud2) -> None:
        now = time.time_ns()
        lat[m.width * m.height].append((now - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)) / 1e6)

    node.create_subscription(PointCloud2, "/bench/cloud", on_cloud,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    proc = subprocess.Popen([sys.executable, "-c", CLOUD_PUBLISHER, ",".join(map(str, sizes)), str(rounds)])
    while proc.poll() is None:
        rclpy.spin_once(node, timeout_sec=0.05)
    for _ in range(20):
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    out = {}
    for n, v in lat.items():
        out[str(n)] = {"received": len(v), "median_ms": statistics.median(v) if v else None,
                       "p90_ms": sorted(v)[int(0.9 * (len(v) - 1))] if v else None}
    base, big = out[str(sizes[0])]["median_ms"], out[str(sizes[-1])]["median_ms"]
    out["ratio_largest_to_smallest"] = big / base if base and big else None
    return out


def callback_cost(frames: int, width: int, height: int) -> dict:
    seq = SyntheticSequence(SyntheticConfig(seed=0, n_cameras=4, n_frames=frames, width=width, height=height))
    bag = Path(tempfile.mkdtemp(prefix="recon_dds_bench_")) / "bag"
    write_sequence_bag(seq, bag, progress=False)
    node = ReconNode(parameter_overrides=[Parameter("cameras", value=seq.camera_names),
                                          Parameter("qos.images", value="reliable"),
                                          Parameter("runtime.queue_size", value=1000)])
    node.trigger_configure()
    live = node._live
    live.worker.process_fn = lambda fs: None  # inference stubbed: only the callback thread's work
    live.worker.on_result = None
    per_stamp: dict[int, float] = {}
    on_image, on_info = live.on_image, live.on_camera_info

    def timed_image(cam, msg):
        t0 = time.perf_counter()
        r = on_image(cam, msg)
        key = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        per_stamp[key] = per_stamp.get(key, 0.0) + time.perf_counter() - t0
        return r

    def timed_info(cam, msg):
        t0 = time.perf_counter()
        on_info(cam, msg)
        key = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        per_stamp[key] = per_stamp.get(key, 0.0) + time.perf_counter() - t0

    live.on_image, live.on_camera_info = timed_image, timed_info
    node.trigger_activate()
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    topics = [f"/{c}/{t}" for c in seq.camera_names for t in ("image_raw", "camera_info")] + ["/tf", "/tf_static"]
    subprocess.run([sys.executable, "-m", "recon_ros.nodes.player", str(bag), "--wait-for-subscribers", *topics],
                   check=True, timeout=300)
    time.sleep(1.0)
    images = sum(live.frontend.images_received.values())
    executor.shutdown()
    node._release()
    node.destroy_node()
    ms = [v * 1e3 for v in per_stamp.values()]
    return {"frame_sets": len(ms), "images_received": images, "images_published": 4 * frames,
            "median_ms": statistics.median(ms), "max_ms": max(ms), "goal_ms": 5.0,
            "ratio_to_goal": statistics.median(ms) / 5.0, "resolution": f"{width}x{height}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    rclpy.init()
    result = {"host": platform.node(), "python": platform.python_version(),
              "callback_cost_4x640x480_rgb8": callback_cost(a.frames, 640, 480),
              "pointcloud2_latency_ms": cloud_latency([1000, 100_000], a.rounds)}
    rclpy.try_shutdown()
    print(json.dumps(result, indent=1))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
