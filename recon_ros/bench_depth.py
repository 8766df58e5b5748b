"""``recon-ros bench`` depth section: seconds per published depth view, and OpenCV SGBM per pair beside.

Plane sweep runs on one 320x240 view of the demo rig with 4 source views (what the demo does per view),
the published-depth filter on its output, and, on a rectified pair at the same size (Middlebury
Motorcycle resized, when scikit-image is installed), OpenCV's StereoSGBM alone and our SGBM path
(SGBM + ZNCC sub-pixel + confidence). Timed round-robin in one process, so the ratios are comparable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

WIDTH, HEIGHT = 320, 240


def _demo_views(device: str):
    from recon_ros.config import DepthConfig
    from recon_ros.pipeline.frames import View
    from recon_ros.pipeline.fusion import select_depth_sources
    from recon_ros.synthetic.sequence import SyntheticConfig, SyntheticSequence

    seq = SyntheticSequence(SyntheticConfig(seed=0, n_cameras=4, n_frames=16, width=WIDTH, height=HEIGHT))
    views = []
    for i in (0, 5, 10, 15):  # about the demo's keyframe spacing
        f = seq.render_frame(i)
        for c in seq.camera_names:
            views.append(View(i, c, f.stamp_ns, f.images[c], seq.K.copy(), seq.T_world_cam(i, c)))
    cfg = DepthConfig()
    rng = (cfg.min_depth_m, cfg.max_depth_m)
    # The first view (of the later keyframes) that finds the configured number of sources, as most demo views do.
    for ref in (v for v in views if v.keyframe_id >= 10):
        sources = select_depth_sources(ref, views, rng, cfg.num_sources, cfg.min_overlap, cfg.min_baseline_m)
        if len(sources) == cfg.num_sources:
            break
    return ref, sources, views, cfg


def _stereo_pair_views():
    from recon_ros.geometry.camera import PinholeCamera
    from recon_ros.geometry.se3 import make_transform
    from recon_ros.pipeline.frames import View
    from recon_ros.synthetic.stereo_pairs import motorcycle

    pair = motorcycle()
    h, w = pair.left.shape[:2]
    out_h = round(h * WIDTH / w)

    def view(cam: str, rgb: np.ndarray, K: np.ndarray, x: float) -> View:
        K_small = PinholeCamera.from_K(K, w, h).resized(WIDTH, out_h).K
        small = cv2.resize(rgb, (WIDTH, out_h), interpolation=cv2.INTER_AREA)
        return View(0, cam, 0, small, K_small, make_transform(np.eye(3), [x, 0.0, 0.0]))

    return view("left", pair.left, pair.K_left, 0.0), view("right", pair.right, pair.K_right, pair.baseline_m)


def bench_depth(runs: int, warmup: int, device: str,
                measure: Callable[[dict[str, Callable[[], Any]], int, int, str], dict]) -> dict:
    from recon_ros.pipeline.depth_filter import PublishedDepthFilter
    from recon_ros.pipeline.planesweep import PlaneSweepDepth
    from recon_ros.pipeline.stereo_sgbm import rectified_partner, sgbm_depth

    ref, sources, views, cfg = _demo_views(device)
    sweep = PlaneSweepDepth(cfg, device, 0.3)
    est = sweep.estimate(ref, sources, (cfg.min_depth_m, cfg.max_depth_m))
    ref.depth, ref.confidence, ref.valid = est.depth, est.confidence, est.valid
    for v in sources:  # neighbours with depth, as in a running engine
        v.depth, v.confidence, v.valid = est.depth, est.confidence, est.valid
    filt = PublishedDepthFilter(cfg, 8, device)
    fns: dict[str, Callable[[], Any]] = {
        "planesweep_view": lambda: sweep.estimate(ref, sources, (cfg.min_depth_m, cfg.max_depth_m)),
        "publish_filter_view": lambda: filt.apply(ref, sources, (cfg.min_depth_m, cfg.max_depth_m)),
    }
    setup = f"{WIDTH}x{HEIGHT}, {len(sources)} sources, {cfg.num_planes} planes"
    try:
        left, right = _stereo_pair_views()
        pair = rectified_partner(left, [right])
        assert pair is not None
        gl, gr = (cv2.cvtColor(v.rgb, cv2.COLOR_RGB2GRAY) for v in (left, right))
        opencv = cv2.StereoSGBM_create(minDisparity=0, numDisparities=64, blockSize=5, P1=8 * 25, P2=32 * 25,
                                       mode=cv2.STEREO_SGBM_MODE_HH)
        fns["opencv_sgbm_pair"] = lambda: opencv.compute(gl, gr)
        fns["sgbm_path_view"] = lambda: sgbm_depth(left, pair, (1.0, 12.0))
        setup += f"; SGBM on Motorcycle resized to {left.size[0]}x{left.size[1]}"
    except ImportError:
        setup += "; no SGBM pair (scikit-image missing)"
    res: dict[str, Any] = {"setup": setup}
    for name, m in measure(fns, runs, warmup, device).items():
        res[name] = dataclasses.asdict(m)
    total = res["planesweep_view"]["median_s"] + res["publish_filter_view"]["median_s"]
    res["seconds_per_view"] = total
    if "opencv_sgbm_pair" in res:
        res["seconds_per_sgbm_pair"] = res["opencv_sgbm_pair"]["median_s"]
        res["view_over_sgbm_pair"] = total / res["opencv_sgbm_pair"]["median_s"]
    return res


def depth_table_row(res: dict) -> str:
    row = f"depth ({res['setup']}): {res['seconds_per_view']:.3f} s per published view"
    if "seconds_per_sgbm_pair" in res:
        row += (f", OpenCV SGBM {res['seconds_per_sgbm_pair']:.3f} s per pair (x{res['view_over_sgbm_pair']:.1f}), "
                f"our SGBM path {res['sgbm_path_view']['median_s']:.3f} s per view")
    return row
