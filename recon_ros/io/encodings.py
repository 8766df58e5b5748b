"""Camera pixel encodings of sensor_msgs/Image to RGB uint8, decoded with OpenCV.

Covers what real cameras publish besides rgb8/bgr8/mono8: Bayer mosaics from machine-vision
cameras (8 and 16 bit), YUV 4:2:2 from USB (UVC) cameras, and 16-bit mono / colour. Each
decoder checks the buffer against width, height and step first, so a truncated or mis-sized
message is a :class:`BadMessage` naming what was expected, never a crash or a garbled image.

The encoders (``encode_rgb``) are the inverse, used to record synthetic bags in these layouts and
to test each decoder against an image of known content.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from recon_ros.io.messages import BadMessage

# ROS names the colour of the top-left 2x2 cell (R G / G B = rggb); OpenCV names the colours of the
# second row's second and third pixels, so ROS 'rggb' is OpenCV 'BG' (the mapping cv_bridge uses).
BAYER_TO_CV: dict[str, int] = {
    "rggb": cv2.COLOR_BayerBG2RGB,
    "bggr": cv2.COLOR_BayerRG2RGB,
    "gbrg": cv2.COLOR_BayerGR2RGB,
    "grbg": cv2.COLOR_BayerGB2RGB,
}
BAYER_ENCODINGS = tuple(f"bayer_{p}{bits}" for p in BAYER_TO_CV for bits in (8, 16))

# ROS 'yuv422' is UYVY byte order (U0 Y0 V0 Y1); 'yuv422_yuy2' / 'yuyv' is YUYV (Y0 U0 Y1 V0).
YUV_TO_CV: dict[str, int] = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV,
}
YUV_ENCODINGS = tuple(YUV_TO_CV)

# 16-bit colour: (channels, OpenCV conversion to RGB or None when already RGB).
COLOR16: dict[str, tuple[int, int | None]] = {
    "rgb16": (3, None),
    "bgr16": (3, cv2.COLOR_BGR2RGB),
    "rgba16": (4, cv2.COLOR_RGBA2RGB),
    "bgra16": (4, cv2.COLOR_BGRA2RGB),
    "16UC3": (3, None),
}

EXTRA_ENCODINGS = (*BAYER_ENCODINGS, *YUV_ENCODINGS, *COLOR16)


def _rows(msg: Any, bytes_per_row: int, what: str) -> np.ndarray:
    """``[H, bytes_per_row]`` uint8 view of the message data, checked against step and size."""
    h, w = int(msg.height), int(msg.width)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    step = int(msg.step)
    if h <= 0 or w <= 0 or step < bytes_per_row or data.size < step * (h - 1) + bytes_per_row:
        raise BadMessage(
            "bad_image_size",
            f"'{msg.encoding}' {w}x{h} needs {what}: rows of {bytes_per_row} bytes with step >= {bytes_per_row} "
            f"(got step {step}) and at least {max(step, bytes_per_row) * (h - 1) + bytes_per_row} bytes "
            f"(got {data.size})",
        )
    rows = np.lib.stride_tricks.as_strided(data, shape=(h, bytes_per_row), strides=(step, 1))
    return np.ascontiguousarray(rows)


def _as_uint16(rows: np.ndarray, h: int, w: int, channels: int, bigendian: bool) -> np.ndarray:
    dt = np.dtype(np.uint16).newbyteorder(">" if bigendian else "<")
    return rows.view(dt).astype(np.uint16, copy=False).reshape(h, w, channels)


def _to8(img16: np.ndarray) -> np.ndarray:
    """Top 8 bits of a 16-bit image (full scale to full scale, as mono16 was already read)."""
    return (img16 >> 8).astype(np.uint8)


def decode_bayer(msg: Any) -> np.ndarray:
    enc = msg.encoding
    pattern, bits = enc[len("bayer_"):len("bayer_") + 4], int(enc[len("bayer_") + 4:])
    h, w = int(msg.height), int(msg.width)
    if h % 2 or w % 2 or h < 2 or w < 2:
        raise BadMessage("bad_image_size", f"'{enc}' image is {w}x{h}; a Bayer mosaic needs an even width and height")
    itemsize = bits // 8
    rows = _rows(msg, w * itemsize, f"one {bits}-bit sample per pixel")
    mosaic = rows.reshape(h, w) if bits == 8 else _to8(_as_uint16(rows, h, w, 1, bool(msg.is_bigendian))[..., 0])
    return cv2.cvtColor(mosaic, BAYER_TO_CV[pattern])


def decode_yuv422(msg: Any) -> np.ndarray:
    enc = msg.encoding
    h, w = int(msg.height), int(msg.width)
    if w % 2 or w < 2:
        raise BadMessage("bad_image_size", f"'{enc}' image is {w}x{h}; YUV 4:2:2 needs an even width")
    rows = _rows(msg, w * 2, "2 bytes per pixel (4:2:2)")
    return cv2.cvtColor(rows.reshape(h, w, 2), YUV_TO_CV[enc])


def decode_color16(msg: Any) -> np.ndarray:
    enc = msg.encoding
    channels, code = COLOR16[enc]
    h, w = int(msg.height), int(msg.width)
    rows = _rows(msg, w * channels * 2, f"{channels} x 16-bit samples per pixel")
    img = _to8(_as_uint16(rows, h, w, channels, bool(msg.is_bigendian)))
    return img if code is None else cv2.cvtColor(img, code)


def decode_extra(msg: Any) -> np.ndarray:
    """RGB uint8 ``[H,W,3]`` of a Bayer, YUV 4:2:2 or 16-bit colour image."""
    enc = msg.encoding
    if enc in BAYER_ENCODINGS:
        return decode_bayer(msg)
    if enc in YUV_TO_CV:
        return decode_yuv422(msg)
    if enc in COLOR16:
        return decode_color16(msg)
    raise BadMessage("bad_encoding", f"image encoding '{enc}' is not a Bayer, YUV 4:2:2 or 16-bit colour encoding")


# ---- encoders (synthetic bags, tests) ----------------------------------------------------------
def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Bayer mosaic ``[H,W]`` of an RGB image: the top-left 2x2 cell holds the colours ``pattern`` names."""
    index = {"r": 0, "g": 1, "b": 2}
    out = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    for k, colour in enumerate(pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, index[colour]]
    return out


