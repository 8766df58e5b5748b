"""numpy <-> ROS 2 messages: the single conversion point of recon_ros.

Every message is built by the same functions whether the classes come from rclpy (live node) or
from a ``rosbags`` typestore (bag tool, tests). A :class:`MessageKit` hides the two differences:
where the classes come from, and how array fields are filled (rclpy wants ``array.array`` for
fast sequence assignment, rosbags wants numpy arrays).
"""

from __future__ import annotations

import array
import importlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from recon_ros.geometry.se3 import from_quaternion, to_quaternion

PACKAGE = "recon_ros"


def _msg_dir() -> Path:
    """msg/ of the source tree (pip -e, tests), else the installed share/recon_ros/msg (colcon)."""
    here = Path(__file__).resolve().parent.parent.parent / "msg"
    if here.is_dir():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "msg"
    except Exception:  # no ament index: a pip install outside ROS
        import sys

        return Path(sys.prefix) / "share" / PACKAGE / "msg"


MSG_DIR = _msg_dir()

_ARRAY_CODES = {np.uint8: "B", np.float64: "d", np.float32: "f", np.uint64: "Q", np.uint32: "I", np.int32: "i"}


class BadMessage(ValueError):
    """An input message cannot be used. ``reason`` is a short code counted in the run summary."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class MessageKit:
    """Message classes plus array conventions of one ROS Python implementation."""

    def __init__(self, resolve: Callable[[str], type], numpy_arrays: bool, typestore: Any = None):
        self._resolve = resolve
        self._cache: dict[str, type] = {}
        self.numpy_arrays = numpy_arrays
        self.typestore = typestore

    def cls(self, name: str) -> type:
        """Message class for ``pkg/msg/Name``."""
        if name not in self._cache:
            self._cache[name] = self._resolve(name)
        return self._cache[name]

    def array(self, values: Any, dtype: type) -> Any:
        """Value for a sequence field of the given element type."""
        arr = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
        if self.numpy_arrays:
            return arr
        out = array.array(_ARRAY_CODES[dtype])
        out.frombytes(arr.tobytes())
        return out

    def fixed(self, values: Any, dtype: type) -> np.ndarray:
        """Value for a fixed-size array field (numpy in both implementations)."""
        return np.ascontiguousarray(values, dtype=dtype).reshape(-1)

    @classmethod
    def for_rosbags(cls, typestore: Any = None) -> MessageKit:
        """Kit backed by a rosbags typestore (Humble types plus recon_ros/msg)."""
        from rosbags.typesys import Stores, get_typestore

        store = typestore or get_typestore(Stores.ROS2_HUMBLE)
        register_custom_types(store)
        return cls(lambda name: store.types[name], numpy_arrays=True, typestore=store)

    @classmethod
    def for_rclpy(cls) -> MessageKit:
        """Kit backed by the generated rclpy message modules."""

        def resolve(name: str) -> type:
            pkg, sub, typ = name.split("/")
            return getattr(importlib.import_module(f"{pkg}.{sub}"), typ)

        return cls(resolve, numpy_arrays=False)


def custom_message_definitions() -> dict[str, str]:
    """``{'recon_ros/msg/Name': definition}`` for every file in msg/."""
    return {f"{PACKAGE}/msg/{p.stem}": p.read_text() for p in sorted(MSG_DIR.glob("*.msg"))}


def register_custom_types(store: Any) -> None:
    from rosbags.typesys import get_types_from_msg

    types: dict = {}
    for name, text in custom_message_definitions().items():
        if name not in store.types:
            types.update(get_types_from_msg(text, name))
    if types:
        store.register(types)


# ---- time and headers -------------------------------------------------------------------------
def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_time(kit: MessageKit, stamp_ns: int) -> Any:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return kit.cls("builtin_interfaces/msg/Time")(sec=sec, nanosec=nanosec)


def make_header(kit: MessageKit, stamp_ns: int, frame_id: str) -> Any:
    return kit.cls("std_msgs/msg/Header")(stamp=make_time(kit, stamp_ns), frame_id=frame_id)


# ---- images -------------------------------------------------------------------------------------
_ENCODINGS: dict[str, tuple[type, int]] = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3),
    "mono16": (np.uint16, 1),
    "16UC1": (np.uint16, 1),
    "32FC1": (np.float32, 1),
    "32FC3": (np.float32, 3),
}


def image_to_numpy(msg: Any) -> np.ndarray:
    """Raw array of a sensor_msgs/Image (``[H,W]`` or ``[H,W,C]``), honouring step and endianness."""
    if msg.encoding not in _ENCODINGS:
        raise BadMessage(
            "bad_encoding", f"unsupported image encoding '{msg.encoding}' (supported: {', '.join(_ENCODINGS)})"
        )
    dtype, channels = _ENCODINGS[msg.encoding]
    h, w = int(msg.height), int(msg.width)
    itemsize = np.dtype(dtype).itemsize
    row = w * channels * itemsize
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if h == 0 or w == 0 or msg.step < row or data.size < msg.step * (h - 1) + row:
        raise BadMessage(
            "bad_image_size",
            f"image data of {data.size} bytes does not hold {w}x{h} '{msg.encoding}' with step {msg.step}",
        )
    rows = np.lib.stride_tricks.as_strided(data, shape=(h, row), strides=(msg.step, 1))
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    img = np.ascontiguousarray(rows).view(dt).astype(dtype, copy=False).reshape(h, w, channels)
    return img[..., 0] if channels == 1 else img


def image_to_rgb(msg: Any) -> np.ndarray:
    """``[H,W,3]`` uint8 RGB from a colour, mono, Bayer or YUV 4:2:2 sensor_msgs/Image."""
    from recon_ros.io import encodings  # imports BadMessage from here

    enc = msg.encoding
    if enc in encodings.EXTRA_ENCODINGS:
        return encodings.decode_extra(msg)
    if enc not in _ENCODINGS:
        raise BadMessage(
            "bad_encoding",
            f"unsupported image encoding '{enc}' (supported: {', '.join([*_ENCODINGS, *encodings.EXTRA_ENCODINGS])})",
        )
    img = image_to_numpy(msg)
    if enc in ("rgb8", "8UC3"):
        return img
    if enc == "bgr8":
        return img[..., ::-1].copy()
    if enc == "rgba8":
        return img[..., :3].copy()
    if enc == "bgra8":
        return img[..., 2::-1].copy()
    if enc in ("mono8", "8UC1"):
        return np.repeat(img[..., None], 3, axis=2)
    if enc in ("mono16", "16UC1"):
        return np.repeat((img >> 8).astype(np.uint8)[..., None], 3, axis=2)
    if enc in ("32FC1", "32FC3"):  # intensities in [0, 1], as cv_bridge writes float images
        bad = int(np.count_nonzero(~np.isfinite(img)))
        if bad:
            raise BadMessage("non_finite_pixels", f"'{enc}' image has {bad} NaN/inf values of {img.size}")
        u8 = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(u8[..., None], 3, axis=2) if u8.ndim == 2 else u8
    raise BadMessage("bad_encoding", f"image encoding '{enc}' is not a colour or mono encoding")


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG/PNG) to ``[H,W,3]`` uint8 RGB with OpenCV."""
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise BadMessage("decode_error", f"compressed image (format '{msg.format}') is empty")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise BadMessage("decode_error", f"cannot decode compressed image (format '{msg.format}', {data.size} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_image(msg: Any, compressed: bool) -> np.ndarray:
    """RGB uint8 array of an Image or CompressedImage; raises BadMessage."""
    return compressed_to_rgb(msg) if compressed else image_to_rgb(msg)


def numpy_to_image(kit: MessageKit, img: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/Image from an array whose dtype and channels fit ``encoding``."""
    dtype, channels = _ENCODINGS[encoding]
    img = np.ascontiguousarray(img, dtype=dtype)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] != channels:
        raise ValueError(f"encoding {encoding} needs {channels} channels, got array of shape {img.shape}")
    h, w = img.shape[:2]
    return kit.cls("sensor_msgs/msg/Image")(
        header=make_header(kit, stamp_ns, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * channels * np.dtype(dtype).itemsize,
        data=kit.array(img.view(np.uint8), np.uint8),
    )


def rgb_to_compressed(kit: MessageKit, rgb: np.ndarray, stamp_ns: int, frame_id: str, quality: int = 92) -> Any:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return kit.cls("sensor_msgs/msg/CompressedImage")(
        header=make_header(kit, stamp_ns, frame_id), format="rgb8; jpeg compressed bgr8", data=kit.array(buf, np.uint8)
    )


# ---- camera info ------------------------------------------------------------------------------
def camera_info_to_K(msg: Any) -> tuple[np.ndarray, int, int]:
    """(K of the rectified camera, width, height) of a validated CameraInfo (see io/rectify.py)."""
    from recon_ros.io.rectify import calibration_from_camera_info  # imports BadMessage from here

    cal = calibration_from_camera_info(msg)
    return cal.K_rect, cal.width, cal.height


def make_camera_info(kit: MessageKit, K: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str) -> Any:
    P = np.zeros((3, 4))
    P[:3, :3] = K
    return kit.cls("sensor_msgs/msg/CameraInfo")(
        header=make_header(kit, stamp_ns, frame_id),
        height=int(height),
        width=int(width),
        distortion_model="plumb_bob",
        d=kit.array(np.zeros(5), np.float64),
        k=kit.fixed(K, np.float64),
        r=kit.fixed(np.eye(3), np.float64),
        p=kit.fixed(P, np.float64),
        binning_x=0,
        binning_y=0,
        roi=kit.cls("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


# ---- point clouds -----------------------------------------------------------------------------
CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """uint8 ``[N,3]`` RGB packed into float32 the way RViz/PCL read the ``rgb`` field."""
    c = colors.astype(np.uint32)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    v = np.ascontiguousarray(packed, dtype=np.float32).view(np.uint32)
    return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=1).astype(np.uint8)


def make_pointcloud2(kit: MessageKit, points: np.ndarray, colors: np.ndarray, stamp_ns: int, frame_id: str) -> Any:
    """Unorganised PointCloud2 with x y z rgb FLOAT32 at offsets 0/4/8/12 (point_step 16), built from one buffer."""
    return _pointcloud2(kit, points, colors, 1, len(points), stamp_ns, frame_id)


def make_organized_pointcloud2(kit: MessageKit, points: np.ndarray, colors: np.ndarray, stamp_ns: int,
                               frame_id: str) -> Any:
    """Organized PointCloud2 (height x width of ``points [h, w, 3]``, NaN = no point), same x y z rgb layout."""
    h, w = points.shape[:2]
    return _pointcloud2(kit, points.reshape(-1, 3), colors.reshape(-1, 3), h, w, stamp_ns, frame_id)


def _pointcloud2(kit: MessageKit, points: np.ndarray, colors: np.ndarray, height: int, width: int, stamp_ns: int,
                 frame_id: str) -> Any:
    n = len(points)
    buf = np.empty(n, dtype=CLOUD_DTYPE)
    buf["x"], buf["y"], buf["z"] = points[:, 0], points[:, 1], points[:, 2]
    buf["rgb"] = pack_rgb(colors) if n else np.empty(0, np.float32)
    field_cls = kit.cls("sensor_msgs/msg/PointField")
    fields = [field_cls(name=name, offset=4 * i, datatype=7, count=1) for i, name in enumerate(["x", "y", "z", "rgb"])]
    return kit.cls("sensor_msgs/msg/PointCloud2")(
        header=make_header(kit, stamp_ns, frame_id),
        height=height,
        width=width,
        fields=fields,
        is_bigendian=False,
        point_step=16,
        row_step=16 * width,
        data=kit.array(buf.view(np.uint8), np.uint8),
        is_dense=bool(height == 1 or np.isfinite(points).all()),  # organized clouds hold NaN for no point
    )


def pointcloud2_to_numpy(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """(points ``[N,3]`` float32, colors ``[N,3]`` uint8) of a cloud built by :func:`make_pointcloud2`."""
    names = [f.name for f in msg.fields]
    offsets = [int(f.offset) for f in msg.fields]
    if names[:4] != ["x", "y", "z", "rgb"] or offsets[:4] != [0, 4, 8, 12] or msg.point_step != 16:
        raise BadMessage("bad_cloud", f"PointCloud2 layout {list(zip(names, offsets))} is not x y z rgb at 0/4/8/12")
    buf = np.frombuffer(msg.data, dtype=CLOUD_DTYPE)
    pts = np.stack([buf["x"], buf["y"], buf["z"]], axis=1)
    return pts, unpack_rgb(buf["rgb"])


# ---- transforms ---------------------------------------------------------------------------------
def make_transform_stamped(kit: MessageKit, T: np.ndarray, stamp_ns: int, parent: str, child: str) -> Any:
    t, q = to_quaternion(T)
    vec = kit.cls("geometry_msgs/msg/Vector3")(x=float(t[0]), y=float(t[1]), z=float(t[2]))
    quat = kit.cls("geometry_msgs/msg/Quaternion")(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))
    return kit.cls("geometry_msgs/msg/TransformStamped")(
        header=make_header(kit, stamp_ns, parent),
        child_frame_id=child,
        transform=kit.cls("geometry_msgs/msg/Transform")(translation=vec, rotation=quat),
    )


def make_tf_message(kit: MessageKit, transforms: Sequence[Any]) -> Any:
    return kit.cls("tf2_msgs/msg/TFMessage")(transforms=list(transforms))


def transform_to_matrix(transform: Any) -> np.ndarray:
    t, q = transform.translation, transform.rotation
    quat = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    norm = np.linalg.norm(quat)
    if not np.isfinite(norm) or norm < 1e-6:
        raise BadMessage("bad_transform", f"transform quaternion {quat.tolist()} is not a rotation")
    return from_quaternion(np.array([t.x, t.y, t.z]), quat / norm)


def make_pose(kit: MessageKit, T: np.ndarray) -> Any:
    t, q = to_quaternion(T)
    return kit.cls("geometry_msgs/msg/Pose")(
        position=kit.cls("geometry_msgs/msg/Point")(x=float(t[0]), y=float(t[1]), z=float(t[2])),
        orientation=kit.cls("geometry_msgs/msg/Quaternion")(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )


def pose_to_matrix(pose: Any) -> np.ndarray:
    p, q = pose.position, pose.orientation
    return from_quaternion(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))


def make_path(kit: MessageKit, poses: Iterable[tuple[int, np.ndarray]], stamp_ns: int, frame_id: str) -> Any:
    pose_cls = kit.cls("geometry_msgs/msg/PoseStamped")
    items = [pose_cls(header=make_header(kit, s, frame_id), pose=make_pose(kit, T)) for s, T in poses]
    return kit.cls("nav_msgs/msg/Path")(header=make_header(kit, stamp_ns, frame_id), poses=items)


# ---- recon_ros messages -----------------------------------------------------------------------
def make_keyframe_depth(
    kit: MessageKit,
    *,
    keyframe_id: int,
    camera: str,
    depth: np.ndarray,
    confidence: np.ndarray,
    K: np.ndarray,
    T_map_cam: np.ndarray,
    stamp_ns: int,
    frame_id: str,
) -> Any:
    h, w = depth.shape
    return kit.cls(f"{PACKAGE}/msg/KeyframeDepth")(
        header=make_header(kit, stamp_ns, frame_id),
        keyframe_id=int(keyframe_id),
        camera_name=camera,
        depth=numpy_to_image(kit, depth, "32FC1", stamp_ns, frame_id),
        confidence=numpy_to_image(kit, confidence, "32FC1", stamp_ns, frame_id),
        camera_info=make_camera_info(kit, K, w, h, stamp_ns, frame_id),
        pose=make_pose(kit, T_map_cam),
    )


def make_recon_status(kit: MessageKit, status: dict[str, Any], stamp_ns: int, frame_id: str) -> Any:
    """ReconStatus from the engine's ``status()`` dict."""
    drops = status.get("dropped", {})
    stages = status.get("stage_latency_ms", {})
    nav = status.get("nav_latency_ms", {})
    return kit.cls(f"{PACKAGE}/msg/ReconStatus")(
        header=make_header(kit, stamp_ns, frame_id),
        images_received=int(status.get("images_received", 0)),
        frame_sets=int(status.get("frame_sets", 0)),
        keyframes=int(status.get("keyframes", 0)),
        buffered_keyframes=int(status.get("buffered_keyframes", 0)),
        drop_reasons=list(drops),
        drop_counts=kit.array(list(drops.values()), np.uint64),
        stage_names=list(stages),
        stage_latency_ms=kit.array(list(stages.values()), np.float32),
        map_points=int(status.get("map_points", 0)),
        map_voxel_size=float(status.get("map_voxel_size", 0.0)),
        pose_source=str(status.get("pose_source", "")),
        depth_source=str(status.get("depth_source", "")),
        backend=str(status.get("backend", "")),
        scale=float(status.get("scale", 1.0)),
        scale_residual_m=float(status.get("scale_residual_m", 0.0)),
        nav_stage_names=list(nav),
        nav_stage_ms=kit.array(list(nav.values()), np.float32),
        nav_stamp_to_publish_ms=float(status.get("nav_stamp_to_publish_ms", float("nan"))),
        nav_points=int(status.get("nav_points", 0)),
        nav_frame=str(status.get("nav_frame", "")),
    )


def make_diagnostics(kit: MessageKit, name: str, hardware_id: str, level: int, message: str,
                     values: dict[str, Any], stamp_ns: int) -> Any:
    kv = kit.cls("diagnostic_msgs/msg/KeyValue")
    status = kit.cls("diagnostic_msgs/msg/DiagnosticStatus")(
        level=bytes([level]) if not kit.numpy_arrays else int(level),
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[kv(key=str(k), value=str(v)) for k, v in values.items()],
    )
    return kit.cls("diagnostic_msgs/msg/DiagnosticArray")(header=make_header(kit, stamp_ns, ""), status=[status])
