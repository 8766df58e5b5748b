"""Cost of recon_node's callbacks, without ROS: what runs on the callback thread per frame set.

Replays a synthetic 4-camera 640x480 bag (raw rgb8 and JPEG) through ``LiveRecon.on_camera_info`` /
``on_image`` — the exact code the node's subscriptions call (decode + convert + FrontEnd + TF +
``InferenceWorker.submit``). Inference is stubbed out (it runs on the worker thread and is
benchmarked elsewhere). Also times ``make_pointcloud2`` for 100k-1M points with numpy arrays
(rosbags) and array.array (the rclpy convention), in GB/s of point data.

    python benchmarks/bench_node_callbacks.py [--frames 10] [--json out.json]

Numbers are ratios to the targets (raw frame set <= 5 ms), not assertions.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from recon_ros.config import from_dict
from recon_ros.io.bag import BagReader
from recon_ros.io.messages import MessageKit, make_pointcloud2, stamp_to_ns, transform_to_matrix
from recon_ros.nodes.live import LiveRecon
from recon_ros.pipeline.frames import DropCounter, FrameSet
from recon_ros.pipeline.tf_buffer import TfBuffer
from recon_ros.synthetic import SyntheticConfig, SyntheticSequence
from recon_ros.synthetic.bag import write_sequence_bag

RAW_TARGET_MS = 5.0


class StubEngine:
    """Stands in for ReconstructionEngine: the worker thread must not compete for the CPU here."""

    def __init__(self) -> None:
        self.drops = DropCounter()
        self.path: list = []
        self.framesets = 0

    def process(self, fs: FrameSet) -> None:
        self.framesets += 1
        return None


def load_messages(bag: Path, kit: MessageKit) -> list[tuple[str, Any]]:
    with BagReader(bag, kit) as reader:
        return [(m.topic, reader.deserialize(m)) for m in reader.messages()]


def replay(messages: list[tuple[str, Any]], cameras: list[str], compressed: bool, repeats: int) -> dict[str, Any]:
    """Per frame set: wall time of the callbacks for its images + camera infos (TF insertion excluded:
    tf2_ros's listener does that on its own callback)."""
    cfg = from_dict({"cameras": cameras, "topics.compressed": compressed, "runtime.queue_size": 1000})
    per_set: list[float] = []
    decode_only: list[float] = []
    submitted = 0
    for _ in range(repeats):
        kit = MessageKit.for_rosbags()
        tf = TfBuffer()
        engine = StubEngine()
        live = LiveRecon(cfg, kit, tf, lambda t, m: None, engine=engine)  # type: ignore[arg-type]
        acc = 0.0
        for topic, msg in messages:
            if topic in ("/tf", "/tf_static"):
                for t in msg.transforms:
                    tf.set_transform(t.header.frame_id, t.child_frame_id, stamp_to_ns(t.header.stamp),
                                     transform_to_matrix(t.transform), static=topic == "/tf_static")
                continue
            cam = topic.split("/")[1]
            t0 = time.perf_counter()
            if topic.endswith("camera_info"):
                live.on_camera_info(cam, msg)
                acc += time.perf_counter() - t0
                continue
            n = live.on_image(cam, msg)
            acc += time.perf_counter() - t0
            if n:
                per_set.append(acc * 1e3)
                acc = 0.0
                submitted += n
        live.worker.wait_idle(10)
        live.close()
        # decode alone, for the split between OpenCV/numpy and our own bookkeeping
        for topic, msg in messages:
            if "image_raw" in topic:
                t0 = time.perf_counter()
                live_decode(msg, compressed)
                decode_only.append((time.perf_counter() - t0) * 1e3)
    return {
        "frame_sets": submitted,
        "ms_per_frame_set_median": statistics.median(per_set),
        "ms_per_frame_set_mean": statistics.fmean(per_set),
        "ms_per_frame_set_p90": sorted(per_set)[int(0.9 * (len(per_set) - 1))],
        "decode_ms_per_image_median": statistics.median(decode_only),
    }


def live_decode(msg: Any, compressed: bool) -> np.ndarray:
    from recon_ros.io.messages import decode_image

    return decode_image(msg, compressed)


def bench_pointcloud2(sizes: list[int], repeats: int = 5) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    numpy_kit = MessageKit.for_rosbags()
    # rclpy convention (array.array for sequences) with rosbags classes: same copy cost as the node's path
    array_kit = MessageKit(numpy_kit._resolve, numpy_arrays=False, typestore=numpy_kit.typestore)
    rows = []
    for n in sizes:
        pts = rng.standard_normal((n, 3)).astype(np.float32)
        cols = rng.integers(0, 255, (n, 3), dtype=np.uint8)
        row: dict[str, Any] = {"points": n, "bytes": 16 * n}
        for name, kit in (("numpy", numpy_kit), ("array.array", array_kit)):
            make_pointcloud2(kit, pts, cols, 1, "map")  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                make_pointcloud2(kit, pts, cols, 1, "map")
                times.append(time.perf_counter() - t0)
            best = min(times)
            row[f"{name}_ms"] = best * 1e3
            row[f"{name}_GBps"] = 16 * n / best / 1e9
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10, help="frames in the synthetic bag (x4 cameras)")
    ap.add_argument("--repeats", type=int, default=3, help="replays of the bag per mode")
    ap.add_argument("--json", default="bench_node_callbacks.json", help="where to write the results")
    args = ap.parse_args()

    seq = SyntheticSequence(SyntheticConfig(n_cameras=4, n_frames=args.frames, width=640, height=480))
    kit = MessageKit.for_rosbags()
    results: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version(),
                               "cameras": 4, "resolution": "640x480", "frames": args.frames}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, compressed in (("raw_rgb8", False), ("jpeg", True)):
            bag = Path(tmp) / mode
            write_sequence_bag(seq, bag, compressed=compressed, progress=False)
            results[mode] = replay(load_messages(bag, kit), seq.camera_names, compressed, args.repeats)
    results["raw_ratio_to_target"] = results["raw_rgb8"]["ms_per_frame_set_median"] / RAW_TARGET_MS
    results["pointcloud2"] = bench_pointcloud2([100_000, 300_000, 1_000_000])

    print(f"\nnode callbacks, 4 x 640x480 per frame set ({results['machine']})")
    print(f"{'input':<10} {'median ms/set':>14} {'p90 ms/set':>11} {'decode ms/img':>14}")
    for mode in ("raw_rgb8", "jpeg"):
        r = results[mode]
        print(f"{mode:<10} {r['ms_per_frame_set_median']:>14.2f} {r['ms_per_frame_set_p90']:>11.2f} "
              f"{r['decode_ms_per_image_median']:>14.2f}")
    print(f"raw vs {RAW_TARGET_MS} ms target: x{results['raw_ratio_to_target']:.2f}")
    print(f"\nmake_pointcloud2\n{'points':>9} {'numpy ms':>9} {'GB/s':>6} {'array.array ms':>15} {'GB/s':>6}")
    for r in results["pointcloud2"]:
        print(f"{r['points']:>9} {r['numpy_ms']:>9.2f} {r['numpy_GBps']:>6.2f} {r['array.array_ms']:>15.2f} "
              f"{r['array.array_GBps']:>6.2f}")
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
