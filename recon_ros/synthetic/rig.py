"""Multi-camera rig on the robot base: camera mounting, shared pinhole intrinsics, base->optical extrinsics.

Conventions (REP-103 / REP-105): base_link x forward, y left, z up; camera optical frames z forward,
x right, y down. `T_base_optical(cam)` maps optical-frame points into base_link: p_base = T @ p_cam.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Rotation taking optical-frame vectors into a forward-looking "camera body" frame (x fwd, y left, z up):
#: optical z (forward) -> +x, optical x (right) -> -y, optical y (down) -> -z.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0],
                           [-1.0, 0.0, 0.0],
                           [0.0, -1.0, 0.0]])

DEFAULT_NAMES_4 = ("front", "left", "right", "back")
_DEFAULT_YAWS_4 = (0.0, 90.0, -90.0, 180.0)


@dataclass(frozen=True)
class CameraSpec:
    """One camera: mounting position in base_link (m), yaw about base z (left positive) and pitch
    about the camera's left axis (REP-103 sign: positive pitch tilts the view DOWN), in degrees."""

    name: str
    position: tuple[float, float, float]
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0


@dataclass(frozen=True)
class RigSpec:
    """The rig: cameras sharing one image size and horizontal field of view (square pixels)."""

    cameras: tuple[CameraSpec, ...]
    width: int = 640
    height: int = 480
    hfov_deg: float = 90.0

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]


def optical_frame_id(camera_name: str) -> str:
    """TF frame id of a camera's optical frame."""
    return f"{camera_name}_optical_frame"


def default_rig(n_cameras: int = 4, width: int = 640, height: int = 480, hfov_deg: float = 90.0, *,
                radius_m: float = 0.2, mount_height_m: float = 0.8, pitch_deg: float = 0.0) -> RigSpec:
    """`n_cameras` cameras on a ring of `radius_m` around the base centre at `mount_height_m`, each
    looking radially outwards. Four cameras are named front/left/right/back; other counts cam0..camN-1
    with yaws spread evenly starting forward."""
    if n_cameras < 1:
        raise ValueError("need at least one camera")
    if n_cameras == 4:
        named = list(zip(DEFAULT_NAMES_4, _DEFAULT_YAWS_4))
    else:
        named = [(f"cam{i}", 360.0 * i / n_cameras) for i in range(n_cameras)]
    cams = []
    for name, yaw in named:
        y = math.radians(yaw)
        # Round to kill cos(90 deg) ~ 6e-17 noise: mounting positions are nicer to read exactly.
        pos = (round(radius_m * math.cos(y), 12), round(radius_m * math.sin(y), 12), mount_height_m)
        cams.append(CameraSpec(name, pos, yaw, pitch_deg))
    return RigSpec(tuple(cams), int(width), int(height), float(hfov_deg))


def intrinsics(rig: RigSpec) -> np.ndarray:
    """Pinhole K shared by every camera: fx = fy from the hfov; principal point at the image centre,
    which is ((W-1)/2, (H-1)/2) because integer pixel coordinates are pixel centres."""
    fx = (rig.width / 2.0) / math.tan(math.radians(rig.hfov_deg) / 2.0)
    return np.array([[fx, 0.0, (rig.width - 1) / 2.0],
                     [0.0, fx, (rig.height - 1) / 2.0],
                     [0.0, 0.0, 1.0]])


def T_base_optical(cam: CameraSpec) -> np.ndarray:
    """4x4 base_link <- optical frame transform: mounting yaw (about base z), then pitch (about the
    camera's y/left axis, positive looks down), then the body->optical axis swap."""
    y, p = math.radians(cam.yaw_deg), math.radians(cam.pitch_deg)
    Rz = np.array([[math.cos(y), -math.sin(y), 0.0], [math.sin(y), math.cos(y), 0.0], [0.0, 0.0, 1.0]])
    Ry = np.array([[math.cos(p), 0.0, math.sin(p)], [0.0, 1.0, 0.0], [-math.sin(p), 0.0, math.cos(p)]])
    T = np.eye(4)
    T[:3, :3] = Rz @ Ry @ R_BODY_OPTICAL
    T[:3, 3] = cam.position
    return T
