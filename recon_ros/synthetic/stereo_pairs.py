"""Real rectified stereo pairs with ground truth, as 2-camera rosbag2 recordings, and OpenCV's SGBM beside.

Motorcycle (Middlebury 2014, Scharstein et al., GCPR 2014) ships inside scikit-image's wheel
(``skimage.data.stereo_motorcycle()``: 741x500, the benchmark images downsampled 4x, with the left
view's ground-truth disparity; no download). Its calibration at that size, from the benchmark's
calib.txt (f = 3979.911 px, doffs = 124.343 px, baseline = 193.001 mm at 2964x2000) divided by
4: f = 994.978 px, cx_left = 311.193 px, cx_right = cx_left + 31.086 px, cy = 254.877 px — the
same figures scikit-image's docstring states. Depth ``Z = f * B / (d + doffs)``.

Aloe (Middlebury 2006, Scharstein & Pal, CVPR 2007) ships in Debian's ``opencv-doc`` package
(``/usr/share/doc/opencv-doc/examples/data/aloe{L,R}.jpg``, ``aloeGT.png``: 1282x1110, JPEG, the left
view's ground-truth disparity in whole pixels, 0 = unknown). Its calibration is not shipped, so the pair
gets a nominal one (f = 3740 px at full size, the 2006 sets' focal length; baseline 0.16 m; equal principal
points): depth is then ``f * B / d``, and AbsRel and delta of such depth are those of disparity
(``|d_gt / d - 1|``), whatever f and B are. Used at half size (641x555).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from recon_ros.io.bag import BagWriter
from recon_ros.io.messages import (
    MessageKit,
    make_camera_info,
    make_tf_message,
    make_transform_stamped,
    numpy_to_image,
)

# REP-103: optical z = base x (forward), optical x = -base y (right), optical y = -base z (down).
R_BASE_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
SGBM_BLOCK_SIZE = 5
STAMP0_NS = 1_700_000_000_000_000_000


@dataclass
class StereoPair:
    name: str
    left: np.ndarray  # [H, W, 3] uint8 RGB
    right: np.ndarray
    K_left: np.ndarray
    K_right: np.ndarray
    baseline_m: float
    disparity_left: np.ndarray  # [H, W] float32 ground truth u_left - u_right, NaN = unknown

    @property
    def disparity_offset_px(self) -> float:
        return float(self.K_right[0, 2] - self.K_left[0, 2])  # Middlebury's doffs

    def depth_left(self) -> np.ndarray:
        """Ground-truth depth of the left view (NaN = unknown)."""
        d = self.disparity_left + self.disparity_offset_px
        ok = np.isfinite(d) & (d > 0)
        return np.where(ok, self.K_left[0, 0] * self.baseline_m / np.where(ok, d, 1.0), np.nan).astype(np.float32)


OPENCV_DATA_DIRS = ("/usr/share/doc/opencv-doc/examples/data",)


def aloe(data_dir: str | Path | None = None) -> StereoPair:
    """Middlebury 2006 Aloe at half size (641x555) from Debian's opencv-doc, or from ``data_dir`` (or the
    environment variable RECON_ROS_OPENCV_DATA). FileNotFoundError, saying what to install, when absent."""
    import os

    dirs = [Path(d) for d in ([data_dir] if data_dir else [])
            + ([os.environ["RECON_ROS_OPENCV_DATA"]] if os.environ.get("RECON_ROS_OPENCV_DATA") else [])
            + list(OPENCV_DATA_DIRS)]
    found = next((d for d in dirs if (d / "aloeGT.png").is_file()), None)
    if found is None:
        raise FileNotFoundError(f"aloeL.jpg, aloeR.jpg, aloeGT.png not found in {[str(d) for d in dirs]}: "
                                "install Debian's opencv-doc (apt install opencv-doc) or set RECON_ROS_OPENCV_DATA")
    left, right = (cv2.cvtColor(cv2.imread(str(found / f"aloe{s}.jpg")), cv2.COLOR_BGR2RGB) for s in "LR")
    gt = cv2.imread(str(found / "aloeGT.png"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    h, w = gt.shape[0] // 2, gt.shape[1] // 2
    left, right = (cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in (left, right))
    # Ground truth at half size: the mean of each 2x2 block's disparities, halved, where all four are known
    # and agree within 1 px (a block across a depth edge has no single disparity).
    blocks = gt[: 2 * h, : 2 * w].reshape(h, 2, w, 2).transpose(0, 2, 1, 3).reshape(h, w, 4)
    known = (blocks > 0).all(axis=2) & (np.ptp(blocks, axis=2) <= 1.0)
    disp = np.where(known, blocks.mean(axis=2) / 2.0, np.nan).astype(np.float32)
    f = 3740.0 / 2.0
    K = np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
    return StereoPair("aloe", left, right, K, K.copy(), 0.16, disp)


def motorcycle() -> StereoPair:
    """Middlebury 2014 Motorcycle at 741x500 from scikit-image (ImportError when it is not installed)."""
    from skimage.data import stereo_motorcycle

    left, right, disp = stereo_motorcycle()
    f, cx, cy, doffs = 994.978, 311.193, 254.877, 31.086
    K_left = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    K_right = K_left.copy()
    K_right[0, 2] = cx + doffs
    disp = np.where(np.isfinite(disp) & (disp > 0), disp, np.nan).astype(np.float32)
    return StereoPair("motorcycle", left, right, K_left, K_right, 0.193001, disp)


def opencv_sgbm_depth(pair: StereoPair) -> np.ndarray:
    """The reference: StereoSGBM (block 5, MODE_HH, OpenCV's recommended P1/P2, all else default) on
    the left view, searching exactly the ground truth's disparity range (a head start we give it)."""
    gl = cv2.cvtColor(pair.left, cv2.COLOR_RGB2GRAY)
    gr = cv2.cvtColor(pair.right, cv2.COLOR_RGB2GRAY)
    lo = int(np.floor(np.nanmin(pair.disparity_left)))
    num = int(np.ceil((np.nanmax(pair.disparity_left) - lo + 1) / 16.0)) * 16
    sgbm = cv2.StereoSGBM_create(minDisparity=lo, numDisparities=num, blockSize=SGBM_BLOCK_SIZE,
                                 P1=8 * SGBM_BLOCK_SIZE**2, P2=32 * SGBM_BLOCK_SIZE**2,
                                 mode=cv2.STEREO_SGBM_MODE_HH)
    disp = sgbm.compute(gl, gr).astype(np.float32) / 16.0
    d = disp + pair.disparity_offset_px
    ok = (disp >= lo) & (d > 0)
    return np.where(ok, pair.K_left[0, 0] * pair.baseline_m / np.where(ok, d, 1.0), np.nan).astype(np.float32)


def write_stereo_bag(pair: StereoPair, path: str | Path, *, frames: int = 1, overwrite: bool = True) -> None:
    """A 2-camera recording of ``pair``: ``/left|right/image_raw`` (rgb8), ``/<cam>/camera_info``,
    ``/tf_static`` (base_link -> optical frames, the right camera ``baseline`` to the right), ``/tf``
    (odom -> base_link, standing still) and ``/left/depth_ground_truth`` (32FC1, NaN = unknown)."""
    kit = MessageKit.for_rosbags()
    h, w = pair.left.shape[:2]
    T_left, T_right = np.eye(4), np.eye(4)
    T_left[:3, :3] = T_right[:3, :3] = R_BASE_OPTICAL
    T_right[:3, 3] = R_BASE_OPTICAL @ np.array([pair.baseline_m, 0.0, 0.0])
    gt = pair.depth_left()
    with BagWriter(path, kit, overwrite=overwrite) as bag:
        static = [make_transform_stamped(kit, T, STAMP0_NS, "base_link", f"{c}_optical_frame")
                  for c, T in (("left", T_left), ("right", T_right))]
        bag.write("/tf_static", make_tf_message(kit, static), STAMP0_NS)
        for i in range(frames):
            t = STAMP0_NS + i * 100_000_000
            bag.write("/tf", make_tf_message(kit, [make_transform_stamped(kit, np.eye(4), t, "odom", "base_link")]), t)
            bag.write("/left/depth_ground_truth", numpy_to_image(kit, gt, "32FC1", t, "left_optical_frame"), t)
            for cam, img, K in (("left", pair.left, pair.K_left), ("right", pair.right, pair.K_right)):
                frame = f"{cam}_optical_frame"
                bag.write(f"/{cam}/camera_info", make_camera_info(kit, K, w, h, t, frame), t)
                bag.write(f"/{cam}/image_raw", numpy_to_image(kit, img, "rgb8", t, frame), t)
