"""Camera calibration from CameraInfo, and rectification of distorted images with OpenCV.

Recorded ``image_raw`` is nearly always distorted and offline there is no image_proc, so recon_ros
rectifies inside: one ``cv2.remap`` per image with maps built once per calibration (a CameraInfo
with the same numbers reuses them). Everything downstream (depth, clouds, the published depth
CameraInfo) lives in the *rectified* camera: intrinsics ``P[:3,:3]`` (``K`` when P is unset), no
distortion, rotated by ``R`` from the original optical frame. Like image_proc's ``image_rect``, the
rectified image keeps the original ``frame_id``; the rotation ``R`` is folded into the camera pose
(see :attr:`Rectifier.T_cam_rect`) so the fused map stays where TF puts the camera.

Distortion models (sensor_msgs/distortion_models.hpp): ``plumb_bob`` (k1 k2 p1 p2 k3),
``rational_polynomial`` (k1 k2 p1 p2 k3 k4 k5 k6) and ``equidistant`` (fisheye k1 k2 k3 k4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from recon_ros.io.messages import BadMessage, stamp_to_ns

#: distortion model -> (least, most) coefficients OpenCV uses for it
DISTORTION_MODELS: dict[str, tuple[int, int]] = {
    "plumb_bob": (4, 5),
    "rational_polynomial": (8, 8),
    "equidistant": (4, 4),
}


@dataclass(frozen=True)
class Calibration:
    """The numbers of one CameraInfo that define the image geometry."""

    width: int
    height: int
    K: np.ndarray  # 3x3
    model: str
    d: np.ndarray  # distortion coefficients (empty = none)
    R: np.ndarray  # 3x3 rectification rotation: X_rect = R @ X_cam
    P: np.ndarray  # 3x4 projection of the rectified camera (all zero = unset)

    @property
    def distorted(self) -> bool:
        return bool(self.d.size and np.any(np.abs(self.d) > 1e-12))

    @property
    def K_rect(self) -> np.ndarray:
        """Intrinsics of the rectified camera: P's left 3x3 when P is set, else K."""
        P = self.P[:, :3]
        return P.copy() if P[0, 0] > 0 and P[1, 1] > 0 else self.K.copy()

    @property
    def rotated(self) -> bool:
        return not np.allclose(self.R, np.eye(3), atol=1e-9)

    def key(self) -> bytes:
        """Identity of the calibration: equal keys share rectification maps."""
        parts = [np.array([self.width, self.height], np.float64), self.K, self.d, self.R, self.P]
        return self.model.encode() + b"|" + b"".join(np.ascontiguousarray(p, np.float64).tobytes() for p in parts)


