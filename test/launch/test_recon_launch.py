# ruff: noqa: I001, E402  -- ruff takes `launch` for first-party because of the repo's launch/ folder
"""launch_testing, end to end: the real recon.launch.py, a player on real topics, and what RViz/Nav2 see.

The player (`recon_ros.nodes.player`, what `recon-ros play` runs) publishes a synthetic 4-camera rig
recording at its recorded rate (10 Hz) once the node's image subscriptions exist (they appear on
`active`). This test subscribes as RViz (reliable clouds, transient-local map) and Nav2 would, and
checks every output arrives, depth accuracy against the scene's exact depth, and that keyframes and
the fused map match the bag tool's output on the same recording.

Run by test/test_ros_node.py in its own process and ROS domain (`pytest test/launch/...` there).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch_testing", reason="launch_testing is not installed: source ROS 2 to run launch tests")
pytest.importorskip("rclpy", reason="rclpy is not importable: source ROS 2 to run launch tests")

import numpy as np
import launch
import launch_testing.actions
import launch_testing.asserts
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from nav_msgs.msg import Path as PathMsg
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage

from launch_harness import RosTestCase
from recon_ros.bag_tool import run_bag
from recon_ros.config import from_dict
from recon_ros.io.messages import image_to_numpy, pointcloud2_to_numpy, stamp_to_ns
from recon_ros.msg import KeyframeDepth, ReconStatus
from recon_ros.srv import SaveMap
from std_srvs.srv import Trigger
from recon_ros.synthetic import SyntheticConfig, SyntheticSequence
from recon_ros.synthetic.bag import write_sequence_bag
from recon_ros.synthetic.evaluate import evaluate

# 4 cameras x 16 stamps at 10 Hz, 320x240: the bag tool's small scene, shorter. queue_size 16 holds
# every frame set, so a slow CPU delays outputs but drops nothing and the result is the bag tool's.
SEQ = SyntheticConfig(seed=0, n_cameras=4, n_frames=16, width=320, height=240)
# Transport here is loopback UDP (test/ros_harness.py: shared memory collides between parallel test
# runs). Over UDP a best-effort 230 KB image is 4 datagrams and some frame sets lost one (measured:
# 3 of 16 incomplete even with 4 MB socket buffers), so images are subscribed reliable; reliable repairs
# delayed single images by up to 0.6 s, so frame sets wait 2 s (sync.timeout_s) instead of 0.5 s.
# On one machine with Fast DDS's default shared memory, sensor-data QoS (the default) is the choice.
PARAMS = {"depth": {"min_depth_m": 0.4, "max_depth_m": 10.0}, "runtime": {"queue_size": 16},
          "qos": {"images": "reliable"}, "sync": {"timeout_s": 2.0}}
ABSREL_BOUND = 0.03  # the bag tool's bound (test_bag_tool.py::test_small_scene_accuracy)
OUT_TIMEOUT_S = 400.0
# The player starts once this topic has a subscriber, which the test makes when its own readers are matched
# with the node's publishers and the node's image subscriptions exist, and once its image and /tf publishers
# matched both the node's readers and this test's. One reader per topic is not enough: this test's own
# image_raw and /tf readers satisfied it, and CI runs lost every message of two depth topics to readers the
# node's writers had not matched yet, or the first /tf messages to a node reader not matched yet.
START_TOPIC = "/recon_e2e/start"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.launch_test
def generate_test_description():
    tmp = Path(tempfile.mkdtemp(prefix="recon_e2e_"))
    seq = SyntheticSequence(SEQ)
    write_sequence_bag(seq, tmp / "bag", progress=False)
    cfg = from_dict({**_flat(PARAMS), "cameras": seq.camera_names})
    reference = run_bag(tmp / "bag", None, cfg, progress=False, keep_outputs=True)
    config = tmp / "params.yaml"
    config.write_text(yaml.safe_dump({"/**": {"ros__parameters": PARAMS}}))
    recon = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource([FindPackageShare("recon_ros"), "/launch/recon.launch.py"]),
        launch_arguments={"cameras": ",".join(seq.camera_names), "config": str(config), "log_level": "info",
                          "backend": "torch", "use_sim_time": "false"}.items())
    player = launch.actions.ExecuteProcess(
        cmd=[sys.executable, "-m", "recon_ros.nodes.player", str(tmp / "bag"), "--rate", "1.0",
             # this test reads image_raw and /tf too: 2 matched readers each (the node's and this test's)
             "--wait-for-subscribers", *[f"/{c}/image_raw=2" for c in seq.camera_names],
             *[f"/{c}/camera_info" for c in seq.camera_names], "/tf=2", "/tf_static", START_TOPIC],
        output="screen")
    context = {"seq": seq, "reference": reference, "player": player, "tmp": tmp}
    return launch.LaunchDescription([recon, player, launch_testing.actions.ReadyToTest()]), context


class Listener:
    """Subscriptions as RViz (reliable; map transient local) and Nav2 (sensor data for depth) make them."""

    def __init__(self, node, cameras):
        self.node, self.lock, self.got, self.arrival = node, threading.Lock(), {}, {}
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.topics = {"/recon/cloud": (PointCloud2, reliable), "/recon/map": (PointCloud2, latched),
                       "/recon/keyframe_depth": (KeyframeDepth, reliable), "/recon/path": (PathMsg, latched),
                       "/tf": (TFMessage, reliable), "/recon/status": (ReconStatus, reliable),
                       "/diagnostics": (DiagnosticArray, reliable)}
        for c in cameras:
            self.topics[f"/recon/depth/{c}/image"] = (Image, reliable)
            self.topics[f"/recon/depth/{c}/confidence"] = (Image, reliable)
            self.topics[f"/recon/depth/{c}/camera_info"] = (CameraInfo, reliable)
            self.topics[f"/{c}/image_raw"] = (Image, qos_profile_sensor_data)  # input arrival: latency base
        # Nav2 / depth_image_proc subscribe to depth with sensor-data QoS (best effort): the node's reliable
        # publishers must serve such readers too. Over this test's loopback UDP a best-effort 300 KB image
        # can be lost (one run lost all 4 of one camera), so arrival per camera is asserted on the
        # reliable readers above; these must be matched by the node's publishers (QoS compatible), and
        # how many images reached them is reported (E2E_SUMMARY).
        self.best_effort = {f"/recon/depth/{c}/image": f"best_effort:/recon/depth/{c}/image" for c in cameras}
        subs = {name: (name, t, q) for name, (t, q) in self.topics.items()}
        subs.update({key: (name, Image, qos_profile_sensor_data) for name, key in self.best_effort.items()})
        self.subs = {key: node.create_subscription(t, topic, lambda m, n=key: self.on(n, m), q)
                     for key, (topic, t, q) in subs.items()}

    def on(self, name, msg):
        now = time.monotonic()
        with self.lock:
            self.got.setdefault(name, []).append(msg)
            if name == "/recon/cloud" or name.endswith("image_raw"):
                self.arrival.setdefault((name, stamp_to_ns(msg.header.stamp)), now)

    def messages(self, name):
        with self.lock:
            return list(self.got.get(name, []))

    def map_to_odom(self):
        return [t for m in self.messages("/tf") for t in m.transforms if t.header.frame_id == "map"]


class TestEndToEnd(RosTestCase):
    node_name = "recon_e2e_listener"

    def test_outputs_accuracy_and_parity_with_the_bag_tool(self, proc_info, player, seq, reference):
        cams = seq.camera_names
        listen = Listener(self.node, cams)
        outputs = [k for k in listen.topics if k.startswith("/recon/") or k == "/diagnostics"]

        # What the node's writers matched, from its /diagnostics (subscribers.<topic>): discovery is per
        # process, and this test's readers seeing the node's writers does not mean the writers see them (a run
        # lost every message of one depth topic). Depth images have two readers here (reliable, best effort).
        wanted = {k: 2 if k in listen.best_effort else 1 for k in outputs if k not in ("/recon/status", "/diagnostics")}

        def node_side() -> dict[str, int]:
            for msg in reversed(listen.messages("/diagnostics")):
                values = {kv.key: kv.value for st in msg.status for kv in st.values}
                if any(k.startswith("subscribers.") for k in values):
                    return {k: int(values.get(f"subscribers.{k}", 0)) for k in wanted}
            return {}

        def ready() -> bool:
            seen = node_side()
            return (all(listen.subs[k].get_publisher_count() >= 1 for k in outputs)
                    and all(self.node.count_subscribers(f"/{c}/image_raw") >= 2 for c in cams)
                    and bool(seen) and all(seen[k] >= n for k, n in wanted.items()))

        self.assertTrue(self.wait_for(ready, timeout=120), "the node's publishers/subscriptions never matched: "
                        + str([k for k in outputs if listen.subs[k].get_publisher_count() < 1]) + f" {node_side()}")
        self.node.create_subscription(Image, START_TOPIC, lambda _m: None, 1)
        proc_info.assertWaitForShutdown(process=player, timeout=OUT_TIMEOUT_S)
        launch_testing.asserts.assertExitCodes(proc_info, process=player)
        ref_keyframes = reference.engine.keyframe_count
        # The worker lags the player: wait for the keyframes the bag tool made (minus the one(s) the
        # fusion delay holds back until deactivate), then deactivate, which drains and fuses the rest.
        deadline = time.monotonic() + OUT_TIMEOUT_S
        status = lambda: listen.messages("/recon/status")  # noqa: E731
        while time.monotonic() < deadline and not (status() and status()[-1].keyframes >= ref_keyframes):
            time.sleep(0.5)
        clouds_before_deactivate = len(listen.messages("/recon/cloud"))
        change = self.node.create_client(ChangeState, "/recon/change_state")
        self.assertTrue(change.wait_for_service(timeout_sec=30))
        req = ChangeState.Request()
        req.transition.id = Transition.TRANSITION_DEACTIVATE
        future = change.call_async(req)
        deadline = time.monotonic() + 120
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertTrue(future.done() and future.result().success, "deactivate failed")
        # The drained clouds and map are in flight (a 1.4 MB map over UDP on a loaded machine took > 2 s):
        # the drain publishes the map last, stamped with its newest cloud; wait for it and for the clouds.
        stamp = lambda m: stamp_to_ns(m.header.stamp)  # noqa: E731
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            clouds, maps = listen.messages("/recon/cloud"), listen.messages("/recon/map")
            if (maps and clouds and len(clouds) > clouds_before_deactivate
                    and stamp(maps[-1]) >= max(stamp(c) for c in clouds)):
                time.sleep(1.0)  # the last cloud messages of that step
                break
            time.sleep(0.2)
        # deactivate drains: the keyframes the fusion delay held back are fused and published now
        self.assertGreater(len(listen.messages("/recon/cloud")), clouds_before_deactivate)

        # Reliable delivery of a lost fragment waits for the writer's next heartbeat (Fast DDS: every 3 s), so
        # a topic whose samples were all hit on this loaded loopback may still be in repair: give it time.
        missing = lambda: [t for t in listen.topics if not listen.messages(t)]  # noqa: E731
        late = missing()
        t_wait = time.monotonic()
        self.wait_for(lambda: not missing(), timeout=30.0)
        late_wait_s = round(time.monotonic() - t_wait, 2) if late else 0.0
        self.assertFalse(missing(), f"nothing arrived on {missing()}")
        unmatched = [k for k in listen.best_effort.values() if listen.subs[k].get_publisher_count() < 1]
        self.assertFalse(unmatched, f"sensor-data QoS depth readers not matched by the node: {unmatched}")
        odom = listen.map_to_odom()
        self.assertTrue(odom and all(t.child_frame_id == "odom" for t in odom), "map->odom missing on /tf")

        # every frame set used: no drops (queue holds them all), as many keyframes as the bag tool
        last = status()[-1]
        self.assertEqual(last.keyframes, ref_keyframes, "keyframes differ from the bag tool's")
        # Depth against the scene's exact depth: fused cloud points, as the bag tool is evaluated.
        clouds = []
        from types import SimpleNamespace as NS

        for msg in listen.messages("/recon/cloud"):
            pts, _ = pointcloud2_to_numpy(msg)
            cam = msg.header.frame_id.removesuffix("_optical_frame")
            clouds.append(NS(stamp_ns=stamp_to_ns(msg.header.stamp), camera=cam, points_cam=pts,
                             keyframe_id=stamp_to_ns(msg.header.stamp), kept_fraction=float("nan")))
        map_pts, _ = pointcloud2_to_numpy(listen.messages("/recon/map")[-1])
        report = evaluate(seq, clouds, map_pts, completeness_samples=2000)
        ref_map, _ = reference.engine.map.arrays()
        ref_report = evaluate(seq, reference.clouds, ref_map, completeness_samples=2000)
        self.assertLessEqual(report["depth_absrel"], ABSREL_BOUND)
        # Depth images (unfiltered, NaN = invalid) against exact depth at the depth resolution.
        errs = []
        index = {s: i for i, (s, _) in enumerate(seq.poses)}
        for c in cams:
            for msg in listen.messages(f"/recon/depth/{c}/image")[:2]:
                d = image_to_numpy(msg)
                gt = seq.render_frame(index[stamp_to_ns(msg.header.stamp)]).depths[c]
                if gt.shape != d.shape:
                    import cv2

                    gt = cv2.resize(gt, (d.shape[1], d.shape[0]), interpolation=cv2.INTER_NEAREST)
                ok = np.isfinite(d) & (gt > 0)
                errs.append(np.abs(d[ok] - gt[ok]) / gt[ok])
        depth_image_absrel = float(np.mean(np.concatenate(errs)))
        # published (filtered) depth images; measured 0.66 % (0.76-1.19 % before depth waited for the next keyframe)
        self.assertLessEqual(depth_image_absrel, ABSREL_BOUND)
        # Fused map: the same frame sets through the same engine -> the bag tool's map within 5 %
        # (measured 0 % difference; voxel insertion order may differ by a few points).
        self.assertLessEqual(abs(len(map_pts) - len(ref_map)), 0.05 * len(ref_map) + 10,
                             f"map {len(map_pts)} points, bag tool {len(ref_map)}")
        # ~/save_map writes the fused map (services stay up while inactive); ~/reset clears it
        ply = Path(tempfile.mkdtemp(prefix="recon_e2e_map_")) / "map.ply"
        saved = self.call(SaveMap, "/recon/save_map", SaveMap.Request(path=str(ply)))
        self.assertTrue(saved.success, saved.message)
        self.assertEqual(saved.points, len(map_pts))
        header = ply.read_bytes()[:400].decode("ascii", errors="replace")
        self.assertIn(f"element vertex {len(map_pts)}", header)
        self.assertTrue(self.call(Trigger, "/recon/reset", Trigger.Request()).success)
        emptied = self.call(SaveMap, "/recon/save_map", SaveMap.Request(path=str(ply.with_name("empty.ply"))))
        self.assertTrue(emptied.success and emptied.points == 0, emptied.message)
        # stamp -> cloud latency: first /<cam>/image_raw arrival of a stamp to its first cloud arrival
        lat = [t - listen.arrival[(f"/{cams[0]}/image_raw", s)] for (n, s), t in listen.arrival.items()
               if n == "/recon/cloud" and (f"/{cams[0]}/image_raw", s) in listen.arrival]
        summary = {"keyframes": last.keyframes, "bag_tool_keyframes": ref_keyframes, "map_points": len(map_pts),
                   "bag_tool_map_points": len(ref_map), "cloud_depth_absrel": report["depth_absrel"],
                   "bag_tool_cloud_depth_absrel": ref_report["depth_absrel"],
                   "depth_image_absrel": depth_image_absrel,
                   "best_effort_depth_images": {k: len(listen.messages(v)) for k, v in listen.best_effort.items()},
                   "reliable_depth_images": {k: len(listen.messages(k)) for k in listen.best_effort},
                   "dropped": dict(zip(last.drop_reasons, (int(n) for n in last.drop_counts))),
                   "topics_late_after_the_map": late, "waited_for_them_s": late_wait_s,
                   "stamp_to_cloud_latency_s": sorted(lat)}
        print("E2E_SUMMARY " + json.dumps(summary), flush=True)
        out = os.environ.get("RECON_ROS_E2E_SUMMARY")
        if out:
            Path(out).write_text(json.dumps(summary, indent=1))


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info):
        # SIGINT from launch at the end of the test is a clean exit for an rclpy node
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