def pack_yuv422(rgb: np.ndarray, order: str) -> np.ndarray:
    """``[H, W, 2]`` uint8 YUV 4:2:2 (``order`` 'uyvy' or 'yuyv') of an RGB image (even width)."""
    code = cv2.COLOR_RGB2YUV_UYVY if order == "uyvy" else cv2.COLOR_RGB2YUV_YUY2
    return cv2.cvtColor(np.ascontiguousarray(rgb), code)


def encode_rgb(rgb: np.ndarray, encoding: str) -> tuple[np.ndarray, int]:
    """(pixel array ready for ``Image.data`` (little-endian), bytes per sample) of an RGB uint8 image."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if encoding in BAYER_ENCODINGS:
        pattern, bits = encoding[6:10], int(encoding[10:])
        m = mosaic(rgb, pattern)
        return (m, 1) if bits == 8 else (m.astype(np.uint16) * 257, 2)
    if encoding in YUV_TO_CV:
        return pack_yuv422(rgb, "uyvy" if encoding in ("yuv422", "uyvy") else "yuyv"), 1
    if encoding in COLOR16:
        rgb16 = rgb.astype(np.uint16) * 257  # 8 -> 16 bit keeping full scale (255 -> 65535)
        conv = {"bgr16": cv2.COLOR_RGB2BGR, "rgba16": cv2.COLOR_RGB2RGBA, "bgra16": cv2.COLOR_RGB2BGRA}
        return (cv2.cvtColor(rgb16, conv[encoding]) if encoding in conv else rgb16), 2
    if encoding in ("mono16", "16UC1"):
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257, 2
    if encoding in ("mono8", "8UC1"):
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1
    if encoding == "bgr8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 1
    if encoding in ("rgb8", "8UC3"):
        return rgb, 1
    raise ValueError(f"no encoder for '{encoding}'")


def make_encoded_image(kit: Any, rgb: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/Image of an RGB uint8 image in any encoding :func:`encode_rgb` knows."""
    from recon_ros.io.messages import make_header

    pixels, _ = encode_rgb(rgb, encoding)
    h, w = rgb.shape[:2]
    data = np.ascontiguousarray(pixels).view(np.uint8).reshape(h, -1)
    return kit.cls("sensor_msgs/msg/Image")(
        header=make_header(kit, stamp_ns, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
        step=data.shape[1], data=kit.array(data, np.uint8),
    )