def calibration_from_camera_info(msg: Any) -> Calibration:
    """Validated :class:`Calibration` of a CameraInfo; BadMessage('bad_camera_info') says what is wrong."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    w, h = int(msg.width), int(msg.height)
    if w <= 0 or h <= 0:
        raise BadMessage("bad_camera_info", f"CameraInfo has size {w}x{h}; expected a positive width and height")
    if not np.all(np.isfinite(K)) or not np.any(K):
        raise BadMessage("bad_camera_info", "CameraInfo K is all zero or not finite (uncalibrated camera)")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise BadMessage("bad_camera_info", f"CameraInfo K has focal lengths fx={K[0, 0]}, fy={K[1, 1]}; expected > 0")
    d = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    model = str(msg.distortion_model)
    if not np.all(np.isfinite(d)):
        raise BadMessage("bad_camera_info", f"CameraInfo distortion d={d.tolist()} is not finite")
    distorted = bool(d.size and np.any(np.abs(d) > 1e-12))
    if model not in DISTORTION_MODELS and (distorted or model):
        raise BadMessage(
            "bad_camera_info",
            f"CameraInfo distortion model '{model}' is not supported (expected one of {list(DISTORTION_MODELS)})",
        )
    if distorted:
        least, most = DISTORTION_MODELS[model]
        if d.size < least:
            raise BadMessage("bad_camera_info",
                             f"CameraInfo '{model}' distortion has {d.size} coefficients; expected {least}..{most}")
        if np.any(np.abs(d[most:]) > 1e-12):
            raise BadMessage("bad_camera_info",
                             f"CameraInfo '{model}' distortion has {d.size} non-zero coefficients; expected at most "
                             f"{most}")
        d = d[:most]
    R = np.asarray(getattr(msg, "r", np.zeros(9)), dtype=np.float64).reshape(3, 3)
    if not np.any(R):
        R = np.eye(3)  # unset R (all zero) means no rectification rotation
    if not np.all(np.isfinite(R)) or not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise BadMessage("bad_camera_info", f"CameraInfo R={R.ravel().tolist()} is not a rotation matrix")
    P = np.asarray(getattr(msg, "p", np.zeros(12)), dtype=np.float64).reshape(3, 4)
    if not np.all(np.isfinite(P)):
        raise BadMessage("bad_camera_info", "CameraInfo P is not finite")
    return Calibration(w, h, K, model, d if distorted else np.zeros(0), R, P)


def camera_info_stamp_s(msg: Any) -> float:
    return stamp_to_ns(msg.header.stamp) / 1e9


#: resampling of the rectification remap (bilinear: what image_proc uses by default)
INTERPOLATION = cv2.INTER_LINEAR


class Rectifier:
    """Rectifies images of one calibration: maps built once, ~1 remap per image.

    ``input_rectified`` says the images come from an ``image_rect`` topic (image_proc already
    undistorted them): nothing is remapped, only the rectified intrinsics and rotation are used.
    """

    def __init__(self, cal: Calibration, input_rectified: bool = False):
        self.cal = cal
        self.K = cal.K_rect
        self.size = (cal.width, cal.height)
        self.identity = input_rectified or (not cal.distorted and not cal.rotated
                                            and np.allclose(self.K, cal.K, atol=1e-9))
        # pose of the rectified camera in the original optical frame: X_cam = R^T X_rect
        self.T_cam_rect = np.eye(4)
        self.T_cam_rect[:3, :3] = cal.R.T
        self._maps: tuple[np.ndarray, np.ndarray] | None = None
        if not self.identity:
            self._maps = self._build_maps()

    def _build_maps(self) -> tuple[np.ndarray, np.ndarray]:
        cal = self.cal
        if cal.model == "equidistant" and cal.distorted:
            return cv2.fisheye.initUndistortRectifyMap(cal.K, cal.d[:4], cal.R, self.K, self.size, cv2.CV_16SC2)
        d = cal.d if cal.distorted else np.zeros(5)
        return cv2.initUndistortRectifyMap(cal.K, d, cal.R, self.K, self.size, cv2.CV_16SC2)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self._maps is None:
            return image
        return cv2.remap(image, self._maps[0], self._maps[1], INTERPOLATION, borderMode=cv2.BORDER_CONSTANT)


class RectifierCache:
    """One :class:`Rectifier` per camera, rebuilt only when that camera's calibration changes."""

    def __init__(self) -> None:
        self._by_camera: dict[str, tuple[bytes, Rectifier]] = {}
        self.builds = 0  # how many times maps were computed (tests, status)

    def update(self, camera: str, cal: Calibration, input_rectified: bool = False) -> Rectifier:
        key = cal.key() + (b"R" if input_rectified else b"")
        held = self._by_camera.get(camera)
        if held is None or held[0] != key:
            held = (key, Rectifier(cal, input_rectified))
            self._by_camera[camera] = held
            self.builds += 1
        return held[1]

    def get(self, camera: str) -> Rectifier | None:
        held = self._by_camera.get(camera)
        return held[1] if held else None

    def forget(self, camera: str) -> None:
        self._by_camera.pop(camera, None)


# ---- distortion of synthetic images (tests, synthetic bags) -------------------------------------
def distort_image(rgb: np.ndarray, K: np.ndarray, model: str, d: np.ndarray,
                  K_src: np.ndarray | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """The image a lens with distortion ``(model, d)`` and intrinsics ``K`` would record of a scene
    whose undistorted pinhole image (intrinsics ``K_src``, default ``K``) is ``rgb``: each distorted
    pixel samples the pinhole image where its ray lands. Pixels whose ray leaves the pinhole image
    are black. A pinhole image rendered at a higher resolution (``K_src``) avoids blurring twice.
    ``size`` = (width, height) of the distorted image (default: that of ``rgb``)."""
    K_src = K if K_src is None else K_src
    w, h = size or (rgb.shape[1], rgb.shape[0])
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
    d = np.asarray(d, dtype=np.float64)
    if model == "equidistant":
        und = cv2.fisheye.undistortPoints(pts, K, d[:4], P=K_src)
        back = cv2.fisheye.distortPoints(cv2.undistortPoints(und, K_src, None), K, d[:4])
    else:
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-6)
        if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4; OpenCV 5 folded criteria into undistortPoints
            und = cv2.undistortPointsIter(pts, K, d, None, K_src, crit)
        else:
            und = cv2.undistortPoints(pts, K, d, R=None, P=K_src, criteria=crit)
        rays = cv2.convertPointsToHomogeneous(cv2.undistortPoints(und, K_src, None))
        back, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), K, d)
    # where the lens model cannot be inverted (outside its valid field of view) the pixel stays black
    bad = (np.linalg.norm(back.reshape(-1, 2) - pts.reshape(-1, 2), axis=1) > 0.05).reshape(h, w)
    mx = und[:, 0, 0].reshape(h, w).astype(np.float32)
    my = und[:, 0, 1].reshape(h, w).astype(np.float32)
    mx[bad], my[bad] = -1.0, -1.0
    return cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
